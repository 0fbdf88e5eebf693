"""Objects a worker fetched from the object storage, kept for reuse within a byte budget.

An object stays while a task this worker holds still needs it (pinned); beyond the budget the
least recently used unpinned objects go first. An object its own host store keeps (`load_local`,
a mapping of the file) is never fetched, and is kept only while pinned: mapping it again is cheap,
and a mapping kept longer would hold the file's memory after the file is deleted.

The worker's own results that it holds instead of writing them out (`hold`: a graph's intermediates)
live here too, in a budget of their own, and are never evicted: past that budget the oldest are
handed back to be written to the host store (`take_held`), after which they are ordinary entries.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple


class ObjectCache:
    def __init__(self, capacity_bytes: int, load_local: Optional[Callable[[bytes], Optional[List]]] = None,
                 held_capacity_bytes: int = 0):
        self.capacity_bytes = capacity_bytes
        self.held_capacity_bytes = held_capacity_bytes
        self._held_size = 0
        self._load_local = load_local
        self._frames: "collections.OrderedDict[bytes, List]" = collections.OrderedDict()
        self._sizes: Dict[bytes, int] = {}
        self._pins: Dict[bytes, int] = collections.Counter()
        self._mapped: Set[bytes] = set()  # loaded from the host store: dropped once unpinned
        self._held: "collections.OrderedDict[bytes, bytes]" = collections.OrderedDict()  # id -> owner: only copy
        self._size = 0
        self._lock = threading.Lock()

    def has(self, object_id: bytes) -> bool:
        if object_id in self._frames:
            return True
        frames = self._load_local(object_id) if self._load_local is not None else None
        if frames is None:
            return False
        self.put(object_id, frames, mapped=True)
        return True

    def put(self, object_id: bytes, frames: List, mapped: bool = False) -> None:
        size = sum(len(frame) for frame in frames)
        with self._lock:
            if object_id in self._frames:
                return
            self._frames[object_id] = frames
            self._sizes[object_id] = size
            self._size += size
            if mapped:
                self._mapped.add(object_id)
            self._evict()

    def hold(self, object_id: bytes, frames: List, size: int, owner: bytes) -> List[bytes]:
        """Keep a result made here as its only copy. Returns the held objects, oldest first, that must
        be written out now to stay within the budget (possibly this one)."""
        with self._lock:
            if object_id in self._held:
                return []
            # made again (a re-run): the storage now takes this copy for the held one, so a copy kept
            # from before (its file deleted with the older entry) must not stand in for it
            self._drop(object_id)
            self._frames[object_id] = frames
            self._sizes[object_id] = size
            self._held[object_id] = owner
            self._held_size += size
            over, held_size = [], self._held_size
            for held_id in self._held:
                if held_size <= self.held_capacity_bytes:
                    break
                over.append(held_id)
                held_size -= self._sizes[held_id]
            return over

    def take_held(self, object_id: bytes) -> Optional[Tuple[List, bytes]]:
        """(frames, owner) of a held object, to be written out by the caller (the only one to get
        them): from now on it is an ordinary entry. None if it is not held (written out or dropped)."""
        with self._lock:
            owner = self._unhold(object_id)
            return None if owner is None else (self._frames[object_id], owner)

    @property
    def held_bytes(self) -> int:
        return self._held_size

    def held_ids(self) -> List[bytes]:
        with self._lock:
            return list(self._held)

    def discard(self, object_ids: Iterable[bytes]) -> None:
        """The copy here is no longer wanted (deleted on the cluster, or its file now stands for it):
        it goes now, or once the tasks here that need it are done."""
        with self._lock:
            for object_id in object_ids:
                self._unhold(object_id)
                if self._pins.get(object_id):
                    if object_id in self._frames:
                        self._mapped.add(object_id)  # dropped at its last unpin
                else:
                    self._drop(object_id)

    def _unhold(self, object_id: bytes) -> Optional[bytes]:
        """Under the lock: a held object becomes an ordinary entry; returns its owner (None: not held)."""
        owner = self._held.pop(object_id, None)
        if owner is not None:
            size = self._sizes[object_id]
            self._held_size -= size
            self._size += size
        return owner

    def frames_of(self, object_id: bytes) -> List:
        with self._lock:
            frames = self._frames[object_id]
            self._frames.move_to_end(object_id)
            return frames

    def pin(self, object_ids: Iterable[bytes]) -> None:
        with self._lock:
            for object_id in object_ids:
                self._pins[object_id] += 1

    def unpin(self, object_ids: Iterable[bytes]) -> None:
        with self._lock:
            for object_id in object_ids:
                count = self._pins.get(object_id, 0) - 1
                if count <= 0:
                    self._pins.pop(object_id, None)
                    if object_id in self._mapped:
                        self._drop(object_id)
                else:
                    self._pins[object_id] = count
            self._evict()

    def drop_unpinned(self) -> None:
        """Forget every copy no task here needs now (the worker is short of memory)."""
        with self._lock:
            for object_id in list(self._frames):
                if not self._pins.get(object_id) and object_id not in self._held:
                    self._drop(object_id)

    def _evict(self) -> None:
        if self._size <= self.capacity_bytes:
            return
        for object_id in list(self._frames):
            if self._size <= self.capacity_bytes:
                break
            if self._pins.get(object_id) or object_id in self._held:
                continue
            self._drop(object_id)

    def _drop(self, object_id: bytes) -> None:
        if self._frames.pop(object_id, None) is not None:
            self._size -= self._sizes.pop(object_id)
            self._mapped.discard(object_id)
