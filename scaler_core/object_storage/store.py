"""The object storage's bookkeeping, without sockets: objects by id, owners, waiting readers.

An object is either its frames (sent to the storage), the location of the host store that keeps
it (a worker's result): deleting one of those returns its location, so the server removes the file;
or held in the memory of the worker that made it (its `holder`), which writes it to its host store
only when a reader needs it and drops it when it is deleted.
"""

from __future__ import annotations

import collections
from typing import Dict, List, Optional, Sequence, Set, Tuple

# Owners whose objects were dropped (a client disconnected), whose late puts are discarded, and lost
# objects: bounded so a long-lived server does not grow with every client or loss it ever saw.
MAX_REMEMBERED_IDS = 100_000


class ObjectStore:
    def __init__(self):
        self.objects: Dict[bytes, Tuple[bytes, List, str]] = {}  # id -> (owner, frames, host store location)
        self.by_owner: Dict[bytes, Set[bytes]] = collections.defaultdict(set)
        self.waiting: Dict[bytes, List[Tuple[bytes, float]]] = {}  # id -> [(requester, deadline)]
        self.dead_owners: "collections.OrderedDict[bytes, None]" = collections.OrderedDict()
        self.holders: Dict[bytes, bytes] = {}  # id of a held object -> the peer whose memory has it
        self.asked: Dict[bytes, float] = {}  # held object whose holder was asked to write it out -> when
        self.released_holds: List[Tuple[bytes, bytes]] = []  # (holder, id): held objects to drop
        # held objects gone with their holder: a get for one is answered "not found" at once (until it
        # is made again), not left waiting for a put that will never come
        self.lost: "collections.OrderedDict[bytes, None]" = collections.OrderedDict()
        # held objects deleted while their holder was writing them out: its put, crossing the delete,
        # only leaves a file to remove
        self.deleted_while_asked: "collections.OrderedDict[bytes, bytes]" = collections.OrderedDict()

    def put(self, object_id: bytes, owner: bytes, frames: Sequence, location: str = "", holder: bytes = b"",
            sender: bytes = b"") -> Tuple[List[bytes], List[str]]:
        """Store an object (its frames, where a host store keeps it, or that `holder` has it in memory).
        Returns the requesters that were waiting for it (a held object's keep waiting: its holder is
        asked), and the host store locations of objects that are gone with this put: a put for an owner
        already gone, or one replacing an older copy. A held copy replaced by another peer's put is
        released (its holder drops it); the holder's own put of the file is that copy written out."""
        if owner in self.dead_owners:
            if holder:
                self.released_holds.append((holder, object_id))
            return [], [location] if location else []
        if self.deleted_while_asked.pop(object_id, None) == sender and sender and not holder:
            return [], [location] if location else []
        self.lost.pop(object_id, None)
        old_holder = self.holders.pop(object_id, None)
        if old_holder is not None and old_holder != sender:
            self.released_holds.append((old_holder, object_id))
        replaced = self.delete(object_id)
        self.objects[object_id] = (owner, list(frames), location)
        self.by_owner[owner].add(object_id)
        gone = [replaced] if replaced else []
        if holder:
            self.holders[object_id] = holder
            return [], gone
        return [requester for requester, _ in self.waiting.pop(object_id, [])], gone

    def holder_to_ask(self, object_id: bytes, now: float = 0.0) -> Optional[bytes]:
        """The holder of a held object someone waits for, once: it is asked to write it out."""
        holder = self.holders.get(object_id)
        if holder is None or object_id in self.asked or object_id not in self.waiting:
            return None
        self.asked[object_id] = now
        return holder

    def unanswered_asks(self, now: float, after_seconds: float) -> List[Tuple[bytes, bytes]]:
        """(id, holder) of asks unanswered for `after_seconds`: asked again, which also finds out
        whether the holder is still there (the clock restarts for each)."""
        overdue = [(object_id, self.holders[object_id]) for object_id, asked in self.asked.items()
                   if now - asked >= after_seconds and object_id in self.holders]
        for object_id, _ in overdue:
            self.asked[object_id] = now
        return overdue

    def lose(self, object_id: bytes) -> List[bytes]:
        """A held object's holder is gone, and the object with it: forgotten; returns its waiting readers."""
        holder = self.holders.pop(object_id, None)
        if holder is not None:  # if it only seemed gone (a reconnect), it drops the object
            self.released_holds.append((holder, object_id))
        self.delete(object_id)
        _remember(self.lost, object_id, None)
        return [requester for requester, _ in self.waiting.pop(object_id, [])]

    def take_released_holds(self) -> List[Tuple[bytes, bytes]]:
        released, self.released_holds = self.released_holds, []
        return released

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
            self.lost.pop(object_id, None)
            return ""
        holder = self.holders.pop(object_id, None)
        if holder is not None:
            self.released_holds.append((holder, object_id))
            if object_id in self.asked:
                _remember(self.deleted_while_asked, object_id, holder)
        self.asked.pop(object_id, None)
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
        while len(self.dead_owners) > MAX_REMEMBERED_IDS:
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
                self.asked.pop(object_id, None)  # a later reader asks its holder again
        return expired


def _remember(bounded: "collections.OrderedDict", key: bytes, value) -> None:
    bounded[key] = value
    while len(bounded) > MAX_REMEMBERED_IDS:
        bounded.popitem(last=False)
