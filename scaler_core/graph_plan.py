"""One path from a user's graph to the engine's graph: normalise, cull, order, check cycles.

Every graph the engine runs goes through :func:`build_plan` exactly once, whichever door it came in
by (``Client.get``, ``Client.submit_graph``, ``scaler_dask``'s get):

* **normalise**: each value becomes the engine's normal form, a task ``(fn, args, kwargs)`` whose
  arguments hold ``KeyRef(key)`` where another key's value goes, plus the list of keys it needs.
  Three input forms are understood: Dask's legacy spec (``(fn, *args)`` tuples, aliases,
  literals), Dask's task spec objects (``Task``/``Alias``/``DataNode``/containers) and, for
  ``submit_graph``, the engine form itself. Legacy values are parsed here and nowhere else;
  task spec objects are turned into the engine form by :mod:`scaler_core.dask_spec`.
* **cull**: only values the requested keys reach are looked at, so the rest of a big graph is
  never even normalised. Integer ids are given on discovery and dependencies kept as CSR arrays.
* **order and cycle check**: one topological order of the culled graph. Either the caller's
  (``scaler_dask`` uses ``dask.order`` priorities, which are topological and find cycles) or
  ``graph_order`` (Kahn in Python, GraphBLAS from ``GRAPHBLAS_MIN_NODES`` nodes). A cycle becomes a
  :class:`GraphCycleError` naming the keys on it.

The walk keeps an explicit stack: 10,000-step chains do not recurse.
"""

from __future__ import annotations

import graphlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from scaler_core.client.graph_order import CycleFound, order_nodes
from scaler_core.errors import GraphCycleError, GraphError
from scaler_core.references import KeyRef

Spec = Tuple[Callable, tuple, dict]

# Forms of graph values build_plan understands.
DASK = "dask"  # legacy tuples / aliases / literals, and Dask task spec objects, mixed freely
ENGINE = "engine"  # {key: (fn, args, kwargs)} with KeyRefs (Client.submit_graph)

_KEY_TYPES = (str, bytes, int, float, tuple)
_CONTAINERS = (list, tuple, set, frozenset)


class PlannedGraph(dict):
    """The engine graph of one compute: culled ``{key: (fn, args, kwargs)}`` in node-id order.

    It is a dict so that anything handed an engine graph (``Client.submit_graph``, test doubles)
    can read it as one; the attributes carry what the pipeline already knows, so the submission
    neither walks arguments for dependencies nor culls, orders or checks cycles again."""

    keys_by_id: List
    indptr: np.ndarray  # node i depends on indices[indptr[i]:indptr[i + 1]]
    indices: np.ndarray
    order: List[int]  # a topological order of node ids
    requested: List
    priorities: Dict[Any, int]  # dask.order convention: lower runs first
    literals: Dict[Any, Any]  # requested literal values answered without the cluster (DASK form)
    sources: Dict[Any, Any]  # key -> the value as the user gave it (Dask callbacks want a dsk)

    def dependencies_of(self, node: int) -> List:
        return [self.keys_by_id[dep] for dep in self.indices[self.indptr[node]:self.indptr[node + 1]].tolist()]

    def add_dependents(self, additions: List[Tuple[Any, Spec, Any]]) -> None:
        """Append nodes ``(key, spec, dependency)`` that each need one planned node; ordered last."""
        start = len(self.keys_by_id)
        for offset, (key, spec, _) in enumerate(additions):
            self.keys_by_id.append(key)
            self[key] = spec
            self._ids[key] = start + offset
        self.indptr = np.concatenate([self.indptr, self.indptr[-1] + 1 + np.arange(len(additions), dtype=np.int64)])
        self.indices = np.concatenate([self.indices, np.fromiter(
            (self._ids[dependency] for _, _, dependency in additions), dtype=np.int64, count=len(additions))])
        self.order.extend(range(start, start + len(additions)))


def build_plan(graph: Mapping, wanted: Sequence, form: str = DASK,
               orderer: Optional[Callable[[PlannedGraph], Dict[Any, int]]] = None,
               priorities: Optional[Dict[Any, int]] = None, answer_literals: bool = False) -> PlannedGraph:
    """Normalise, cull to ``wanted``, order and cycle-check ``graph`` once.

    ``orderer(plan)`` returns priorities that are also a topological order (``dask.order``), or
    None to let graph_order order the graph and take priorities from the depth-first walk;
    without an orderer graph_order orders the graph and ``priorities`` are kept as given. ``answer_literals`` leaves requested literal values
    out of the engine graph (unless another node needs them) and puts them in ``plan.literals``.
    Raises ``KeyError`` for a requested key missing from the graph, :class:`GraphError` for a
    missing dependency and :class:`GraphCycleError` for a cycle, all before anything runs."""
    normalise = _normalise_engine if form == ENGINE else _normalise_dask
    plan = PlannedGraph()
    ids: Dict[Any, int] = {}
    keys_by_id: List = []
    specs: List = []
    rows: List = []
    sources: Dict[Any, Any] = {}
    literals: Dict[Any, Any] = {}
    visits: List[int] = []  # processing order: depth-first from the requested keys
    requested: List = []
    stack: List = []
    for root in wanted:
        if root in literals:
            continue
        if root not in ids:
            normalised = _lookup(graph, root, normalise)
            if normalised is None:
                raise KeyError(root)
            spec, dependencies, literal = normalised
            if literal and answer_literals:
                literals[root] = spec[1][0]
                continue
            ids[root] = len(keys_by_id)
            keys_by_id.append(root)
            specs.append(spec)
            rows.append(dependencies)
            stack.append(len(keys_by_id) - 1)
            _walk(graph, normalise, stack, ids, keys_by_id, specs, rows, visits)
        if not (answer_literals and is_literal(specs[ids[root]], rows[ids[root]])):
            requested.append(root)
        else:
            literals[root] = specs[ids[root]][1][0]
    if answer_literals:
        sources = {key: graph[key] for key in keys_by_id}
        sources.update((key, graph[key]) for key in literals)
    plan.update(zip(keys_by_id, specs))
    plan.keys_by_id = keys_by_id
    plan._ids = ids
    plan.requested = requested
    plan.literals = literals
    plan.sources = sources
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=offsets[1:])
    plan.indptr = offsets
    plan.indices = np.fromiter((ids[dep] for row in rows for dep in row), dtype=np.int64, count=int(offsets[-1]))
    ordered_by_caller = orderer(plan) if orderer is not None else None
    if ordered_by_caller is not None:
        plan.priorities = ordered_by_caller
        plan.order = _order_from_priorities(plan)
        return plan
    plan.order = _order(plan)
    if orderer is not None:
        # the depth-first visit, reversed, finishes one branch before starting the next
        count = len(visits)
        plan.priorities = {keys_by_id[node]: count - position for position, node in enumerate(visits)}
    else:
        plan.priorities = priorities or {}
    return plan


def _walk(graph, normalise, stack, ids, keys_by_id, specs, rows, visits) -> None:
    while stack:
        node = stack.pop()
        visits.append(node)
        for dependency in rows[node]:
            if dependency in ids:
                continue
            normalised = _lookup(graph, dependency, normalise)
            if normalised is None:
                raise GraphError(f"Missing dependency {dependency!r} for key {keys_by_id[node]!r}")
            ids[dependency] = len(keys_by_id)
            keys_by_id.append(dependency)
            specs.append(normalised[0])
            rows.append(normalised[1])
            stack.append(len(keys_by_id) - 1)


def _lookup(graph, key, normalise):
    try:
        value = graph[key]
    except (KeyError, TypeError):
        return None
    return normalise(key, value, graph)


def is_literal(spec: Spec, dependencies) -> bool:
    return spec[0] is _identity and not dependencies and not _has_call(spec[1][0])


def topological_order(plan: PlannedGraph) -> List[int]:
    """graph_order's order of the plan's nodes; raises GraphCycleError naming a cycle."""
    return _order(plan)


def _order(plan: PlannedGraph) -> List[int]:
    try:
        return order_nodes(plan.indptr, plan.indices)
    except CycleFound as cycle:
        raise cycle_error(plan, cycle.remaining.tolist()) from None


def _order_from_priorities(plan: PlannedGraph) -> List[int]:
    priority = np.fromiter((plan.priorities[key] for key in plan.keys_by_id), dtype=np.int64,
                           count=len(plan.keys_by_id))
    order = np.argsort(priority, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    dependents = np.repeat(np.arange(len(order), dtype=np.int64), np.diff(plan.indptr))
    if len(plan.indices) and not (position[plan.indices] < position[dependents]).all():
        # not expected from dask.order; graph_order is always right
        return _order(plan)
    return order.tolist()


def cycle_error(plan: PlannedGraph, stuck: List[int]) -> GraphCycleError:
    """The error for a graph whose nodes ``stuck`` could not be ordered (on or behind a cycle)."""
    keys = plan.keys_by_id
    unsorted = {keys[node] for node in stuck}
    dependencies = {keys[node]: plan.dependencies_of(node) for node in stuck}
    sorter = graphlib.TopologicalSorter({key: [dep for dep in dependencies[key] if dep in unsorted]
                                         for key in unsorted})
    try:
        sorter.prepare()
        cycle = sorted(unsorted, key=repr)  # pragma: no cover - unsorted keys always contain a cycle
    except graphlib.CycleError as error:
        # graphlib lists each dependency before its dependent; name each key before what it needs
        cycle = list(reversed(error.args[1]))[:-1]
    return GraphCycleError(f"the graph has a cycle: {' -> '.join(map(repr, cycle + cycle[:1]))}", cycle)


# --- normal form --------------------------------------------------------------------------------


def _identity(value):
    return value


class _Call:
    """A task nested inside another task's arguments, evaluated on the worker."""

    __slots__ = ("fn", "args")

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args


def _evaluate(expression):
    # Recursion follows the nesting inside one task's arguments, never the graph's dependency chain.
    kind = type(expression)
    if kind is _Call:
        return expression.fn(*[_evaluate(arg) for arg in expression.args])
    if kind in (list, tuple, set, frozenset):
        return kind(_evaluate(item) for item in expression)
    if kind is dict:
        return {key: _evaluate(value) for key, value in expression.items()}
    return expression


def run_expression(expression):
    return _evaluate(expression)


def _has_call(value) -> bool:
    kind = type(value)
    if kind is _Call:
        return True
    if kind in _CONTAINERS:
        return any(_has_call(item) for item in value)
    if kind is dict:
        return any(_has_call(item) for item in value.values())
    return False


def _is_key(value, graph) -> bool:
    if type(value) not in _KEY_TYPES:
        return False
    try:
        return value in graph
    except TypeError:
        return False


class _Unusual(Exception):
    """A value only Dask's own converter knows how to read (namedtuples, futures)."""


def _argument(value, graph, dependencies: list):
    """A legacy argument with keys turned into KeyRefs and nested tasks into _Call nodes.

    Follows ``dask._task_spec.convert_legacy_task``: a tuple with a callable first is a task, then
    a hashable value that is a key is a reference, then containers are walked."""
    kind = type(value)
    if kind is tuple and value and callable(value[0]):
        return _Call(value[0], tuple([_argument(item, graph, dependencies) for item in value[1:]]))
    if kind in _KEY_TYPES:
        try:
            if value in graph:
                dependencies.append(value)
                return KeyRef(value)
        except TypeError:
            pass
        if kind is not tuple:
            return value
    if kind in _CONTAINERS:
        return kind([_argument(item, graph, dependencies) for item in value])
    if kind is dict:
        return {name: _argument(item, graph, dependencies) for name, item in value.items()}
    if isinstance(value, tuple) or getattr(value, "__dask_future__", False) is True or _is_graph_node(value):
        raise _Unusual
    return value


def _normalise_dask(key, value, graph) -> Optional[Tuple[Spec, list, bool]]:
    """(engine task, keys it needs, is a plain literal); None when ``key`` is not really defined."""
    kind = type(value)
    try:
        if kind is tuple and value and callable(value[0]):
            dependencies: list = []
            args = tuple([_argument(item, graph, dependencies) for item in value[1:]])
            if any(type(arg) is _Call or (type(arg) in _CONTAINERS or type(arg) is dict) and _has_call(arg)
                   for arg in args):
                return (run_expression, (_Call(value[0], args),), {}), _unique(dependencies), False
            return (value[0], args, {}), _unique(dependencies), False
        if _is_key(value, graph):
            if value == key:
                return None  # ``{"x": "x"}``: Dask drops self-aliases, leaving the key undefined
            return (_identity, (KeyRef(value),), {}), [value], False
        if kind in _CONTAINERS:
            dependencies = []
            converted = _argument(value, graph, dependencies)
            if _has_call(converted):
                return (run_expression, (converted,), {}), _unique(dependencies), False
            return (_identity, (converted,), {}), _unique(dependencies), not dependencies
        if kind is dict or not (isinstance(value, tuple) or _is_graph_node(value)
                                or getattr(value, "__dask_future__", False) is True):
            return (_identity, (value,), {}), [], True
    except _Unusual:
        pass
    from scaler_core import dask_spec

    return dask_spec.normalise_node(key, value, graph)


normalise_value = _normalise_dask


def _is_graph_node(value) -> bool:
    # dask is imported only once a graph holds something else than plain Python values
    from scaler_core.dask_spec import is_graph_node

    return is_graph_node(value)


def _unique(dependencies: list) -> list:
    return list(dict.fromkeys(dependencies)) if len(dependencies) > 1 else dependencies


def _normalise_engine(key, value, graph) -> Tuple[Spec, list, bool]:
    _, args, kwargs = value
    return value, _unique(key_refs(args, kwargs)), False


def key_refs(args, kwargs) -> List:
    """Keys of the KeyRefs in an engine task's arguments, walking containers and nested calls."""
    found = []
    stack = [args, kwargs] if kwargs else [args]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is KeyRef:
            found.append(item.key)
        elif kind in _CONTAINERS:
            for element in item:
                element_kind = type(element)
                if element_kind is KeyRef:
                    found.append(element.key)
                elif element_kind in _CONTAINERS or element_kind is dict or element_kind is _Call:
                    stack.append(element)
        elif kind is dict:
            stack.extend(item.values())
        elif kind is _Call:
            stack.extend(item.args)
    return found
