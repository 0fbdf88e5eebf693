"""The client's I/O thread: owns the sockets to the scheduler and the object storage.

User threads never touch a socket. They append commands to a deque and, when it was empty, wake
this thread through an inproc socket; this thread sends them (already encoded where possible),
receives result batches, fetches large results from the object storage, and resolves futures.
"""

from __future__ import annotations

import collections
import logging
import pickle
import sys
import threading
import time
from concurrent.futures import Future
from typing import Dict, Optional

import zmq

from scaler_core import protocol, transport
from scaler_core.errors import SchedulerDiedError, SerializationError
from scaler_core.security import CurveKeys, secure_client
from scaler_core.serialization import loads_exception, loads_frames

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

        self.futures: Dict[bytes, "object"] = {}      # task id -> ScalerFuture, until resolved
        self._fetching: Dict[bytes, protocol.TaskResult] = {}
        self.welcome: Optional[protocol.Welcome] = None
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

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # --- I/O thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.scheduler, zmq.POLLIN)
        poller.register(self._wakeup_receiver, zmq.POLLIN)
        transport.send(self.scheduler, protocol.ClientHello(client_id=self.client_id,
                                                            version=protocol.PROTOCOL_VERSION))
        started = time.monotonic()
        next_heartbeat = started + self.heartbeat_interval_seconds
        try:
            while True:
                now = time.monotonic()
                if not self.welcomed.is_set() and now - started > self.timeout_seconds:
                    self._fail(SchedulerDiedError(
                        f"no scheduler answered at {self.address} within {self.timeout_seconds:g}s"))
                    return
                if now >= next_heartbeat:
                    if now - self._last_heard > self.timeout_seconds:
                        self._fail(SchedulerDiedError(
                            f"the scheduler at {self.address} stopped answering "
                            f"(silent for {now - self._last_heard:.0f}s)"))
                        return
                    if self.welcomed.is_set():
                        transport.send(self.scheduler, protocol.Heartbeat())
                    next_heartbeat = now + self.heartbeat_interval_seconds
                events = dict(poller.poll(timeout=max(1, int((next_heartbeat - now) * 1000))))
                if self.scheduler in events and not self._drain_scheduler(poller):
                    return
                if self.storage is not None and self.storage in events:
                    self._drain_storage()
                if self._wakeup_receiver in events:
                    while True:
                        try:
                            self._wakeup_receiver.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                if not self._run_commands():
                    return
        except Exception as error:  # never leave futures hanging on an unexpected bug
            logger.exception("client I/O thread crashed")
            self._fail(SchedulerDiedError(f"the client's I/O thread crashed: {error!r}"))
        finally:
            self._close_sockets()

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
            elif kind is protocol.TaskLog:
                stream = sys.stdout if message.stream == "stdout" else sys.stderr
                stream.write(message.text)
                stream.flush()
            elif kind is protocol.Welcome:
                self.welcome = message
                if self.storage is None:
                    self.storage = transport.configure(self.context.socket(zmq.DEALER),
                                                       identity=self.client_id + b"|os", linger_ms=1000)
                    secure_client(self.storage, self.keys)
                    self.storage.connect(message.object_storage_address)
                    if poller is not None:
                        poller.register(self.storage, zmq.POLLIN)
                self.welcomed.set()
            elif kind is protocol.ShutdownResponse:
                self.shutdown_response = message
                self.shutdown_answered.set()
            elif kind is protocol.SchedulerShutdown:
                self._fail(SchedulerDiedError(f"the scheduler shut down: {message.reason}"))
                return False

    def _on_result(self, result) -> None:
        future = self.futures.get(result.task_id)
        if future is None:
            return  # cancelled or already resolved
        if result.status == "success" and result.stored:
            self._fetching[result.task_id] = result
            transport.send(self.storage, protocol.ObjectGet(object_ids=[result.task_id]))
            return
        del self.futures[result.task_id]
        future._profiling = result.profiling
        if future.done():
            return
        if result.status == "success":
            try:
                value = pickle.loads(result.value)
            except Exception as error:
                future.set_exception(SerializationError(f"the task's result could not be unpickled here: {error!r}"))
                return
            future.set_result(value)
        elif result.status == "cancelled":
            Future.cancel(future)
        else:
            future.set_exception(loads_exception(result.value))

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
            if future.done():
                continue
            if not message.found:
                future.set_exception(LookupError(f"the result of task {message.object_id.hex()} is gone from the object storage"))
                continue
            try:
                future.set_result(loads_frames(frames))
            except Exception as error:
                future.set_exception(SerializationError(f"the task's result could not be unpickled here: {error!r}"))
        if released:
            transport.send(self.scheduler, protocol.ObjectDelete(object_ids=released))

    def _fail(self, error: BaseException, closing: bool = False) -> None:
        """Stop: every pending future fails with `error` (or is cancelled when we close on purpose)."""
        self.failure = error
        self.closed.set()
        self.welcomed.set()  # release a constructor still waiting
        futures, self.futures = self.futures, {}
        for future in futures.values():
            if future.done():
                continue
            if closing:
                Future.cancel(future)
            else:
                future.set_exception(error)

    def _close_sockets(self) -> None:
        for sock in (self.scheduler, self.storage, self._wakeup_receiver):
            if sock is not None:
                sock.close(linger=1000)
        with self._lock:
            self._wakeup_sender.close(linger=0)
        self.context.term()
