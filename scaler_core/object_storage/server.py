"""The object storage server process: a ROUTER socket in front of an ObjectStore.

Payload frames are kept as the zmq.Frame objects they arrived in and sent back with copy=False,
so an object's bytes are never copied by Python on their way in or out. A worker's large result is
not sent here at all: the storage keeps where its host store holds it, answers a get with that
location, and removes the file when the object is deleted (host_store/store.py). A graph's intermediate
is not even written: its worker keeps it in memory (`ObjectPut{held}`), so a dependent on that worker
reads it with no copy at all; when another process asks for it, the storage asks the holder to write
it to its host store (an `ObjectGet` sent to the holder) and answers with the file's location once the
holder puts it. A holder that is gone (the send to it fails) lost its objects: their readers get
`found=false` and the scheduler makes them again from their lineage. A get for an object that has not
arrived yet waits (its writer may be a moment behind the reader), up to a deadline.

This server stores pickles for anyone who can reach its port and hands them to anyone who asks:
bind it to a trusted network only (127.0.0.1 by default).
"""

from __future__ import annotations

import logging
import signal
import time

import zmq

from scaler_core import protocol, transport
from scaler_core.host_store import HostStoreLocation, delete_objects, delete_remote
from scaler_core.object_storage.store import ObjectStore
from scaler_core.security import CurveKeys, secure_server, stop_authenticator
from scaler_core.settings import ObjectStorageSettings

logger = logging.getLogger(__name__)

HOLDER_HEARTBEAT_MS = 1000
# an ask for a held object that brought no file within this is sent again: a holder that is gone by
# then fails the send (see ROUTER_MANDATORY and the heartbeats), and its objects are lost
REASK_SECONDS = 5.0


class ObjectStorageServer:
    def __init__(self, address: str, max_message_bytes: int = transport.OBJECT_STORAGE_MAX_MESSAGE_BYTES,
                 keys: CurveKeys = CurveKeys(), settings: ObjectStorageSettings = ObjectStorageSettings()):
        self.address = address
        self.settings = settings
        self.store = ObjectStore()
        self.context = zmq.Context()
        self.router = transport.configure(self.context.socket(zmq.ROUTER), max_message_bytes=max_message_bytes)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer fails: its held objects are lost
        # a peer whose connection stops answering (a dead host, a cut link) is dropped within seconds,
        # so the sends above fail for it too
        self.router.setsockopt(zmq.HEARTBEAT_IVL, HOLDER_HEARTBEAT_MS)
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5 * HOLDER_HEARTBEAT_MS)
        secure_server(self.context, self.router, keys)
        self.router.bind(address)
        self._running = True
        self._object_servers = {}  # address -> DEALER, to remove objects kept on other hosts
        self._scheduler_heard = time.monotonic()
        logger.info("ObjectStorageServer: listen to %s", address)

    def stop(self, *_):
        self._running = False

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        next_expiry = time.monotonic() + 1.0
        while self._running:
            events = dict(poller.poll(timeout=500))
            if self.router in events:
                for _ in range(1000):
                    try:
                        parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._handle(parts)
                    except Exception:  # noqa: BLE001 - one bad message must not end the storage
                        logger.exception("object storage: failed to handle a message")
                    if self.store.released_holds:
                        self._release_holds()
            now = time.monotonic()
            timeout = self.settings.scheduler_timeout_seconds
            if timeout > 0 and now - self._scheduler_heard > timeout:
                logger.warning("object storage: no scheduler for %.0fs; exiting", timeout)
                break
            if now >= next_expiry:
                for object_id, requester in self.store.expire_waiting(now):
                    self._send_data(requester, object_id, None)
                for object_id, holder in self.store.unanswered_asks(now, REASK_SECONDS):
                    self._ask(object_id, holder)
                next_expiry = now + 1.0
        self.router.close(linger=0)
        for sock in self._object_servers.values():
            sock.close(linger=500)
        stop_authenticator(self.context)
        self.context.term()

    def _handle(self, parts) -> None:
        routed = transport.decode_routed(parts, "object storage")
        if routed is None:
            return
        sender, message, frames = routed
        kind = type(message)
        if sender[:1] == b"S":
            self._scheduler_heard = time.monotonic()
        if kind is protocol.ObjectPut and message.held:
            if frames or message.location:
                logger.warning("object storage: a held ObjectPut from %r carries frames or a location", sender[:40])
                return
            _, gone = self.store.put(message.object_id, message.owner_id, (), holder=sender, sender=sender)
            for old_location in gone:
                self._delete_files(old_location, [message.object_id])
            self._ask_holder(message.object_id)  # a reader came first
        elif kind is protocol.ObjectPut:
            location = message.location
            if bool(frames) == bool(location):
                logger.warning("object storage: ObjectPut from %r needs either payload frames or a location",
                               sender[:40])
                return
            waiting, gone = self.store.put(message.object_id, message.owner_id, frames, location, sender=sender)
            for requester in waiting:
                self._send_data(requester, message.object_id, frames, location)
            if gone:
                kept = self.store.get(message.object_id) is not None  # not: a dead owner's, or deleted meanwhile
                for old_location in gone:
                    if old_location != location or not kept:
                        self._delete_files(old_location, [message.object_id])
        elif kind is protocol.ObjectGet and not frames:
            deadline = time.monotonic() + self.settings.get_wait_seconds
            for object_id in message.object_ids:
                stored = self.store.get(object_id)
                if stored is None and object_id in self.store.lost:
                    self._send_data(sender, object_id, None)
                elif stored is None:
                    self.store.wait_for(object_id, sender, deadline)
                elif object_id in self.store.holders:
                    self.store.wait_for(object_id, sender, deadline)
                    self._ask_holder(object_id)
                else:
                    self._send_data(sender, object_id, *stored)
        elif kind is protocol.ObjectDelete and not frames:
            for object_id in message.object_ids:
                location = self.store.delete(object_id)
                if location:
                    self._delete_files(location, [object_id])
        elif kind is protocol.ObjectDeleteOwner and not frames and sender[:1] == b"S":
            for object_id, location in self.store.delete_owner(message.owner_id):
                self._delete_files(location, [object_id])
        elif kind is protocol.Heartbeat and not frames:
            # readers waiting for objects ask whether we are alive (see OBJECT_STORAGE_SILENCE_SECONDS);
            # the scheduler's say it is (a storage outliving a journaled scheduler waits for one)
            if sender[:1] != b"S":
                self._send_to(sender, protocol.HeartbeatEcho())
        else:
            logger.warning("object storage: refused %s from %r", protocol.message_name(message), sender[:40])

    def _ask_holder(self, object_id: bytes) -> None:
        """Someone waits for a held object: its holder writes it out (once asked, a put follows)."""
        holder = self.store.holder_to_ask(object_id, time.monotonic())
        if holder is not None:
            self._ask(object_id, holder)

    def _ask(self, object_id: bytes, holder: bytes) -> None:
        if not self._send_to(holder, protocol.ObjectGet(object_ids=[object_id])):  # gone, its memory with it
            logger.warning("object storage: object %s was held by %r, which is gone", object_id.hex(), holder[:40])
            for requester in self.store.lose(object_id):
                self._send_data(requester, object_id, None)

    def _release_holds(self) -> None:
        """Held objects that were deleted (or replaced): their holders drop them."""
        by_holder = {}
        for holder, object_id in self.store.take_released_holds():
            by_holder.setdefault(holder, []).append(object_id)
        for holder, object_ids in by_holder.items():
            self._send_to(holder, protocol.ObjectDelete(object_ids=object_ids))  # if gone: nothing to drop

    def _delete_files(self, encoded_location: str, object_ids) -> None:
        """Remove deleted objects' files: here, or through their host's object server."""
        location = HostStoreLocation.decode(encoded_location)
        if location.is_here() or not location.server_address:
            delete_objects(location, object_ids)
        else:
            delete_remote(location.server_address, list(object_ids), self._object_servers, self.context)

    def _send_to(self, peer: bytes, message, frames=()) -> bool:
        """Every send goes through here: the router is ROUTER_MANDATORY, so a send to a peer that left
        raises; that is the peer's loss (and, for a holder, how its objects are known to be gone)."""
        try:
            transport.send(self.router, message, frames, identity=peer)
            return True
        except zmq.ZMQError as error:
            logger.debug("object storage: could not send to %r: %s", peer[:40], error)
            return False

    def _send_data(self, requester: bytes, object_id: bytes, frames, location: str = "") -> None:
        found = frames is not None
        header = protocol.ObjectData(object_id=object_id, found=found, frame_count=len(frames) if frames else 0,
                                     location=location)
        self._send_to(requester, header, frames or ())


def run_object_storage_server(address: str, keys: CurveKeys = CurveKeys(),
                              settings: ObjectStorageSettings = ObjectStorageSettings()) -> None:
    server = ObjectStorageServer(address, keys=keys, settings=settings)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    server.run()
