"""The scheduler's handling of declared graphs (GraphSubmit + rows), mixed into SchedulerState.

A graph lives in a GraphTable (arrays); the scheduler's ready queue holds one entry per graph with
ready nodes, keyed by its best node's priority. When that entry comes up, the best node becomes a
TaskRecord (`_materialize_next`) and from then on follows the plain-task path (assignment,
balancing, worker death, cancel) until it finishes; its outcome goes back into the table.
Successor release and result retention are applied per graph in bulk, once per dispatch round
(`_flush_graphs`), so a burst of results is one frontier operation, not one per result.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

from scaler_core import protocol
from scaler_core.errors import GraphError
from scaler_core.graph_ids import node_task_id, split_node_task_id
from scaler_core.scheduler.graph_table import GraphTable
from scaler_core.scheduler.lifecycle import FINISH_EVENT, Event
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.records import TaskRecord, TaskState
from scaler_core.serialization import dumps_exception

logger = logging.getLogger(__name__)


class GraphTasks:
    """Mixin for SchedulerState: needs tasks, graphs, clients, ready, outbox and the lifecycle's moves."""

    def _on_GraphSubmit(self, sender, message, now):
        client = self._client(sender)
        if client is None or message.graph_id in self.graphs:
            return
        try:
            frontier = self.settings.graph_frontier
            graph = GraphTable(message, sender, "" if frontier == "auto" else frontier)
        except GraphError as error:
            logger.warning("scheduler: refused a graph from %r: %s", sender, error)
            self._refuse_graph(sender, message, error)
            return
        self.graphs[graph.graph_id] = graph
        client.graphs[graph.graph_id] = None
        self._shift(TaskState.NEW, Event.ADMIT, graph.n)

    def _refuse_graph(self, client_id: bytes, message, error: GraphError) -> None:
        """Fail every node the client asked for, so no future waits for a graph we will not run."""
        value = dumps_exception(error)
        requested = bytes(message.requested)
        count = min(message.node_count, len(requested), 1 << 24)
        for index in range(count):
            if requested[index]:
                self.outbox.result(client_id, protocol.TaskResult(
                    task_id=node_task_id(message.graph_id, index), status="schedulerError", value=value,
                    stored=False, profiling=protocol.Profiling()))

    def _graph_node(self, task_id: bytes) -> Optional[Tuple[GraphTable, int]]:
        split = split_node_task_id(task_id)
        if split is None:
            return None
        graph = self.graphs.get(split[0])
        if graph is None or split[1] >= graph.n:
            return None
        return graph, split[1]

    def _add_graph_payload(self, client, task) -> bool:
        """Store a row of a declared graph; False when the row belongs to no declared graph."""
        found = self._graph_node(task.task_id)
        if found is None or found[0].graph_id != task.graph_id or found[0].client_id != client.client_id:
            return False
        graph, index = found
        try:
            if graph.add_payload(index, task):
                self._queue_graph(graph)
        except GraphError as error:
            logger.warning("scheduler: %s", error)
        return True

    def _queue_graph(self, graph: GraphTable) -> None:
        """Keep the graph's entry in the ready queue in step with its best ready node."""
        key = graph.best_ready_key()
        if key is None:
            return
        if graph.queued_key is not None and graph.queued_key <= key:
            return  # its entry already sits at this priority or a better one
        graph.queued_entry = (graph,)  # a fresh object: an older entry of this graph becomes stale
        graph.queued_key = key
        self.ready.push(-key, graph.queued_entry)
        self._dispatch_needed = True  # the graph's nodes became ready inside its table: no move of ours says so

    def _materialize_next(self, graph: GraphTable, entry) -> None:
        """The graph's entry reached the front of the queue: its best node becomes a queued record."""
        if graph.queued_entry is not entry or graph.dropped:
            return  # stale: superseded by a better entry, or the graph is gone
        graph.queued_entry = graph.queued_key = None
        index = graph.pop_ready()
        if index is not None:
            record = TaskRecord(graph.task_for(index))
            record.state = self._shift(TaskState.HELD, Event.MATERIALIZE)
            record.graph, record.node = graph, index
            record.preferred = graph.holdings_of_inputs(index)
            if record.preferred is None and not len(graph.frontier.dependencies(index)):
                record.sibling_maker = graph.sibling_maker(index)
            graph.materialized[index] = record
            self.tasks[record.task_id] = record
            self.ready.push(record.task.priority, record.task_id, front=True)
        self._queue_graph(graph)

    def _finish_graph_node(self, graph: GraphTable, index: int, status: str, value: bytes, stored: bool,
                           profiling, notify_client: bool = True, report=None) -> None:
        """Record a node's outcome; a failure or cancel reaches every node downstream at once."""
        self._settle_graph_node(graph, index, status, value, stored, profiling, notify_client, report)
        if status != "success":
            for descendant in graph.descendants(index):
                self._settle_graph_node(graph, descendant, status, value, False, None, notify_client, None)
        self._dirty_graphs[graph] = None  # applied at the next dispatch round, which the outcome asked for

    def _settle_graph_node(self, graph, index, status, value, stored, profiling, notify_client, report) -> None:
        if graph.is_done(index):
            return
        record = graph.materialized.pop(index, None)
        event = FINISH_EVENT.get(status, Event.FAIL)
        if record is None:
            done = self._shift(TaskState.HELD, event)
        else:
            done = record.state = self._shift(record.state, event)
            del self.tasks[record.task_id]
        # the outcome lives on in the graph's table (for dependents), not in a record
        gone = self._shift(done, Event.FORGET)
        if record is not None:
            record.state = gone
        graph.mark_done(index, status == "success", None if stored else value, stored)
        if self._remake_waiters:
            self._wake_remake_waiters(graph, index)
        if stored and record is not None and record.result_worker is not None:
            graph.stored_on[index] = (record.result_worker, record.result_size, record.result_held)
        if graph.requested[index] and index not in graph.recomputed:  # a remade result was reported already
            self._report_outcome(graph.client_id, node_task_id(graph.graph_id, index), True, status, value, stored,
                                 profiling, notify_client, report)

    def _cancel_graph_node(self, graph: GraphTable, index: int) -> None:
        record = graph.materialized.get(index)
        if record is not None:
            self._cancel(record)
        elif not graph.is_done(index):
            self._finish_graph_node(graph, index, "cancelled", b"", False, None)

    def _flush_graphs(self) -> None:
        """Apply the outcomes gathered since the last round to each touched graph, in bulk."""
        dirty, self._dirty_graphs = self._dirty_graphs, {}
        for graph in dirty:
            if graph.dropped:
                continue
            became_ready, unneeded = graph.flush()
            if became_ready:
                self._queue_graph(graph)
            deletes = []
            client_gone = graph.client_id not in self.clients
            for index in unneeded:
                graph.forget_result(index)
                if graph.result_stored[index] and (not graph.requested[index] or graph.client_released[index] or client_gone):
                    deletes.append(node_task_id(graph.graph_id, index))
            if deletes:
                self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=deletes))
            if graph.finished():
                self._remove_graph(graph)

    def _remove_graph(self, graph: GraphTable) -> None:
        if self.graphs.get(graph.graph_id) is not graph:
            return
        blobs = graph.args_object_ids() if not self.journaling else ()  # with a journal the client frees them
        if blobs:  # nodes' large argument blobs: kept until now, as a lost result's node may run again
            self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=blobs))
        self.graphs.pop(graph.graph_id, None)
        client = self.clients.get(graph.client_id)
        if client is not None:
            client.graphs.pop(graph.graph_id, None)

    def _on_input_lost(self, record, object_id: bytes) -> None:
        """A worker found no copy left of one of a task's inputs (it was lost with its holder's host).

        Lineage: an input made by a node of a graph this client still holds (the task's own graph, or
        one it kept on the cluster, as a persist does) is made again: that node runs anew, after those
        of its own inputs already released, which are gone too, and the task waits for it. A plain
        task's result still alive is made again from its recipe (plain_lineage.py). Any other lost
        input, or one already remade `max_task_retries` times, fails the task."""
        if record.cancel_requested:  # it never ran (its input was missing): the cancel stands
            self._finish(record, "cancelled", b"", False, None)
            return
        graph = record.graph
        node = self._graph_node(object_id)
        source, lost = node if node is not None and node[0].client_id == record.client_id else (None, None)
        if source is None and self._remake_plain(record, object_id):
            return
        if source is None or (source.is_done(lost) and source.recomputed.get(lost, 0) >= self.settings.max_task_retries):
            recipe = self.recipes.get(object_id) if source is None else None
            remade = source.recomputed[lost] if source is not None else \
                recipe.remade if recipe is not None and recipe.task.client_id == record.client_id else 0
            why = (f"it was made again {remade} times already" if remade
                   else "nothing of its client that is still alive made it, so nothing can make it again")
            error = LookupError(f"object {object_id.hex()} needed by task {record.task_id.hex()} is gone (every "
                                f"copy was lost with its holder) and {why}")
            self._finish(record, "failed", dumps_exception(error), False, None)
            return
        if graph is None:  # a plain task: it waits (on the remake alone) as for a dependency
            record.state = self._shift(record.state, Event.AWAIT_REMAKE)
            record.waiting_on = 1
        else:
            del graph.materialized[record.node]
            del self.tasks[record.task_id]
            record.state = self._shift(record.state, Event.LOSE_INPUT)
            graph.wait_again(record.node)
        if source.is_done(lost):  # else it is being made again already, for another dependent
            self._remake(source, lost)
        if source is graph:  # the graph's own table holds the node until the input is back
            graph.ready_if_free(record.node)
            self._queue_graph(graph)
        else:
            self._remake_waiters.setdefault((source.graph_id, lost), []).append(
                record if graph is None else (graph, record.node))

    def _remake(self, graph: GraphTable, lost: int) -> None:
        """Run a finished node again, with those of its inputs already released (gone too)."""
        reopened, to_reopen = [], [lost]
        while to_reopen:
            index = to_reopen.pop()
            if graph.is_done(index):
                to_reopen.extend(graph.reopen(index))
                reopened.append(index)
        self._recompute_finished_node(len(reopened))
        for index in reopened:
            graph.ready_if_free(index)
        # the storage forgets them (it answers a lost object "not found" at once): a dependent's get
        # that overtakes the new copy's put then waits for it
        self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(
            object_ids=[node_task_id(graph.graph_id, index) for index in reopened]))
        self._queue_graph(graph)
        logger.warning("scheduler: the result of node %d of graph %s was lost with its holder; running %d "
                       "node(s) of its lineage again", lost, graph.graph_id.hex(), len(reopened))

    def _wake_remake_waiters(self, graph: GraphTable, index: int) -> None:
        """A remade node finished: the tasks of other graphs (or plain ones) that waited for it go on."""
        for waiter in self._remake_waiters.pop((graph.graph_id, index), ()):
            if type(waiter) is tuple:
                other, node = waiter
                if self.graphs.get(other.graph_id) is other and not other.dropped:
                    other.ready_if_free(node)
                    self._queue_graph(other)
            else:
                self._resume_after_remake(waiter, "success", b"")

    def _release_graph_object(self, graph: GraphTable, index: int, to_delete: List[bytes]) -> None:
        """The client fetched a requested node's stored result and no longer needs it: deleted now,
        or once its dependents are done (also when it is being made again after a loss)."""
        graph.release_kept(index)
        if not graph.is_done(index) or graph.still_needed(index):
            graph.client_released[index] = True
        else:
            to_delete.append(node_task_id(graph.graph_id, index))
            if graph.finished():  # it stayed for this result alone
                self._remove_graph(graph)

    def _drop_client_graphs(self, client) -> None:
        """The client left: cancel its running graph nodes and forget its graphs."""
        for graph_id in list(client.graphs):
            graph = self.graphs.pop(graph_id, None)
            if graph is None:
                continue
            graph.dropped = True
            self._shift(TaskState.HELD, Event.DROP, graph.undone_count() - len(graph.materialized))
            for record in graph.materialized.values():
                if record.state == TaskState.ASSIGNED:
                    record.graph = None  # finishes as a plain record; nobody waits for it
                    client.tasks[record.task_id] = None
                    self._cancel(record, notify_client=False)
                else:
                    record.state = self._shift(record.state, Event.DROP)
                    del self.tasks[record.task_id]
        client.graphs.clear()

    def graph_ready_count(self) -> int:
        return sum(graph.ready_count() for graph in self.graphs.values())
