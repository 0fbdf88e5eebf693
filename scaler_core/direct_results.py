"""Results that skip the scheduler on their way to a client on the same host.

A lone result otherwise makes two hops (worker -> scheduler -> client), each through both ends'
ZeroMQ I/O threads and the scheduler's loop: on a round trip that is latency-bound, about a sixth
of the time. So each client binds an *inbox*, a PULL socket on a Unix socket whose path follows
from its id, and a worker that finishes a lone task of that client on the same host pushes the
result there first and then tells the scheduler, marking the result `delivered` so that the
scheduler does everything else it does with a result but does not forward it.

The inbox accepts pickles (results), so it lives in a directory only its user can open (mode 0700,
owned by the user; anything else and no inbox is made, and no worker sends there). It never reaches
beyond the host: a worker on another host (or in another network namespace, or with another
temporary directory) finds no such path and sends through the scheduler, as do workers whose
client has no inbox. Sends use ZMQ_IMMEDIATE: a result goes out directly only over a connection
that is up (a client that died or has not been connected to yet gets nothing, and the result takes
the scheduler's path), so the `delivered` mark never stands for a message left in a queue.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import stat
import tempfile
import threading
from typing import Optional

import zmq

logger = logging.getLogger(__name__)

# a worker keeps connections to this many clients' inboxes (the least recently used is closed)
MAX_CONNECTED_INBOXES = 16
# AF_UNIX paths are limited to 108 bytes on Linux
MAX_INBOX_PATH_BYTES = 100


def _network_namespace() -> int:
    """This process's network namespace (0 where there is no telling): a worker in another one is
    not on its client's host as far as the network goes, even if they share a /tmp (containers, or
    the namespaces the multi-host tests use), and a cut link must cut its results off too."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def _inbox_directory() -> str:
    return os.path.join(tempfile.gettempdir(), f"scaler-inboxes-{os.getuid()}-{_network_namespace()}")


def inbox_path(client_id: bytes) -> str:
    digest = hashlib.blake2b(client_id, digest_size=12).hexdigest()
    return os.path.join(_inbox_directory(), digest)


def _private_directory(path: str, make: bool) -> bool:
    """`path` is a directory of this user's that nobody else can open (made so if missing and `make`):
    a directory someone else made could hand the client forged results, or the worker's to a stranger."""
    if make:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def open_inbox(context: zmq.Context, client_id: bytes) -> Optional[zmq.Socket]:
    """The client's inbox, bound; None where one cannot be made safely (results then all come
    through the scheduler)."""
    if not hasattr(os, "getuid"):  # no Unix permissions to keep others out (Windows)
        return None
    path = inbox_path(client_id)
    if len(path.encode()) > MAX_INBOX_PATH_BYTES or not _private_directory(os.path.dirname(path), make=True):
        return None
    inbox = context.socket(zmq.PULL)
    inbox.setsockopt(zmq.LINGER, 0)
    inbox.setsockopt(zmq.RCVHWM, 0)
    try:
        inbox.bind("ipc://" + path)
    except zmq.ZMQError as error:
        logger.debug("no result inbox at %s: %s", path, error)
        inbox.close()
        return None
    return inbox


def close_inbox(inbox: zmq.Socket, client_id: bytes) -> None:
    """Close the inbox and remove its socket file (ZeroMQ leaves it behind)."""
    inbox.close(linger=0)
    try:
        os.unlink(inbox_path(client_id))
    except OSError:
        pass


class InboxSender:
    """A worker's connections to the inboxes of its clients on this host (any thread). They have a
    ZeroMQ context of their own, made at the first one: its I/O thread carries a result to its
    client while the other one carries it to the scheduler (measured faster than one thread for
    both)."""

    def __init__(self):
        self._context: Optional[zmq.Context] = None
        self._sockets: "collections.OrderedDict[bytes, Optional[zmq.Socket]]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    def send(self, client_id: bytes, encoded: bytes) -> bool:
        """Push an encoded ResultBatch to the client's inbox; False when it did not go (no inbox on
        this host, no connection up yet, another thread sending): the caller sends it the usual way."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return False
            socket = self._socket_for(client_id)
            if socket is None:
                return False
            try:
                socket.send(encoded, zmq.NOBLOCK)
            except zmq.Again:
                return False
            return True
        finally:
            self._lock.release()

    def _socket_for(self, client_id: bytes) -> Optional[zmq.Socket]:
        if client_id in self._sockets:
            self._sockets.move_to_end(client_id)
            return self._sockets[client_id]
        socket = None
        path = inbox_path(client_id) if hasattr(os, "getuid") else ""
        # the inbox exists from the client's start: a missing one is a client on another host
        if path and _private_directory(os.path.dirname(path), make=False) and os.path.exists(path):
            if self._context is None:
                self._context = zmq.Context(io_threads=1)
            socket = self._context.socket(zmq.PUSH)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.setsockopt(zmq.SNDHWM, 0)
            socket.connect("ipc://" + path)
        self._sockets[client_id] = socket
        if len(self._sockets) > MAX_CONNECTED_INBOXES:
            _, oldest = self._sockets.popitem(last=False)
            if oldest is not None:
                oldest.close(linger=0)
        return socket

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for socket in self._sockets.values():
                if socket is not None:
                    socket.close(linger=0)
            self._sockets.clear()
            if self._context is not None:
                self._context.term()
                self._context = None
