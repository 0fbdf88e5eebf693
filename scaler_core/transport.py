"""ZeroMQ plumbing shared by every process: socket setup, framing, size limits.

A message on the wire is ``[identity (ROUTER side only)] [protocol frame] [payload frames...]``.
Payload frames are sent with ``copy=False`` so large buffers (numpy arrays, stored objects) are
handed to libzmq without a Python-side copy; pyzmq still copies frames below its copy threshold,
which is cheaper for small ones.
"""

from __future__ import annotations

import logging
import socket as _socket
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import zmq

from scaler_core import protocol

logger = logging.getLogger(__name__)

# Upper bound on one incoming ZeroMQ message at the scheduler. libzmq checks the size a frame header
# announces before allocating, so a peer claiming 2**40 bytes is dropped instead of growing memory.
SCHEDULER_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
OBJECT_STORAGE_MAX_MESSAGE_BYTES = 8 * 1024 * 1024 * 1024


def configure(socket: zmq.Socket, *, identity: Optional[bytes] = None, max_message_bytes: Optional[int] = None,
              linger_ms: int = 0) -> zmq.Socket:
    socket.setsockopt(zmq.LINGER, linger_ms)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 10)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 5)
    if identity is not None:
        socket.setsockopt(zmq.IDENTITY, identity)
    if max_message_bytes is not None:
        socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if socket.type == zmq.ROUTER:
        # a reconnecting peer with the same identity takes over its old connection
        socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
    return socket


def send(socket: zmq.Socket, message: Any, frames: Sequence[Any] = (), identity: Optional[bytes] = None) -> None:
    parts: List[Any] = [] if identity is None else [identity]
    parts.append(protocol.encode(message))
    parts.extend(frames)
    socket.send_multipart(parts, copy=False)


def send_encoded(socket: zmq.Socket, encoded: bytes, frames: Sequence[Any] = (), identity: Optional[bytes] = None) -> None:
    parts: List[Any] = [] if identity is None else [identity]
    parts.append(encoded)
    parts.extend(frames)
    socket.send_multipart(parts, copy=False)


def receive_batch(socket: zmq.Socket, limit: int) -> List[Any]:
    """Up to `limit` messages (lists of frames) already waiting, without blocking."""
    batch: List[Any] = []
    for _ in range(limit):
        try:
            batch.append(socket.recv_multipart(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            break
    return batch


def input_pending(socket: zmq.Socket) -> bool:
    """Messages wait on `socket`. Whoever polls its file descriptor must ask after every send or
    receive: the descriptor is edge-triggered, and a send can take in arrived messages without it
    signalling again."""
    return bool(socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)


def decode_parts(parts: List[Any]) -> Tuple[Any, List[Any]]:
    """Decode [protocol frame, payload...]; raises protocol.ProtocolError on garbage."""
    if not parts:
        raise protocol.ProtocolError("empty message")
    head = parts[0]
    head_bytes = head.bytes if isinstance(head, zmq.Frame) else head
    return protocol.decode(head_bytes), parts[1:]


def receive_waiting(socket: zmq.Socket) -> Iterator[Any]:
    """The decoded messages already waiting on a DEALER, without blocking (payload frames dropped;
    undecodable ones skipped): for processes that only read small control messages."""
    while True:
        try:
            message, _ = decode_parts(socket.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return
        except protocol.ProtocolError:
            continue
        yield message


def decode_routed(parts: List[Any], receiver: str) -> Optional[Tuple[bytes, Any, List[Any]]]:
    """A ROUTER's input [identity, protocol frame, payload...] -> (sender, message, payload frames);
    None (with a log line naming `receiver` and the sender) for anything that is not a message."""
    if len(parts) < 2:
        return None
    sender = parts[0].bytes if isinstance(parts[0], zmq.Frame) else parts[0]
    try:
        message, frames = decode_parts(parts[1:])
    except protocol.ProtocolError as error:
        logger.warning("%s: dropped a malformed message from %r: %s", receiver, sender[:40], str(error)[:200])
        return None
    return sender, message, frames


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def parse_tcp_address(address: str) -> Tuple[str, int]:
    """'tcp://host:port' -> (host, port); raises ValueError naming the bad address."""
    if not address.startswith("tcp://"):
        raise ValueError(f"address {address!r} must look like tcp://HOST:PORT")
    host, _, port = address[len("tcp://"):].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} must look like tcp://HOST:PORT")
    return host, int(port)


def shift_port(address: str, offset: int) -> str:
    host, port = parse_tcp_address(address)
    return f"tcp://{host}:{port + offset}"
