"""What a client sent that is not finished yet, kept to send again when a journaled scheduler restarts
(no I/O: ClientState owns one when the scheduler's welcome says it is resumable).

Plain tasks are kept as the encoded batches they left in, with their task ids; a graph as its
GraphSubmit and its encoded node batches. An entry goes once none of its
futures is pending. Sent again, a batch keeps only the tasks still pending, and a graph asks only for
the results not delivered yet: every future gets one result, none twice.
"""

from __future__ import annotations

from typing import Container, Dict, List, Sequence, Union

from scaler_core import protocol
from scaler_core.graph_ids import node_task_id


class _Graph:
    __slots__ = ("submit", "batches", "requested_positions", "settled_prefix")

    def __init__(self, submit):
        self.submit = submit
        self.batches: List[bytes] = []
        self.requested_positions = [position for position, flag in enumerate(bytes(submit.requested)) if flag]
        self.settled_prefix = 0  # requested results before this one were delivered: prunes resume here

    def any_pending(self, pending: Container[bytes]) -> bool:
        positions = self.requested_positions
        while self.settled_prefix < len(positions):
            if self.node_id(positions[self.settled_prefix]) in pending:
                return True
            self.settled_prefix += 1  # a delivered result stays delivered
        return False

    def node_id(self, position: int) -> bytes:
        return node_task_id(self.submit.graph_id, position)


class ResendLog:
    def __init__(self):
        self._batches: Dict[int, tuple] = {}  # arrival -> (encoded TaskBatch, its task ids)
        self._graphs: Dict[bytes, _Graph] = {}
        self._arrivals = 0
        self._order: Dict[int, Union[int, bytes]] = {}  # arrival -> batch arrival or graph id, in send order

    def __len__(self) -> int:
        return len(self._batches) + len(self._graphs)

    def add_tasks(self, encoded_batch: bytes, task_ids: Sequence[bytes], graph_id: bytes = b"") -> None:
        if graph_id:
            graph = self._graphs.get(graph_id)
            if graph is not None:
                graph.batches.append(encoded_batch)
            return
        self._arrivals += 1
        self._batches[self._arrivals] = (encoded_batch, tuple(task_ids))
        self._order[self._arrivals] = self._arrivals

    def add_graph(self, submit) -> None:
        self._arrivals += 1
        self._graphs[submit.graph_id] = _Graph(submit)
        self._order[self._arrivals] = submit.graph_id

    def prune(self, pending: Container[bytes]) -> None:
        """Drop what has no pending future left."""
        for arrival, item in list(self._order.items()):
            if type(item) is int:
                if not any(task_id in pending for task_id in self._batches[item][1]):
                    del self._batches[item], self._order[arrival]
            elif not self._graphs[item].any_pending(pending):
                del self._graphs[item], self._order[arrival]

    def replay(self, pending: Container[bytes], fetching: Container[bytes]) -> List[object]:
        """The messages (or encoded batches) that submit the unfinished work again, in the order it
        was first sent. `fetching`: results the client is reading from the object storage already."""
        self.prune(pending)
        messages: List[object] = []
        for item in self._order.values():
            if type(item) is int:
                encoded, task_ids = self._batches[item]
                wanted = [task_id in pending and task_id not in fetching for task_id in task_ids]
                if all(wanted):
                    messages.append(encoded)
                elif any(wanted):
                    tasks = [task for task in protocol.decode(encoded).tasks
                             if task.task_id in pending and task.task_id not in fetching]
                    messages.append(protocol.encode(protocol.TaskBatch(tasks=tasks)))
                continue
            graph = self._graphs[item]
            requested = bytearray(graph.submit.node_count)
            for position in graph.requested_positions:
                node_id = graph.node_id(position)
                requested[position] = node_id in pending and node_id not in fetching
            submit = graph.submit
            messages.append(protocol.GraphSubmit(
                graph_id=submit.graph_id, node_count=submit.node_count, dependency_offsets=submit.dependency_offsets,
                dependency_indices=submit.dependency_indices, priorities=submit.priorities, requested=bytes(requested)))
            messages.extend(graph.batches)
        return messages
