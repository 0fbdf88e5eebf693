"""The one I/O loop of every process that connects to a scheduler: clients and workers.

`PeerIO` owns the sockets (a DEALER to the scheduler and, once the scheduler names it, one to the
object storage) and runs in one thread. It decodes what arrives, hands each message to the
process's handler, which asks its state machine and returns instructions (`instructions.py`), and
carries them out. Other threads never touch a socket; they `post` instructions, which the loop
carries out in order (only the post that finds the queue empty wakes the loop, so a burst costs
one wake-up).

One shortcut saves a thread hand-off on the latency-bound path (a submit, a lone result):
`send_now_if_idle` lets another thread send to the scheduler itself while the loop is idle in its
poll and nothing is queued before the message. The socket is then used by two threads, never at
once: the loop holds `_io_lock` for everything but its poll, which waits on the socket's file
descriptor rather than on the socket, and the other thread sends only if it gets the lock without
waiting. The descriptor is edge-triggered, so whoever sends afterwards checks for arrived input
and wakes the loop if there is some.

The handler (the client's or the worker's shell) provides:
    on_scheduler(message, frames, now) -> instructions
    on_storage(message, frames, now) -> instructions
    on_inbox(message, frames, now) -> instructions   a ResultBatch from a worker (clients with an inbox)
    on_tick(now) -> instructions                 every `tick_interval_seconds`
    end_of_cycle() -> instructions               after each pass (e.g. batched results)
    on_leave(leave) -> instructions              once, when leaving, before the goodbye
    perform(instruction) -> None                 instructions other than the ones below
    on_loop_error(error) -> None                 an unexpected exception ended the loop
Instructions the loop carries out itself: ToScheduler (a message, or bytes already encoded),
ToStorage, ConnectStorage and Leave.

Both read an inbox (`direct_results.py`): a client's receives results that workers on its host
sent it directly; and once the scheduler's welcome names the scheduler's own inbox, the messages
between a process and a scheduler on the same host that fit in a datagram go through the inboxes
instead of ZeroMQ, put back in order on arrival (`local_link.py`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Iterable, Optional

import zmq

from scaler_core import direct_results, protocol, transport
from scaler_core.instructions import ConnectStorage, Leave, ToScheduler, ToStorage
from scaler_core.local_link import (MESSAGES_PER_READ, OPENING_MESSAGES, ORDERED, LinkCounter, LinkOrder, frame,
                                    unframe)
from scaler_core.security import CurveKeys, secure_client

logger = logging.getLogger(__name__)

# bounded, so ticks and queued sends still get their turn under a flood of messages
MAX_MESSAGES_PER_CYCLE = 1024


class _Leaving(Exception):
    def __init__(self, leave: Leave):
        super().__init__()
        self.leave = leave


class PeerIO:
    def __init__(self, handler, *, name: str, identity: bytes, scheduler_address: str, keys: CurveKeys,
                 tick_interval_seconds: float, linger_ms: int = 1000, accept_direct_results: bool = False):
        self.handler = handler
        self.name = name
        self.identity = identity
        self.scheduler_address = scheduler_address
        self.keys = keys
        self.tick_interval_seconds = tick_interval_seconds  # the handler may shorten it (client heartbeats)
        self.linger_ms = linger_ms
        self.context = zmq.Context()
        self.scheduler = transport.configure(self.context.socket(zmq.DEALER), identity=identity, linger_ms=linger_ms)
        secure_client(self.scheduler, keys)
        self.storage: Optional[zmq.Socket] = None
        self.inbox = direct_results.open_inbox(identity)
        self.accepts_direct_results = accept_direct_results  # a client's: results from workers on this host
        self._inbox_fd = self.inbox.fileno() if self.inbox is not None else None
        self.inboxes = direct_results.InboxSender()  # the scheduler's inbox, and clients' (direct results)
        # the local link with the scheduler: its inbox's id once a welcome names it (empty: none; it is
        # also the key its messages are counted under), what we sent and what came in by ZeroMQ
        self.scheduler_inbox = b""
        self._sent_to_scheduler = LinkCounter()
        self._from_scheduler = LinkOrder()
        wakeup_address = f"inproc://{name}-wakeup-{id(self)}"
        self._wakeup_receiver = self.context.socket(zmq.PULL)
        self._wakeup_receiver.bind(wakeup_address)
        self._wakeup_sender = self.context.socket(zmq.PUSH)
        self._wakeup_sender.setsockopt(zmq.LINGER, 0)
        self._wakeup_sender.connect(wakeup_address)
        self._scheduler_fd = self.scheduler.getsockopt(zmq.FD)
        self._poller = zmq.Poller()
        self._posted: collections.deque = collections.deque()
        self._post_lock = threading.Lock()   # the queue, the wake-up socket, `closed`
        self._io_lock = threading.Lock()     # the sockets (see the module docstring)
        self.direct_sends = False            # whether send_now_if_idle may be used (set by the handler)
        self.closed = threading.Event()

    # --- from any thread ------------------------------------------------------------------------

    def post(self, *instructions) -> bool:
        """Queue instructions for the loop; False (nothing queued) once the loop has ended."""
        with self._post_lock:
            if self.closed.is_set():
                return False
            was_empty = not self._posted
            self._posted.extend(instructions)
            if was_empty and instructions:
                self._wake()
        return True

    def send_now_if_idle(self, encoded: bytes) -> bool:
        """Send an encoded message to the scheduler from this thread if the loop is idle and nothing
        is queued before it (order kept); False when the caller should `post` it instead."""
        if self.direct_sends and not self._posted and self._io_lock.acquire(blocking=False):
            try:
                if self.direct_sends and not self._posted:
                    self._send_to_scheduler(encoded)
                    if transport.input_pending(self.scheduler):  # the polling loop would not notice
                        with self._post_lock:
                            if not self.closed.is_set():
                                self._wake()
                    return True
            finally:
                self._io_lock.release()
        return False

    def send_direct_result(self, client_id: bytes, encoded: bytes) -> bool:
        """Put an encoded ResultBatch in the inbox of a client on this host (any thread); False when
        it cannot go at once (direct_results.py)."""
        return self.inboxes.send(client_id, encoded)  # no header (local_link.py)

    def _send_to_scheduler(self, message) -> None:
        """A message (or its encoding) by datagram when it fits, else by ZeroMQ, counted; with `_io_lock`."""
        counter = self._sent_to_scheduler
        opening = type(message) in OPENING_MESSAGES
        if opening:
            message.link_epoch = counter.epoch + 1
        encoded = message if type(message) is bytes else protocol.encode(message)
        if not opening and self.scheduler_inbox and self.inboxes.send(
                self.scheduler_inbox, frame(ORDERED, counter.epoch, counter.sent, self.identity, encoded)):
            return
        transport.send_encoded(self.scheduler, encoded)
        if opening:
            counter.opened(message.link_epoch)
        else:
            counter.streamed()

    def _wake(self) -> None:
        try:
            # never blocks: a full pipe means wake-ups are queued already
            self._wakeup_sender.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass

    # --- the loop -------------------------------------------------------------------------------

    def run(self, hello) -> Optional[Leave]:
        """In the thread that owns the sockets from now on: connect, say `hello`, and loop until a
        Leave; returns it (None after an unexpected error)."""
        poller = self._poller
        poller.register(self._scheduler_fd, zmq.POLLIN)  # the descriptor, not the socket: see above
        poller.register(self._wakeup_receiver, zmq.POLLIN)
        if self.inbox is not None:
            poller.register(self._inbox_fd, zmq.POLLIN)
        leave: Optional[Leave] = None
        try:
            with self._io_lock:
                self.scheduler.connect(self.scheduler_address)
                self._send_to_scheduler(hello)
            next_tick = time.monotonic() + self.tick_interval_seconds
            input_pending = True
            while True:
                timeout = 0 if input_pending else max(1, int((next_tick - time.monotonic()) * 1000))
                events = dict(poller.poll(timeout=timeout))
                with self._io_lock:
                    # read what waits first: after a long stretch on a large message, the scheduler's
                    # answers are queued here, not missing
                    self._drain_scheduler()
                    if self._inbox_fd is not None and self._inbox_fd in events:
                        self._drain_inbox()
                    now = time.monotonic()
                    if now >= next_tick:
                        next_tick = now + self.tick_interval_seconds
                        self._handle_overdue(now)
                        self.carry_out(self.handler.on_tick(now))
                    if self.storage is not None and self.storage in events:
                        self._drain_storage()  # bounded too: the poll on its socket sees what is left
                    if self._wakeup_receiver in events:
                        self._drain_wakeups()
                    self._carry_out_posted()
                    self.carry_out(self.handler.end_of_cycle())
                    input_pending = transport.input_pending(self.scheduler)
        except _Leaving as leaving:
            leave = leaving.leave
            with self._io_lock:
                self._finish(leave)
        except Exception as error:  # never leave the process's waiters hanging on a bug
            logger.exception("%s: the I/O loop crashed", self.name)
            self.handler.on_loop_error(error)
        finally:
            with self._io_lock:
                self._close(leave)
        return leave

    def _finish(self, leave: Leave) -> None:
        """What was queued before the Leave goes first: the scheduler ignores what follows a goodbye."""
        try:
            self._carry_out_posted()
            self.carry_out(self.handler.on_leave(leave))
            self.carry_out(self.handler.end_of_cycle())
        except _Leaving:
            pass  # a second Leave while leaving: the first one's goodbye stands
        if leave.goodbye is not None:
            self._send_to_scheduler(leave.goodbye)

    def _close(self, leave: Optional[Leave]) -> None:
        with self._post_lock:
            self.direct_sends = False
            self.closed.set()
            self._posted.clear()
            self._wakeup_sender.close(linger=0)
        self.inboxes.close()
        if self.inbox is not None:
            self.inbox.close()
        linger = self.linger_ms if leave is None else leave.linger_ms
        for sock in (self.scheduler, self.storage, self._wakeup_receiver):
            if sock is not None:
                sock.close(linger=linger)
        self.context.term()

    def carry_out(self, instructions: Iterable) -> None:
        """In the loop's thread (the handler may call it while handling an event)."""
        for instruction in instructions:
            kind = type(instruction)
            if kind is ToScheduler:
                self._send_to_scheduler(instruction.message)
            elif kind is ToStorage:
                transport.send(self.storage, instruction.message, instruction.frames)
            elif kind is ConnectStorage:
                self._connect_storage(instruction.address)
            elif isinstance(instruction, Leave):
                raise _Leaving(instruction)
            else:
                self.handler.perform(instruction)

    def _carry_out_posted(self) -> None:
        posted = self._posted
        while posted:
            self.carry_out((posted.popleft(),))

    def _drain_wakeups(self) -> None:
        while True:
            try:
                self._wakeup_receiver.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _drain_scheduler(self) -> None:
        """The scheduler's ZeroMQ messages, each after the datagrams it sent before it (local_link.py)."""
        order = self._from_scheduler
        for _ in range(MAX_MESSAGES_PER_CYCLE // MESSAGES_PER_READ):
            batch = transport.receive_batch(self.scheduler, MESSAGES_PER_READ)
            if not batch:
                return
            if self.inbox is not None:
                self._drain_inbox(everything=True)
            for parts in batch:
                try:
                    message, frames = transport.decode_parts(parts)
                except protocol.ProtocolError as error:
                    logger.warning("%s: dropped a malformed message from the scheduler: %s", self.name, error)
                    self._handle_from_scheduler(order.streamed(self.scheduler_inbox))
                    continue
                welcome = type(message) is protocol.Welcome
                if welcome:  # names the scheduler's inbox (another one after a restart; empty: none)
                    self.scheduler_inbox = message.inbox
                self.carry_out(self.handler.on_scheduler(message, frames, time.monotonic()))
                self._handle_from_scheduler(order.opened(self.scheduler_inbox, message.link_epoch) if welcome
                                            else order.streamed(self.scheduler_inbox))
            if len(batch) < MESSAGES_PER_READ:
                return

    def _handle_from_scheduler(self, encoded_messages) -> None:
        for encoded in encoded_messages:
            try:
                message = protocol.decode(encoded)
            except protocol.ProtocolError as error:
                logger.warning("%s: dropped a malformed datagram from the scheduler: %s", self.name, error)
                continue
            self.carry_out(self.handler.on_scheduler(message, (), time.monotonic()))

    def _handle_overdue(self, now: float) -> None:
        overdue = self._from_scheduler.overdue(now)
        if overdue:
            logger.warning("%s: %d message(s) from the scheduler waited %.1f s for an earlier one that never "
                           "came; handled now", self.name, len(overdue), self._from_scheduler.hold_seconds)
            self._handle_from_scheduler(encoded for _, encoded in overdue)

    def _drain_storage(self) -> None:
        self._drain(self.storage, self.handler.on_storage, "the object storage")

    def _drain_inbox(self, everything: bool = False) -> None:
        for datagram in self.inbox.read(everything):
            try:
                kind, epoch, stamp, sender, encoded = unframe(datagram)
                if kind == ORDERED:
                    self._handle_from_scheduler(self._from_scheduler.datagram(sender, epoch, stamp, encoded,
                                                                              time.monotonic()))
                    continue
                message = protocol.decode(encoded)
            except protocol.ProtocolError as error:
                logger.warning("%s: dropped a malformed datagram from this host: %s", self.name, error)
                continue
            if type(message) is protocol.ResultBatch and self.accepts_direct_results:  # all a worker may send
                self.carry_out(self.handler.on_inbox(message, (), time.monotonic()))

    def _drain(self, sock, on_message, source: str) -> None:
        for _ in range(MAX_MESSAGES_PER_CYCLE):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message, frames = transport.decode_parts(parts)
            except protocol.ProtocolError as error:
                logger.warning("%s: dropped a malformed message from %s: %s", self.name, source, error)
                continue
            self.carry_out(on_message(message, frames, time.monotonic()))

    def _connect_storage(self, address: str) -> None:
        if self.storage is not None:
            return
        self.storage = transport.configure(self.context.socket(zmq.DEALER), identity=self.identity + b"|os",
                                           linger_ms=self.linger_ms)
        secure_client(self.storage, self.keys)
        self.storage.connect(address)
        self._poller.register(self.storage, zmq.POLLIN)
