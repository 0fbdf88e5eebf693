"""The object storage server process: a ROUTER socket in front of an ObjectStore.

Payload frames are kept as the zmq.Frame objects they arrived in and sent back with copy=False,
so an object's bytes are never copied by Python on their way in or out. A get for an object that
has not arrived yet waits (its writer may be a moment behind the reader), up to a deadline.

This server stores pickles for anyone who can reach its port and hands them to anyone who asks:
bind it to a trusted network only (127.0.0.1 by default).
"""

from __future__ import annotations

import logging
import signal
import time

import zmq

from scaler_core import protocol, transport
from scaler_core.object_storage.store import ObjectStore
from scaler_core.security import CurveKeys, secure_server, stop_authenticator
from scaler_core.settings import ObjectStorageSettings

logger = logging.getLogger(__name__)


class ObjectStorageServer:
    def __init__(self, address: str, max_message_bytes: int = transport.OBJECT_STORAGE_MAX_MESSAGE_BYTES,
                 keys: CurveKeys = CurveKeys(), settings: ObjectStorageSettings = ObjectStorageSettings()):
        self.address = address
        self.settings = settings
        self.store = ObjectStore()
        self.context = zmq.Context()
        self.router = transport.configure(self.context.socket(zmq.ROUTER), max_message_bytes=max_message_bytes)
        secure_server(self.context, self.router, keys)
        self.router.bind(address)
        self._running = True
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
                    self._handle(parts)
            now = time.monotonic()
            if now >= next_expiry:
                for object_id, requester in self.store.expire_waiting(now):
                    self._send_data(requester, object_id, None)
                next_expiry = now + 1.0
        self.router.close(linger=0)
        stop_authenticator(self.context)
        self.context.term()

    def _handle(self, parts) -> None:
        routed = transport.decode_routed(parts, "object storage")
        if routed is None:
            return
        sender, message, frames = routed
        kind = type(message)
        if kind is protocol.ObjectPut:
            if not frames:
                logger.warning("object storage: ObjectPut without payload from %r", sender[:40])
                return
            for requester in self.store.put(message.object_id, message.owner_id, frames):
                self._send_data(requester, message.object_id, frames)
        elif kind is protocol.ObjectGet and not frames:
            deadline = time.monotonic() + self.settings.get_wait_seconds
            for object_id in message.object_ids:
                stored = self.store.get(object_id)
                if stored is None:
                    self.store.wait_for(object_id, sender, deadline)
                else:
                    self._send_data(sender, object_id, stored)
        elif kind is protocol.ObjectDelete and not frames:
            for object_id in message.object_ids:
                self.store.delete(object_id)
        elif kind is protocol.ObjectDeleteOwner and not frames and sender[:1] == b"S":
            self.store.delete_owner(message.owner_id)
        else:
            logger.warning("object storage: refused %s from %r", protocol.message_name(message), sender[:40])

    def _send_data(self, requester: bytes, object_id: bytes, frames) -> None:
        header = protocol.ObjectData(object_id=object_id, found=frames is not None,
                                     frame_count=len(frames) if frames else 0)
        try:
            transport.send(self.router, header, frames or (), identity=requester)
        except zmq.ZMQError as error:
            logger.warning("object storage: could not answer %r: %s", requester[:40], error)


def run_object_storage_server(address: str, keys: CurveKeys = CurveKeys(),
                              settings: ObjectStorageSettings = ObjectStorageSettings()) -> None:
    server = ObjectStorageServer(address, keys=keys, settings=settings)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    server.run()
