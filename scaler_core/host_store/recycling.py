"""Deleted object files kept for the next large result, so its pages need not be allocated again.

A large object written to a new file in shared memory costs more in the kernel than the copy itself:
tmpfs allocates the file's pages one by one and frees them all again at the unlink (measured: 64 MB
written to a new file and later unlinked, ~31 ms of system time; written over an existing file,
~11 ms). So a deleted object's file (1 MiB or more) is renamed into the store's `.free` directory
instead of unlinked, and the next put of a large object takes one from there and writes over it.

Writing over a file is safe only once no process still maps it: a reader's mapping shows the file's
current pages (copy on write separates only the pages a task writes to). Whether any process still
has the file open or mapped is asked of the kernel: a write lease (F_SETLEASE) is granted only to the
sole opener of a file, and a mapping keeps its file open after its descriptor is closed. A claimed
file is first renamed to its writer's private name, so nobody can open it between the check and the
write; one that is still mapped is unlinked instead (its pages go when the last mapping does).

The pool is bounded (files and bytes, beyond the store's memory limit) and emptied by its owner (a
cluster supervisor for its workers' results, a client for the objects it sends) once it has been idle
for a few seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from typing import List, Optional, Tuple

RECYCLE_DIRECTORY = ".free"
RECYCLE_MIN_BYTES = 1024 * 1024  # below this a new file costs little, and small files are read, not mapped
POOL_MAX_FILES = 32
POOL_MAX_BYTES = 512 * 1024 * 1024
IDLE_SECONDS = 5.0
CLAIM_ATTEMPTS = 3


def pool_directory(memory_directory: str) -> str:
    return os.path.join(memory_directory, RECYCLE_DIRECTORY)


def open_pool(memory_directory: str) -> None:
    """Let this store recycle; its owner trims the pool now and then (a cluster supervisor at each
    heartbeat, a client at each tick of its I/O loop)."""
    os.makedirs(pool_directory(memory_directory), mode=0o700, exist_ok=True)


def recycle_or_unlink(memory_directory: str, path: str) -> None:
    """Delete the object file at `path`: into the pool when the store has one and the file is large;
    the pool makes room by unlinking its oldest files (the sizes a computation makes now are the ones
    its next results will have)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return
    pool = pool_directory(memory_directory)
    if RECYCLE_MIN_BYTES <= size <= POOL_MAX_BYTES and os.path.isdir(pool):
        entries = sorted(_pool_entries(pool), key=lambda entry: entry[2])
        pooled_bytes = sum(entry_size for _, entry_size, _ in entries)
        while entries and (len(entries) >= POOL_MAX_FILES or pooled_bytes + size > POOL_MAX_BYTES):
            name, entry_size, _ = entries.pop(0)
            pooled_bytes -= entry_size
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(pool, name))
        with contextlib.suppress(FileNotFoundError):  # no pool (a store that does not recycle), or gone
            os.rename(path, os.path.join(pool, os.path.basename(path)))
            return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def claim_recycled(memory_directory: str, private_path: str, size: int) -> Optional[int]:
    """A pooled file nobody has open or mapped, renamed to `private_path` and sized to `size`, as a
    descriptor open for writing; None when the pool has none (the caller makes a new file)."""
    if size < RECYCLE_MIN_BYTES:
        return None
    pool = pool_directory(memory_directory)
    candidates = _pool_entries(pool)
    if not candidates:
        return None
    # the smallest file that fits, else the largest that nearly does; never one much larger (cutting it
    # down frees pages the next result of its size would have to allocate again)
    fitting = sorted((entry for entry in candidates if size <= entry[1] <= 2 * size), key=lambda entry: entry[1])
    growing = sorted((entry for entry in candidates if size // 2 <= entry[1] < size), key=lambda entry: -entry[1])
    for name, _, _ in (fitting + growing)[:CLAIM_ATTEMPTS]:
        try:
            os.rename(os.path.join(pool, name), private_path)
        except FileNotFoundError:
            continue  # another writer took it first
        descriptor = _open_if_unused(private_path)
        if descriptor is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(private_path)
            continue
        try:
            os.ftruncate(descriptor, size)
        except BaseException:
            os.close(descriptor)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(private_path)
            raise
        return descriptor
    return None


def trim_pool(memory_directory: str, idle_seconds: float = IDLE_SECONDS, now: Optional[float] = None) -> int:
    """Unlink the pooled files that nobody took for `idle_seconds`; returns how many."""
    now = time.time() if now is None else now
    pool = pool_directory(memory_directory)
    removed = 0
    for name, _, pooled_at in _pool_entries(pool):
        if now - pooled_at >= idle_seconds:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(pool, name))
                removed += 1
    return removed


def _open_if_unused(path: str) -> Optional[int]:
    """`path` open for writing if no other open file or mapping refers to it, else None (also when
    the kernel grants no leases here: a file is never written over unchecked)."""
    if not hasattr(fcntl, "F_SETLEASE"):  # not Linux
        return None
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        # should anything open the file while the lease is held (a backup tool: the name is private),
        # the kernel signals the holder; SIGURG is ignored by default where SIGIO would kill the process
        fcntl.fcntl(descriptor, fcntl.F_SETSIG, signal.SIGURG)
        # a write lease is refused (EAGAIN) while anyone else has the file open, mappings included
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _pool_entries(pool: str) -> List[Tuple[str, int, float]]:
    """(name, size, when it was pooled) of each file in the pool; the rename into the pool sets ctime."""
    entries = []
    try:
        with os.scandir(pool) as found:
            for entry in found:
                with contextlib.suppress(FileNotFoundError):
                    status = entry.stat(follow_symlinks=False)
                    entries.append((entry.name, status.st_size, status.st_ctime))
    except FileNotFoundError:
        pass
    return entries
