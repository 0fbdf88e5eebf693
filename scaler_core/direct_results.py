"""Inboxes: the Unix datagram sockets through which the processes of one host reach each other.

Every client, worker and scheduler binds one. The scheduler and its peers on the host send each
other messages there (`local_link.py` keeps them in order); and results skip the scheduler on their
way to a client on the same host:

A lone result otherwise makes two hops (worker -> scheduler -> client), each through both ends'
ZeroMQ I/O threads and the scheduler's loop: on a round trip that is latency-bound, about a sixth
of the time. So each client binds an *inbox*, a Unix datagram socket whose path follows from its
id, and a worker that finishes a lone task of that client on the same host sends the result there
first and then tells the scheduler, marking the result `delivered` so that the scheduler does
everything else it does with a result but does not forward it.

A datagram, not a ZeroMQ socket: once `sendto` returns, the message is in the client's receive
queue in the kernel, so it reaches the client even if the worker dies the next instant, and it is
there before the scheduler can hear that it was delivered. A send that cannot be done at once (no
inbox, the client gone, its queue full, a result too large for one datagram) fails, and the result
takes the scheduler's path: nothing marked `delivered` is left in a queue of the worker's.

The inbox accepts pickles (results), so it lives in a directory only its user can open (mode 0700,
owned by the user; anything else and no inbox is made, and no worker sends there). It never reaches
beyond the host: a worker on another host (or in another network namespace, or with another
temporary directory) finds no such path and sends through the scheduler.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import os
import socket
import stat
import tempfile
import threading
from typing import Iterator, Optional

logger = logging.getLogger(__name__)

# AF_UNIX paths are limited to 108 bytes on Linux, 104 on macOS
MAX_INBOX_PATH_BYTES = 100
# a sender remembers where this many processes' inboxes are (or that they have none here)
MAX_KNOWN_INBOXES = 1024
# a process reads at most this many datagrams from its inbox per pass of its loop
MAX_READS_PER_CYCLE = 1024
# the largest datagram sent (a larger message goes by ZeroMQ): a reader's receive buffer has this
# size, so no datagram is ever cut short
MAX_DATAGRAM_BYTES = 256 * 1024


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


def inbox_path(inbox_id: bytes) -> str:
    digest = hashlib.blake2b(inbox_id, digest_size=12).hexdigest()
    return os.path.join(_inbox_directory(), digest)


def _supported() -> bool:
    """Unix sockets and user ids to keep others out (not Windows)."""
    return hasattr(socket, "AF_UNIX") and hasattr(os, "getuid")


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


def _remove_stale_inboxes(directory: str) -> None:
    """Inboxes of processes that ended without closing them (killed): nothing is bound to them."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            try:
                os.unlink(path)
            except OSError:
                pass
        except OSError:
            pass
        finally:
            probe.close()


class Inbox:
    """A process's inbox: its bound, non-blocking datagram socket (read by its I/O loop only)."""

    def __init__(self, bound: socket.socket, path: str):
        self._socket = bound
        self._path = path
        # received into, then copied out at the datagram's size: `recv(MAX_DATAGRAM_BYTES)` would
        # allocate (and map) that much for every result
        self._buffer = bytearray(MAX_DATAGRAM_BYTES)
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        return self._socket.fileno()

    def read(self, everything: bool = False) -> Iterator[bytes]:
        """The datagrams waiting, without blocking: at most MAX_READS_PER_CYCLE, or all of them (the
        kernel's queue is bounded: net.unix.max_dgram_qlen) before handling what came by ZeroMQ."""
        for _ in (itertools.count() if everything else range(MAX_READS_PER_CYCLE)):
            try:
                size = self._socket.recv_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            yield bytes(self._view[:size])

    def close(self) -> None:
        """Close it and remove its socket file."""
        self._socket.close()
        try:
            os.unlink(self._path)
        except OSError:
            pass


def open_inbox(client_id: bytes) -> Optional[Inbox]:
    """The client's inbox; None where one cannot be made safely (results then all come through the
    scheduler)."""
    if not _supported():
        return None
    path = inbox_path(client_id)
    directory = os.path.dirname(path)
    if len(path.encode()) > MAX_INBOX_PATH_BYTES or not _private_directory(directory, make=True):
        return None
    _remove_stale_inboxes(directory)
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        bound.bind(path)
        bound.setblocking(False)
    except OSError as error:
        logger.debug("no result inbox at %s: %s", path, error)
        bound.close()
        return None
    return Inbox(bound, path)


class InboxSender:
    """Sends datagrams to the inboxes of other processes on this host (any thread)."""

    def __init__(self):
        self._socket: Optional[socket.socket] = None  # unbound: datagrams carry their destination
        self._paths: "collections.OrderedDict[bytes, Optional[str]]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    def reaches(self, inbox_id: bytes) -> bool:
        """The inbox of the process with that id is on this host, as far as is known."""
        with self._lock:
            return not self._closed and self._path_for(inbox_id) is not None

    def send(self, inbox_id: bytes, encoded: bytes) -> bool:
        """Put a datagram in the inbox of the process with that id; False when it is not there (no
        inbox on this host, the process gone, its queue full, too large): the caller sends it the
        usual way."""
        if len(encoded) > MAX_DATAGRAM_BYTES:
            return False
        with self._lock:
            path = None if self._closed else self._path_for(inbox_id)
            if path is None:
                return False
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            sender = self._socket
        try:
            sender.sendto(encoded, path)
        except (ConnectionRefusedError, FileNotFoundError):  # the process has gone
            with self._lock:
                self._paths[inbox_id] = None
            return False
        except OSError:  # its queue is full (EAGAIN), too large (EMSGSIZE), closed meanwhile...
            return False
        return True

    def _path_for(self, inbox_id: bytes) -> Optional[str]:
        if inbox_id in self._paths:
            self._paths.move_to_end(inbox_id)
            return self._paths[inbox_id]
        path = inbox_path(inbox_id) if _supported() else ""
        # an inbox exists from its process's start (before its hello): a missing one is on another host
        found = path if path and _private_directory(os.path.dirname(path), make=False) and os.path.exists(path) \
            else None
        self._paths[inbox_id] = found
        if len(self._paths) > MAX_KNOWN_INBOXES:
            self._paths.popitem(last=False)
        return found

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self._paths.clear()
