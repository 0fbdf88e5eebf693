"""Allocation policies: which worker gets a ready task. One class per policy, one interface.

A policy only reads worker records and a task's capability requirements; it never mutates state,
so each can be unit-tested on plain objects.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from scaler_core.scheduler.pipeline import SURPLUS_FACTOR
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


# Moving an input a worker holds in its memory means the reader waits while the holder writes it to
# its host store (an ask through the object storage, then a write into shared memory and the reader's
# page faults: ~40 ms for 64 MB measured here), and more across hosts. On a busy host the write also
# takes its CPU from the holder's running task: counted at a third of the write's own speed, the
# transpose-add of W8 made 33 such writes in four runs instead of 50.
ON_DEMAND_WRITE_SECONDS = 0.002
SAME_HOST_BYTES_PER_SECOND = 0.5e9
OTHER_HOST_BYTES_PER_SECOND = 2e8
# A holder may be given up to this many times its pipeline of tasks whose inputs it holds in memory:
# they wait there rather than make it write those inputs out for another worker (no more than the
# pipeline's SURPLUS_FACTOR, past which tasks are taken back). Measured on W8's transpose-add: with
# two pipelines 61 on-demand writes in four runs, with three 33.
HOLDER_QUEUE_FACTOR = SURPLUS_FACTOR


def add_holding(holdings: Optional[Dict[bytes, List[int]]], worker_id: bytes, size: int,
                held: bool) -> Dict[bytes, List[int]]:
    """Count a stored input of `size` bytes that `worker_id` made: [held in its memory, in its host store]."""
    if holdings is None:
        holdings = {}
    counts = holdings.get(worker_id)
    if counts is None:
        counts = holdings[worker_id] = [0, 0]
    counts[0 if held else 1] += size
    return holdings


def choose_for_inputs(policy: AllocationPolicy, task: TaskRecord, holdings: Dict[bytes, List[int]],
                      workers_by_id: Dict[bytes, WorkerRecord], workers: List[WorkerRecord]) -> Optional[WorkerRecord]:
    """Placement by where a task's stored inputs are (`holdings`, see add_holding).

    When some are held in a worker's memory, the choice weighs time, as Dask distributed's
    decide_worker does: the least-loaded worker with a free slot and each worker holding inputs
    (even past its pipeline, up to HOLDER_QUEUE_FACTOR times it) are candidates; each costs its
    queue (tasks ahead times their mean duration) plus moving the inputs it lacks (a write-out on
    demand for held ones, the network for another host's). Otherwise `choose_near` (the holder of
    most bytes, else its host, else anywhere)."""
    holder_id = max(holdings, key=holdings.__getitem__)  # most bytes held in memory, then in the host store
    holder = workers_by_id.get(holder_id)
    if holder is None:  # the maker left; its host store may still have the bytes
        return policy.choose(task, workers)
    if not policy.uniform or not any(counts[0] for counts in holdings.values()):
        return choose_near(policy, task, holder, workers)
    best, best_cost = None, 0.0
    anywhere = policy.choose(task, workers)
    candidates = [anywhere] if anywhere is not None else []
    for worker_id in holdings:
        worker = workers_by_id.get(worker_id)
        if worker is not None and worker is not anywhere and not worker.closing and not worker.paused \
                and len(worker.assigned) < HOLDER_QUEUE_FACTOR * worker.limit:
            candidates.append(worker)
    for worker in candidates:
        cost = _queue_seconds(worker) + _moving_seconds(worker, holdings, workers_by_id)
        if best is None or cost < best_cost:
            best, best_cost = worker, cost
    return best


def choose_beside(policy: AllocationPolicy, task: TaskRecord, sibling: Optional[WorkerRecord],
                  workers: List[WorkerRecord]) -> Optional[WorkerRecord]:
    """Placement of a task without inputs beside `sibling`, the worker making another input of a task
    it feeds: their dependent then reads both from that worker's memory (or its host) instead of
    waiting while one is written out. The sibling takes it while its queue is at most one past its
    pipeline (enough to pair the two; the rest of HOLDER_QUEUE_FACTOR is left for the dependents);
    else the least-loaded worker does."""
    if sibling is not None and policy.uniform and not sibling.closing and not sibling.paused \
            and len(sibling.assigned) <= sibling.limit:
        return sibling
    return policy.choose(task, workers)


def _queue_seconds(worker: WorkerRecord) -> float:
    return len(worker.assigned) / (1 + worker.blocked) * worker.mean_duration


def _moving_seconds(worker: WorkerRecord, holdings: Dict[bytes, List[int]],
                    workers_by_id: Dict[bytes, WorkerRecord]) -> float:
    seconds = 0.0
    for holder_id, (held, written) in holdings.items():
        if holder_id == worker.worker_id:
            continue
        if held:
            seconds += ON_DEMAND_WRITE_SECONDS + held / SAME_HOST_BYTES_PER_SECOND
        holder = workers_by_id.get(holder_id)
        if holder is None or holder.cluster_id != worker.cluster_id:
            seconds += (held + written) / OTHER_HOST_BYTES_PER_SECOND
    return seconds


POLICIES = {policy.name: policy for policy in (EvenLoadPolicy, CapabilityPolicy)}


def make_policy(name: str) -> AllocationPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown allocate policy {name!r}; choose one of {sorted(POLICIES)}") from None
