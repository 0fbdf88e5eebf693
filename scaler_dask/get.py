"""``scaler_get``: a Dask scheduler ``get`` that runs graphs on the engine.

One call turns the (culled) Dask graph into one ``submit_graph`` call, waits
for the futures of the requested keys on the calling thread, and returns the
values with the nesting of ``keys`` (lists become tuples, like dask.local).
Intermediate values stay on the cluster; the engine frees them when their
last dependent is done. Keys are scoped to one call by the engine, so graphs
that reuse names such as ``"x"`` on every call never see each other's values.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

import dask
from dask._task_spec import DataNode, GraphNode
from dask.callbacks import local_callbacks, unpack_callbacks
from dask.order import order

from scaler_core.references import KeyRef
from scaler_core.errors import GraphCycleError as EngineCycleError, SchedulerDiedError
from scaler_core.graph_plan import PlannedGraph, build_plan, is_literal, topological_order
from scaler_core.memory import paused_gc
from scaler_core import task_context as worker_context
from scaler_dask import cluster
from scaler_dask.config_forwarding import config_changes, with_config
from scaler_dask.convert import GraphCycleError, flatten_keys, normalize_graph
from scaler_dask.persist import persisted, with_persisted_values

# dask.order costs ~35 us per task (6 s for 170k tasks). Above this size the
# reversed depth-first walk of the culling is used instead: it is recorded anyway
# and also finishes one branch before starting the next.
ORDER_LIMIT_CONFIG_KEY = "scaler.dask-order-max-tasks"
DEFAULT_ORDER_LIMIT = 100_000


def scaler_get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Compute ``keys`` of the Dask graph ``dsk`` on a Scaler cluster.

    The cluster is chosen by :mod:`scaler_dask.cluster` (``scaler.address``
    config, ``SCALER_ADDRESS``, the worker's own scheduler, or an embedded
    local cluster). Unknown keyword arguments (``num_workers``, ``pool``...)
    are accepted and ignored, as Dask passes user options through.
    """
    return run_graph(cluster.default_client, dsk, keys, forget_dead_client=True)


def get_for(client: Any) -> Callable[..., Any]:
    """A Dask ``get`` bound to an explicit engine ``client``.

    The result is a plain function on purpose: dask.persist calls
    ``get.__self__.persist`` when a bound method's owner has ``persist``.
    """

    def scaler_get_for_client(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return run_graph(lambda: client, dsk, keys, forget_dead_client=False)

    return scaler_get_for_client


def run_graph(client_source: Callable[[], Any], dsk: Any, keys: Any, forget_dead_client: bool,
              keep_on_cluster: bool = False) -> Any:
    """The body of every get: plan, submit, wait, call back, nest results.

    `keep_on_cluster` (scaler_dask.persist): large results stay on the cluster and the nested
    values are their futures."""
    wanted = flatten_keys(keys)
    with paused_gc():
        plan = plan_graph(with_persisted_values(normalize_graph(dsk), set(wanted)), wanted)
    with local_callbacks(None) as callbacks:
        start_cbs, start_state_cbs, pretask_cbs, posttask_cbs, _ = unpack_callbacks(callbacks)
        started = []
        state: dict = {}
        succeeded = False
        try:
            for callback in callbacks:
                if callback[0]:
                    callback[0](plan.sources)
                started.append(callback)
            values = _compute(client_source, plan, start_state_cbs, pretask_cbs, posttask_cbs, state, forget_dead_client,
                              keep_on_cluster)
            succeeded = True
        finally:
            for callback in started:
                if callback[4]:
                    callback[4](plan.sources, state, not succeeded)
    return _nest(keys, values)


def plan_graph(graph: Any, wanted: list) -> PlannedGraph:
    """The engine graph of one get: culled, ordered and cycle-checked once (scaler_core.graph_plan)."""
    try:
        return build_plan(graph, wanted, orderer=_dask_order, answer_literals=True)
    except EngineCycleError as error:
        raise GraphCycleError.from_engine(error) from None


def _compute(client_source, plan: PlannedGraph, start_state_cbs, pretask_cbs, posttask_cbs, state: dict,
             forget_dead_client: bool, keep_on_cluster: bool = False) -> dict:
    # A requested literal is answered here, like dask.local does: no round
    # trip, and the caller gets its own object back.
    values = dict(plan.literals)
    tracker = None
    if start_state_cbs or pretask_cbs or posttask_cbs:
        tracker = _CallbackTracker(plan, set(plan.requested) | set(plan.literals), pretask_cbs, posttask_cbs, state)
        for callback in start_state_cbs:
            callback(plan.sources, state)
        tracker.start()
    if not plan:
        return values
    requested = list(plan.requested)
    with paused_gc():
        changes = config_changes()
        if changes:
            with_config(plan, changes)
        if tracker is not None:
            _add_completion_markers(plan, requested)
    client = client_source()
    try:
        kept = {"keep_on_cluster": True} if keep_on_cluster else {}  # any client with submit_graph serves a get
        futures = client.submit_graph(plan, requested, priorities=plan.priorities, **kept)
        _wait_for_futures(client, futures, set(plan.requested), values, tracker, keep_on_cluster)
    except SchedulerDiedError:
        if forget_dead_client:
            cluster.forget_client(client)
        raise
    return values


class _CompletionMarker:
    """Key of a tiny task that finishes right after an intermediate ``key``.

    The engine sends every requested value to the client, so requesting
    intermediates just to see them finish would ship all their data here.
    Instead each one gets a requested dependent returning None. A class of its
    own cannot collide with any Dask key.
    """

    __slots__ = ("key",)

    def __init__(self, key: Any):
        self.key = key

    def __eq__(self, other: object) -> bool:
        return type(other) is _CompletionMarker and other.key == self.key

    def __hash__(self) -> int:
        return hash((_CompletionMarker, self.key))


def _add_completion_markers(plan: PlannedGraph, requested: list) -> None:
    wanted = set(requested)
    additions = [(_CompletionMarker(key), (_discard, (KeyRef(key),), {}), key) for key in plan.keys_by_id
                 if key not in wanted]
    plan.add_dependents(additions)
    for marker, _, key in additions:
        requested.append(marker)
        plan.priorities[marker] = plan.priorities[key]


def _discard(value: Any) -> None:
    return None


class _Shape(GraphNode):
    """Just a task's key and dependencies: all dask.order reads of a node."""

    __slots__ = ()

    def __init__(self, key: Any, dependencies: frozenset):
        self.key = key
        self._dependencies = dependencies


def _dask_order(plan: PlannedGraph) -> dict | None:
    """dask.order priorities, which are also the plan's topological order and its cycle check."""
    if len(plan) > dask.config.get(ORDER_LIMIT_CONFIG_KEY, DEFAULT_ORDER_LIMIT):
        return None
    shapes = {}
    keys, indptr, indices = plan.keys_by_id, plan.indptr.tolist(), plan.indices.tolist()
    for node, key in enumerate(keys):
        dependencies = [keys[dependency] for dependency in indices[indptr[node]:indptr[node + 1]]]
        shapes[key] = DataNode(key, None) if is_literal(plan[key], dependencies) else _Shape(key, frozenset(dependencies))
    try:
        return order(shapes)
    except RuntimeError as error:
        if "Cycle detected" not in str(error):
            raise
        topological_order(plan)  # raises the GraphCycleError naming the cycle
        raise


def _wait_for_futures(client: Any, futures: dict, wanted: set, values: dict, tracker: _CallbackTracker | None,
                      keep_on_cluster: bool = False) -> None:
    """Collect results as futures finish; on the first error cancel the rest."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    key_of = {future: key for key, future in futures.items()}
    # Emptied so that only key_of holds futures: intermediates are dropped as they finish.
    futures.clear()
    for future in key_of:
        future.add_done_callback(done.put)
    # Inside a worker (nested compute) this frees the worker's slot while we
    # wait, so the inner graph can run even on a one-worker cluster.
    try:
        with worker_context.blocked_while_waiting():
            _collect(done, key_of, wanted, values, tracker, keep_on_cluster)
    finally:
        # Nothing of this call may keep running after an error or interrupt.
        if key_of:
            client.cancel(list(key_of))


def _collect(done: queue.SimpleQueue, key_of: dict, wanted: set, values: dict, tracker: _CallbackTracker | None,
             keep_on_cluster: bool = False) -> None:
    while key_of:
        future = done.get()
        key = key_of.pop(future)
        if type(key) is _CompletionMarker:
            key = key.key
        if future.cancelled():
            raise CancelledError(f"task {key!r} was cancelled")
        error = future.exception()
        if error is not None:
            raise error.with_traceback(error.__traceback__)
        result = None
        if key in wanted:
            if keep_on_cluster and future.kept_object_id() is not None:
                result = values[key] = persisted(future)  # the future stands for the value, which stays put
            else:
                result = values[key] = future.result()
        if tracker is not None:
            tracker.finished(key, result)


def _nest(keys: Any, values: dict) -> Any:
    if isinstance(keys, list):
        return tuple(_nest(item, values) for item in keys)
    return values[keys]


class _CallbackTracker:
    """Keeps a dask.local-shaped ``state`` for Dask's local callbacks.

    The engine reports completions, not starts, so a task counts as running
    (and gets ``pretask``) once all its dependencies have finished. The
    ``result`` given to ``posttask`` is None for intermediates: their values
    stay on the cluster. ``ready`` stays empty; ``worker_id`` is None.
    """

    def __init__(self, plan: PlannedGraph, wanted: set, pretask_cbs, posttask_cbs, state: dict):
        self.nodes = plan.sources
        self.wanted = wanted
        self.pretask_cbs = pretask_cbs
        self.posttask_cbs = posttask_cbs
        self.state = state
        dependencies = {key: set(plan.dependencies_of(node)) for node, key in enumerate(plan.keys_by_id)}
        dependents: dict = {key: set() for key in plan.keys_by_id}
        for key, key_dependencies in dependencies.items():
            for dependency in key_dependencies:
                dependents[dependency].add(key)
        self.unfinished_dependents = {key: len(key_dependents) for key, key_dependents in dependents.items()}
        state.update(
            dependencies=dependencies,
            dependents=dependents,
            waiting={key: set(deps) for key, deps in dependencies.items() if deps},
            waiting_data={key: set(key_dependents) for key, key_dependents in dependents.items() if key_dependents},
            cache={},
            ready=[],
            running=set(),
            finished=set(),
            released=set(),
        )
        self.initial_keys = [key for key, deps in dependencies.items() if not deps]

    def start(self) -> None:
        for key in self.initial_keys:
            self._mark_running(key)

    def _mark_running(self, key: Any) -> None:
        self.state["running"].add(key)
        for callback in self.pretask_cbs:
            callback(key, self.nodes, self.state)

    def finished(self, key: Any, result: Any) -> None:
        """Report `key` done, after any dependency whose completion marker is still on its way.

        An intermediate's marker is a task of its own, so it can finish after the intermediate's
        dependents; Dask's callbacks must still see dependencies first."""
        if key in self.state["finished"]:
            return
        finished, dependencies = self.state["finished"], self.state["dependencies"]
        # Post-order walk (explicit stack: chains may be long) over unfinished intermediates.
        late, seen = [], set()
        stack = [(key, iter(dependencies[key]))]
        while stack:
            item, pending = stack[-1]
            for dependency in pending:
                if dependency not in finished and dependency not in self.wanted and dependency not in seen:
                    seen.add(dependency)
                    stack.append((dependency, iter(dependencies[dependency])))
                    break
            else:
                stack.pop()
                if item != key:
                    late.append(item)
        for dependency in late:
            self._report_finished(dependency, None)
        self._report_finished(key, result)

    def _report_finished(self, key: Any, result: Any) -> None:
        state = self.state
        if key not in state["running"]:
            # Results can arrive before those of the key's dependencies.
            state["waiting"].pop(key, None)
            self._mark_running(key)
        state["running"].discard(key)
        state["finished"].add(key)
        if key in self.wanted:
            state["cache"][key] = result
        for callback in self.posttask_cbs:
            callback(key, result, self.nodes, state, None)
        for dependent in state["dependents"][key]:
            waiting_for = state["waiting"].get(dependent)
            if waiting_for is not None:
                waiting_for.discard(key)
                if not waiting_for:
                    del state["waiting"][dependent]
                    self._mark_running(dependent)
        for dependency in state["dependencies"][key]:
            state["waiting_data"].get(dependency, set()).discard(key)
            self.unfinished_dependents[dependency] -= 1
            if self.unfinished_dependents[dependency] == 0 and dependency not in self.wanted:
                state["released"].add(dependency)
