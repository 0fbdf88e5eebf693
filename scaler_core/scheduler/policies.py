"""Allocation policies: which worker gets a ready task. One class per policy, one interface.

A policy only reads worker records and a task's capability requirements; it never mutates state,
so each can be unit-tested on plain objects.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

from scaler_core.scheduler.records import TaskRecord, WorkerRecord

class AllocationPolicy:
    name = "base"
    # True when every worker can run every task: then, once `choose` finds no worker for one task,
    # it finds none for any (every worker is full), and no task is ever unrunnable for good.
    uniform = False

    def choose(self, task: TaskRecord, workers: Iterable[WorkerRecord]) -> Optional[WorkerRecord]:
        """The least-loaded worker that may run `task` now, or None."""
        raise NotImplementedError

    def can_ever_run(self, task: TaskRecord, workers: Iterable[WorkerRecord]) -> bool:
        """Whether any of `workers` could run `task` once it is free."""
        raise NotImplementedError

    def on_assign(self, task: TaskRecord, worker: WorkerRecord) -> None:
        pass

    def on_release(self, task: TaskRecord, worker: WorkerRecord) -> None:
        pass


def _least_loaded(candidates: Iterable[WorkerRecord]) -> Optional[WorkerRecord]:
    best = None
    best_load = 2.0
    for worker in candidates:
        held = len(worker.assigned)
        if held >= worker.limit or worker.closing or worker.paused:
            continue
        load = held / worker.limit
        if load < best_load:
            best, best_load = worker, load
    return best


class EvenLoadPolicy(AllocationPolicy):
    """Every worker is equal; capabilities are ignored (the reference's `even` policy)."""

    name = "even"
    uniform = True

    def choose(self, task, workers):
        return _least_loaded(workers)

    def can_ever_run(self, task, workers):
        return any(not worker.closing for worker in workers)


class CapabilityPolicy(AllocationPolicy):
    """A task runs only on workers offering every capability it names.

    Beyond presence, integer quantities are honoured: a worker offering `gpu=2` holds at most two
    `gpu=1` tasks at once. A quantity of -1 on either side means presence only."""

    name = "capability"

    def choose(self, task, workers):
        required = task.required_capabilities()
        return _least_loaded(worker for worker in workers if self._fits_now(required, worker))

    def can_ever_run(self, task, workers):
        required = task.required_capabilities()
        return any(not worker.closing and self._offers(required, worker) for worker in workers)

    def on_assign(self, task, worker):
        for name, quantity in task.required_capabilities().items():
            if quantity > 0:
                worker.capability_usage[name] = worker.capability_usage.get(name, 0) + quantity

    def on_release(self, task, worker):
        for name, quantity in task.required_capabilities().items():
            if quantity > 0:
                worker.capability_usage[name] = worker.capability_usage.get(name, 0) - quantity

    @staticmethod
    def _offers(required: Dict[str, int], worker: WorkerRecord) -> bool:
        for name, quantity in required.items():
            offered = worker.capabilities.get(name)
            if offered is None:
                return False
            if quantity > 0 and offered >= 0 and quantity > offered:
                return False
        return True

    def _fits_now(self, required: Dict[str, int], worker: WorkerRecord) -> bool:
        if not self._offers(required, worker):
            return False
        for name, quantity in required.items():
            offered = worker.capabilities[name]
            if quantity > 0 and offered >= 0 and worker.capability_usage.get(name, 0) + quantity > offered:
                return False
        return True


def choose_near(policy: AllocationPolicy, task: TaskRecord, holder: WorkerRecord,
                workers: Iterable[WorkerRecord]) -> Optional[WorkerRecord]:
    """Placement by locality: where `task`'s stored input lies, unless that is busier than elsewhere.

    Every worker of the holder's cluster maps the input from their host's store without a copy, and
    the holder itself may still have it in memory; a worker on another host would fetch it over the
    network. So the holder, else the least-loaded worker of its cluster, gets the task when it is no
    more loaded than the least-loaded worker anywhere; otherwise that one does (moving the bytes
    beats waiting behind a queue)."""
    workers = list(workers)
    anywhere = policy.choose(task, workers)
    if anywhere is None or anywhere is holder:
        return anywhere
    if policy.choose(task, (holder,)) is holder and _load(holder) <= _load(anywhere):
        return holder
    if anywhere.cluster_id == holder.cluster_id:
        return anywhere
    near = policy.choose(task, [worker for worker in workers if worker.cluster_id == holder.cluster_id])
    return near if near is not None and _load(near) <= _load(anywhere) else anywhere


def _load(worker: WorkerRecord) -> float:
    return len(worker.assigned) / worker.limit


POLICIES = {policy.name: policy for policy in (EvenLoadPolicy, CapabilityPolicy)}


def make_policy(name: str) -> AllocationPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown allocate policy {name!r}; choose one of {sorted(POLICIES)}") from None
