"""The scheduler's decisions, as a synchronous state machine without any I/O.

``on_message(sender, message, frames, now)`` and ``on_tick(now)`` feed it; ``take_outgoing()``
returns ``(destination, message, frames)`` triples to send (``OBJECT_STORAGE`` as destination means
the object storage server). Peers are told apart by the first byte of their ZeroMQ identity:
``C`` clients, ``W`` workers, ``K`` cluster supervisors, ``M`` worker managers (worker_managers.py,
which also runs the scaling policy each tick); ``HANDLERS`` (at the end) says which
messages each may send. Every change of a task's state goes through the lifecycle's table
(lifecycle.py), which also keeps the counters the monitor reads.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Set, Tuple

from scaler_core import protocol
from scaler_core.errors import NoWorkerError, WorkerDiedError
from scaler_core.references import MissingInputError
from scaler_core.scheduler.graph_tasks import GraphTasks
from scaler_core.scheduler.lifecycle import FINISH_EVENT, FINISHED, Event, TaskLifecycle
from scaler_core.scheduler.outbox import OBJECT_STORAGE, Outbox
from scaler_core.scheduler.policies import (AllocationPolicy, EvenLoadPolicy, add_holding, choose_beside,
                                            choose_for_inputs)
from scaler_core.scheduler.pipeline import SURPLUS_FACTOR, surplus
from scaler_core.scheduler.plain_lineage import PlainLineage
from scaler_core.scheduler.ready_queue import ReadyQueue
from scaler_core.scheduler.records import ClientRecord, TaskRecord, TaskState, WorkerRecord
from scaler_core.scheduler.resumption import Resumption
from scaler_core.scheduler.worker_managers import WorkerManagerHandlers, WorkerManagers, scaling_policy_from
from scaler_core.serialization import dumps_exception
from scaler_core.settings import SchedulerSettings

logger = logging.getLogger(__name__)

CLIENT, WORKER, CLUSTER, MANAGER = ord("C"), ord("W"), ord("K"), ord("M")


class SchedulerState(GraphTasks, PlainLineage, TaskLifecycle, WorkerManagerHandlers, Resumption):
    def __init__(self, settings: SchedulerSettings, policy: Optional[AllocationPolicy] = None,
                 validate: bool = False):
        """`validate` checks every invariant after each message, tick and dispatch (slow: for tests)."""
        self.settings = settings
        self.policy = policy or EvenLoadPolicy()
        self.tasks: Dict[bytes, TaskRecord] = {}
        self.graphs: Dict[bytes, "GraphTable"] = {}  # declared graphs, held as arrays (graph_tasks)
        self._dirty_graphs: Dict["GraphTable", None] = {}
        # (graph id, node) being made again -> tasks of other graphs, or plain ones, that wait for it
        self._remake_waiters: Dict[Tuple[bytes, int], list] = {}
        self.workers: Dict[bytes, WorkerRecord] = {}
        self.paused_workers: Set[bytes] = set()  # workers past their memory pause threshold
        self.clients: Dict[bytes, ClientRecord] = {}
        self.clusters: Dict[bytes, float] = {}  # cluster supervisor -> last heartbeat
        # cluster supervisor -> (bytes in memory, bytes on disk, memory limit) of its host store
        self.host_stores: Dict[bytes, Tuple[int, int, int]] = {}
        self.ready = ReadyQueue()  # task ids, and (graph,) entries for graphs with ready nodes
        self.outbox = Outbox()
        self.managers = WorkerManagers(self.outbox, scaling_policy_from(settings),
                                       manager_timeout_seconds=settings.worker_timeout_seconds)
        self._init_lifecycle(validate)
        self._init_resumption()
        self._init_plain_lineage()
        self._handlers = {role: {kind: handler.__get__(self) for kind, handler in table.items()}
                          for role, table in HANDLERS.items()}
        self.stopping = False
        self.inbox_id = b""  # the scheduler's inbox (local_link.py), named in welcomes; set by its server
        self._dispatch_needed = False
        self._now = 0.0
        self._last_tick: Optional[float] = None

    # --- entry points ---------------------------------------------------------------------------

    def on_message(self, sender: bytes, message, frames=(), now: float = 0.0) -> bool:
        """Apply one decoded message; returns False (and changes nothing) when it is refused."""
        self._now = now
        handlers = self._handlers.get(sender[0] if sender else None)
        handler = handlers.get(type(message)) if handlers is not None else None
        if handler is None:
            logger.warning("scheduler: refused %s from %r (not allowed for this peer role)",
                           type(message).__name__, sender[:40])
            return False
        handler(sender, message, now)
        if self.validate:
            self.check_invariants()
        return True

    def on_tick(self, now: float) -> None:
        self._now = now
        stalled = self._last_tick is not None and now - self._last_tick > self.settings.heartbeat_interval_seconds * 3
        self._last_tick = now
        if stalled:
            # We were busy (a huge submission) and did not read anyone's heartbeats meanwhile: we
            # cannot judge peers over a period we were not listening, so their clocks restart.
            for worker in self.workers.values():
                worker.last_seen = max(worker.last_seen, now - self.settings.heartbeat_interval_seconds)
            for client in self.clients.values():
                client.last_seen = max(client.last_seen, now - self.settings.heartbeat_interval_seconds)
        worker_deadline = now - self.settings.worker_timeout_seconds
        for worker in [w for w in self.workers.values() if w.last_seen < worker_deadline]:
            logger.warning("scheduler: worker %r timed out (no heartbeat), re-running its tasks", worker.worker_id)
            self._remove_worker(worker.worker_id)
        client_deadline = now - self.settings.client_timeout_seconds
        for client in [c for c in self.clients.values() if c.last_seen < client_deadline]:
            logger.warning("scheduler: client %r timed out (no heartbeat), cancelling its tasks", client.client_id)
            self._remove_client(client.client_id)
        for cluster_id in [c for c, seen in self.clusters.items() if seen < worker_deadline]:
            del self.clusters[cluster_id]
            self.host_stores.pop(cluster_id, None)
        self.managers.on_tick(self, now)
        self._end_recovery_if_due(now)
        self._dispatch_needed = True  # waits measured in time (no-worker grace) are judged per round
        if self.validate:
            self.check_invariants()

    def take_outgoing(self):
        if self._dispatch_needed:
            self._dispatch()
            if self.validate:
                self.check_invariants()
        return self.outbox.take()

    # --- clients --------------------------------------------------------------------------------

    def _client(self, client_id: bytes) -> Optional[ClientRecord]:
        """The sender's record; None (and the client told to go) when we dropped it earlier.

        A client always says hello first on its connection, so any other first message means the
        scheduler timed it out: its tasks were cancelled, it must not carry on as if nothing happened."""
        client = self.clients.get(client_id)
        if client is None:
            if self._ask_back_client(client_id):
                return None
            self.outbox.send(client_id, protocol.SchedulerShutdown(
                reason="the scheduler dropped this client (no heartbeat within the client timeout); "
                       "its tasks were cancelled, create a new Client", reconnect=True))
            return None
        client.last_seen = self._now
        return client

    def _on_ClientHello(self, sender, message, now):
        if sender not in self.clients:
            self.clients[sender] = ClientRecord(sender, now)
            self._client_returned(sender)
        self.outbox.send(sender, self._welcome())

    def _welcome(self):
        return protocol.Welcome(
            object_storage_address=self.settings.object_storage_address,
            scheduler_address=self.settings.scheduler_address,
            heartbeat_interval_seconds=self.settings.heartbeat_interval_seconds,
            client_timeout_seconds=self.settings.client_timeout_seconds,
            resumable=self.journaling, epoch=self.epoch, inbox=self.inbox_id,
        )

    def _on_TaskBatch(self, sender, message, now):
        client = self._client(sender)
        if client is None:
            return
        for task in message.tasks:
            task.client_id = sender
            if task.graph_id and self._add_graph_payload(client, task):
                continue
            self._add_task(client, task)

    def _on_TaskCancel(self, sender, message, now):
        if self._client(sender) is None:
            return
        for task_id in message.task_ids:
            record = self.tasks.get(task_id)
            if record is not None and record.client_id == sender:
                if message.pending_only and self._dispatch_needed:
                    self._dispatch()  # work a free worker would get this round counts as started
                self._cancel(record, pending_only=message.pending_only)
            elif record is None:
                node = self._graph_node(task_id)
                if node is not None and node[0].client_id == sender:
                    self._cancel_graph_node(*node)

    def _on_ObjectDelete(self, sender, message, now):
        """The client fetched these stored results and no longer needs them."""
        if self._client(sender) is None:
            return
        to_delete = []
        for object_id in message.object_ids:
            record = self.tasks.get(object_id)
            node = self._graph_node(object_id) if record is None or record.graph is not None else None
            if node is not None and node[0].client_id == sender:
                self._release_graph_object(*node, to_delete)
            elif record is None:
                to_delete.append(object_id)  # the storage only deletes objects this client owns
            elif record.client_id == sender:
                if record.pending_dependents > 0:
                    record.client_released = True
                else:
                    to_delete.append(object_id)
        if to_delete:
            self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=to_delete))
            self._drop_recipes(to_delete)

    def _on_ClientDisconnect(self, sender, message, now):
        if message.shutdown_scheduler:
            if self.settings.protected:
                self.outbox.send(sender, protocol.ShutdownResponse(
                    accepted=False, reason="the scheduler is protected; start it with --no-protected to allow remote shutdown"))
            else:
                self.outbox.send(sender, protocol.ShutdownResponse(accepted=True))
                self.shutdown("shutdown requested by a client")
        self._remove_client(sender)

    def _remove_client(self, client_id: bytes) -> None:
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        self._journal_client(client_id, False)
        self._drop_client_graphs(client)
        for task_id in list(client.tasks):
            record = self.tasks.get(task_id)
            if record is not None and record.state != TaskState.DONE:
                self._cancel(record, notify_client=False)
        for task_id in list(client.tasks):
            record = self.tasks.get(task_id)
            if record is not None and record.state == TaskState.DONE:
                self._forget(record, force=True)
        self._drop_client_recipes(client_id)
        self.outbox.send(OBJECT_STORAGE, protocol.ObjectDeleteOwner(owner_id=client_id))

    def shutdown(self, reason: str) -> None:
        """Tell every worker, cluster and client that the scheduler stops."""
        self.stopping = True
        self._forget_all_clients_on_shutdown()
        peers = list(self.workers) + list(self.clients) + list(self.clusters) + self.managers.identities()
        for peer in peers:
            self.outbox.send(peer, protocol.SchedulerShutdown(reason=reason))

    # --- heartbeats -----------------------------------------------------------------------------

    def _on_Heartbeat(self, sender, message, now):
        role = sender[0]
        if role == WORKER:
            worker = self.workers.get(sender)
            if worker is None:
                if self._ask_back_worker(sender, now):
                    return
                # we declared it dead and re-ran its tasks: it must start over as a new worker
                self.outbox.send(sender, protocol.SchedulerShutdown(
                    reason="unknown worker (it timed out and its tasks were re-run)", reconnect=True))
                return
            worker.last_seen = now
            worker.cpu_percent = message.cpu_percent
            worker.rss_bytes = message.rss_bytes
            worker.held_bytes = message.object_memory_bytes
            worker.memory_limit_bytes = message.memory_limit_bytes
            if worker.paused != message.paused:
                worker.paused = message.paused
                (self.paused_workers.add if worker.paused else self.paused_workers.discard)(sender)
                self._dispatch_needed = True  # paused: its queued tasks move; resumed: it takes work again
        elif role == CLIENT:
            if self._client(sender) is None:
                return
        elif role == CLUSTER:
            self.clusters[sender] = now
            if message.object_memory_limit_bytes:
                self.host_stores[sender] = (message.object_memory_bytes, message.object_disk_bytes,
                                            message.object_memory_limit_bytes)
        elif role == MANAGER and not self.managers.seen(sender, now):
            # we forgot it (it timed out): it must register again
            self.outbox.send(sender, protocol.SchedulerShutdown(reason="unknown worker manager", reconnect=True))
            return
        self.outbox.send(sender, protocol.HeartbeatEcho())

    # --- workers --------------------------------------------------------------------------------

    def _on_WorkerHello(self, sender, message, now):
        if sender not in self.workers:
            self.workers[sender] = WorkerRecord(sender, message, now)
            logger.info("scheduler: worker %r connected", sender)
        self.outbox.send(sender, self._welcome())
        self._dispatch_needed = True

    def _on_WorkerBlocked(self, sender, message, now):
        worker = self.workers.get(sender)
        if worker is not None:
            worker.set_blocked(message.blocked_tasks)
            worker.last_seen = now
            self._dispatch_needed = True

    def _on_WorkerDisconnect(self, sender, message, now):
        self._remove_worker(sender, returned=set(message.returned_tasks))

    def _on_WorkerDied(self, sender, message, now):
        worker = self.workers.get(message.worker_id)
        if worker is not None and worker.cluster_id == sender:
            logger.warning("scheduler: cluster %r reports worker %r died (exit code %d)", sender,
                           message.worker_id, message.exit_code)
            self._remove_worker(message.worker_id)

    def _on_BalanceResponse(self, sender, message, now):
        worker = self.workers.get(sender)
        if worker is None:
            return
        for task_id in reversed(message.task_ids):  # each goes to the front of the queue: keep their order
            record = self.tasks.get(task_id)
            if record is None or record.worker != sender or record.state != TaskState.ASSIGNED:
                continue
            self._unassign(record, worker)
            record.balance_requested = False
            if record.cancel_requested:
                self._finish(record, "cancelled", b"", False, None)
            else:
                self._enqueue(record)

    def _on_TaskStarted(self, sender, message, now):
        by_client: Dict[bytes, List[bytes]] = {}
        for task_id in message.task_ids:
            record = self.tasks.get(task_id)
            if record is not None and record.worker == sender:
                record.started = True
                if record.task.requested:
                    by_client.setdefault(record.client_id, []).append(task_id)
        for client_id, task_ids in by_client.items():
            if client_id in self.clients:
                self.outbox.send(client_id, protocol.TaskStarted(task_ids=task_ids))

    def _on_TaskLog(self, sender, message, now):
        """A task's log line or warnings: forwarded to its owner unchanged, ahead of its result."""
        record = self.tasks.get(message.task_id)
        if record is not None:
            self.outbox.send(record.client_id, message)

    def _on_ResultBatch(self, sender, message, now):
        worker = self.workers.get(sender)
        if worker is None:
            return
        worker.last_seen = now
        for result in message.results:
            record = self.tasks.get(result.task_id)
            if record is None or record.state != TaskState.ASSIGNED or record.worker != sender:
                continue  # stale: the task was re-run elsewhere or cancelled meanwhile
            self._unassign(record, worker)
            if result.status == "inputLost":
                self._on_input_lost(record, result.value)
                continue
            worker.record_duration(result.profiling.duration_seconds)
            if len(worker.assigned) > SURPLUS_FACTOR * worker.limit:
                self._reclaim_surplus(worker, surplus(len(worker.assigned), worker.limit, worker.mean_duration))
            if result.stored:
                # its worker keeps a copy: dependents are best placed there, the more so the larger it is
                record.result_worker, record.result_size, record.result_held = sender, result.size, result.held
            self._finish(record, result.status, result.value, result.stored, result.profiling, report=result)

    def _remove_worker(self, worker_id: bytes, returned=frozenset()) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        self.paused_workers.discard(worker_id)
        task_ids = list(worker.assigned)
        # Only the oldest assigned task can have been running; the rest were queued behind it.
        suspect = next((task_id for task_id in task_ids if task_id not in returned), None)
        for task_id in reversed(task_ids):  # each goes to the front of the queue: keep their order
            record = self.tasks[task_id]
            self._unassign(record, worker)
            if record.cancel_requested and not (record.cancel_pending_only and task_id == suspect):
                self._finish(record, "cancelled", b"", False, None)
                continue
            record.cancel_requested = record.cancel_pending_only = False  # it may have been running: run it again
            if task_id == suspect:
                record.task.retries += 1
                if record.task.retries >= self.settings.max_task_retries:
                    error = WorkerDiedError(
                        f"task {task_id.hex()} was running when its worker died, "
                        f"{record.task.retries} times; it is not retried again")
                    self._finish(record, "workerDied", dumps_exception(error), False, None)
                    continue
            self._enqueue(record)
        self._dispatch_needed = True  # fewer workers: what can run anywhere at all may have changed

    def _unassign(self, record: TaskRecord, worker: WorkerRecord) -> None:
        worker.assigned.pop(record.task_id, None)
        self.policy.on_release(record, worker)
        record.worker = None
        record.balance_requested = False
        record.started = False

    # --- tasks ----------------------------------------------------------------------------------

    def _add_task(self, client: ClientRecord, task) -> None:
        if task.task_id in self.tasks:
            return
        record = TaskRecord(task)
        self.tasks[task.task_id] = record
        client.tasks[task.task_id] = None
        failure = None
        record.pending_dependents = task.dependent_count
        for dependency_id in task.dependencies:
            dependency = self.tasks.get(dependency_id)
            if dependency is None:
                failure = ("schedulerError", dumps_exception(MissingInputError(
                    f"Missing dependency: task {task.task_id.hex()} depends on {dependency_id.hex()}, "
                    "which the scheduler does not know (never submitted, or already released)")))
                continue
            if dependency.task.dependent_count == 0:
                # A dependent its submitter did not announce (a future passed as an argument): the
                # result stays here until this dependent has finished.
                dependency.pending_dependents += 1
            if dependency.state == TaskState.DONE:
                if dependency.status == "success":
                    self._add_input(record, dependency)
                elif failure is None:
                    failure = (dependency.status, dependency.error_value)
            else:
                if not dependency.dependents:
                    dependency.dependents = []  # records start with a shared empty tuple
                dependency.dependents.append(task.task_id)
                record.waiting_on += 1
        # one move from NEW, straight to where the dependencies put it
        if failure is not None:
            self._finish(record, failure[0], failure[1], False, None)
        elif record.waiting_on:
            record.state = self._shift(record.state, Event.SUBMIT)
        else:
            self._enqueue(record)

    @staticmethod
    def _add_input(record: TaskRecord, dependency: TaskRecord) -> None:
        if type(record.task.inputs) is tuple:
            record.task.inputs = list(record.task.inputs)  # decoded tasks share one empty tuple
        record.task.inputs.append(protocol.make_object_input(
            dependency.task_id, dependency.result_inline or b"", dependency.result_stored))

    def _enqueue(self, record: TaskRecord) -> None:
        returned = record.state == TaskState.ASSIGNED  # back from a worker (death, balancing): it keeps its turn
        record.state = self._shift(record.state, Event.RETURN if returned else Event.READY)
        self.ready.push(record.task.priority, record.task_id, front=returned)

    def _dispatch(self) -> None:
        self._dispatch_needed = False
        if self._dirty_graphs:
            self._flush_graphs()
        if not self.workers:
            self._check_unrunnable_when_no_workers()
            return
        workers = list(self.workers.values())
        deferred = []
        scanned = 0
        ready = self.ready
        uniform = self.policy.uniform
        while ready and scanned < 10000:
            item = ready.peek()
            if type(item) is not bytes:
                ready.pop()
                self._materialize_next(item[0], item)
                continue
            record = self.tasks.get(item)
            if record is None or record.state != TaskState.QUEUED:
                ready.pop()
                continue
            if record.preferred is not None:  # workers that made stored inputs of it
                worker = choose_for_inputs(self.policy, record, record.preferred, self.workers, workers)
            elif record.sibling_maker is not None:
                worker = choose_beside(self.policy, record, self.workers.get(record.sibling_maker), workers)
            else:
                worker = self.policy.choose(record, workers)
            if worker is not None:
                ready.pop()
                self._assign(record, worker)
                continue
            if uniform:
                break  # every worker is full: nothing further in the queue can go either
            ready.pop()
            scanned += 1
            if self._fail_if_unrunnable(record, workers):
                continue
            deferred.append(record)
        for record in reversed(deferred):  # back to the front, in their order
            ready.push(record.task.priority, record.task_id, front=True)
        self._balance(workers)

    def _balance(self, workers) -> None:
        """Idle workers while others hold tasks they have not started: ask for some back."""
        if self.paused_workers:
            self._take_back_from_paused(workers)
        if self.ready:
            return
        idle = [worker for worker in workers if not worker.assigned and not worker.closing and not worker.paused]
        if not idle:
            return
        wanted = len(idle)
        donors = sorted(workers, key=lambda worker: len(worker.assigned) - worker.blocked, reverse=True)
        for donor in donors:
            # the first `1 + blocked` tasks of a worker may be running; only the rest can move
            movable = [task_id for task_id in list(donor.assigned)[1 + donor.blocked:]
                       if not self.tasks[task_id].balance_requested]
            if not movable or wanted <= 0:
                continue
            take = movable[-min(len(movable), max(1, (len(movable) + 1) // 2), wanted * 64):]
            self._ask_back(donor.worker_id, take)
            wanted -= len(take)

    def _take_back_from_paused(self, workers) -> None:
        """A worker paused by its memory gives back every task it has not started (it answers with
        those), as long as some other worker could run them."""
        if not any(not worker.paused and not worker.closing for worker in workers):
            return  # nobody else could take them: they wait where they are
        for worker_id in self.paused_workers:
            assigned = self.workers[worker_id].assigned
            take = [task_id for task_id in assigned if not self.tasks[task_id].balance_requested]
            if take:
                self._ask_back(worker_id, take)

    def _reclaim_surplus(self, worker, count: int) -> None:
        """Ask a worker for `count` of its tasks not started yet, the last it got (see pipeline.py);
        those already asked for count."""
        if count <= 0:
            return
        queued = list(worker.assigned)[1 + worker.blocked:]
        movable = [task_id for task_id in queued if not self.tasks[task_id].balance_requested]
        count -= len(queued) - len(movable)
        if count <= 0:
            return
        take = movable[max(0, len(movable) - count):]
        if take:
            self._ask_back(worker.worker_id, take)

    def _ask_back(self, worker_id: bytes, task_ids: List[bytes]) -> None:
        """A BalanceRequest for tasks not asked for yet; the worker answers with those it has not started."""
        for task_id in task_ids:
            self.tasks[task_id].balance_requested = True
        self.outbox.send(worker_id, protocol.BalanceRequest(task_ids=task_ids))

    def _fail_if_unrunnable(self, record: TaskRecord, workers) -> bool:
        if self.policy.can_ever_run(record, workers):
            record.no_worker_since = None
            return False
        if record.no_worker_since is None:
            record.no_worker_since = self._now
            return False
        if self._now - record.no_worker_since < self.settings.no_worker_grace_seconds:
            return False
        error = NoWorkerError(
            f"no connected worker offers the capabilities {record.required_capabilities()} this task needs "
            f"(waited {self.settings.no_worker_grace_seconds:g}s)")
        self._finish(record, "noWorker", dumps_exception(error), False, None)
        return True

    def _check_unrunnable_when_no_workers(self) -> None:
        if self.workers or not self.ready or self.policy.uniform:
            return
        for item in list(self.ready):
            record = self.tasks.get(item) if type(item) is bytes else None
            if record is not None and record.state == TaskState.QUEUED and record.task.capabilities:
                self._fail_if_unrunnable(record, ())

    def _assign(self, record: TaskRecord, worker: WorkerRecord) -> None:
        record.state = self._shift(record.state, Event.ASSIGN)
        record.worker = worker.worker_id
        worker.assigned[record.task_id] = None
        worker.sent += 1
        self.policy.on_assign(record, worker)
        self.outbox.task(worker.worker_id, record.task)

    def _cancel(self, record: TaskRecord, notify_client: bool = True, pending_only: bool = False) -> None:
        """Cancel a task; `pending_only` spares it once it has started (its worker has the last word)."""
        if record.state == TaskState.DONE:
            return
        if record.state == TaskState.ASSIGNED:
            if pending_only and record.started:
                return
            if not record.cancel_requested or (record.cancel_pending_only and not pending_only):
                record.cancel_requested = True
                record.cancel_pending_only = pending_only
                self.outbox.send(record.worker, protocol.TaskCancel(task_ids=[record.task_id],
                                                                    pending_only=pending_only))
            return
        self._finish(record, "cancelled", b"", False, None, notify_client=notify_client)

    def _finish(self, record: TaskRecord, status: str, value: bytes, stored: bool, profiling,
                notify_client: bool = True, report=None) -> None:
        """Record a task's outcome, report it, and propagate it to dependents (iteratively).

        `report` is the worker's own TaskResult, forwarded to the client as it is."""
        stack = [(record, status, value, stored, profiling)]
        while stack:
            record, status, value, stored, profiling = stack.pop()
            if record.state in FINISHED:
                continue  # reached twice through two failed dependencies
            if record.graph is not None:
                self._finish_graph_node(record.graph, record.node, status, value, stored, profiling,
                                        notify_client, report)
                continue
            record.state = self._shift(record.state, FINISH_EVENT.get(status, Event.FAIL))
            record.status = status
            if status == "success" and stored:
                self._keep_recipe(record)  # its argument blob stays with it (plain_lineage.py)
            elif record.task.args_stored and not self.journaling and record.task_id not in self.recipes:
                # its large argument blob: no run reads it again (with a journal the client frees it: a
                # restart may need it again, see resend_log.py)
                self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=[record.task.args_object_id]))
            if status == "success":
                record.result_stored = stored
                record.result_inline = None if stored else value
            else:
                record.error_value = value
            self._report_outcome(record.client_id, record.task_id, record.task.requested, status, value, stored,
                                 profiling, notify_client and not record.remade, report)
            if record.remade:
                self._settle_plain_remake(record, status, value)
            for dependent_id in record.dependents:
                dependent = self.tasks.get(dependent_id)
                if dependent is None or dependent.state == TaskState.DONE:
                    continue
                if status == "success":
                    self._add_input(dependent, record)
                    if stored and record.result_worker is not None:
                        dependent.preferred = add_holding(dependent.preferred, record.result_worker,
                                                          record.result_size, record.result_held)
                    dependent.waiting_on -= 1
                    if dependent.waiting_on == 0 and dependent.state == TaskState.WAITING:
                        self._enqueue(dependent)
                elif dependent.state == TaskState.ASSIGNED:
                    continue  # cannot happen: a dependent only runs once this result exists
                else:
                    stack.append((dependent, status, value, False, None))
            record.dependents = ()
            for dependency_id in record.task.dependencies:
                dependency = self.tasks.get(dependency_id)
                if dependency is not None:
                    dependency.pending_dependents -= 1
                    self._forget(dependency)
            self._forget(record)

    def _forget(self, record: TaskRecord, force: bool = False) -> None:
        """Drop a finished task once no dependent can still need its result."""
        if record.state != TaskState.DONE or (record.pending_dependents > 0 and not force):
            return
        if record.result_stored and (not record.task.requested or record.client_released
                                     or record.client_id not in self.clients):
            self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=[record.task_id]))
            self._drop_recipes((record.task_id,))
        record.state = self._shift(record.state, Event.FORGET)
        del self.tasks[record.task_id]
        client = self.clients.get(record.client_id)
        if client is not None:
            client.tasks.pop(record.task_id, None)

    # --- monitoring -----------------------------------------------------------------------------

    def queued_count(self) -> int:
        """Tasks waiting in the scheduler's queue (cheap upper bound: may count cancelled ones)."""
        return len(self.ready) + self.graph_ready_count()

    def group_loads(self):
        """Worker count and busy workers per cluster supervisor (a worker adapter's group)."""
        from scaler_core.scheduler.scaling import GroupLoad

        loads: Dict[str, GroupLoad] = {}
        for worker in self.workers.values():
            load = loads.setdefault(worker.cluster_id.decode(errors="replace"), GroupLoad())
            load.workers += 1
            load.busy_workers += bool(worker.assigned)
        return loads

    def task_counts(self) -> Dict[str, int]:
        """Counts by state, kept as tasks move (the monitor asks often)."""
        return dict(self.counts, pending=self.pending, running=self.running)


# Which messages each kind of peer may send, and the method that handles each.
HANDLERS = {
    CLIENT: {
        protocol.ClientHello: SchedulerState._on_ClientHello,
        protocol.TaskBatch: SchedulerState._on_TaskBatch,
        protocol.TaskCancel: SchedulerState._on_TaskCancel,
        protocol.Heartbeat: SchedulerState._on_Heartbeat,
        protocol.ClientDisconnect: SchedulerState._on_ClientDisconnect,
        protocol.ObjectDelete: SchedulerState._on_ObjectDelete,
        protocol.GraphSubmit: SchedulerState._on_GraphSubmit,
    },
    WORKER: {
        protocol.WorkerHello: SchedulerState._on_WorkerHello,
        protocol.ResultBatch: SchedulerState._on_ResultBatch,
        protocol.Heartbeat: SchedulerState._on_Heartbeat,
        protocol.WorkerBlocked: SchedulerState._on_WorkerBlocked,
        protocol.WorkerDisconnect: SchedulerState._on_WorkerDisconnect,
        protocol.TaskLog: SchedulerState._on_TaskLog,
        protocol.TaskWarnings: SchedulerState._on_TaskLog,  # forwarded to the owner like a log line
        protocol.BalanceResponse: SchedulerState._on_BalanceResponse,
        protocol.TaskStarted: SchedulerState._on_TaskStarted,
    },
    CLUSTER: {
        protocol.WorkerDied: SchedulerState._on_WorkerDied,
        protocol.Heartbeat: SchedulerState._on_Heartbeat,
    },
    MANAGER: {
        protocol.WorkerManagerHello: SchedulerState._on_WorkerManagerHello,
        protocol.WorkerGroupEvent: SchedulerState._on_WorkerGroupEvent,
        protocol.Heartbeat: SchedulerState._on_Heartbeat,
    },
}
