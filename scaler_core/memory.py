"""Giving freed heap memory back to the operating system.

A burst of messages leaves glibc's heap full of freed chunks that RSS keeps counting (decoded
batches, socket buffers). `trim_heap()` asks glibc to return them (`malloc_trim`); elsewhere it
does nothing. Processes call it when they go quiet after a busy period, never on a hot path.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc

_malloc_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _malloc_trim = _libc.malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
    _malloc_trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
    _malloc_trim = None


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
