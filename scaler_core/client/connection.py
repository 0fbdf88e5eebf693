"""The client's I/O thread: owns the sockets to the scheduler and the object storage.

User threads append commands to a deque and, when it was empty, wake this thread through an
inproc socket; this thread sends them (already encoded where possible), receives result batches,
fetches large results from the object storage, and resolves futures.

One shortcut saves a thread hand-off on every submit (a quarter of a round trip's latency): a user
thread sends a task batch to the scheduler itself when this thread is idle in its poll and nothing
is queued before it. The scheduler socket is then used by two threads, never at once: this thread
holds `_io_lock` for everything but its poll, which waits on the socket's file descriptor rather
than on the socket, and the user thread only sends if it gets the lock without waiting.
"""

from __future__ import annotations

import collections
import logging
import pickle
import sys
import threading
import time
import weakref
from typing import Dict, Optional

import zmq

from scaler_core import protocol, transport
from scaler_core.errors import SchedulerDiedError, SerializationError
from scaler_core.security import CurveKeys, secure_client
from scaler_core.client.futures import EncodedResult
from scaler_core.serialization import loads_exception, loads_warnings

logger = logging.getLogger(__name__)


class ClientConnection:
    def __init__(self, address: str, client_id: bytes, timeout_seconds: float, heartbeat_interval_seconds: float,
                 keys: CurveKeys = CurveKeys()):
        self.address = address
        self.client_id = client_id
        self.timeout_seconds = timeout_seconds
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.context = zmq.Context()
        self.keys = keys
        self.scheduler = transport.configure(self.context.socket(zmq.DEALER), identity=client_id, linger_ms=1000)
        secure_client(self.scheduler, keys)
        self.storage: Optional[zmq.Socket] = None
        self._wakeup_address = f"inproc://client-wakeup-{client_id.hex()}"
        self._wakeup_receiver = self.context.socket(zmq.PULL)
        self._wakeup_receiver.bind(self._wakeup_address)
        self._wakeup_sender = self.context.socket(zmq.PUSH)
        self._wakeup_sender.connect(self._wakeup_address)
        self._lock = threading.Lock()
        self._commands: collections.deque = collections.deque()
        self._io_lock = threading.Lock()    # see the module docstring
        self._direct = False                # user threads may send to the scheduler (welcomed, open)
        self._scheduler_fd = self.scheduler.getsockopt(zmq.FD)

        self.futures: Dict[bytes, "object"] = {}      # task id -> ScalerFuture, until resolved
        # graph id -> where its intermediate tasks' warnings wait; gone with the graph's futures
        self.graph_warnings: "weakref.WeakValueDictionary[bytes, object]" = weakref.WeakValueDictionary()
        self._fetching: Dict[bytes, protocol.TaskResult] = {}
        self.welcomed = threading.Event()
        self.shutdown_response: Optional[protocol.ShutdownResponse] = None
        self.shutdown_answered = threading.Event()
        self.closed = threading.Event()
        self.failure: Optional[BaseException] = None
        self._last_heard = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="scaler-client-io", daemon=True)

    def start(self) -> None:
        self.scheduler.connect(self.address)
        self._thread.start()

    # --- called from user threads ---------------------------------------------------------------

    def post(self, *command) -> None:
        if self.closed.is_set():
            raise self.failure or SchedulerDiedError("the client is closed")
        with self._lock:
            was_empty = not self._commands
            self._commands.append(command)
            if was_empty and not self.closed.is_set():
                try:
                    # Never block here: the I/O thread may be closing (it can take this very command
                    # without a wake-up), and a blocked send under the lock would deadlock its close.
                    self._wakeup_sender.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the I/O thread has wake-ups queued already, or is gone

    def register(self, futures) -> None:
        """Track futures until their results come; refused once the connection is closed, so
        none can slip in after `_fail` settled the others."""
        with self._lock:
            if self.closed.is_set():
                raise self.failure or SchedulerDiedError("the client is closed")
            for future in futures:
                if future is not None:
                    self.futures[future.task_id] = future

    def send_tasks(self, encoded_batch: bytes) -> None:
        """From a user thread: send now when the I/O thread is idle and nothing is queued before
        this batch (order kept), else queue it like any command."""
        if self._direct and not self._commands and self._io_lock.acquire(blocking=False):
            try:
                if self._direct and not self._commands:
                    transport.send_encoded(self.scheduler, encoded_batch)
                    self._wake_if_input_pending()
                    return
            finally:
                self._io_lock.release()
        self.post("encoded", encoded_batch)

    def _wake_if_input_pending(self) -> None:
        if transport.input_pending(self.scheduler):  # the polling I/O thread would not notice
            with self._lock:
                if not self.closed.is_set():
                    try:
                        self._wakeup_sender.send(b"", zmq.NOBLOCK)
                    except zmq.Again:
                        pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # --- I/O thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._scheduler_fd, zmq.POLLIN)  # the descriptor, not the socket: see above
        poller.register(self._wakeup_receiver, zmq.POLLIN)
        with self._io_lock:
            transport.send(self.scheduler, protocol.ClientHello(client_id=self.client_id,
                                                                version=protocol.PROTOCOL_VERSION))
        started = time.monotonic()
        next_heartbeat = started + self.heartbeat_interval_seconds
        input_pending = True
        try:
            while True:
                now = time.monotonic()
                timeout = 0 if input_pending else max(1, int((next_heartbeat - now) * 1000))
                events = dict(poller.poll(timeout=timeout))
                now = time.monotonic()
                heartbeat_due = now >= next_heartbeat
                if heartbeat_due:
                    next_heartbeat = now + self.heartbeat_interval_seconds
                with self._io_lock:
                    if not self._cycle(events, poller, started, now, heartbeat_due):
                        return
                    input_pending = transport.input_pending(self.scheduler)
        except Exception as error:  # never leave futures hanging on an unexpected bug
            logger.exception("client I/O thread crashed")
            self._fail(SchedulerDiedError(f"the client's I/O thread crashed: {error!r}"))
        finally:
            with self._io_lock:
                self._direct = False
                self._close_sockets()

    def _cycle(self, events, poller, started: float, now: float, heartbeat_due: bool) -> bool:
        """One pass of the I/O thread, under `_io_lock`; False when the connection is over."""
        if not self.welcomed.is_set() and now - started > self.timeout_seconds:
            self._fail(SchedulerDiedError(
                f"no scheduler answered at {self.address} within {self.timeout_seconds:g}s"))
            return False
        # read what waits first: after a long stretch on a large result, the scheduler's answers
        # are queued here, not missing
        if not self._drain_scheduler(poller):
            return False
        if heartbeat_due:
            if now - self._last_heard > self.timeout_seconds:
                self._fail(SchedulerDiedError(
                    f"the scheduler at {self.address} stopped answering "
                    f"(silent for {now - self._last_heard:.0f}s)"))
                return False
            if self.welcomed.is_set():
                transport.send(self.scheduler, protocol.Heartbeat())
        if self.storage is not None and self.storage in events:
            self._drain_storage()
        if self._wakeup_receiver in events:
            while True:
                try:
                    self._wakeup_receiver.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
        return self._run_commands()

    def _run_commands(self) -> bool:
        while True:
            try:
                command = self._commands.popleft()
            except IndexError:
                return True
            kind = command[0]
            if kind == "encoded":          # ("encoded", bytes) for the scheduler
                transport.send_encoded(self.scheduler, command[1])
            elif kind == "message":        # ("message", protocol message) for the scheduler
                transport.send(self.scheduler, command[1])
            elif kind == "put":            # ("put", object id, frames)
                transport.send(self.storage, protocol.ObjectPut(object_id=command[1], owner_id=self.client_id),
                               command[2])
            elif kind == "storage":        # ("storage", protocol message) for the object storage
                transport.send(self.storage, command[1])
            elif kind == "disconnect":     # ("disconnect", shutdown_scheduler)
                transport.send(self.scheduler, protocol.ClientDisconnect(shutdown_scheduler=command[1]))
                if command[1]:
                    self._await_shutdown_answer()
                self._fail(SchedulerDiedError("the client disconnected"), closing=True)
                return False

    def _await_shutdown_answer(self) -> None:
        deadline = time.monotonic() + min(5.0, self.timeout_seconds)
        while time.monotonic() < deadline and not self.shutdown_answered.is_set():
            if self.scheduler.poll(timeout=100):
                self._drain_scheduler(None)

    def _drain_scheduler(self, poller) -> bool:
        while True:
            try:
                parts = self.scheduler.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return True
            self._last_heard = time.monotonic()
            try:
                message, _ = transport.decode_parts(parts)
            except protocol.ProtocolError as error:
                logger.warning("client: dropped a malformed message from the scheduler: %s", error)
                continue
            kind = type(message)
            if kind is protocol.ResultBatch:
                for result in message.results:
                    self._on_result(result)
            elif kind is protocol.HeartbeatEcho:
                pass
            elif kind is protocol.TaskStarted:
                for task_id in message.task_ids:
                    future = self.futures.get(task_id)
                    if future is not None:
                        future._mark_started()
            elif kind is protocol.TaskWarnings:
                self._on_warnings(message)
            elif kind is protocol.TaskLog:
                stream = sys.stdout if message.stream == "stdout" else sys.stderr
                stream.write(message.text)
                stream.flush()
            elif kind is protocol.Welcome:
                if self.storage is None:
                    self.storage = transport.configure(self.context.socket(zmq.DEALER),
                                                       identity=self.client_id + b"|os", linger_ms=1000)
                    secure_client(self.storage, self.keys)
                    self.storage.connect(message.object_storage_address)
                    if poller is not None:
                        poller.register(self.storage, zmq.POLLIN)
                if message.client_timeout_seconds > 0:  # beat well within what the scheduler tolerates
                    self.heartbeat_interval_seconds = min(self.heartbeat_interval_seconds,
                                                          message.client_timeout_seconds / 3)
                self.welcomed.set()
                self._direct = not self.closed.is_set()
            elif kind is protocol.ShutdownResponse:
                self.shutdown_response = message
                self.shutdown_answered.set()
            elif kind is protocol.SchedulerShutdown:
                self._fail(SchedulerDiedError(f"the scheduler shut down: {message.reason}"))
                return False

    def _on_warnings(self, message) -> None:
        future = self.futures.get(message.task_id)
        if future is not None:
            future._add_warnings(loads_warnings(message.warnings))
            return
        sink = self.graph_warnings.get(message.graph_id) if message.graph_id else None
        if sink is not None:
            sink.extend(loads_warnings(message.warnings))

    def _on_result(self, result) -> None:
        future = self.futures.get(result.task_id)
        if future is None:
            return  # cancelled or already resolved
        if result.status == "success" and result.stored:
            self._fetching[result.task_id] = result
            transport.send(self.storage, protocol.ObjectGet(object_ids=[result.task_id]))
            return
        if self.futures.pop(result.task_id, None) is None:
            return  # a user's cancel took it meanwhile
        future._profiling = result.profiling
        if result.status == "success":
            try:
                value = pickle.loads(result.value)
            except Exception as error:
                future._settle(error=SerializationError(f"the task's result could not be unpickled here: {error!r}"))
                return
            future._settle(value)
        elif result.status == "cancelled":
            future._settle_cancelled()
        else:
            future._settle(error=loads_exception(result.value))

    def _drain_storage(self) -> None:
        released = []
        while True:
            try:
                parts = self.storage.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                message, frames = transport.decode_parts(parts)
            except protocol.ProtocolError:
                continue
            if type(message) is not protocol.ObjectData:
                continue
            result = self._fetching.pop(message.object_id, None)
            future = self.futures.pop(message.object_id, None)
            if result is None or future is None:
                continue
            released.append(message.object_id)
            future._profiling = result.profiling
            if not message.found:
                future._settle(error=LookupError(
                    f"the result of task {message.object_id.hex()} is gone from the object storage"))
                continue
            # unpickled by whoever reads it: a large result must not stall heartbeats here
            future._settle(EncodedResult(frames))
        if released:
            transport.send(self.scheduler, protocol.ObjectDelete(object_ids=released))

    def _fail(self, error: BaseException, closing: bool = False) -> None:
        """Stop: every pending future fails with `error` (or is cancelled when we close on purpose)."""
        with self._lock:  # no future registers once closed (see register)
            self.failure = error
            self._direct = False
            self.closed.set()
            futures, self.futures = self.futures, {}
        self.welcomed.set()  # release a constructor still waiting
        for future in list(futures.values()):
            if closing:
                future._settle_cancelled()
            else:
                future._settle(error=error)

    def _close_sockets(self) -> None:
        for sock in (self.scheduler, self.storage, self._wakeup_receiver):
            if sock is not None:
                sock.close(linger=1000)
        with self._lock:
            self._wakeup_sender.close(linger=0)
        self.context.term()
