"""A worker's decisions, without sockets or threads: events in, instructions out.

`WorkerState` knows the tasks this worker holds and where each one is in its life here:

    accepted -> waiting for objects -> ready -> running -> reported
         \\____________________________/
          cancelled / given back / failed (an input is missing)

The worker process (`process.py`) feeds it what arrives from the scheduler and the object
storage, what its runner threads report and the passing of time, and carries out the returned
instructions. Runner threads call `take_next` and `finish` as well, so the process serialises
every call with one lock; nothing in here blocks, sleeps or touches a socket.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

from scaler_core import protocol
from scaler_core.errors import ObjectStorageSilentError, TaskTimeoutError
from scaler_core.instructions import ConnectStorage, Leave, ToScheduler, ToStorage
from scaler_core.serialization import dumps_exception, dumps_warnings, frames_size
from scaler_core.settings import OBJECT_STORAGE_SILENCE_SECONDS, WorkerSettings
from scaler_core.worker.objects import ObjectCache
from scaler_core.worker.runner import FunctionCache, Outcome

# --- instructions -----------------------------------------------------------------------------


@dataclass(slots=True)  # one per task: a frozen dataclass costs twice as much to build
class Result:
    """One TaskResult for the scheduler; the process batches them into ResultBatch messages.

    `client_id`, when set, names the client a lone result may go to first, straight to its inbox on
    this host (direct_results.py); the scheduler then hears it was delivered."""
    result: object
    client_id: bytes = b""


@dataclass(slots=True)
class Started:
    """A task sent with notify_start began running; batched into TaskStarted messages."""
    task_id: bytes


@dataclass(frozen=True)
class WakeRunners:
    """A task became ready: a waiting runner may take it."""


@dataclass(frozen=True)
class LogWarning:
    """A line for the worker's log."""
    message: str


@dataclass(frozen=True)
class RelieveMemory:
    """The worker paused at its memory threshold: write out the results it holds in memory, drop its
    caches and return freed memory to the system, so that it may get below and carry on."""


@dataclass(frozen=True)
class Stop(Leave):
    """Leave the process: send what is queued, then `goodbye` (if any), then exit. `replace`: exit
    so the cluster starts a fresh worker (this one stopped a running task); else the scheduler is
    gone or told us to stop. `unexpected`: worth an error in the log."""
    reason: str
    replace: bool = False
    unexpected: bool = False
    linger_ms: int = field(default=2000, kw_only=True)  # results of a stopped task must get out


Instruction = object


@dataclass
class WorkerLimits:
    death_timeout_seconds: float = WorkerSettings.death_timeout_seconds
    task_timeout_seconds: float = WorkerSettings.task_timeout_seconds
    memory_limit_bytes: int = WorkerSettings.memory_limit_bytes
    memory_pause_fraction: float = WorkerSettings.memory_pause_fraction
    # paused with nothing running, how long freeing memory gets to work before the process is replaced
    pause_relief_seconds: float = 2.0
    storage_silence_seconds: float = OBJECT_STORAGE_SILENCE_SECONDS

    # the own memory (RSS less mapped shared objects) past which no new task starts (0: never)
    pause_bytes: int = field(init=False, default=0)

    def __post_init__(self):
        if self.memory_limit_bytes > 0:
            self.pause_bytes = int(self.memory_limit_bytes * self.memory_pause_fraction)


@dataclass
class WorkerState:
    objects: ObjectCache
    functions: FunctionCache
    limits: WorkerLimits = field(default_factory=WorkerLimits)
    last_echo: float = 0.0

    def __post_init__(self):
        self.tasks: Dict[bytes, "protocol.Task"] = {}      # every task held, in arrival order
        self.waiting_objects: Dict[bytes, Set[bytes]] = {}  # task id -> object ids still missing
        self.requested_objects: Set[bytes] = set()
        self._fetched_elsewhere: Set[bytes] = set()  # requested objects the storage located on another host
        self._storage_heard: Optional[float] = None  # last message from the storage while we waited on it
        self.ready: List[Tuple[int, int, bytes]] = []       # heap of (-priority, arrival, task id)
        self.running: Dict[bytes, float] = {}               # task id -> start time
        self.blocked = 0  # running tasks waiting on nested tasks: each lends its slot to another
        # past the memory pause threshold: no new task starts (see on_memory); `relieved_at` since the
        # process was asked to free what it can while paused with nothing running
        self.paused = False
        self.relieved_at: Optional[float] = None
        self.ran_any = False         # a fresh process past its threshold is not helped by another one
        self.never_pause = False     # set when this process alone is past its threshold (see on_memory)
        self.storage_address: Optional[str] = None
        self.leaving = False  # a Stop was decided: a result that still comes may be run again elsewhere
        self._arrivals = 0

    # --- from the scheduler -------------------------------------------------------------------

    def on_welcome(self, now: float, storage_address: str) -> List[Instruction]:
        self.last_echo = now
        if self.storage_address is not None:
            return []
        self.storage_address = storage_address
        return [ConnectStorage(storage_address)]

    def on_heartbeat_echo(self, now: float) -> List[Instruction]:
        self.last_echo = now
        return []

    def on_tasks(self, tasks: Sequence) -> List[Instruction]:
        instructions: List[Instruction] = []
        fetch: List[bytes] = []
        became_ready = False
        for task in tasks:
            if task.task_id in self.tasks:
                continue
            self.tasks[task.task_id] = task
            if self.storage_address is None:
                error = RuntimeError("worker got a task before its welcome")
                instructions += self._report(Outcome(task, "failed", dumps_exception(error)))
                continue
            needed = _object_ids_of(task)
            self.objects.pin(needed)
            missing = {object_id for object_id in needed
                       if not (self.objects.has(object_id) or
                               (object_id == task.function_id and self.functions.has(object_id)))}
            if missing:
                self.waiting_objects[task.task_id] = missing
                fresh = [object_id for object_id in missing if object_id not in self.requested_objects]
                self.requested_objects.update(fresh)
                fetch += fresh
            else:
                self._make_ready(task)
                became_ready = True
        if fetch:
            instructions.append(ToStorage(protocol.ObjectGet(object_ids=fetch)))
        if became_ready:
            instructions.append(WakeRunners())
        return instructions

    def on_cancel(self, task_ids: Sequence[bytes], pending_only: bool) -> List[Instruction]:
        instructions: List[Instruction] = []
        for task_id in task_ids:
            task = self.tasks.get(task_id)
            if task is None:
                continue
            is_running = task_id in self.running
            if pending_only and (is_running or task_id == self.next_to_start()):
                continue  # as good as started: it completes and reports its result as usual
            if is_running:
                # A running Python call cannot be interrupted safely: report it cancelled and make
                # way for a fresh process, handing back everything not started.
                return instructions + self._stop_with(Outcome(task, "cancelled"), "task cancelled while running")
            self._forget_unstarted(task_id)
            instructions += self._report(Outcome(task, "cancelled"))
        return instructions

    def on_balance_request(self, task_ids: Sequence[bytes]) -> List[Instruction]:
        """Give back the requested tasks that have not started; they will not run here."""
        wanted = set(task_ids)
        returned = [entry[2] for entry in self.ready if entry[2] in wanted]
        returned += [task_id for task_id in dict.fromkeys(task_ids) if task_id in self.waiting_objects]
        for task_id in returned:
            self._forget_unstarted(task_id)
            task = self.tasks.pop(task_id)
            self.objects.unpin(_object_ids_of(task))
        return [ToScheduler(protocol.BalanceResponse(task_ids=returned))]

    def on_terminate(self, reason: str) -> List[Instruction]:
        """Asked to stop (SIGTERM: a resource manager takes the machine back): hand back every task,
        the running one too, so it runs again elsewhere without counting a retry (its result, if it
        still comes, is ignored), and leave without a successor."""
        goodbye = protocol.WorkerDisconnect(returned_tasks=list(self.tasks), reason=reason)
        return [self._stopping(Stop(reason, goodbye=goodbye))]

    def on_reintroduce(self, now: float) -> List[Instruction]:
        """The scheduler restarted and forgot what it gave us: the tasks not started go (their clients
        send them again); a running one finishes, and its result counts if the task comes back here
        meanwhile (a task already held is not taken twice). The caller says hello again."""
        self.last_echo = now
        for task_id in [task_id for task_id in self.tasks if task_id not in self.running]:
            self._forget_unstarted(task_id)
            self.objects.unpin(_object_ids_of(self.tasks.pop(task_id)))
        return []

    def on_scheduler_shutdown(self, reason: str, reconnect: bool) -> List[Instruction]:
        # reconnect: the scheduler dropped us (it thought us dead); a fresh worker takes our place
        return [self._stopping(Stop(f"scheduler says {reason}", replace=reconnect, linger_ms=0))]

    # --- from the object storage --------------------------------------------------------------

    def on_object(self, object_id: bytes, found: bool, frames: Sequence, mapped: bool = False) -> List[Instruction]:
        """An object arrived (`mapped`: a view of a host store's file, kept only while needed) or is gone."""
        self.requested_objects.discard(object_id)
        self._fetched_elsewhere.discard(object_id)
        if found:
            self.objects.put(object_id, list(frames), mapped=mapped)
        instructions: List[Instruction] = []
        became_ready = False
        for task_id, missing in list(self.waiting_objects.items()):
            if object_id not in missing:
                continue
            if not found:  # the scheduler decides: make it again (a graph's result) or fail the task
                del self.waiting_objects[task_id]
                instructions += self._report(Outcome(self.tasks[task_id], "inputLost", inline=object_id))
                continue
            missing.discard(object_id)
            if not missing:
                del self.waiting_objects[task_id]
                self._make_ready(self.tasks[task_id])
                became_ready = True
        if became_ready:
            instructions.append(WakeRunners())
        return instructions

    def on_storage_answered(self, object_id: bytes) -> None:
        """The storage said where the object is; it is read from its host, not awaited from the storage."""
        if object_id in self.requested_objects:
            self._fetched_elsewhere.add(object_id)

    # --- from the runner threads --------------------------------------------------------------

    def can_start(self) -> bool:
        # a paused worker still lends the slots of tasks blocked on their nested tasks: those may be
        # the only ones that can unblock them
        return bool(self.ready) and len(self.running) < 1 + self.blocked and (self.blocked > 0 or not self.paused)

    def take_next(self, now: float) -> Tuple[Optional["protocol.Task"], List[Instruction]]:
        """The task a free runner runs next, or None when nothing may start now."""
        while self.can_start():
            task = self.tasks.get(heapq.heappop(self.ready)[2])
            if task is None:
                continue
            self.running[task.task_id] = now
            self.ran_any = True
            return task, [Started(task.task_id)] if task.notify_start else []
        return None, []

    def finish(self, outcome: Outcome) -> List[Instruction]:
        self.running.pop(outcome.task.task_id, None)
        return self._report(outcome) + ([WakeRunners()] if self.can_start() else [])

    def on_block(self) -> List[Instruction]:
        self.blocked += 1
        return [ToScheduler(protocol.WorkerBlocked(blocked_tasks=self.blocked))] + \
            ([WakeRunners()] if self.can_start() else [])

    def on_unblock(self) -> List[Instruction]:
        self.blocked -= 1
        return [ToScheduler(protocol.WorkerBlocked(blocked_tasks=self.blocked))]

    # --- time ---------------------------------------------------------------------------------

    def on_tick(self, now: float, cpu_percent: float, rss_bytes: int) -> List[Instruction]:
        """Once a heartbeat interval: report load, enforce the limits, notice a silent scheduler."""
        if now - self.last_echo > self.limits.death_timeout_seconds:
            silent = f"scheduler silent for {self.limits.death_timeout_seconds:.0f}s"
            return [self._stopping(Stop(silent, unexpected=True))]
        instructions: List[Instruction] = self.on_memory(now, rss_bytes, cpu_percent, heartbeat=True)
        if isinstance(instructions[-1], Stop):
            return instructions
        instructions += self._check_storage(now)
        timeout = self.limits.task_timeout_seconds
        if timeout > 0:
            overdue = [task_id for task_id, started in self.running.items() if now - started > timeout]
            if overdue:
                error = TaskTimeoutError(f"task exceeded the task timeout of {timeout:g}s and was stopped")
                outcome = Outcome(self.tasks[overdue[0]], "timeout", dumps_exception(error))
                return instructions + self._stop_with(outcome, "task timeout")
        limit = self.limits.memory_limit_bytes
        if limit > 0 and self.running and rss_bytes > limit:
            error = MemoryError(f"the worker's memory ({rss_bytes / 2**20:.0f} MiB) exceeded its limit of "
                                f"{limit / 2**20:.0f} MiB while running this task; it was stopped")
            outcome = Outcome(self.tasks[next(iter(self.running))], "failed", dumps_exception(error))
            return instructions + self._stop_with(outcome, "memory limit")
        return instructions

    def on_memory(self, now: float, rss_bytes: int, cpu_percent: float = 0.0,
                  heartbeat: bool = False) -> List[Instruction]:
        """The process's own memory, at each tick and after tasks (at most every few milliseconds) when
        a memory limit is set.

        Past the pause threshold no new task starts; the scheduler hears it at once (a heartbeat
        saying `paused`), gives this worker nothing more and takes back what it queued. Below again,
        the worker carries on. Paused with nothing running, nothing here will finish and free
        memory: the process frees what it can (RelieveMemory), and if that is not enough after
        `pause_relief_seconds`, it is replaced by a fresh one rather than left paused for ever (a
        hang) -- unless it has run nothing yet: then its own footprint is past the threshold, a successor would be
        too, and it stops pausing (with a warning) instead of being replaced again and again."""
        threshold = 0 if self.never_pause else self.limits.pause_bytes
        was_paused = self.paused
        self.paused = threshold > 0 and rss_bytes > threshold
        instructions: List[Instruction] = []
        if heartbeat or self.paused != was_paused:
            instructions.append(self._heartbeat(rss_bytes, cpu_percent))
        if not self.paused:
            self.relieved_at = None
            if was_paused and self.can_start():
                instructions.append(WakeRunners())
            return instructions
        if self.running:
            return instructions
        if self.relieved_at is None:
            self.relieved_at = now
            return instructions + [RelieveMemory()]
        if now - self.relieved_at < self.limits.pause_relief_seconds:
            return instructions
        reason = (f"memory ({rss_bytes / 2**20:.0f} MiB) stays past the pause threshold "
                  f"({threshold / 2**20:.0f} MiB) with nothing running")
        if not self.ran_any:
            self.never_pause, self.paused = True, False
            instructions += [self._heartbeat(rss_bytes, cpu_percent),
                             LogWarning(f"the worker's {reason} before its first task: it does not pause "
                                        "(raise the worker memory limit or its pause fraction)")]
            return instructions + ([WakeRunners()] if self.can_start() else [])
        goodbye = protocol.WorkerDisconnect(returned_tasks=list(self.tasks), reason=reason)
        return instructions + [self._stopping(Stop(reason, replace=True, unexpected=True, goodbye=goodbye))]

    # --- decisions shared by the events above -------------------------------------------------

    def _heartbeat(self, memory_bytes: int, cpu_percent: float) -> ToScheduler:
        return ToScheduler(protocol.Heartbeat(
            cpu_percent=cpu_percent, rss_bytes=memory_bytes, queued_tasks=len(self.ready) + len(self.waiting_objects),
            blocked_tasks=self.blocked, object_memory_bytes=self.objects.held_bytes, paused=self.paused,
            memory_limit_bytes=max(0, self.limits.memory_limit_bytes)))

    def storage_heard(self, now: float) -> None:
        self._storage_heard = now

    def _check_storage(self, now: float) -> List[Instruction]:
        """While objects are awaited from the storage: ask it whether it is alive, and fail the tasks
        waiting on it once it has said nothing for too long (it is gone: waiting longer is a hang)."""
        awaited = self.requested_objects - self._fetched_elsewhere
        if not awaited or self._storage_heard is None:
            self._storage_heard = now  # silence counts only while we wait
            return []
        limit = self.limits.storage_silence_seconds
        if now - self._storage_heard <= limit:
            return [ToStorage(protocol.Heartbeat())]
        instructions: List[Instruction] = []
        for object_id in awaited:
            self.requested_objects.discard(object_id)
            error = ObjectStorageSilentError(
                f"object {object_id.hex()} never came: the object storage at {self.storage_address} has said "
                f"nothing for {limit:.0f}s")
            for task_id, missing in list(self.waiting_objects.items()):
                if object_id in missing:
                    del self.waiting_objects[task_id]
                    instructions += self._report(Outcome(self.tasks[task_id], "failed", dumps_exception(error)))
        self._storage_heard = now
        return instructions

    def next_to_start(self) -> Optional[bytes]:
        """The task a free slot takes next: as good as started (a process pool's call queue counts
        as running too). While nothing is ready, the oldest task still fetching its inputs."""
        if len(self.running) >= 1 + self.blocked or self.paused:
            return None
        if self.ready:
            return self.ready[0][2]
        return next((task_id for task_id in self.tasks if task_id not in self.running), None)

    def _make_ready(self, task) -> None:
        self._arrivals += 1
        heapq.heappush(self.ready, (-task.priority, self._arrivals, task.task_id))

    def _forget_unstarted(self, task_id: bytes) -> None:
        if any(entry[2] == task_id for entry in self.ready):
            self.ready = [entry for entry in self.ready if entry[2] != task_id]
            heapq.heapify(self.ready)
        self.waiting_objects.pop(task_id, None)

    def _report(self, outcome: Outcome) -> List[Instruction]:
        """The task is done here: unpin its inputs and send its result (a large one to the storage)."""
        task = outcome.task
        if self.tasks.pop(task.task_id, None) is not None:
            self.objects.unpin(_object_ids_of(task))
        instructions: List[Instruction] = []
        if outcome.warnings:  # ahead of the result, on the same path: the caller has them in time
            instructions.append(ToScheduler(protocol.TaskWarnings(
                task_id=task.task_id, graph_id=task.graph_id, warnings=dumps_warnings(outcome.warnings))))
        stored = outcome.frames is not None
        if stored and not outcome.held:
            if outcome.location:
                # in this host's store: the storage learns where, and a dependent that runs on this
                # host maps the file without asking anyone
                instructions.append(ToStorage(protocol.ObjectPut(
                    object_id=task.task_id, owner_id=task.client_id, location=outcome.location, size=outcome.size)))
            else:
                instructions.append(ToStorage(protocol.ObjectPut(object_id=task.task_id, owner_id=task.client_id),
                                              outcome.frames))
                # kept here too (within the cache's budget): a dependent that runs on this worker
                # reads it without a round trip through the object storage
                self.objects.put(task.task_id, outcome.frames)
        size = (outcome.size or frames_size(outcome.frames)) if stored else 0
        # straight to its client only what the scheduler would forward unchanged, with nothing that
        # must reach the client before it (warnings, printed output), and nothing once leaving (the
        # scheduler may have the task run again, and only that outcome counts)
        direct = outcome.status == "success" and not stored and task.requested and not task.graph_id \
            and not task.stream_output and not outcome.warnings and not self.leaving
        instructions.append(Result(protocol.make_result(task.task_id, outcome.status, outcome.inline, stored,
                                                        outcome.profiling, size, outcome.held),
                                   task.client_id if direct else b""))
        return instructions

    def _stopping(self, stop: Stop) -> Stop:
        self.leaving = True
        return stop

    def _stop_with(self, outcome: Outcome, reason: str) -> List[Instruction]:
        """Report `outcome`, hand back every task not running, and leave for a fresh process."""
        instructions = self._report(outcome)
        returned = [task_id for task_id in self.tasks if task_id not in self.running]
        goodbye = protocol.WorkerDisconnect(returned_tasks=returned, reason=reason)
        return instructions + [self._stopping(Stop(reason, replace=True, goodbye=goodbye))]


def _object_ids_of(task) -> List[bytes]:
    ids = [task.function_id]
    if task.args_stored:
        ids.append(task.args_object_id)
    ids.extend(item.object_id for item in task.inputs if item.stored)
    return ids
