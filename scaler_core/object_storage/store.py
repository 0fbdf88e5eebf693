"""The object storage's bookkeeping, without sockets: objects by id, owners, waiting readers.

An object is either its frames (sent to the storage) or the location of the host store that keeps
it (a worker's result): deleting one of those returns its location, so the server removes the file.
"""

from __future__ import annotations

import collections
from typing import Dict, List, Optional, Sequence, Set, Tuple

# Owners whose objects were dropped (a client disconnected); a late put for them is discarded.
# Bounded so a long-lived server does not grow with every client it ever saw.
MAX_REMEMBERED_DEAD_OWNERS = 100_000


class ObjectStore:
    def __init__(self):
        self.objects: Dict[bytes, Tuple[bytes, List, str]] = {}  # id -> (owner, frames, host store location)
        self.by_owner: Dict[bytes, Set[bytes]] = collections.defaultdict(set)
        self.waiting: Dict[bytes, List[Tuple[bytes, float]]] = {}  # id -> [(requester, deadline)]
        self.dead_owners: "collections.OrderedDict[bytes, None]" = collections.OrderedDict()

    def put(self, object_id: bytes, owner: bytes, frames: Sequence, location: str = "") -> Tuple[List[bytes], List[str]]:
        """Store an object (its frames, or where a host store keeps it). Returns the requesters that were
        waiting for it, and the host store locations of objects that are gone with this put: a put for
        an owner already gone, or one replacing an older copy."""
        if owner in self.dead_owners:
            return [], [location] if location else []
        replaced = self.delete(object_id)
        self.objects[object_id] = (owner, list(frames), location)
        self.by_owner[owner].add(object_id)
        return [requester for requester, _ in self.waiting.pop(object_id, [])], [replaced] if replaced else []

    def get(self, object_id: bytes) -> Optional[Tuple[List, str]]:
        """(frames, host store location) of a stored object, or None."""
        entry = self.objects.get(object_id)
        return None if entry is None else (entry[1], entry[2])

    def wait_for(self, object_id: bytes, requester: bytes, deadline: float) -> None:
        self.waiting.setdefault(object_id, []).append((requester, deadline))

    def delete(self, object_id: bytes) -> str:
        """Forget an object; returns its host store location ("" if it had none) so its file goes too."""
        entry = self.objects.pop(object_id, None)
        if entry is None:
            return ""
        owner, _, location = entry
        owned = self.by_owner.get(owner)
        if owned is not None:
            owned.discard(object_id)
            if not owned:
                del self.by_owner[owner]
        return location

    def delete_owner(self, owner: bytes) -> List[Tuple[bytes, str]]:
        """Forget every object of `owner`; returns (object id, location) of those kept in host stores."""
        in_host_stores = []
        for object_id in list(self.by_owner.get(owner, ())):
            location = self.delete(object_id)
            if location:
                in_host_stores.append((object_id, location))
        self.dead_owners[owner] = None
        while len(self.dead_owners) > MAX_REMEMBERED_DEAD_OWNERS:
            self.dead_owners.popitem(last=False)
        return in_host_stores

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
