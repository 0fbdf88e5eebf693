"""A host's store of large results: the objects a cluster's workers made, kept as files where they
were made, in shared memory up to a limit and on disk beyond it.

Every worker of a cluster writes its results into the cluster's memory directory (/dev/shm by
default) and any process on the same host maps them from there, so a result moves between processes
of one host without a copy. When the objects in memory would pass the limit, the least recently used
move to the spill directory; readers map them from there (the page cache brings them back). One lock
file per store serialises the writers' accounting; reading takes no lock: a move copies the file,
renames the copy into the spill directory and only then unlinks the original, so one of the two paths
always exists.

The object storage keeps only where each object lives (its `HostStoreLocation`) and deletes the files
when the object's owner releases it; the cluster removes its directories when it ends, and removes
those of clusters that died without doing so.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from scaler_core.host_store.object_file import (PARTIAL_SUFFIX, ObjectFileLayout, fill_object_file,
                                                open_object_file, partial_name, reserve_object_file,
                                                unlink_quietly)
from scaler_core.host_store.recycling import claim_recycled, open_pool, recycle_or_unlink, trim_pool
from scaler_core.host_store.spill_policy import StoredObject, goes_to_disk, objects_to_spill

logger = logging.getLogger(__name__)

STORE_PREFIX = "scaler-objects-"
LOCK_NAME = ".lock"
HELD_NAME = ".held"  # a file per worker process: the bytes of results it holds in its memory, not here
DEFAULT_MEMORY_FRACTION = 0.25


@dataclass(frozen=True)
class HostStoreLocation:
    """Where a store keeps its objects; travels as text in ObjectPut/ObjectData."""
    memory_directory: str
    spill_directory: str
    server_address: str = ""  # the host's object server, for readers on other hosts
    host_key: str = ""  # which machine and shared-memory filesystem the memory directory is on

    def encode(self) -> str:
        return f"{self.memory_directory}\n{self.spill_directory}\n{self.server_address}\n{self.host_key}"

    @classmethod
    def decode(cls, text: str) -> "HostStoreLocation":
        memory_directory, spill_directory, server_address, host_key = (text.split("\n") + ["", "", ""])[:4]
        return cls(memory_directory, spill_directory, server_address, host_key)

    def is_here(self) -> bool:
        """The store's files are on this machine's filesystem, so a reader maps them (and one that is
        missing is gone) instead of asking the store's object server."""
        if not self.host_key:
            return os.path.isdir(self.memory_directory)
        return self.host_key == host_key_of(os.path.dirname(self.memory_directory))

    def paths_of(self, object_id: bytes) -> Tuple[str, str]:
        name = object_id.hex()
        return os.path.join(self.memory_directory, name), os.path.join(self.spill_directory, name)


def default_memory_parent() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def default_memory_limit(memory_parent: str) -> int:
    """A quarter of the machine's memory (as far as its cgroup lets this process use it), and never
    more than the memory filesystem can take."""
    from scaler_core.memory import machine_memory_bytes  # late: the object storage needs no psutil otherwise

    limit = int(machine_memory_bytes() * DEFAULT_MEMORY_FRACTION)
    try:
        free = shutil.disk_usage(memory_parent).free
    except OSError:
        return limit
    return min(limit, int(free * 0.9))


class HostStore:
    """One cluster's store, as its workers use it (many processes share one store)."""

    def __init__(self, location: HostStoreLocation, memory_limit_bytes: int):
        self.location = location
        self.encoded_location = location.encode()
        self.memory_limit_bytes = memory_limit_bytes
        self._lock_path = os.path.join(location.memory_directory, LOCK_NAME)
        self._held_directory = os.path.join(location.memory_directory, HELD_NAME)
        self._held_descriptor: Optional[int] = None
        self._held_lock = threading.Lock()  # runner threads and the I/O thread record their holdings

    def put(self, object_id: bytes, frames) -> int:
        """Store an object's frames; returns its size in bytes.

        The lock file holds an upper bound of the bytes in memory (deletes do not lower it): while
        the bound plus the new object fits the limit, nothing is scanned; past it, the directory is
        scanned for the true figure, objects spill as needed, and the bound is exact again."""
        layout = ObjectFileLayout(frames)
        memory_path, spill_path = self.location.paths_of(object_id)
        with self._locked() as lock:
            # the workers' held results count against the same limit: files get what they leave
            limit = max(0, self.memory_limit_bytes - self._held_bytes_of_workers())
            bound = _read_bound(lock)
            path = memory_path
            if goes_to_disk(layout.size, limit):
                path = spill_path
            elif bound + layout.size > limit:
                trim_pool(self.location.memory_directory, idle_seconds=0)  # before anything leaves for disk
                in_memory = self._objects_in_memory()
                spilled = objects_to_spill(in_memory, layout.size, limit)
                if spilled is None:
                    path = spill_path  # the rest is still being written: this one cannot fit now
                    spilled = []
                for name in spilled:
                    self._spill(name)
                bound = sum(item.size for item in in_memory if item.name not in spilled)
            if path == memory_path:
                bound += layout.size
            _write_bound(lock, bound)
            descriptor = claim_recycled(self.location.memory_directory, partial_name(path), layout.size) \
                if path == memory_path else None
            if descriptor is None:
                descriptor = reserve_object_file(path, layout.size)
        fill_object_file(descriptor, path, layout)
        return layout.size

    def set_held(self, held_bytes: int) -> None:
        """This process now holds `held_bytes` of results in its memory (they count against the limit)."""
        with self._held_lock:
            if self._held_descriptor is None:
                os.makedirs(self._held_directory, mode=0o700, exist_ok=True)
                self._held_descriptor = os.open(os.path.join(self._held_directory, str(os.getpid())),
                                                os.O_RDWR | os.O_CREAT, 0o600)
            _write_bound(self._held_descriptor, held_bytes)

    def _held_bytes_of_workers(self) -> int:
        """What the live processes of this store hold in their memory (a dead one's file is removed)."""
        total = 0
        try:
            entries = list(os.scandir(self._held_directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.isdigit():
                continue
            if not _process_exists(int(entry.name)):
                unlink_quietly(entry.path)
                continue
            with contextlib.suppress(OSError):
                descriptor = os.open(entry.path, os.O_RDONLY)
                try:
                    total += _read_bound(descriptor)
                finally:
                    os.close(descriptor)
        return total

    def load(self, object_id: bytes) -> Optional[List[memoryview]]:
        return load_object(self.location, object_id)

    def recycle_deleted_files(self) -> None:
        """Keep deleted large files for the next large results (host_store/recycling.py); the caller
        then calls `trim_recycled` now and then."""
        open_pool(self.location.memory_directory)

    def trim_recycled(self) -> None:
        trim_pool(self.location.memory_directory)

    def usage(self) -> Tuple[int, int]:
        """(bytes in memory, bytes on disk)."""
        return _directory_bytes(self.location.memory_directory), _directory_bytes(self.location.spill_directory)

    @contextlib.contextmanager
    def _locked(self):
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield descriptor
        finally:
            os.close(descriptor)  # releases the lock

    def _objects_in_memory(self) -> List[StoredObject]:
        objects = []
        with os.scandir(self.location.memory_directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):  # the lock and the held directory
                    continue
                try:
                    status = entry.stat()
                except FileNotFoundError:
                    continue  # deleted meanwhile
                objects.append(StoredObject(entry.name, status.st_size, status.st_mtime,
                                            movable=not entry.name.endswith(PARTIAL_SUFFIX)))
        return objects

    def _spill(self, name: str) -> None:
        """Move one object to disk: copied, renamed into the spill directory, then unlinked from memory,
        so a reader always finds one of the two. A delete or a rewrite of the same object meanwhile
        wins: the copy is dropped instead (the source is unlinked only if it is the file copied)."""
        source = os.path.join(self.location.memory_directory, name)
        target = os.path.join(self.location.spill_directory, name)
        partial = f"{target}.{os.getpid()}{PARTIAL_SUFFIX}"
        try:
            reader = open(source, "rb")
        except FileNotFoundError:
            return  # deleted meanwhile
        with reader:
            copied = os.fstat(reader.fileno())
            try:
                with open(partial, "wb") as writer:
                    shutil.copyfileobj(reader, writer, 16 * 1024 * 1024)
            except BaseException:
                unlink_quietly(partial)
                raise
        os.rename(partial, target)
        try:
            now = os.stat(source)
        except FileNotFoundError:
            unlink_quietly(target)  # deleted while it was copied
            return
        if (now.st_ino, now.st_dev) == (copied.st_ino, copied.st_dev):
            unlink_quietly(source)
        else:
            unlink_quietly(target)  # written again meanwhile: the copy is stale


_BOUND = struct.Struct("<Q")


def _read_bound(descriptor: int) -> int:
    data = os.pread(descriptor, _BOUND.size, 0)
    return _BOUND.unpack(data)[0] if len(data) == _BOUND.size else 0


def _write_bound(descriptor: int, bound: int) -> None:
    os.pwrite(descriptor, _BOUND.pack(bound), 0)


def load_object(location: HostStoreLocation, object_id: bytes) -> Optional[List[memoryview]]:
    """The object's frames mapped from this host's files, or None when they are not on this host."""
    memory_path, spill_path = location.paths_of(object_id)
    frames = open_object_file(memory_path)
    if frames is not None:
        with contextlib.suppress(OSError):
            os.utime(memory_path)  # recently used: the last to spill
        return frames
    return open_object_file(spill_path)


def delete_objects(location: HostStoreLocation, object_ids: Iterable[bytes]) -> None:
    for object_id in object_ids:
        memory_path, spill_path = location.paths_of(object_id)
        recycle_or_unlink(location.memory_directory, memory_path)
        unlink_quietly(spill_path)


def host_key_of(directory: str) -> str:
    """This boot of this machine and the filesystem `directory` is on ("" if there is no such
    directory here): two processes see the same files there exactly when their keys are equal."""
    try:
        device = os.stat(directory).st_dev
    except OSError:
        return ""
    return f"{_boot_id()}/{device}"


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return socket.gethostname()


def create_host_store(memory_parent: str, spill_parent: str) -> HostStoreLocation:
    """New directories for one cluster, named after its process so a later cluster can tell them stale."""
    remove_stale_host_stores(memory_parent, spill_parent)
    tag = f"{STORE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    location = HostStoreLocation(os.path.join(memory_parent, tag), os.path.join(spill_parent, tag),
                                 host_key=host_key_of(memory_parent))
    os.makedirs(location.memory_directory, mode=0o700)
    os.makedirs(location.spill_directory, mode=0o700)
    return location


def remove_host_store(location: HostStoreLocation) -> None:
    for directory in (location.memory_directory, location.spill_directory):
        shutil.rmtree(directory, ignore_errors=True)


def remove_stale_host_stores(*parents: str) -> None:
    """Remove the stores of clusters whose process is gone (killed before they could clean up)."""
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if not name.startswith(STORE_PREFIX):
                continue
            pid_text = name[len(STORE_PREFIX):].partition("-")[0]
            if pid_text.isdigit() and not _process_exists(int(pid_text)):
                logger.info("removing the object store %s of a cluster that is gone", os.path.join(parent, name))
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _directory_bytes(directory: str) -> int:
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if not entry.name.startswith("."):
                        total += entry.stat().st_size
    except FileNotFoundError:
        pass
    return total

