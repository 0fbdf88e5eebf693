"""What a client sent that is not finished yet, kept to send again when a journaled scheduler restarts
(no I/O: ClientState owns one when the scheduler's welcome says it is resumable).

Plain tasks are kept as the encoded batches they left in, with their task ids; a graph as its
GraphSubmit and its encoded node batches. An entry goes once none of its futures is pending, and
then the argument blobs its tasks stored go too: with a journal the client, not the scheduler,
frees them, since only the client knows that no restart can need them again. Sent again, a batch
keeps only the tasks still pending (the latest row of each: a task re-sent with its inputs' values
replaces its first row), and a graph asks only for the results not delivered yet, unless they stay
on the cluster (keep_on_cluster), which it still asks for so that they are kept.
"""

from __future__ import annotations

from typing import Container, Dict, List, Sequence, Union

from scaler_core import protocol
from scaler_core.graph_ids import node_task_id


class _Batch:
    __slots__ = ("encoded", "task_ids", "blobs")

    def __init__(self, encoded: bytes, task_ids: Sequence[bytes], blobs: Sequence[bytes]):
        self.encoded = encoded
        self.task_ids = tuple(task_ids)
        self.blobs = list(blobs)

    def any_pending(self, pending: Container[bytes]) -> bool:
        return any(task_id in pending for task_id in self.task_ids)


class _Graph:
    __slots__ = ("submit", "kept", "batches", "blobs", "requested_positions", "settled_prefix")

    def __init__(self, submit, kept: bool):
        self.submit = submit
        self.kept = kept
        self.batches: List[bytes] = []
        self.blobs: List[bytes] = []
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

    def resubmit(self, pending: Container[bytes], fetching: Container[bytes]):
        submit = self.submit
        requested = bytearray(submit.requested)
        if not self.kept:  # delivered results are the client's now: the graph need not keep them
            for position in self.requested_positions:
                node_id = self.node_id(position)
                requested[position] = node_id in pending and node_id not in fetching
        return protocol.GraphSubmit(
            graph_id=submit.graph_id, node_count=submit.node_count, dependency_offsets=submit.dependency_offsets,
            dependency_indices=submit.dependency_indices, priorities=submit.priorities, requested=bytes(requested))


class ResendLog:
    def __init__(self):
        self._entries: Dict[int, Union[_Batch, _Graph]] = {}  # arrival -> entry, in the order sent
        self._graphs: Dict[bytes, _Graph] = {}
        self._latest: Dict[bytes, int] = {}  # plain task id -> arrival of its latest row
        self._cancels: Dict[bytes, None] = {}  # pending-only cancels asked for, until their futures are done
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add_tasks(self, encoded_batch: bytes, task_ids: Sequence[bytes], graph_id: bytes = b"",
                  blobs: Sequence[bytes] = ()) -> None:
        """`blobs`: the argument blobs the batch's tasks stored in the object storage."""
        if graph_id:
            graph = self._graphs.get(graph_id)
            if graph is not None:
                graph.batches.append(encoded_batch)
                if not graph.kept:  # a kept result may be made again from its node later: its blob stays
                    graph.blobs.extend(blobs)  # (until this client leaves)
            return
        self._arrivals += 1
        self._entries[self._arrivals] = _Batch(encoded_batch, task_ids, blobs)
        for task_id in task_ids:
            self._latest[task_id] = self._arrivals

    def add_cancel(self, task_id: bytes) -> None:
        self._cancels[task_id] = None

    def pending_cancels(self, pending: Container[bytes]) -> List[bytes]:
        self._cancels = {task_id: None for task_id in self._cancels if task_id in pending}
        return list(self._cancels)

    def add_graph(self, submit, kept: bool = False) -> None:
        self._arrivals += 1
        graph = self._graphs[submit.graph_id] = _Graph(submit, kept)
        self._entries[self._arrivals] = graph

    def prune(self, pending: Container[bytes]) -> List[bytes]:
        """Drop what has no pending future left; returns the argument blobs nothing can need again."""
        freed: List[bytes] = []
        if self._cancels:
            self.pending_cancels(pending)
        for arrival, entry in list(self._entries.items()):
            if entry.any_pending(pending):
                continue
            del self._entries[arrival]
            freed += entry.blobs
            if type(entry) is _Graph:
                del self._graphs[entry.submit.graph_id]
            else:
                for task_id in entry.task_ids:
                    if self._latest.get(task_id) == arrival:
                        del self._latest[task_id]
        return freed

    def replay(self, pending: Container[bytes], fetching: Container[bytes]) -> List[object]:
        """The messages (or encoded batches) that submit the unfinished work again, in the order it
        was first sent. `fetching`: results the client is reading from the object storage already.
        Entries pruned here keep their blobs for the next `prune` to return."""
        messages: List[object] = []
        for arrival, entry in self._entries.items():
            if type(entry) is _Graph:
                if entry.any_pending(pending):
                    messages.append(entry.resubmit(pending, fetching))
                    messages.extend(entry.batches)
                continue
            wanted = [task_id in pending and task_id not in fetching and self._latest.get(task_id) == arrival
                      for task_id in entry.task_ids]
            if all(wanted):
                messages.append(entry.encoded)
            elif any(wanted):
                tasks = [task for task, keep in zip(protocol.decode(entry.encoded).tasks, wanted) if keep]
                messages.append(protocol.encode(protocol.TaskBatch(tasks=tasks)))
        return messages
