"""A submitted graph held by the scheduler as arrays: one row index per node, no object per node.

The client announces a graph's shape first (GraphSubmit: dependency CSR, priorities, requested
flags), then streams the nodes' payloads in TaskBatch rows. Node i's task id is the graph id
followed by i as 4 big-endian bytes, so ids map to rows without a dictionary. Per-node state lives
in numpy columns; payloads are packed into one growing buffer; only the rare extras (stored
argument blobs, object inputs, capabilities) and results still needed by dependents are kept in
small dictionaries. A node becomes a `TaskRecord` only when it is handed to a worker.
"""

from __future__ import annotations

import heapq
from typing import Dict, List, Optional, Tuple

import numpy as np

from scaler_core import protocol
from scaler_core.errors import GraphError
from scaler_core.graph_ids import GRAPH_ID_BYTES, NODE_INDEX_BYTES
from scaler_core.scheduler.graph_frontier import make_frontier
from scaler_core.scheduler.policies import add_holding
from scaler_core.scheduler.records import TaskState

MAX_GRAPH_NODES = 1 << 31

_WAITING, _QUEUED, _DONE = TaskState.WAITING, TaskState.QUEUED, TaskState.DONE
_PRIORITY_SHIFT = 1 << 32  # ready-heap key: (-priority) * 2**32 + node index
# A node's neighbourhood is narrow when it has at most this many dependents, each with at most this
# many inputs: its result is then held in its maker's memory. sibling_maker looks at as many of a
# root's dependents, skipping those with more inputs.
MAX_NARROW = 8


def _int_column(data: bytes, dtype, name: str, length: Optional[int] = None) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise GraphError(f"GraphSubmit.{name} is {len(data)} bytes, not a whole number of {size}-byte integers")
    column = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    if length is not None and len(column) != length:
        raise GraphError(f"GraphSubmit.{name} has {len(column)} entries, expected {length}")
    return column.astype(dtype)


class GraphTable:
    def __init__(self, message: "protocol.GraphSubmit", client_id: bytes, force_path: str = ""):
        n = message.node_count
        if len(message.graph_id) != GRAPH_ID_BYTES:
            raise GraphError(f"GraphSubmit.graphId must be {GRAPH_ID_BYTES} bytes, got {len(message.graph_id)}")
        if not 0 < n < MAX_GRAPH_NODES:
            raise GraphError(f"GraphSubmit.nodeCount must be between 1 and {MAX_GRAPH_NODES - 1}, got {n}")
        dep_indptr = _int_column(message.dependency_offsets, np.int64, "dependencyOffsets", n + 1)
        dep_indices = _int_column(message.dependency_indices, np.int32, "dependencyIndices").astype(np.int64)
        if dep_indptr[0] != 0 or dep_indptr[-1] != len(dep_indices) or np.any(np.diff(dep_indptr) < 0):
            raise GraphError("GraphSubmit.dependencyOffsets must rise from 0 to the number of dependency indices")
        owners = np.repeat(np.arange(n, dtype=np.int64), np.diff(dep_indptr))
        if len(dep_indices) and (dep_indices.min() < 0 or np.any(dep_indices >= owners)):
            bad = int(np.flatnonzero((dep_indices < 0) | (dep_indices >= owners))[0])
            raise GraphError(f"GraphSubmit: node {int(owners[bad])} depends on node {int(dep_indices[bad])}; "
                             "every dependency must come earlier in node order (which also rules out cycles)")
        self.graph_id = message.graph_id
        self.client_id = client_id
        self.n = n
        self.priorities = _int_column(message.priorities, np.int32, "priorities", n)
        self.requested = _int_column(message.requested, np.uint8, "requested", n).astype(bool)
        self.frontier = make_frontier(n, dep_indptr, dep_indices, force_path)
        self.state = np.zeros(n, dtype=np.uint8)
        self.arrived = np.zeros(n, dtype=bool)
        self.result_stored = np.zeros(n, dtype=bool)
        self.client_released = np.zeros(n, dtype=bool)
        # requested stored results the client still holds: the graph stays while there are any, so a
        # lost one can be made again from its lineage (a persisted collection read later)
        self.kept = np.zeros(n, dtype=bool)
        self.kept_count = 0
        self.results: Dict[int, bytes] = {}  # inline results of finished nodes whose dependents still need them
        # payload columns
        self.function_ids: List[bytes] = []
        self._function_index: Dict[bytes, int] = {}
        self.function_of = np.zeros(n, dtype=np.int32)
        self.args_buffer = bytearray()
        self.args_start = np.zeros(n, dtype=np.int64)
        self.args_end = np.zeros(n, dtype=np.int64)
        self.flags = np.zeros(n, dtype=np.uint8)  # bit 0 streamOutput, bit 1 notifyStart
        self.extras: Dict[int, tuple] = {}  # node -> (args object id, object inputs, capabilities)
        # progress
        self.ready: List[int] = []  # heap of (-priority) * 2**32 + node
        self.queued_entry = None  # this graph's entry in the scheduler's ready queue, if any
        self.queued_key = None  # and the -priority it was queued at
        self.materialized: Dict[int, object] = {}  # node -> TaskRecord while a record exists
        # node -> (the worker that made its stored result and keeps a copy, its bytes, whether held in memory)
        self.stored_on: Dict[int, Tuple[bytes, int, bool]] = {}
        self.arrived_count = 0
        self.done_count = 0
        self.to_complete: List[int] = []  # succeeded, successors not yet told
        self.to_release: List[int] = []  # finished, dependencies not yet told
        self.dropped = False
        self.recomputed: Dict[int, int] = {}  # node -> times its result was lost and it ran again

    # --- payloads -----------------------------------------------------------------------------

    def add_payload(self, index: int, task: "protocol.Task") -> bool:
        """Store node `index`'s payload; True when it is thereby ready to run."""
        if not 0 <= index < self.n or self.arrived[index]:
            raise GraphError(f"task row for node {index} of graph {self.graph_id.hex()} is out of range or repeated")
        self.arrived[index] = True
        self.arrived_count += 1
        if self.state[index] == _DONE:
            return False  # cancelled or failed upstream before its payload came
        function_index = self._function_index.get(task.function_id)
        if function_index is None:
            function_index = self._function_index[task.function_id] = len(self.function_ids)
            self.function_ids.append(task.function_id)
        self.function_of[index] = function_index
        self.args_start[index] = len(self.args_buffer)
        self.args_buffer += task.args
        self.args_end[index] = len(self.args_buffer)
        self.flags[index] = task.stream_output | (task.notify_start << 1)
        if task.args_stored or task.inputs or task.capabilities:
            self.extras[index] = (task.args_object_id if task.args_stored else b"", list(task.inputs),
                                  list(task.capabilities))
        if self.frontier.remaining(index) == 0:
            self._make_ready(index)
            return True
        return False

    def args_object_ids(self) -> List[bytes]:
        """The ids of the nodes' large argument blobs (sent to the object storage)."""
        return [extra[0] for extra in self.extras.values() if extra[0]]

    def _make_ready(self, index: int) -> None:
        self.state[index] = _QUEUED
        heapq.heappush(self.ready, -int(self.priorities[index]) * _PRIORITY_SHIFT + index)

    def best_ready_key(self) -> Optional[int]:
        """(-priority) of the best ready node, dropping nodes finished while they were queued."""
        while self.ready and self.state[self.ready[0] % _PRIORITY_SHIFT] != _QUEUED:
            heapq.heappop(self.ready)
        return self.ready[0] // _PRIORITY_SHIFT if self.ready else None

    def pop_ready(self) -> Optional[int]:
        if self.best_ready_key() is None:
            return None
        return heapq.heappop(self.ready) % _PRIORITY_SHIFT

    def task_for(self, index: int) -> "protocol.Task":
        """The node as a Task row for a worker, with its dependencies' results as inputs."""
        flags = int(self.flags[index])
        graph_id = self.graph_id
        task = protocol.make_task(
            graph_id + index.to_bytes(NODE_INDEX_BYTES, "big"), self.client_id, self.function_ids[self.function_of[index]],
            bytes(self.args_buffer[self.args_start[index]:self.args_end[index]]), int(self.priorities[index]),
            bool(self.requested[index]), bool(flags & 1), graph_id)
        task.notify_start = bool(flags & 2)
        task.hold_result = not self.requested[index] and self._feeds_narrow_tasks(index)
        extra = self.extras.get(index)
        if extra is not None:
            args_object_id, inputs, capabilities = extra
            if args_object_id:
                task.args_stored = True
                task.args_object_id = args_object_id
            task.inputs.extend(inputs)
            task.capabilities = capabilities
        dependencies = self.frontier.dependencies(index)
        if dependencies:
            results, stored = self.results, self.result_stored
            make_input = protocol.make_object_input
            task.inputs.extend(
                make_input(graph_id + dependency.to_bytes(NODE_INDEX_BYTES, "big"), results.get(dependency, b""),
                           bool(stored[dependency]))
                for dependency in dependencies)
        return task

    # --- outcomes -----------------------------------------------------------------------------

    def mark_done(self, index: int, success: bool, inline_value: Optional[bytes], stored: bool) -> None:
        self.state[index] = _DONE
        self.done_count += 1
        if success:
            self.result_stored[index] = stored
            if not stored:
                self.results[index] = inline_value
            elif self.requested[index] and not self.client_released[index] and not self.kept[index]:
                self.kept[index] = True
                self.kept_count += 1
            self.to_complete.append(index)
        self.to_release.append(index)

    def release_kept(self, index: int) -> None:
        if self.kept[index]:
            self.kept[index] = False
            self.kept_count -= 1

    def reopen(self, index: int) -> List[int]:
        """Node `index` finished, but its result is lost: it must run again (see GraphFrontier.reopen).
        Returns its finished dependencies whose results are gone as well: released ones, except a
        requested stored result its client has not let go of (kept for the client)."""
        self.state[index] = _WAITING
        self.done_count -= 1
        self.result_stored[index] = False
        self.forget_result(index)
        self.recomputed[index] = self.recomputed.get(index, 0) + 1
        for successor in self.frontier.successors(index):
            if self.state[successor] == _QUEUED:  # ready in this table: it must wait for the result again
                self.state[successor] = _WAITING
        return [dependency for dependency in self.frontier.reopen(index) if self.state[dependency] == _DONE
                and not (self.result_stored[dependency] and self.requested[dependency]
                         and not self.client_released[dependency])]

    def wait_again(self, index: int) -> None:
        """Node `index` was handed out but an input of it is being made again: back to waiting."""
        self.state[index] = _WAITING

    def ready_if_free(self, index: int) -> None:
        if self.state[index] == _WAITING and self.arrived[index] and self.frontier.remaining(index) == 0:
            self._make_ready(index)

    def is_done(self, index: int) -> bool:
        return self.state[index] == _DONE

    def still_needed(self, index: int) -> bool:
        return self.frontier.pending(index) > 0

    def flush(self) -> Tuple[bool, List[int]]:
        """Apply the batch of outcomes since the last flush, in bulk.

        Returns (whether nodes became ready, finished nodes whose results nobody needs any more)."""
        became_ready = False
        if self.to_complete:
            batch, self.to_complete = self.to_complete, []
            for index in self.frontier.complete(batch):
                if self.arrived[index] and self.state[index] == _WAITING:
                    self._make_ready(index)
                    became_ready = True
        unneeded = []
        if self.to_release:
            batch, self.to_release = self.to_release, []
            unneeded = [index for index in batch if self.frontier.pending(index) == 0]
            unneeded.extend(index for index in self.frontier.release(batch) if self.state[index] == _DONE)
        return became_ready, unneeded

    def forget_result(self, index: int) -> None:
        self.results.pop(index, None)
        self.stored_on.pop(index, None)

    def holdings_of_inputs(self, index: int) -> Optional[Dict[bytes, List[int]]]:
        """Where the node's stored inputs are (policies.choose_for_inputs): running the node on a
        worker that made some reads them from its own memory or host, moving nothing."""
        if not self.stored_on:
            return None
        stored_on = self.stored_on
        holdings = None
        for dependency in self.frontier.dependencies(index):
            stored = stored_on.get(dependency)
            if stored is not None:
                holdings = add_holding(holdings, *stored)
        return holdings

    def _feeds_narrow_tasks(self, index: int) -> bool:
        """Whether the node has at most MAX_NARROW dependents, each reading at most that many
        inputs: then they can run beside this result (placement by inputs, sibling_maker), and the
        result had best stay in its maker's memory. A wide dependent (a shuffle's join of pieces from
        every worker) reads most of its inputs from elsewhere, and many dependents (a shuffle's 24
        splits of one partition) end up on several workers: such results are written to the host
        store at once, by their makers, rather than on demand while a reader waits."""
        frontier = self.frontier
        successors = frontier.successors(index)
        if not 0 < len(successors) <= MAX_NARROW:
            return False
        return all(len(frontier.dependencies(successor)) <= MAX_NARROW for successor in successors)

    def sibling_maker(self, index: int) -> Optional[bytes]:
        """For a node without dependencies: the worker running, or holding the result of, another
        input of a node it feeds (in dask's transpose `x[i, j] + x[j, i].T`, the other block), so
        the two can be made side by side and read by their dependent from one worker's memory.
        Wide fan-ins (a reduction over many blocks) say nothing of where to go and are skipped."""
        materialized, stored_on = self.materialized, self.stored_on
        for successor in self.frontier.successors(index)[:MAX_NARROW]:
            dependencies = self.frontier.dependencies(successor)
            if len(dependencies) > MAX_NARROW:
                continue
            for dependency in dependencies:
                if dependency == index:
                    continue
                record = materialized.get(dependency)
                if record is not None and record.worker is not None:
                    return record.worker
                stored = stored_on.get(dependency)
                if stored is not None:
                    return stored[0]
        return None

    def finished(self) -> bool:
        return (self.done_count == self.n and self.arrived_count == self.n and not self.to_release
                and not self.materialized and self.kept_count == 0)

    def descendants(self, index: int) -> List[int]:
        return self.frontier.descendants([index])

    def undone_count(self) -> int:
        return self.n - self.done_count

    def ready_count(self) -> int:
        return len(self.ready)
