"""What the scheduler remembers about each task, worker and client."""

from __future__ import annotations

from typing import Dict, List, Optional

from scaler_core import protocol
from scaler_core.scheduler.pipeline import in_flight_limit, next_mean_duration


class TaskState:
    """Plain ints, not an enum: read several times per task on the hot path (an enum member
    lookup and compare costs 110 ns, a class int 45 ns). The moves between them are in lifecycle.py.

    A GraphTable's state column uses WAITING, QUEUED and DONE for its own nodes; to the scheduler
    every node of a graph without a record is HELD."""

    WAITING = 0    # task whose dependencies are not all done
    QUEUED = 1     # ready, in the scheduler's queue
    ASSIGNED = 2   # sent to a worker (queued there or running)
    DONE = 3       # finished; kept only while dependents still need its result
    HELD = 4       # graph node without a record, waiting or ready inside its GraphTable
    NEW = 5        # not yet admitted
    GONE = 6       # finished and forgotten
    DROPPED = 7    # its client left before it ran: gone without an outcome


class TaskRecord:
    __slots__ = (
        "task", "task_id", "client_id", "state", "worker", "waiting_on", "dependents", "pending_dependents",
        "result_inline", "result_stored", "status", "error_value", "client_released", "cancel_requested",
        "cancel_pending_only", "started", "no_worker_since", "balance_requested", "graph", "node",
        "result_worker", "result_size", "result_held", "preferred", "sibling_maker", "remade",
    )

    def __init__(self, task: "protocol.Task"):
        self.task = task
        self.task_id: bytes = task.task_id  # copies: read on every step of a task's life
        self.client_id: bytes = task.client_id
        self.state = TaskState.NEW
        self.worker: Optional[bytes] = None
        self.waiting_on = 0
        self.dependents: List[bytes] = ()  # becomes a list at the first dependent (most tasks have none)
        self.pending_dependents = 0  # dependents not yet finished: the result must stay available
        self.result_inline: Optional[bytes] = None
        self.result_stored = False
        self.status: Optional[str] = None
        self.error_value: bytes = b""
        self.client_released = False
        self.cancel_requested = False
        self.cancel_pending_only = False  # the cancel asked for spares the task once it has started
        self.started = False  # its worker reported the start (only tasks sent with notify_start)
        self.no_worker_since: Optional[float] = None
        self.balance_requested = False
        self.graph = None  # GraphTable when this record is a node of a declared graph
        self.node = -1
        self.result_worker: Optional[bytes] = None  # the worker that ran it, when its result is stored
        self.result_size = 0  # the stored result's bytes
        self.result_held = False  # the stored result is in its worker's memory, not yet in its host store
        # where its stored inputs are: worker id -> [bytes it holds in memory, bytes in its host store]
        # (policies.choose_for_inputs), or None
        self.preferred: Optional[Dict[bytes, List[int]]] = None
        # a graph root without stored inputs: the worker making another input of a task it feeds
        # (GraphTable.sibling_maker; policies.choose_beside), or None
        self.sibling_maker: Optional[bytes] = None
        self.remade = False  # a plain task run again for a lost result (plain_lineage.py): its client is not told

    def required_capabilities(self) -> Dict[str, int]:
        return {capability.name: capability.quantity for capability in self.task.capabilities}


class WorkerRecord:
    __slots__ = (
        "worker_id", "hostname", "pid", "cluster_id", "capabilities", "assigned", "blocked", "last_seen",
        "mean_duration", "cpu_percent", "rss_bytes", "held_bytes", "sent", "capability_usage", "closing", "limit",
        "paused", "memory_limit_bytes",
    )

    # Until a worker reports durations, assume tasks are slow enough that two in flight suffice.
    INITIAL_MEAN_DURATION = 0.05

    def __init__(self, worker_id: bytes, hello: "protocol.WorkerHello", now: float):
        self.worker_id = worker_id
        self.hostname = hello.hostname
        self.pid = hello.pid
        self.cluster_id = hello.cluster_id
        self.capabilities: Dict[str, int] = {c.name: c.quantity for c in hello.capabilities}
        self.assigned: Dict[bytes, None] = {}  # insertion-ordered set of task ids
        self.blocked = 0
        self.last_seen = now
        self.mean_duration = self.INITIAL_MEAN_DURATION
        self.cpu_percent = 0.0
        self.rss_bytes = 0
        self.held_bytes = 0
        self.sent = 0
        self.capability_usage: Dict[str, int] = {}
        self.closing = False
        self.paused = False  # past its memory pause threshold: it gets no task, and its queued ones move
        self.memory_limit_bytes = 0
        self.limit = in_flight_limit(self.mean_duration, self.blocked)

    def record_duration(self, seconds: float) -> None:
        self.mean_duration = next_mean_duration(self.mean_duration, seconds)
        self.limit = in_flight_limit(self.mean_duration, self.blocked)

    def set_blocked(self, blocked: int) -> None:
        self.blocked = blocked
        self.limit = in_flight_limit(self.mean_duration, self.blocked)


class ClientRecord:
    __slots__ = ("client_id", "last_seen", "tasks", "graphs")

    def __init__(self, client_id: bytes, now: float):
        self.client_id = client_id
        self.last_seen = now
        self.tasks: Dict[bytes, None] = {}
        self.graphs: Dict[bytes, None] = {}
