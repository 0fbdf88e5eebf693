"""One worker process: the I/O shell around `WorkerState` (state.py), which makes every decision.

An I/O thread talks to the scheduler and the object storage; runner threads execute tasks one at
a time. Both feed events to the state under one lock and carry out the instructions it returns:
the I/O thread sends at once (task starts and results batched per cycle), a runner queues what it
got for the I/O thread. Only one task runs at a time; a second runner thread starts only while a
running task is blocked waiting on its own nested tasks, so the slot it holds is not wasted (and
nested work cannot deadlock a full cluster).

A runner that finishes its last queued task while the I/O thread is idle in its poll sends the
result itself (when nothing is queued before it and it needs no object storage), saving a thread
hand-off on the latency-bound path. The scheduler socket is then used by two threads, never at
once: the I/O thread holds `_io_lock` for everything but its poll, which waits on the socket's file
descriptor rather than on the socket, and a runner only sends if it gets the lock without waiting.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from typing import Dict, List, Optional

import psutil
import zmq

from scaler_core import protocol, transport
from scaler_core import task_context as context
from scaler_core.security import CurveKeys, secure_client
from scaler_core.worker.objects import ObjectCache
from scaler_core.worker.preload import PreloadError, run_preload
from scaler_core.worker.runner import FunctionCache, install_warning_capture, run_task
from scaler_core.worker.state import (
    ConnectStorage, Result, Started, Stop, ToScheduler, ToStorage, WakeRunners, WorkerLimits, WorkerState,
)

logger = logging.getLogger(__name__)

# Exit codes of a worker process: 0 means "the scheduler is gone or told me to stop" (do not
# restart); EXIT_REPLACE_ME means the worker stopped itself on purpose (cancel of a running task,
# timeout, memory limit) and wants a fresh successor.
EXIT_SCHEDULER_GONE = 0
EXIT_REPLACE_ME = 75
EXIT_PRELOAD_FAILED = 76  # its --preload failed: a successor would fail the same way, none is started


class WorkerSettings:
    def __init__(self, heartbeat_interval_seconds: float = 1.0, death_timeout_seconds: float = 30.0,
                 task_timeout_seconds: float = 0.0, memory_limit_bytes: int = 0,
                 object_cache_bytes: int = 256 * 1024 * 1024, capabilities: Optional[Dict[str, int]] = None,
                 keys: CurveKeys = CurveKeys(), preload: str = ""):
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self.memory_limit_bytes = memory_limit_bytes
        self.object_cache_bytes = object_cache_bytes
        self.capabilities = capabilities or {}
        self.keys = keys
        self.preload = preload


class _Stopped(Exception):
    def __init__(self, stop: Stop):
        super().__init__(stop.reason)
        self.stop = stop


class Worker:
    def __init__(self, scheduler_address: str, worker_id: bytes, settings: WorkerSettings, cluster_id: bytes = b""):
        self.scheduler_address = scheduler_address
        self.worker_id = worker_id
        self.settings = settings
        self.cluster_id = cluster_id
        self.context = zmq.Context()
        self.scheduler = transport.configure(self.context.socket(zmq.DEALER), identity=worker_id, linger_ms=2000)
        secure_client(self.scheduler, settings.keys)
        self.storage: Optional[zmq.Socket] = None
        self.wakeup_receiver = self.context.socket(zmq.PULL)
        self.wakeup_receiver.bind(f"inproc://worker-wakeup-{id(self)}")
        self._wakeup_sender = self.context.socket(zmq.PUSH)
        self._wakeup_sender.setsockopt(zmq.LINGER, 0)
        self._wakeup_sender.connect(f"inproc://worker-wakeup-{id(self)}")
        self._post_lock = threading.Lock()
        self._io_lock = threading.Lock()  # see the module docstring
        self._scheduler_fd = self.scheduler.getsockopt(zmq.FD)

        self.objects = ObjectCache(settings.object_cache_bytes)
        self.functions = FunctionCache()
        self.lock = threading.Condition()  # every call into `state`; runners wait on it for work
        self.state = WorkerState(self.objects, self.functions, WorkerLimits(
            death_timeout_seconds=settings.death_timeout_seconds, task_timeout_seconds=settings.task_timeout_seconds,
            memory_limit_bytes=settings.memory_limit_bytes), last_echo=time.monotonic())
        self.idle_runners = 0
        self.runner_count = 0
        self.outgoing: collections.deque = collections.deque()  # instructions queued by runners
        self._stop = False
        self._started: List[bytes] = []  # batched per I/O cycle: all starts go before all results
        self._results: List = []

        self.process = psutil.Process()
        self.process.cpu_percent()

    # --- runner side ----------------------------------------------------------------------------

    def _post(self, *instructions) -> None:
        """Called from any thread: queue instructions for the I/O thread.

        Only the item that finds the queue empty sends a wake-up: the I/O thread drains everything
        queued by then, so a burst of results costs one wake-up."""
        with self._post_lock:
            was_empty = not self.outgoing
            self.outgoing.extend(instructions)
            if was_empty and instructions:
                self._wakeup_sender.send(b"", copy=True)

    def _emit(self, message) -> None:
        """A task's own message (its printed output) for the scheduler."""
        self._post(ToScheduler(message))

    def _deliver(self, instructions: List) -> None:
        """From a runner: send a lone result now if the I/O thread is idle, else queue it.

        Only when no other task waits here: during a burst the I/O thread batches results (one
        message per task would cost the scheduler more than the hand-off saves)."""
        if len(instructions) == 1 and type(instructions[0]) is Result and not self.state.ready \
                and not self.outgoing and self._io_lock.acquire(blocking=False):
            try:
                if not self.outgoing:
                    transport.send(self.scheduler, protocol.ResultBatch(results=[instructions[0].result]))
                    self._wake_if_input_pending()
                    return
            finally:
                self._io_lock.release()
        self._post(*instructions)

    def _wake_if_input_pending(self) -> None:
        if transport.input_pending(self.scheduler):  # the polling I/O thread would not notice
            with self._post_lock:
                try:
                    self._wakeup_sender.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # wake-ups already queued: the I/O thread will look

    def _runner_loop(self) -> None:
        state = self.state
        while True:
            with self.lock:
                self.idle_runners += 1
                while not self._stop and not state.can_start():
                    self.lock.wait()
                self.idle_runners -= 1
                if self._stop:
                    self.runner_count -= 1
                    return
                task, instructions = state.take_next(time.monotonic())
            if task is None:
                continue
            if instructions:
                self._post(*instructions)
            outcome = run_task(task, self.functions, self.objects.frames_of, self._emit)
            with self.lock:
                instructions = state.finish(outcome)
                if type(instructions[-1]) is WakeRunners:
                    instructions.pop()
                    self.lock.notify_all()
                surplus = self.runner_count > 1 + state.blocked and self.idle_runners > 0
                if surplus:
                    self.runner_count -= 1
            self._deliver(instructions)
            if surplus:
                return

    def _on_block(self) -> None:
        with self.lock:
            instructions = self.state.on_block()
            if self.idle_runners == 0:
                self._start_runner()
            self.lock.notify_all()
        self._post(*[item for item in instructions if type(item) is not WakeRunners])

    def _on_unblock(self) -> None:
        with self.lock:
            instructions = self.state.on_unblock()
        self._post(*instructions)

    def _start_runner(self) -> None:
        self.runner_count += 1
        threading.Thread(target=self._runner_loop, name="scaler-runner", daemon=True).start()

    # --- I/O thread -----------------------------------------------------------------------------

    def run(self) -> None:
        context.set_worker(self.scheduler_address, self._on_block, self._on_unblock, self.settings.keys)
        install_warning_capture()
        if self.settings.preload:
            try:
                run_preload(self.settings.preload)
            except PreloadError as error:
                logger.error("worker %r does not start: %s", self.worker_id, error)
                self.context.destroy(linger=0)
                os._exit(EXIT_PRELOAD_FAILED)
        self.scheduler.connect(self.scheduler_address)
        transport.send(self.scheduler, protocol.WorkerHello(
            worker_id=self.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
            capabilities=[protocol.Capability(name=n, quantity=q) for n, q in self.settings.capabilities.items()],
            cluster_id=self.cluster_id, version=protocol.PROTOCOL_VERSION))
        with self.lock:
            self._start_runner()
        poller = self.poller = zmq.Poller()
        poller.register(self._scheduler_fd, zmq.POLLIN)  # the descriptor, not the socket: see above
        poller.register(self.wakeup_receiver, zmq.POLLIN)
        next_heartbeat = 0.0
        interval = self.settings.heartbeat_interval_seconds
        input_pending = True
        try:
            while True:
                now = time.monotonic()
                timeout = 0 if input_pending else max(1, int((next_heartbeat - now) * 1000))
                events = dict(poller.poll(timeout=timeout))
                with self._io_lock:
                    now = time.monotonic()
                    if now >= next_heartbeat:
                        self._tick(now)
                        next_heartbeat = now + interval
                    if self.wakeup_receiver in events:
                        self._drain_wakeups()
                    self._drain_scheduler()
                    if self.storage is not None and self.storage in events:
                        self._drain_storage()
                    self._flush_outgoing()
                    input_pending = transport.input_pending(self.scheduler)
        except _Stopped as stopped:
            with self._io_lock:
                self._leave(stopped.stop)
        finally:
            with self.lock:
                self._stop = True
                self.lock.notify_all()

    def _leave(self, stop: Stop) -> None:
        """Everything runners queued goes first: the scheduler ignores what follows the goodbye."""
        self._flush_outgoing()
        if stop.goodbye is not None:
            transport.send(self.scheduler, stop.goodbye)
        (logger.error if stop.unexpected else logger.info)("worker %r: %s; exiting", self.worker_id, stop.reason)
        if stop.replace:
            # os._exit skips zmq's own shutdown: flush what is queued (bounded by linger) first
            self.context.destroy(linger=stop.linger_ms)
            os._exit(EXIT_REPLACE_ME)

    def _tick(self, now: float) -> None:
        self._carry_out(self._decide(self.state.on_tick, now, self.process.cpu_percent(),
                                     self.process.memory_info().rss))

    def _decide(self, event, *args) -> List:
        """One event into the state, under the lock; runners are woken here if work became ready."""
        with self.lock:
            instructions = event(*args)
            if instructions and type(instructions[-1]) is WakeRunners:
                instructions.pop()
                self.lock.notify_all()
        return instructions

    def _carry_out(self, instructions) -> None:
        """Do what the state asked, on the I/O thread. Starts and results wait for the batch."""
        for instruction in instructions:
            kind = type(instruction)
            if kind is Result:
                self._results.append(instruction.result)
            elif kind is Started:
                self._started.append(instruction.task_id)
            elif kind is ToScheduler:
                self._send_batches()
                transport.send(self.scheduler, instruction.message)
            elif kind is ToStorage:
                transport.send(self.storage, instruction.message, instruction.frames)
            elif kind is ConnectStorage:
                self._connect_storage(instruction.address)
            elif kind is Stop:
                self._send_batches()
                raise _Stopped(instruction)

    def _send_batches(self) -> None:
        if self._started:
            transport.send(self.scheduler, protocol.TaskStarted(task_ids=self._started))
            self._started = []
        if self._results:
            transport.send(self.scheduler, protocol.ResultBatch(results=self._results))
            self._results = []

    def _drain_wakeups(self) -> None:
        while True:
            try:
                self.wakeup_receiver.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _drain_scheduler(self) -> None:
        state = self.state
        for _ in range(1024):  # bounded, so heartbeats and results still go out under a flood
            try:
                parts = self.scheduler.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message, _ = transport.decode_parts(parts)
            except protocol.ProtocolError as error:
                logger.warning("worker: dropped malformed message from scheduler: %s", error)
                continue
            kind = type(message)
            if kind is protocol.TaskBatch:
                instructions = self._decide(state.on_tasks, message.tasks)
            elif kind is protocol.TaskCancel:
                instructions = self._decide(state.on_cancel, message.task_ids, message.pending_only)
            elif kind is protocol.BalanceRequest:
                instructions = self._decide(state.on_balance_request, message.task_ids)
            elif kind is protocol.HeartbeatEcho:
                instructions = self._decide(state.on_heartbeat_echo, time.monotonic())
            elif kind is protocol.Welcome:
                instructions = self._decide(state.on_welcome, time.monotonic(), message.object_storage_address)
            elif kind is protocol.SchedulerShutdown:
                instructions = self._decide(state.on_scheduler_shutdown, message.reason, message.reconnect)
            else:
                continue
            self._carry_out(instructions)

    def _connect_storage(self, address: str) -> None:
        self.storage = transport.configure(self.context.socket(zmq.DEALER), identity=self.worker_id + b"|os",
                                           linger_ms=2000)
        secure_client(self.storage, self.settings.keys)
        self.storage.connect(address)
        self.poller.register(self.storage, zmq.POLLIN)

    def _drain_storage(self) -> None:
        while True:
            try:
                parts = self.storage.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message, frames = transport.decode_parts(parts)
            except protocol.ProtocolError as error:
                logger.warning("worker: dropped malformed message from object storage: %s", error)
                continue
            if type(message) is protocol.ObjectData:
                self._carry_out(self._decide(self.state.on_object, message.object_id, message.found, frames))

    def _flush_outgoing(self) -> None:
        """Carry out what the runners queued, then send this cycle's batches."""
        while True:
            try:
                instruction = self.outgoing.popleft()
            except IndexError:
                break
            self._carry_out((instruction,))
        self._send_batches()
