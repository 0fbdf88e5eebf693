"""Objects between hosts: a cluster's object server, and the fetcher its peers read with.

A process that finds an object's location on another host (its files are not here) asks that
host's object server, a ROUTER on its own thread in the cluster supervisor, which maps the file and
sends its frames as they lie in memory (zero-copy to libzmq). Fetching runs on a thread of its own,
so a large transfer never stalls the fetching process's I/O loop.

The object server hands the objects of its store to anyone who can reach its port (and removes them
when asked): it binds the address this host uses to reach the scheduler, 127.0.0.1 for a local one.
With CurveZMQ keys configured no host store is used at all (see worker/cluster.py): results then go
through the encrypted object storage.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import zmq

from scaler_core import protocol, transport
from scaler_core.host_store.store import HostStoreLocation, delete_objects, load_object

logger = logging.getLogger(__name__)

POLL_MILLISECONDS = 200
CONNECT_TIMEOUT_SECONDS = 5.0
# ZeroMQ heartbeats on a fetch's connection: a holder whose host died or whose link was cut (no RST,
# no FIN) is noticed in seconds, while a large transfer that keeps bytes flowing may take its time.
HEARTBEAT_INTERVAL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000
FETCH_TIMEOUT_SECONDS = 600.0


class ObjectServer:
    def __init__(self, location: HostStoreLocation, bind_host: str):
        self.location = location
        self._context = zmq.Context()
        self._socket = transport.configure(self._context.socket(zmq.ROUTER),
                                           max_message_bytes=64 * 1024 * 1024)
        port = self._socket.bind_to_random_port(f"tcp://{bind_host}")
        self.address = f"tcp://{bind_host}:{port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="scaler-object-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                if not self._socket.poll(POLL_MILLISECONDS):
                    continue
                while True:
                    try:
                        parts = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(parts)
        finally:
            self._socket.close(linger=0)
            self._context.term()

    def _handle(self, parts) -> None:
        routed = transport.decode_routed(parts, "object server")
        if routed is None:
            return
        sender, message, _ = routed
        kind = type(message)
        if kind is protocol.ObjectGet:
            for object_id in message.object_ids:
                try:
                    frames = load_object(self.location, object_id)
                except OSError as error:
                    logger.warning("object server: cannot read object %s: %s", object_id.hex(), error)
                    frames = None
                header = protocol.ObjectData(object_id=object_id, found=frames is not None,
                                             frame_count=len(frames) if frames else 0)
                transport.send(self._socket, header, frames or (), identity=sender)
        elif kind is protocol.ObjectDelete:
            delete_objects(self.location, message.object_ids)
        else:
            logger.warning("object server: refused %s from %r", protocol.message_name(message), sender[:40])


class RemoteObjectFetcher:
    """Fetches objects from other hosts' object servers, one at a time, on its own thread.
    `done(object_id, frames or None)` is called on that thread."""

    def __init__(self, done: Callable[[bytes, Optional[List]], None], timeout_seconds: float = FETCH_TIMEOUT_SECONDS):
        self._done = done
        self._timeout_ms = int(timeout_seconds * 1000)
        self._connect_timeout_ms = int(CONNECT_TIMEOUT_SECONDS * 1000)
        self._requests: "queue.Queue[Optional[Tuple[str, bytes]]]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="scaler-object-fetcher", daemon=True)
        self._thread.start()

    def fetch(self, server_address: str, object_id: bytes) -> None:
        self._requests.put((server_address, object_id))

    def stop(self) -> None:
        self._requests.put(None)

    def _run(self) -> None:
        context = zmq.Context()
        sockets: Dict[str, zmq.Socket] = {}
        try:
            while True:
                request = self._requests.get()
                if request is None:
                    return
                address, object_id = request
                sock = sockets.get(address)
                if sock is None:
                    sock = sockets[address] = transport.configure(context.socket(zmq.DEALER))
                    sock.setsockopt(zmq.IMMEDIATE, 1)  # no connection: a send is refused, not queued
                    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_INTERVAL_MS)
                    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
                    sock.connect(address)
                frames = self._fetch_one(sock, object_id)
                if frames is None:  # a late answer must not be taken for the next request's
                    sockets.pop(address).close(linger=0)
                try:
                    self._done(object_id, frames)
                except Exception:  # the fetcher must live on: later fetches would wait forever
                    logger.exception("object %s: its arrival could not be handled", object_id.hex())
        finally:
            for sock in sockets.values():
                sock.close(linger=0)
            context.term()

    def _fetch_one(self, sock, object_id: bytes) -> Optional[List]:
        # A holder that is gone (its process or its host) never accepts the connection: say so soon
        if not sock.poll(self._connect_timeout_ms, zmq.POLLOUT):
            logger.warning("object %s: its host's object server cannot be reached", object_id.hex())
            return None
        transport.send(sock, protocol.ObjectGet(object_ids=[object_id]))
        deadline = time.monotonic() + self._timeout_ms / 1000
        while not sock.poll(POLL_MILLISECONDS):
            if not sock.poll(0, zmq.POLLOUT):  # the heartbeats found the connection dead
                logger.warning("object %s: the connection to its host's object server was lost", object_id.hex())
                return None
            if time.monotonic() > deadline:
                logger.warning("object %s: no answer from its host's object server", object_id.hex())
                return None
        try:
            message, frames = transport.decode_parts(sock.recv_multipart(copy=False))
        except protocol.ProtocolError:
            return None
        if type(message) is not protocol.ObjectData or message.object_id != object_id or not message.found:
            return None
        return frames


def delete_remote(address: str, object_ids: List[bytes], sockets: Dict[str, zmq.Socket], context: zmq.Context) -> None:
    """Ask another host's object server to remove objects (fire and forget)."""
    sock = sockets.get(address)
    if sock is None:
        sock = sockets[address] = transport.configure(context.socket(zmq.DEALER), linger_ms=1000)
        sock.connect(address)
    transport.send(sock, protocol.ObjectDelete(object_ids=object_ids))


def address_towards(remote_address: str) -> str:
    """The local IP this host uses to reach `remote_address` (tcp://host:port): where peers can reach us."""
    host, port = transport.parse_tcp_address(remote_address)
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]


PENDING = object()  # `LocatedObjects.read`'s answer when the object is on its way from another host


class LocatedObjects:
    """How a worker or a client reads an object the object storage located in a host store: mapped
    from the files when they are on this host, else fetched from the host's object server (the answer
    then comes later, through `arrived(object_id, frames or None)` on the fetcher's thread)."""

    def __init__(self, arrived: Callable[[bytes, Optional[List]], None]):
        self._arrived = arrived
        self._fetcher: Optional[RemoteObjectFetcher] = None
        self._lock = threading.Lock()

    def read(self, object_id: bytes, encoded_location: str):
        location = HostStoreLocation.decode(encoded_location)
        if location.is_here() or not location.server_address:
            try:
                return load_object(location, object_id)
            except OSError as error:
                logger.warning("object %s: cannot read it from %s: %s", object_id.hex(), location.memory_directory,
                               error)
                return None
        with self._lock:
            if self._fetcher is None:
                self._fetcher = RemoteObjectFetcher(self._arrived)
        self._fetcher.fetch(location.server_address, object_id)
        return PENDING

    def stop(self) -> None:
        if self._fetcher is not None:
            self._fetcher.stop()
