"""Which objects leave memory for disk when a host's object memory would pass its limit (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    last_used: float
    movable: bool = True  # False while it is still being written


def objects_to_spill(in_memory: Sequence[StoredObject], incoming_bytes: int, limit_bytes: int) -> List[str]:
    """The least recently used objects to move to disk so that what stays in memory plus an incoming
    object of `incoming_bytes` fits in `limit_bytes`. An object larger than the limit goes straight
    to disk (see `goes_to_disk`), so it makes nothing else move."""
    if goes_to_disk(incoming_bytes, limit_bytes):
        return []
    excess = sum(item.size for item in in_memory) + incoming_bytes - limit_bytes
    spilled: List[str] = []
    for item in sorted((item for item in in_memory if item.movable), key=lambda item: item.last_used):
        if excess <= 0:
            break
        spilled.append(item.name)
        excess -= item.size
    return spilled


def goes_to_disk(size: int, limit_bytes: int) -> bool:
    return size > limit_bytes
