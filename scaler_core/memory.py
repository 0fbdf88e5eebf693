"""How much memory a process may use, and giving freed heap memory back to the operating system.

`machine_memory_bytes()` is the memory defaults are shares of (a worker's memory limit, a host
store's): the machine's, lowered by the cgroup the process runs in (a container, a Slurm job) and by
RLIMIT_RSS, as Dask distributed reckons it.

A burst of messages leaves glibc's heap full of freed chunks that RSS keeps counting (decoded
batches, socket buffers). `trim_heap()` asks glibc to return them (`malloc_trim`); elsewhere it
does nothing. Processes call it when they go quiet after a busy period, never on a hot path.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
from typing import Iterator, Optional

_malloc_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _malloc_trim = _libc.malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
    _malloc_trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
    _malloc_trim = None


CGROUP_ROOT = "/sys/fs/cgroup"


def machine_memory_bytes() -> int:
    """The memory this process may use on its machine (see the module's docstring)."""
    import psutil  # late: not every process that trims its heap measures memory

    limit = psutil.virtual_memory().total
    try:
        with open("/proc/self/cgroup") as handle:
            membership = handle.read()
    except OSError:
        membership = ""
    for cgroup_limit in cgroup_memory_limits(membership):
        limit = min(limit, cgroup_limit)
    try:
        import resource

        rss_limit = resource.getrlimit(resource.RLIMIT_RSS)[1]
        if rss_limit != resource.RLIM_INFINITY and rss_limit > 0:
            limit = min(limit, rss_limit)
    except (ImportError, ValueError, OSError):
        pass
    return limit


def cgroup_memory_limits(membership: str, root: str = CGROUP_ROOT) -> Iterator[int]:
    """The memory limits of the cgroups in `membership` (the text of /proc/self/cgroup) and of their
    ancestors, cgroup v2 (`memory.max`) and v1 (`memory.limit_in_bytes`); "max" and the huge
    numbers v1 uses for none are left out. Inside a container the visible root is its own cgroup."""
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = os.path.join(root, "memory"), "memory.limit_in_bytes"
        else:
            continue
        directory = os.path.normpath(base + "/" + path.strip("/"))
        while True:
            value = _read_limit(os.path.join(directory, name))
            if value is not None:
                yield value
            if directory == os.path.normpath(base) or not directory.startswith(os.path.normpath(base)):
                break
            directory = os.path.dirname(directory)


def _read_limit(path: str) -> Optional[int]:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= 2**62:  # "max", or v1's "no limit"
        return None
    return int(text)


def private_memory_bytes(process) -> int:
    """A process's own memory: its RSS without shared pages (the shared-memory objects it maps are
    the host store's, bounded by their own limit, and would count once per reader), from a
    `psutil.Process`."""
    info = process.memory_info()
    return max(0, info.rss - getattr(info, "shared", 0))


def trim_heap() -> bool:
    """Return free heap memory to the OS; True when the C library supports it."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


class QuietTrimmer:
    """Trims once the process goes quiet after handling at least `threshold` messages.

    Quiet means fewer than `quiet_below` messages since the previous check: heartbeats never stop."""

    def __init__(self, threshold: int = 10_000, quiet_below: int = 100):
        self.threshold = threshold
        self.quiet_below = quiet_below
        self._since_trim = 0
        self._at_last_check = 0

    def handled(self, count: int) -> None:
        self._since_trim += count

    def check(self) -> bool:
        """Call periodically: trims when nothing arrived since the previous call after a busy spell."""
        quiet = self._since_trim - self._at_last_check < self.quiet_below
        self._at_last_check = self._since_trim
        if quiet and self._since_trim >= self.threshold:
            self._since_trim = self._at_last_check = 0
            return trim_heap()
        return False


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while building large graphs.

    Converting a graph allocates millions of small acyclic containers; each
    allocation burst triggers collections that rescan the whole (large) heap,
    which measured as two thirds of the conversion time of a 130k-task graph.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_heap():
    """Keep the objects alive now (say, the futures of a large map) out of the cyclic collector's
    passes until the returned function is called; the collector keeps running for new objects, so
    other threads' cyclic garbage is still collected. Does nothing when something else froze the
    heap already (its freeze stays)."""
    if gc.get_freeze_count():
        return _nothing_to_thaw
    gc.freeze()
    return gc.unfreeze


def _nothing_to_thaw() -> None:
    pass
