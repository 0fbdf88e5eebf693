"""Which objects leave memory for disk when a host's object memory would pass its limit (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    last_used: float
    movable: bool = True  # False while it is still being written


def objects_to_spill(in_memory: Sequence[StoredObject], incoming_bytes: int,
                     limit_bytes: int) -> Optional[List[str]]:
    """The least recently used objects to move to disk so that what stays in memory plus an incoming
    object of `incoming_bytes` fits in `limit_bytes`; None when no such choice exists (the object is
    larger than the limit, or what is in memory is still being written and cannot move yet): the
    incoming object then goes to disk itself and nothing else moves."""
    if goes_to_disk(incoming_bytes, limit_bytes):
        return None
    excess = sum(item.size for item in in_memory) + incoming_bytes - limit_bytes
    spilled: List[str] = []
    for item in sorted((item for item in in_memory if item.movable), key=lambda item: item.last_used):
        if excess <= 0:
            break
        spilled.append(item.name)
        excess -= item.size
    return spilled if excess <= 0 else None


def goes_to_disk(size: int, limit_bytes: int) -> bool:
    return size > limit_bytes
