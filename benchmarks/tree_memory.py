"""Memory of a whole process tree, shared-memory files included (W8).

`TreeMemorySampler` samples, every `interval_seconds`, every process of the tree (this process and all its
descendants, re-discovered at each sample so workers started or restarted during the run are seen) and the
files under /dev/shm that were not there when it started. Per sample it computes two sums; the peaks are
the largest sums seen at one instant (not a sum of per-process peaks, which never coexist):

- tree RSS: sum of VmRSS over the processes, what `ps` shows (the figure of the issue-15 table). A page of
  a shared-memory file mapped by k processes counts k times, and a file nobody maps counts zero times.
- footprint: sum over the processes of RssAnon + RssFile (private memory and file-backed pages: libraries,
  mapped regular files), i.e. RSS without the shared-memory mappings, plus the bytes allocated to the new
  /dev/shm files (tmpfs, so they are RAM), each counted once whether any process maps them or not. An
  engine that parks objects in /dev/shm files cannot hide them, and one whose workers map the same file
  is not charged twice.

Which /dev/shm files are the run's: the machine is shared (other sessions' tests create /dev/shm files
too), so a new file counts only when its top-level entry under /dev/shm (the file, or the directory it
is in) was mapped by a process of the tree at some sample (/proc/<pid>/maps), or its name contains the
pid of a process of the tree as a number (`scaler-objects-<pid>-...`, `psm_<pid>`, ...). New files that
match neither are reported apart (`foreign_new_shm_mb`), not counted. The names of the largest counted
files are recorded for checking.

Caveat: RssFile pages of libraries shared by several processes still count once per process (the same
for every system with the same number of processes)."""

import os
import re
import threading

import psutil

MB = 1024 * 1024
SHM_ROOT = "/dev/shm"


def _status_fields(pid):
    """(VmRSS, RssAnon, RssFile, RssShmem) in bytes from /proc/<pid>/status; None when the process is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "RssShmem:")):
                    key, value = line.split(":", 1)
                    values[key] = int(value.split()[0]) * 1024
    except OSError:
        return None
    if "VmRSS" not in values:
        return None  # zombie or kernel thread
    return values["VmRSS"], values.get("RssAnon", 0), values.get("RssFile", 0), values.get("RssShmem", 0)


def _shm_files(root=SHM_ROOT):
    """{(path, inode): allocated bytes} of every regular file under root (/dev/shm or any directory)."""
    found = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    found[(entry.path, info.st_ino)] = info.st_blocks * 512
            except OSError:
                continue  # removed while scanning
    return found


def _mapped_shm_entries(pid, shm_root):
    """Top-level names under shm_root of the files a process maps."""
    prefix = shm_root.rstrip("/") + "/"
    entries = set()
    try:
        with open(f"/proc/{pid}/maps") as handle:
            for line in handle:
                position = line.find(prefix)
                if position >= 0:
                    entries.add(line[position + len(prefix):].split("/", 1)[0].split(" (deleted)")[0].strip())
    except OSError:
        pass
    return entries


def _top_level(path, shm_root):
    return os.path.relpath(path, shm_root).split(os.sep, 1)[0]


class TreeMemorySampler:
    def __init__(self, root_pid=None, interval_seconds=0.1, shm_root=SHM_ROOT, disk_directory=None):
        self.root_pid = root_pid or os.getpid()
        self.disk_directory = disk_directory  # e.g. a spill directory: its peak size is reported, not added
        self.peak_disk = 0
        self.peak_foreign_shm = 0
        self._seen_pids = set()
        self._our_entries = set()
        self.interval_seconds = interval_seconds
        self.shm_root = shm_root
        self.peak_tree_rss = 0
        self.peak_footprint = 0
        self.peak_shm = 0
        self.peak_process_rss = 0
        self.start_tree_rss = 0
        self.start_footprint = 0
        self.max_processes = 0
        self.samples = 0
        self.largest_new_shm = {}
        self._shm_before = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tree-memory-sampler")

    def _pids(self):
        try:
            root = psutil.Process(self.root_pid)
            return [self.root_pid] + [child.pid for child in root.children(recursive=True)]
        except psutil.Error:
            return [self.root_pid]

    def _sample(self):
        tree_rss = footprint = 0
        pids = self._pids()
        for pid in pids:
            fields = _status_fields(pid)
            if fields is None:
                continue
            rss, anon, file_backed, _shmem = fields
            tree_rss += rss
            footprint += anon + file_backed
            self.peak_process_rss = max(self.peak_process_rss, rss)
        self._seen_pids.update(pids)
        for pid in pids:
            self._our_entries |= _mapped_shm_entries(pid, self.shm_root)
        shm = foreign = 0
        for key, allocated in _shm_files(self.shm_root).items():
            if key in self._shm_before:
                continue
            if not self._is_ours(_top_level(key[0], self.shm_root)):
                foreign += allocated
                continue
            shm += allocated
            if allocated >= MB and allocated > self.largest_new_shm.get(key[0], 0):
                self.largest_new_shm[key[0]] = allocated
        self.peak_foreign_shm = max(self.peak_foreign_shm, foreign)
        footprint += shm
        if self.disk_directory:
            self.peak_disk = max(self.peak_disk, sum(_shm_files(self.disk_directory).values()))
        self.max_processes = max(self.max_processes, len(pids))
        self.samples += 1
        return tree_rss, footprint, shm

    def _is_ours(self, entry):
        if entry in self._our_entries:
            return True
        if any(int(token) in self._seen_pids for token in re.findall(r"\d+", entry) if len(token) < 9):
            self._our_entries.add(entry)
            return True
        return False

    def _record(self, sample):
        tree_rss, footprint, shm = sample
        self.peak_tree_rss = max(self.peak_tree_rss, tree_rss)
        self.peak_footprint = max(self.peak_footprint, footprint)
        self.peak_shm = max(self.peak_shm, shm)

    def _run(self):
        while not self._stop.wait(self.interval_seconds):
            self._record(self._sample())

    def __enter__(self):
        self._shm_before = set(_shm_files(self.shm_root))
        self.start_tree_rss, self.start_footprint, _ = self._sample()
        self._record((self.start_tree_rss, self.start_footprint, 0))
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._record(self._sample())  # the end state counts too (objects still held)
        return False

    def metrics(self):
        largest = sorted(self.largest_new_shm.items(), key=lambda item: -item[1])[:5]
        return {
            "peak_footprint_mb": round(self.peak_footprint / MB, 1),
            "peak_tree_rss_mb": round(self.peak_tree_rss / MB, 1),
            "peak_shm_mb": round(self.peak_shm / MB, 1),
            "foreign_new_shm_mb": round(self.peak_foreign_shm / MB, 1),
            "peak_process_rss_mb": round(self.peak_process_rss / MB, 1),
            "start_tree_rss_mb": round(self.start_tree_rss / MB, 1),
            "start_footprint_mb": round(self.start_footprint / MB, 1),
            "memory_samples": self.samples,
            "max_processes": self.max_processes,
            **({"peak_spill_directory_mb": round(self.peak_disk / MB, 1)} if self.disk_directory else {}),
            "largest_new_shm_files": {path: round(size / MB, 1) for path, size in largest},
        }
