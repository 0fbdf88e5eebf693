"""One worker process: the shell around `WorkerState` (state.py), which makes every decision.

The I/O loop (`peer_io.PeerIO`, shared with the client) talks to the scheduler and the object
storage; runner threads execute tasks one at a time. Both feed events to the state under one lock
and carry out the instructions it returns: the loop at once (task starts and results batched per
cycle), a runner by posting them to the loop. Only one task runs at a time; a second runner thread
starts only while a running task is blocked waiting on its own nested tasks, so the slot it holds
is not wasted (and nested work cannot deadlock a full cluster).

A runner that finishes its last queued task while the loop is idle sends the result itself
(`PeerIO.send_now_if_idle`), saving a thread hand-off on the latency-bound path; a lone result
whose client is on this host goes to the client's inbox first (direct_results.py), saving a hop.
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from typing import List, Optional

import psutil

from scaler_core import protocol
from scaler_core import task_context as context
from scaler_core.host_store import PENDING, HostStore, HostStoreLocation, LocatedObjects
from scaler_core.instructions import ToScheduler, ToStorage
from scaler_core.memory import private_memory_bytes, trim_heap
from scaler_core.peer_io import PeerIO
from scaler_core.settings import WorkerSettings
from scaler_core.worker.objects import ObjectCache
from scaler_core.worker.preload import PreloadError, run_preload
from scaler_core.worker.runner import FunctionCache, install_warning_capture, run_task
from scaler_core.worker.state import LogWarning, RelieveMemory, Result, Started, WakeRunners, WorkerLimits, WorkerState

logger = logging.getLogger(__name__)

# Exit codes of a worker process: 0 means "the scheduler is gone or told me to stop" (do not
# restart); EXIT_REPLACE_ME means the worker stopped itself on purpose (cancel of a running task,
# timeout, memory limit) and wants a fresh successor.
EXIT_SCHEDULER_GONE = 0
EXIT_REPLACE_ME = 75
EXIT_PRELOAD_FAILED = 76  # its --preload failed: a successor would fail the same way, none is started

# with a memory limit, the process's memory is read after a task at most this often
MEMORY_READ_INTERVAL_SECONDS = 0.005


class Worker:
    def __init__(self, scheduler_address: str, worker_id: bytes, settings: WorkerSettings, cluster_id: bytes = b""):
        self.scheduler_address = scheduler_address
        self.worker_id = worker_id
        self.settings = settings
        self.cluster_id = cluster_id
        self.io = PeerIO(self, name="worker", identity=worker_id, scheduler_address=scheduler_address,
                         keys=settings.keys, tick_interval_seconds=settings.heartbeat_interval_seconds, linger_ms=2000)

        self.host_store = HostStore(HostStoreLocation.decode(settings.host_store_location),
                                    settings.object_memory_limit_bytes) if settings.host_store_location else None
        self.objects = ObjectCache(settings.object_cache_bytes, self.host_store.load if self.host_store else None,
                                   held_capacity_bytes=settings.held_result_bytes if self.host_store else 0)
        self.located = LocatedObjects(self._arrived_from_another_host)
        self._count_lock = threading.Lock()
        self._hold_lock = threading.Lock()  # a held put and its hold, against the storage's asks and deletes
        self.functions = FunctionCache()
        self.lock = threading.Condition()  # every call into `state`; runners wait on it for work
        self.state = WorkerState(self.objects, self.functions, WorkerLimits(
            death_timeout_seconds=settings.death_timeout_seconds, task_timeout_seconds=settings.task_timeout_seconds,
            memory_limit_bytes=settings.memory_limit_bytes, memory_pause_fraction=settings.memory_pause_fraction),
            last_echo=time.monotonic())
        self.idle_runners = 0
        self.runner_count = 0
        self._stop = False
        self._started: List[bytes] = []  # batched per I/O cycle: all starts go before all results
        self._results: List = []
        self._loop_error: Optional[BaseException] = None
        self._handlers = {
            protocol.TaskBatch: lambda message, now: self.state.on_tasks(message.tasks),
            protocol.TaskCancel: lambda message, now: self.state.on_cancel(message.task_ids, message.pending_only),
            protocol.BalanceRequest: lambda message, now: self.state.on_balance_request(message.task_ids),
            protocol.HeartbeatEcho: lambda message, now: self.state.on_heartbeat_echo(now),
            protocol.Welcome: lambda message, now: self.state.on_welcome(now, message.object_storage_address),
            protocol.SchedulerShutdown:
                lambda message, now: self.state.on_scheduler_shutdown(message.reason, message.reconnect),
            protocol.Reintroduce: lambda message, now: self.state.on_reintroduce(now) + [ToScheduler(self._hello())],
        }

        self.process = psutil.Process()
        self._memory_read_after = 0.0
        self.process.cpu_percent()

    def run(self) -> None:
        context.set_worker(self.scheduler_address, self._on_block, self._on_unblock, self.settings.keys)
        install_warning_capture()
        if self.settings.preload:
            try:
                run_preload(self.settings.preload)
            except PreloadError as error:
                logger.error("worker %r does not start: %s", self.worker_id, error)
                os._exit(EXIT_PRELOAD_FAILED)
        with self.lock:
            self._start_runner()
        self.io.direct_sends = True
        try:
            stop = self.io.run(self._hello())
        finally:
            self.located.stop()
            with self.lock:
                self._stop = True
                self.lock.notify_all()
        if self._loop_error is not None:
            raise RuntimeError(f"worker {self.worker_id!r}: its I/O loop crashed") from self._loop_error
        if stop is not None:
            (logger.error if stop.unexpected else logger.info)("worker %r: %s; exiting", self.worker_id, stop.reason)
            if stop.replace:
                os._exit(EXIT_REPLACE_ME)  # the loop flushed its sockets (bounded by linger) before returning

    def _hello(self):
        return protocol.WorkerHello(
            worker_id=self.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
            capabilities=[protocol.Capability(name=n, quantity=q) for n, q in self.settings.capabilities.items()],
            cluster_id=self.cluster_id, version=protocol.PROTOCOL_VERSION)

    def terminate(self, reason: str) -> None:
        """Leave at once, handing every task back (any thread; the I/O loop sends the goodbye)."""
        with self.lock:
            instructions = self.state.on_terminate(reason)
        self.io.post(*instructions)

    # --- runner side ----------------------------------------------------------------------------

    def _emit(self, message) -> None:
        """A task's own message (its printed output) for the scheduler."""
        self.io.post(ToScheduler(message))

    def _deliver(self, instructions: List) -> None:
        """From a runner: send a lone result now if the loop is idle, else post it.

        Only when no other task waits here: during a burst the loop batches results (one message
        per task would cost the scheduler more than the hand-off saves)."""
        if len(instructions) == 1 and type(instructions[0]) is Result and not self.state.ready:
            result, client_id = instructions[0].result, instructions[0].client_id
            # encoded once, marked delivered (the client ignores the mark): the scheduler gets the same
            # bytes unless the direct send did not go (encoded again then: rare, a full inbox)
            result.delivered = bool(client_id) and self.io.inboxes.reaches(client_id)
            encoded = protocol.encode(protocol.ResultBatch(results=[result]))
            if result.delivered and not self.io.send_direct_result(client_id, encoded):
                result.delivered = False
                encoded = protocol.encode(protocol.ResultBatch(results=[result]))
            if self.io.send_now_if_idle(encoded):
                return
        self.io.post(*instructions)

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
                self.io.post(*instructions)
            outcome = run_task(task, self.functions, self.objects.frames_of, self._emit)
            if outcome.frames is not None and self.host_store is not None:
                if task.hold_result and self.objects.held_capacity_bytes > 0:
                    self._hold(outcome)
                else:
                    self._keep_on_host(outcome)
            # with a memory limit, a task that left the process past its pause threshold holds back the
            # next one now, not at the next heartbeat (tiny tasks: at most every few milliseconds, a
            # reading costs as much as running one)
            rss, now = 0, time.monotonic()
            if state.limits.pause_bytes and now >= self._memory_read_after:
                rss = private_memory_bytes(self.process)
                self._memory_read_after = now + MEMORY_READ_INTERVAL_SECONDS
            with self.lock:
                instructions = state.finish(outcome)
                if rss:
                    instructions += state.on_memory(now, rss)
                instructions = self._woken(instructions)
                surplus = self.runner_count > 1 + state.blocked and self.idle_runners > 0
                if surplus:
                    self.runner_count -= 1
            self._deliver(instructions)
            if surplus:
                return

    def _hold(self, outcome) -> None:
        """Keep a graph's intermediate in this process: a dependent here reads it with no copy, and it
        is written to the host store only when another process asks for it (see the object storage).
        The storage hears of it before anything can write it out (posts go out in order), and the
        storage's asks and deletes, handled under the same lock, find it held."""
        task = outcome.task
        outcome.size = sum(memoryview(frame).nbytes for frame in outcome.frames)
        outcome.held = True
        with self._hold_lock:
            self.io.post(ToStorage(protocol.ObjectPut(object_id=task.task_id, owner_id=task.client_id, held=True,
                                                      size=outcome.size)))
            over_budget = self.objects.hold(task.task_id, outcome.frames, outcome.size, task.client_id)
        self._count_held()
        if over_budget:  # the oldest go to the host store, and from memory (a reader here maps the file)
            self.io.post(*self._write_out(over_budget))

    def _count_held(self) -> None:
        """Held results count against the host store's memory limit (their bytes leave less for files)."""
        if self.host_store is None:
            return
        try:
            with self._count_lock:  # read and written together: the last write is the latest figure
                self.host_store.set_held(self.objects.held_bytes)
        except OSError as error:
            logger.warning("worker %r: could not record its held results in the host store: %s", self.worker_id, error)

    def _write_out(self, object_ids: List[bytes]) -> List:
        """Held objects go to the host store (a reader elsewhere needs them, or the budget is full);
        the files are the copies from then on (two would double the memory)."""
        with self._hold_lock:
            taken = [(object_id, self.objects.take_held(object_id)) for object_id in object_ids]
        self._count_held()
        instructions = []
        for object_id, held in taken:
            if held is None:
                continue  # written out or deleted already
            frames, owner = held
            try:
                size = self.host_store.put(object_id, frames)
            except OSError as error:
                logger.warning("worker %r: could not write a result to the host store (%s); sending it to the "
                               "object storage", self.worker_id, error)
                instructions.append(ToStorage(protocol.ObjectPut(object_id=object_id, owner_id=owner), frames))
                continue
            instructions.append(ToStorage(protocol.ObjectPut(object_id=object_id, owner_id=owner,
                                                             location=self.host_store.encoded_location, size=size)))
        self.objects.discard([object_id for object_id, held in taken if held is not None])
        return instructions

    def on_leave(self, leave) -> List:
        """Leaving with a goodbye (stopped, replaced): what only this process holds is written out
        first, so its dependents need not make it again."""
        if leave.goodbye is None:
            return []
        return self._write_out(self.objects.held_ids())

    def _keep_on_host(self, outcome) -> None:
        """Write a large result into the host store, outside the lock (it may take a while)."""
        try:
            outcome.size = self.host_store.put(outcome.task.task_id, outcome.frames)
        except OSError as error:  # a full disk or memory filesystem: the object storage takes it instead
            logger.warning("worker %r: could not keep a result in the host store (%s); sending it to the "
                           "object storage", self.worker_id, error)
            return
        outcome.location = self.host_store.encoded_location

    def _on_block(self) -> None:
        with self.lock:
            instructions = self._woken(self.state.on_block())
            if self.idle_runners == 0:
                self._start_runner()
            self.lock.notify_all()
        self.io.post(*instructions)

    def _on_unblock(self) -> None:
        with self.lock:
            instructions = self.state.on_unblock()
        self.io.post(*instructions)

    def _start_runner(self) -> None:
        self.runner_count += 1
        threading.Thread(target=self._runner_loop, name="scaler-runner", daemon=True).start()

    def _woken(self, instructions: List) -> List:
        """Under the lock: a WakeRunners (always last) wakes the waiting runners here."""
        if instructions and type(instructions[-1]) is WakeRunners:
            instructions.pop()
            self.lock.notify_all()
        return instructions

    # --- the I/O loop's handler (its thread) ----------------------------------------------------

    def on_scheduler(self, message, frames, now: float) -> List:
        handler = self._handlers.get(type(message))
        if handler is None:
            return []
        with self.lock:
            return self._woken(handler(message, now))

    def on_storage(self, message, frames, now: float) -> List:
        self.state.storage_heard(now)  # one attribute: no lock needed
        kind = type(message)
        if kind is protocol.ObjectGet:  # readers elsewhere need objects held here
            return self._write_out(list(message.object_ids))
        if kind is protocol.ObjectDelete:  # held objects deleted on the cluster
            with self._hold_lock:
                self.objects.discard(message.object_ids)
            self._count_held()
            return []
        if kind is not protocol.ObjectData:
            return []
        if message.found and message.location:
            frames = self.located.read(message.object_id, message.location)
            if frames is PENDING:  # fetched from its host now, under that fetch's own deadlines
                with self.lock:
                    self.state.on_storage_answered(message.object_id)
                return []
            with self.lock:
                return self._woken(self.state.on_object(message.object_id, frames is not None, frames or (),
                                                        mapped=True))
        with self.lock:
            return self._woken(self.state.on_object(message.object_id, message.found, frames))

    def _arrived_from_another_host(self, object_id: bytes, frames) -> None:
        with self.lock:
            instructions = self._woken(self.state.on_object(object_id, frames is not None, frames or ()))
        self.io.post(*instructions)

    def on_tick(self, now: float) -> List:
        cpu_percent, rss = self.process.cpu_percent(), private_memory_bytes(self.process)
        with self.lock:
            return self._woken(self.state.on_tick(now, cpu_percent, rss))

    def end_of_cycle(self) -> List:
        instructions = []
        if self._started:
            instructions.append(ToScheduler(protocol.TaskStarted(task_ids=self._started)))
            self._started = []
        if self._results:
            instructions.append(ToScheduler(protocol.ResultBatch(results=self._results)))
            self._results = []
        return instructions

    def perform(self, instruction) -> None:
        kind = type(instruction)
        if kind is Result:
            self._results.append(instruction.result)
        elif kind is Started:
            self._started.append(instruction.task_id)
        elif kind is RelieveMemory:
            self._relieve_memory()
        elif kind is LogWarning:
            logger.warning("worker %r: %s", self.worker_id, instruction.message)
        else:
            raise TypeError(f"worker: no way to carry out {instruction!r}")

    def _relieve_memory(self) -> None:
        """Paused at the memory threshold with nothing running: what this process holds for others goes
        to the host store (which spills to disk beyond its own limit), cached inputs go, and the
        allocator returns freed pages to the system. The next look at the RSS decides (WorkerState)."""
        if self.host_store is not None:
            self.io.carry_out(self._write_out(self.objects.held_ids()))
        self.objects.drop_unpinned()
        gc.collect()
        trim_heap()
        logger.warning("worker %r: paused at its memory threshold with nothing running; freed what it could",
                       self.worker_id)

    def on_loop_error(self, error: BaseException) -> None:
        self._loop_error = error  # run() raises it: the process ends as crashed and is replaced
