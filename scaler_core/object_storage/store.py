"""The object storage's bookkeeping, without sockets: objects by id, owners, waiting readers."""

from __future__ import annotations

import collections
from typing import Dict, List, Optional, Sequence, Set, Tuple

# Owners whose objects were dropped (a client disconnected); a late put for them is discarded.
# Bounded so a long-lived server does not grow with every client it ever saw.
MAX_REMEMBERED_DEAD_OWNERS = 100_000


class ObjectStore:
    def __init__(self):
        self.objects: Dict[bytes, Tuple[bytes, List]] = {}  # id -> (owner, frames)
        self.by_owner: Dict[bytes, Set[bytes]] = collections.defaultdict(set)
        self.waiting: Dict[bytes, List[Tuple[bytes, float]]] = {}  # id -> [(requester, deadline)]
        self.dead_owners: "collections.OrderedDict[bytes, None]" = collections.OrderedDict()

    def put(self, object_id: bytes, owner: bytes, frames: Sequence) -> List[bytes]:
        """Store an object; returns the requesters that were waiting for it."""
        if owner in self.dead_owners:
            return []
        self.delete(object_id)
        frames = list(frames)
        self.objects[object_id] = (owner, frames)
        self.by_owner[owner].add(object_id)
        return [requester for requester, _ in self.waiting.pop(object_id, [])]

    def get(self, object_id: bytes) -> Optional[List]:
        entry = self.objects.get(object_id)
        return None if entry is None else entry[1]

    def wait_for(self, object_id: bytes, requester: bytes, deadline: float) -> None:
        self.waiting.setdefault(object_id, []).append((requester, deadline))

    def delete(self, object_id: bytes) -> None:
        entry = self.objects.pop(object_id, None)
        if entry is None:
            return
        owner, _ = entry
        owned = self.by_owner.get(owner)
        if owned is not None:
            owned.discard(object_id)
            if not owned:
                del self.by_owner[owner]

    def delete_owner(self, owner: bytes) -> int:
        object_ids = list(self.by_owner.get(owner, ()))
        for object_id in object_ids:
            self.delete(object_id)
        self.dead_owners[owner] = None
        while len(self.dead_owners) > MAX_REMEMBERED_DEAD_OWNERS:
            self.dead_owners.popitem(last=False)
        return len(object_ids)

    def expire_waiting(self, now: float) -> List[Tuple[bytes, bytes]]:
        """Drop waits past their deadline; returns (object id, requester) pairs to answer 'not found'."""
        expired = []
        for object_id in list(self.waiting):
            still = []
            for requester, deadline in self.waiting[object_id]:
                if deadline <= now:
                    expired.append((object_id, requester))
                else:
                    still.append((requester, deadline))
            if still:
                self.waiting[object_id] = still
            else:
                del self.waiting[object_id]
        return expired
