"""One worker process: an I/O thread that talks to the scheduler and object storage, and runner
threads that execute tasks one at a time.

Only one task runs at a time; a second runner thread starts only while a running task is blocked
waiting on its own nested tasks, so the slot it holds is not wasted (and nested work cannot
deadlock a full cluster). Tasks arrive ahead of time (the scheduler pipelines a few per worker) and
their functions and stored arguments are fetched while earlier tasks run.

A runner that finishes its last queued task while the I/O thread is idle in its poll sends the
result itself (when nothing is queued before it and it needs no object storage), saving a thread
hand-off on the latency-bound path. The scheduler socket is then used by two threads, never at
once: the I/O thread holds `_io_lock` for everything but its poll, which waits on the socket's file
descriptor rather than on the socket, and a runner only sends if it gets the lock without waiting.
"""

from __future__ import annotations

import collections
import heapq
import logging
import os
import socket
import threading
import time
from typing import Dict, List, Optional, Set

import psutil
import zmq

from scaler_core import protocol, transport
from scaler_core.errors import TaskTimeoutError
from scaler_core.security import CurveKeys, secure_client
from scaler_core.serialization import dumps_exception
from scaler_core import task_context as context
from scaler_core.worker.objects import ObjectCache
from scaler_core.worker.runner import FunctionCache, Outcome, run_task

logger = logging.getLogger(__name__)

# Exit codes of a worker process: 0 means "the scheduler is gone or told me to stop" (do not
# restart); EXIT_REPLACE_ME means the worker stopped itself on purpose (cancel of a running task,
# timeout, memory limit) and wants a fresh successor.
EXIT_SCHEDULER_GONE = 0
EXIT_REPLACE_ME = 75


class WorkerSettings:
    def __init__(self, heartbeat_interval_seconds: float = 1.0, death_timeout_seconds: float = 30.0,
                 task_timeout_seconds: float = 0.0, memory_limit_bytes: int = 0,
                 object_cache_bytes: int = 256 * 1024 * 1024, capabilities: Optional[Dict[str, int]] = None,
                 keys: CurveKeys = CurveKeys()):
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self.memory_limit_bytes = memory_limit_bytes
        self.object_cache_bytes = object_cache_bytes
        self.capabilities = capabilities or {}
        self.keys = keys


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
        self.waiting_objects: Dict[bytes, Set[bytes]] = {}  # task id -> object ids still missing
        self.tasks: Dict[bytes, protocol.Task] = {}         # every task this worker holds
        self.requested_objects: Set[bytes] = set()

        # shared with runner threads, under `lock`
        self.lock = threading.Condition()
        self.ready: List = []                  # heap of (-priority, sequence, task id)
        self.running: Dict[bytes, float] = {}  # task id -> start time
        self.blocked = 0
        self.idle_runners = 0
        self.runner_count = 0
        self.outgoing: collections.deque = collections.deque()
        self._sequence = 0
        self._stop = False

        self.process = psutil.Process()
        self.process.cpu_percent()
        self.last_echo = time.monotonic()

    # --- runner side ----------------------------------------------------------------------------

    def _post(self, item) -> None:
        """Called from any thread: queue an outgoing item and wake the I/O thread.

        Only the item that finds the queue empty sends a wake-up: the I/O thread drains everything
        queued by then, so a burst of results costs one wake-up."""
        with self._post_lock:
            was_empty = not self.outgoing
            self.outgoing.append(item)
            if was_empty:
                self._wakeup_sender.send(b"", copy=True)

    def _deliver(self, outcome: Outcome) -> None:
        """From a runner: send the outcome now if the I/O thread is idle, else queue it.

        Only when no other task waits here: during a burst the I/O thread batches results (one
        message per task would cost the scheduler more than the hand-off saves)."""
        if outcome.frames is None and not self.ready and not self.outgoing \
                and self._io_lock.acquire(blocking=False):
            try:
                if not self.outgoing:
                    transport.send(self.scheduler, protocol.ResultBatch(results=[self._package(outcome)]))
                    self._wake_if_input_pending()
                    return
            finally:
                self._io_lock.release()
        self._post(outcome)

    def _wake_if_input_pending(self) -> None:
        if transport.input_pending(self.scheduler):  # the polling I/O thread would not notice
            with self._post_lock:
                try:
                    self._wakeup_sender.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # wake-ups already queued: the I/O thread will look

    def _runner_loop(self) -> None:
        while True:
            with self.lock:
                self.idle_runners += 1
                while not self._stop and not (self.ready and len(self.running) < 1 + self.blocked):
                    self.lock.wait()
                self.idle_runners -= 1
                if self._stop:
                    self.runner_count -= 1
                    return
                task_id = heapq.heappop(self.ready)[2]
                task = self.tasks.get(task_id)
                if task is None:
                    continue
                self.running[task_id] = time.monotonic()
            if task.notify_start:
                self._post(protocol.TaskStarted(task_ids=[task_id]))
            outcome = run_task(task, self.functions, self.objects.frames_of, self._post)
            with self.lock:
                self.running.pop(task_id, None)
                self.lock.notify_all()
                surplus = self.runner_count > 1 + self.blocked and self.idle_runners > 0
                if surplus:
                    self.runner_count -= 1
            self._deliver(outcome)
            if surplus:
                return

    def _on_block(self) -> None:
        with self.lock:
            self.blocked += 1
            if self.idle_runners == 0:
                self._start_runner()
            self.lock.notify_all()
        self._post(protocol.WorkerBlocked(blocked_tasks=self.blocked))

    def _on_unblock(self) -> None:
        with self.lock:
            self.blocked -= 1
        self._post(protocol.WorkerBlocked(blocked_tasks=self.blocked))

    def _start_runner(self) -> None:
        self.runner_count += 1
        threading.Thread(target=self._runner_loop, name="scaler-runner", daemon=True).start()

    # --- I/O thread -----------------------------------------------------------------------------

    def run(self) -> None:
        context.set_worker(self.scheduler_address, self._on_block, self._on_unblock, self.settings.keys)
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
                        if now - self.last_echo > self.settings.death_timeout_seconds:
                            logger.error("worker %r: scheduler silent for %.0fs, exiting", self.worker_id,
                                         self.settings.death_timeout_seconds)
                            return
                        self._send_heartbeat()
                        self._check_limits(now)
                        next_heartbeat = now + interval
                    if self.wakeup_receiver in events:
                        self._drain_wakeups()
                    if not self._drain_scheduler():
                        return
                    if self.storage is not None and self.storage in events:
                        self._drain_storage()
                    self._flush_outgoing()
                    input_pending = transport.input_pending(self.scheduler)
        finally:
            with self.lock:
                self._stop = True
                self.lock.notify_all()

    def _drain_wakeups(self) -> None:
        while True:
            try:
                self.wakeup_receiver.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _drain_scheduler(self) -> bool:
        for _ in range(1024):  # bounded, so heartbeats and results still go out under a flood
            try:
                parts = self.scheduler.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return True
            try:
                message, _ = transport.decode_parts(parts)
            except protocol.ProtocolError as error:
                logger.warning("worker: dropped malformed message from scheduler: %s", error)
                continue
            kind = type(message)
            if kind is protocol.TaskBatch:
                for task in message.tasks:
                    self._accept_task(task)
            elif kind is protocol.TaskCancel:
                for task_id in message.task_ids:
                    self._cancel(task_id, message.pending_only)
            elif kind is protocol.BalanceRequest:
                self._give_back(message.task_ids)
            elif kind is protocol.HeartbeatEcho:
                self.last_echo = time.monotonic()
            elif kind is protocol.Welcome:
                self.last_echo = time.monotonic()
                self._connect_storage(message.object_storage_address)
            elif kind is protocol.SchedulerShutdown:
                logger.info("worker %r: scheduler says %s; exiting", self.worker_id, message.reason)
                if message.reconnect:
                    self.context.destroy(linger=0)
                    os._exit(EXIT_REPLACE_ME)  # a fresh worker takes this one's place
                return False
        return True

    def _connect_storage(self, address: str) -> None:
        if self.storage is not None:
            return
        self.storage = transport.configure(self.context.socket(zmq.DEALER), identity=self.worker_id + b"|os",
                                           linger_ms=2000)
        secure_client(self.storage, self.settings.keys)
        self.storage.connect(address)
        self.poller.register(self.storage, zmq.POLLIN)

    def _accept_task(self, task) -> None:
        if task.task_id in self.tasks:
            return
        self.tasks[task.task_id] = task
        missing = set()
        if self.storage is None:
            self._post(Outcome(task, "failed", dumps_exception(RuntimeError("worker got a task before its welcome"))))
            return
        if not self.functions.has(task.function_id):
            missing.add(task.function_id)
        if task.args_stored:
            missing.add(task.args_object_id)
        for item in task.inputs:
            if item.stored:
                missing.add(item.object_id)
        self.objects.pin(_object_ids_of(task))
        missing = {object_id for object_id in missing if not self.objects.has(object_id)}
        if missing:
            self.waiting_objects[task.task_id] = missing
            request = [object_id for object_id in missing if object_id not in self.requested_objects]
            if request:
                self.requested_objects.update(request)
                transport.send(self.storage, protocol.ObjectGet(object_ids=request))
        else:
            self._make_ready(task)

    def _make_ready(self, task) -> None:
        with self.lock:
            self._sequence += 1
            heapq.heappush(self.ready, (-task.priority, self._sequence, task.task_id))
            self.lock.notify()

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
            if type(message) is not protocol.ObjectData:
                continue
            object_id = message.object_id
            self.requested_objects.discard(object_id)
            if message.found:
                self.objects.put(object_id, frames)
            for task_id, missing in list(self.waiting_objects.items()):
                if object_id not in missing:
                    continue
                if not message.found:
                    del self.waiting_objects[task_id]
                    task = self.tasks.get(task_id)
                    error = LookupError(f"object {object_id.hex()} needed by the task is not in the object storage")
                    self._post(Outcome(task, "failed", dumps_exception(error)))
                    continue
                missing.discard(object_id)
                if not missing:
                    del self.waiting_objects[task_id]
                    self._make_ready(self.tasks[task_id])

    def _cancel(self, task_id: bytes, pending_only: bool = False) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            return
        with self.lock:
            is_running = task_id in self.running
            if pending_only and (is_running or task_id == self._next_to_start()):
                return  # it completes and reports its result as usual
            if not is_running:
                self.ready = [entry for entry in self.ready if entry[2] != task_id]
                heapq.heapify(self.ready)
        if is_running:
            # A running Python call cannot be interrupted safely: report it cancelled and make way
            # for a fresh process (the cluster restarts it), handing back everything not started.
            self._exit_after(task, "cancelled", b"", "task cancelled while running")
            return
        self.waiting_objects.pop(task_id, None)
        self._post(Outcome(task, "cancelled"))

    def _next_to_start(self) -> Optional[bytes]:
        """The task a free slot takes next: as good as started (a process pool's call queue counts
        as running too). While nothing is ready, the oldest task still fetching its inputs. Needs
        `self.lock`."""
        if len(self.running) >= 1 + self.blocked:
            return None
        if self.ready:
            return self.ready[0][2]
        return next((task_id for task_id in self.tasks if task_id not in self.running), None)

    def _give_back(self, task_ids) -> None:
        """Return the requested tasks that have not started; they will not run here."""
        wanted = set(task_ids)
        with self.lock:
            returned = [entry[2] for entry in self.ready if entry[2] in wanted]
            if returned:
                returned_set = set(returned)
                self.ready = [entry for entry in self.ready if entry[2] not in returned_set]
                heapq.heapify(self.ready)
        returned += [task_id for task_id in wanted if task_id in self.waiting_objects]
        for task_id in returned:
            self.waiting_objects.pop(task_id, None)
            task = self.tasks.pop(task_id, None)
            if task is not None:
                self.objects.unpin(_object_ids_of(task))
        self._post(protocol.BalanceResponse(task_ids=returned))

    def _exit_after(self, task, status: str, value: bytes, reason: str) -> None:
        self._post(Outcome(task, status, value))
        self._flush_outgoing()
        with self.lock:
            returned = [task_id for task_id in self.tasks if task_id != task.task_id and task_id not in self.running]
        transport.send(self.scheduler, protocol.WorkerDisconnect(returned_tasks=returned, reason=reason))
        # os._exit skips zmq's own shutdown: flush what is queued (bounded by linger) first
        self.context.destroy(linger=2000)
        os._exit(EXIT_REPLACE_ME)

    def _check_limits(self, now: float) -> None:
        timeout = self.settings.task_timeout_seconds
        if timeout > 0:
            with self.lock:
                overdue = [task_id for task_id, started in self.running.items() if now - started > timeout]
            if overdue:
                task = self.tasks[overdue[0]]
                error = TaskTimeoutError(f"task exceeded the task timeout of {timeout:g}s and was stopped")
                self._exit_after(task, "timeout", dumps_exception(error), "task timeout")
        limit = self.settings.memory_limit_bytes
        if limit > 0 and self.running:
            rss = self.process.memory_info().rss
            if rss > limit:
                with self.lock:
                    task_id = next(iter(self.running))
                error = MemoryError(f"the worker's memory ({rss / 2**20:.0f} MiB) exceeded its limit of "
                                    f"{limit / 2**20:.0f} MiB while running this task; it was stopped")
                self._exit_after(self.tasks[task_id], "failed", dumps_exception(error), "memory limit")

    def _send_heartbeat(self) -> None:
        with self.lock:
            queued = len(self.ready)
            blocked = self.blocked
        transport.send(self.scheduler, protocol.Heartbeat(
            cpu_percent=self.process.cpu_percent(), rss_bytes=self.process.memory_info().rss,
            queued_tasks=queued + len(self.waiting_objects), blocked_tasks=blocked))

    def _flush_outgoing(self) -> None:
        """Send what the runners queued: starts and results go out batched (all starts before
        all results, so a task's start never arrives after its result); anything else in order."""
        started: List[bytes] = []
        results = []

        def send_batches():
            if started:
                transport.send(self.scheduler, protocol.TaskStarted(task_ids=list(started)))
                started.clear()
            if results:
                transport.send(self.scheduler, protocol.ResultBatch(results=list(results)))
                results.clear()

        while True:
            try:
                item = self.outgoing.popleft()
            except IndexError:
                break
            kind = type(item)
            if kind is Outcome:
                results.append(self._package(item))
            elif kind is protocol.TaskStarted:
                started.extend(item.task_ids)
            else:
                send_batches()
                transport.send(self.scheduler, item)
        send_batches()

    def _package(self, outcome: Outcome):
        task = outcome.task
        if self.tasks.pop(task.task_id, None) is not None:
            self.objects.unpin(_object_ids_of(task))
        stored = outcome.frames is not None
        if stored:
            transport.send(self.storage, protocol.ObjectPut(object_id=task.task_id, owner_id=task.client_id),
                           outcome.frames)
        return protocol.make_result(task.task_id, outcome.status, outcome.inline, stored, outcome.profiling)


def _object_ids_of(task) -> List[bytes]:
    ids = [task.function_id]
    if task.args_stored:
        ids.append(task.args_object_id)
    ids.extend(item.object_id for item in task.inputs if item.stored)
    return ids
