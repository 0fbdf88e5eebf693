"""One stored object as one file: its pickle frames laid out so that a reader can map the file and
hand the frames to the unpickler without copying them.

Layout: a header (magic, frame count, then offset and length of each frame), then the frames, each
starting on a 64-byte boundary (numpy and BLAS want aligned buffers). A file is written under a
temporary name and renamed into place, so a reader never sees a half-written object.

Readers map the file private and writable (copy on write): the pages are the file's own until a task
writes into an array it received, which then gets its own copy, as if the bytes had been sent.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import List, Optional, Sequence

MAGIC = b"SCLROBJ1"
ALIGNMENT = 64
_COUNT = struct.Struct("<8sQ")
_ENTRY = struct.Struct("<QQ")
PARTIAL_SUFFIX = ".partial"
MAP_MIN_BYTES = 1024 * 1024


class CorruptObjectFile(OSError):
    pass


def _aligned(offset: int) -> int:
    return (offset + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _as_bytes_view(frame) -> memoryview:
    view = memoryview(frame.buffer if hasattr(frame, "buffer") else frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class ObjectFileLayout:
    """Where each frame of an object goes in its file, and the header that says so."""

    __slots__ = ("views", "entries", "header", "size")

    def __init__(self, frames: Sequence):
        self.views = [_as_bytes_view(frame) for frame in frames]
        offset = _aligned(_COUNT.size + _ENTRY.size * len(self.views))
        self.entries = []
        for view in self.views:
            self.entries.append((offset, view.nbytes))
            offset = _aligned(offset + view.nbytes)
        self.size = offset
        self.header = _COUNT.pack(MAGIC, len(self.views)) + b"".join(_ENTRY.pack(*entry) for entry in self.entries)


def reserve_object_file(path: str, size: int) -> int:
    """Create the temporary file of an object at its full size (other writers count it at once)."""
    descriptor = os.open(partial_name(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(descriptor, size)
    except BaseException:
        os.close(descriptor)
        unlink_quietly(partial_name(path))
        raise
    return descriptor


def fill_object_file(descriptor: int, path: str, layout: ObjectFileLayout) -> None:
    """Write the reserved file's contents, then give it its real name; closes `descriptor`."""
    try:
        _write_all(descriptor, memoryview(layout.header), 0)
        for (start, _), view in zip(layout.entries, layout.views):
            _write_all(descriptor, view, start)
    except BaseException:
        os.close(descriptor)
        unlink_quietly(partial_name(path))
        raise
    os.close(descriptor)
    os.rename(partial_name(path), path)


def write_object_file(path: str, frames: Sequence) -> int:
    """Write `frames` to `path` (a temporary name, then a rename); returns the file size."""
    layout = ObjectFileLayout(frames)
    fill_object_file(reserve_object_file(path, layout.size), path, layout)
    return layout.size


def partial_name(path: str) -> str:
    return f"{path}.{os.getpid()}{PARTIAL_SUFFIX}"


def _write_all(descriptor: int, view: memoryview, offset: int) -> None:
    while view.nbytes:
        written = os.pwrite(descriptor, view, offset)
        view = view[written:]
        offset += written


def open_object_file(path: str) -> Optional[List[memoryview]]:
    """The frames of the object at `path`, as views of a private mapping (read into memory below
    MAP_MIN_BYTES: a small copy costs less than a mapping, and a process may only hold so many
    mappings); None when there is no file."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(descriptor).st_size
        if size < _COUNT.size:
            raise CorruptObjectFile(f"{path}: {size} bytes is too short for an object file")
        if size < MAP_MIN_BYTES:
            content = bytearray(size)
            view, offset = memoryview(content), 0
            while offset < size:
                read = os.preadv(descriptor, [view[offset:]], offset)
                if read == 0:
                    raise CorruptObjectFile(f"{path}: shorter than its {size} bytes")
                offset += read
        else:
            content = mmap.mmap(descriptor, size, access=mmap.ACCESS_COPY)
    finally:
        os.close(descriptor)
    view = memoryview(content)
    magic, count = _COUNT.unpack_from(view, 0)
    if magic != MAGIC or _COUNT.size + count * _ENTRY.size > size:
        raise CorruptObjectFile(f"{path} is not an object file")
    frames = []
    for index in range(count):
        start, length = _ENTRY.unpack_from(view, _COUNT.size + index * _ENTRY.size)
        if start + length > size:
            raise CorruptObjectFile(f"{path}: frame {index} runs past the end of the file")
        frames.append(view[start:start + length])
    return frames


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
