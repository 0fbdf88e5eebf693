"""The worker managers connected to the scheduler and their worker groups (no I/O here).

A worker manager (identity ``M|<id>``) registers with `WorkerManagerHello`: what one of its groups
offers. Each tick, `on_tick` describes the situation to the scaling policy (scaling_policies.py) and
carries out its decision through the scheduler's outbox: `StartWorkerGroup` for each group to start
(the id is chosen here, so the group counts as capacity at once), `StopWorkerGroup` for a drained
group once none of its workers holds a task. A draining group's workers are marked `closing`, so
dispatch gives them nothing new.

The manager answers with `WorkerGroupEvent`s: `started` (accepted; a batch job may still queue),
`failed` (with the resource manager's reason: the manager is left alone for `RETRY_AFTER_SECONDS`)
or `ended` (the resource manager ended it: walltime, pre-emption, node failure, or our own stop).
The scheduler then removes the group's workers at once, handing their tasks back to the queue
without counting a retry: the task did not kill its worker, the resource manager took the machine.

A group's workers are the workers whose cluster id is ``K|<group id>``.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from scaler_core import protocol
from scaler_core.scheduler.records import TaskState
from scaler_core.scheduler.scaling_policies import (
    GroupView, ManagerOffer, Requirement, ScalingPolicy, ScalingSnapshot, make_scaling_policy,
)

logger = logging.getLogger(__name__)

MANAGER_PREFIX = b"M|"
GROUP_CLUSTER_PREFIX = b"K|"
RETRY_AFTER_SECONDS = 10.0   # after a failed start, before asking that manager again
HELLO_GRACE_SECONDS = 5.0    # a group asked for this recently may be missing from a manager's hello
DEMAND_SAMPLE = 10000        # queued tasks looked at per tick to learn which capabilities they need


def cluster_id_of(group_id: bytes) -> bytes:
    """The cluster identity the workers of a group report (scaler_cluster --worker-group-id)."""
    return GROUP_CLUSTER_PREFIX + group_id


@dataclass
class ManagerRecord:
    identity: bytes
    offer: ManagerOffer
    kind: str
    last_seen: float
    paused_until: float = 0.0


@dataclass
class GroupRecord:
    group_id: bytes
    manager_id: str
    asked_at: float
    connected: bool = False        # a worker of it said hello at least once
    draining: bool = False
    stop_sent: bool = False
    idle_since: Optional[float] = None
    external_id: str = ""
    workers: List[object] = field(default_factory=list)  # its WorkerRecords, refreshed each tick


class WorkerManagers:
    def __init__(self, outbox, policy: ScalingPolicy, manager_timeout_seconds: float = 30.0):
        self.outbox = outbox
        self.policy = policy
        self.manager_timeout_seconds = manager_timeout_seconds
        self.managers: Dict[str, ManagerRecord] = {}
        self.groups: Dict[bytes, GroupRecord] = {}
        self._sequence = itertools.count(1)
        self._run = os.urandom(3).hex()  # group ids stay unique across scheduler restarts

    # --- from managers --------------------------------------------------------------------------

    def on_hello(self, sender: bytes, hello, now: float) -> None:
        manager_id = hello.manager_id.decode(errors="replace")
        if sender != MANAGER_PREFIX + hello.manager_id:
            logger.warning("scheduler: refused worker manager hello from %r: its identity must be M|%s", sender[:40],
                           manager_id)
            return
        offer = ManagerOffer(manager_id, max(1, hello.workers_per_group),
                             {c.name: c.quantity for c in hello.capabilities}, hello.max_groups)
        known = self.managers.get(manager_id)
        self.managers[manager_id] = ManagerRecord(sender, offer, hello.kind, now,
                                                  known.paused_until if known is not None else 0.0)
        running = set(hello.groups)
        for group_id, group in list(self.groups.items()):
            # what the hello lists is what the manager runs (it may have restarted); a start sent
            # just now may cross the hello on the wire, so recent requests stay
            stale = now - group.asked_at > HELLO_GRACE_SECONDS
            if group.manager_id == manager_id and group_id not in running and stale:
                del self.groups[group_id]
        for group_id in running:
            if group_id not in self.groups:  # the manager outlived a scheduler restart: adopt its groups
                self.groups[group_id] = GroupRecord(group_id, manager_id, now)
        if known is None:
            logger.info("scheduler: worker manager %s (%s) registered: %d workers per group, capabilities %s, "
                        "at most %s groups", manager_id, hello.kind, offer.workers_per_group, offer.capabilities,
                        "unlimited" if offer.max_groups < 0 else offer.max_groups)

    def seen(self, sender: bytes, now: float) -> bool:
        record = self.managers.get(sender[len(MANAGER_PREFIX):].decode(errors="replace"))
        if record is None or record.identity != sender:
            return False
        record.last_seen = now
        return True

    def on_event(self, sender: bytes, event, now: float, has_workers: bool) -> bool:
        """A group event; True when the group's workers must go (it ended). `has_workers`: some of
        its workers are connected now."""
        manager_id = sender[len(MANAGER_PREFIX):].decode(errors="replace")
        group = self.groups.get(event.group_id)
        if group is None or group.manager_id != manager_id:
            return event.event == "ended"
        group.connected = group.connected or has_workers
        name = event.group_id.decode(errors="replace")
        if event.event == "started":
            group.external_id = event.external_id
            logger.info("scheduler: worker manager %s started group %s%s", manager_id, name,
                        f" ({event.external_id})" if event.external_id else "")
            return False
        del self.groups[event.group_id]
        if event.event == "failed" or (event.event == "ended" and not group.connected and not group.stop_sent):
            logger.warning("scheduler: worker manager %s could not start group %s%s: %s; asking it again in %gs",
                           manager_id, name, f" ({group.external_id or event.external_id})"
                           if group.external_id or event.external_id else "", event.reason or "no reason given",
                           RETRY_AFTER_SECONDS)
            record = self.managers.get(manager_id)
            if record is not None:
                record.paused_until = now + RETRY_AFTER_SECONDS
        elif group.stop_sent:
            logger.info("scheduler: worker group %s of %s stopped", name, manager_id)
        else:
            logger.warning("scheduler: worker group %s of %s ended (%s); its tasks run again elsewhere", name,
                           manager_id, event.reason or "no reason given")
        return event.event == "ended"

    # --- each tick ------------------------------------------------------------------------------

    def on_tick(self, state, now: float) -> None:
        for manager_id, record in list(self.managers.items()):
            if now - record.last_seen > self.manager_timeout_seconds:
                logger.warning("scheduler: worker manager %s timed out; its workers stay, unmanaged", manager_id)
                del self.managers[manager_id]
                for group_id in [g for g, group in self.groups.items() if group.manager_id == manager_id]:
                    del self.groups[group_id]
        if not self.managers:
            return
        unmanaged = self._refresh_groups(state.workers, now)
        snapshot = ScalingSnapshot(
            now=now,
            managers=[record.offer for record in self.managers.values()],
            groups=[self._view(group) for group in self.groups.values()],
            demand=demand_of(state) if self.policy.by_capability else {(): state.queued_count() + state.running},
            unmanaged_workers=unmanaged,
            paused=frozenset(manager_id for manager_id, record in self.managers.items() if record.paused_until > now),
        )
        decision = self.policy.decide(snapshot)
        for manager_id in decision.start:
            self._start(manager_id, now)
        for group_id in decision.undrain:
            group = self.groups.get(group_id)
            if group is not None and not group.stop_sent:
                group.draining = False
                for worker in group.workers:
                    worker.closing = False
        for group_id in decision.drain:
            group = self.groups.get(group_id)
            if group is not None:
                group.draining = True
        for group in self.groups.values():
            if group.draining:
                for worker in group.workers:
                    worker.closing = True
                if not group.stop_sent and not any(worker.assigned for worker in group.workers):
                    self._stop(group)

    def _refresh_groups(self, workers, now: float) -> int:
        """Each group's connected workers and idle clock; returns the workers no group owns."""
        for group in self.groups.values():
            group.workers = []
        unmanaged = 0
        for worker in workers.values():
            cluster_id = worker.cluster_id
            group = self.groups.get(cluster_id[len(GROUP_CLUSTER_PREFIX):]) \
                if cluster_id.startswith(GROUP_CLUSTER_PREFIX) else None
            if group is None:
                unmanaged += not worker.closing
            else:
                group.workers.append(worker)
                group.connected = True
        for group in self.groups.values():
            busy = any(worker.assigned for worker in group.workers)
            if busy or not group.connected:
                group.idle_since = None
            elif group.idle_since is None:
                group.idle_since = now
        return unmanaged

    def _view(self, group: GroupRecord) -> GroupView:
        return GroupView(group.group_id, group.manager_id, workers=len(group.workers),
                         busy_workers=sum(1 for worker in group.workers if worker.assigned),
                         pending=not group.connected, draining=group.draining, idle_since=group.idle_since)

    def _start(self, manager_id: str, now: float) -> None:
        record = self.managers[manager_id]
        group_id = f"{manager_id}.{self._run}.{next(self._sequence)}".encode()
        self.groups[group_id] = GroupRecord(group_id, manager_id, now)
        self.outbox.send(record.identity, protocol.StartWorkerGroup(group_id=group_id))
        logger.info("scheduler: asked worker manager %s for group %s", manager_id, group_id.decode())

    def _stop(self, group: GroupRecord) -> None:
        record = self.managers.get(group.manager_id)
        group.stop_sent = True
        if record is not None:
            self.outbox.send(record.identity, protocol.StopWorkerGroup(group_id=group.group_id))
            logger.info("scheduler: asked worker manager %s to stop group %s (drained)", group.manager_id,
                        group.group_id.decode(errors="replace"))

    def status(self) -> List["protocol.WorkerManagerStatus"]:
        """For the monitor: each manager and its groups as of the last tick."""
        return [protocol.WorkerManagerStatus(
            manager_id=manager_id.encode(), kind=record.kind, workers_per_group=record.offer.workers_per_group,
            max_groups=record.offer.max_groups,
            groups=[protocol.WorkerGroupStatus(
                group_id=group.group_id, external_id=group.external_id, workers=len(group.workers),
                busy_workers=sum(1 for worker in group.workers if worker.assigned),
                state="stopping" if group.stop_sent else "draining" if group.draining
                else "running" if group.connected else "pending")
                for group in self.groups.values() if group.manager_id == manager_id])
            for manager_id, record in self.managers.items()]

    def identities(self) -> List[bytes]:
        return [record.identity for record in self.managers.values()]


class WorkerManagerHandlers:
    """Mixin for SchedulerState: the handlers of the messages worker managers send."""

    def _on_WorkerManagerHello(self, sender, message, now):
        self.managers.on_hello(sender, message, now)
        self.outbox.send(sender, self._welcome())

    def _on_WorkerGroupEvent(self, sender, message, now):
        self.managers.seen(sender, now)  # an unknown manager's "ended" still frees its workers' tasks
        cluster_id = cluster_id_of(message.group_id)
        workers = [worker for worker in self.workers.values() if worker.cluster_id == cluster_id]
        if not self.managers.on_event(sender, message, now, has_workers=bool(workers)):
            return
        # The resource manager took these machines: their tasks did not kill them, so they run
        # again without counting a retry (every task counts as handed back).
        for worker in workers:
            self._remove_worker(worker.worker_id, returned=set(worker.assigned))


def requirement_of(task) -> Requirement:
    return tuple(sorted((capability.name, capability.quantity) for capability in task.capabilities)) \
        if task.capabilities else ()


def demand_of(state) -> Dict[Requirement, int]:
    """Tasks queued or running, by the capabilities they need. Queued tasks are sampled (the first
    DEMAND_SAMPLE of the queue); the rest, and graph nodes, count as needing nothing."""
    demand: Dict[Requirement, int] = {}
    looked_at = 0  # queue entries seen: tasks counted, and stale or graph entries (not tasks themselves)
    for item in itertools.islice(state.ready, DEMAND_SAMPLE):
        looked_at += 1
        record = state.tasks.get(item) if type(item) is bytes else None
        if record is not None and record.state == TaskState.QUEUED:
            key = requirement_of(record.task)
            demand[key] = demand.get(key, 0) + 1
    rest = state.queued_count() - looked_at
    if rest > 0:
        demand[()] = demand.get((), 0) + rest
    for worker in state.workers.values():
        if not worker.capabilities:  # the capability allocation gives such workers plain tasks only
            if worker.assigned:
                demand[()] = demand.get((), 0) + len(worker.assigned)
            continue
        for task_id in worker.assigned:
            record = state.tasks.get(task_id)
            key = requirement_of(record.task) if record is not None else ()
            demand[key] = demand.get(key, 0) + 1
    return {key: count for key, count in demand.items() if count > 0}


def scaling_policy_from(settings) -> ScalingPolicy:
    """The policy SchedulerSettings name (checked when the settings were built)."""
    from scaler_core.settings import scaling_policy_of

    return make_scaling_policy(settings.policy_engine_type, scaling_policy_of(settings.policy_content),
                               settings.policy_content, settings.scaling_tasks_per_worker,
                               settings.scaling_idle_seconds)
