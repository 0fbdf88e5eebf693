"""Graph submission on the client side: validation, ordering, and Dask-style dict graphs."""

from __future__ import annotations

import array
import graphlib
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from scaler_core.client.graph_fusion import PREVIOUS, find_chains, run_chain
from scaler_core.client.graph_order import CycleFound, cull_and_order
from scaler_core.references import KeyRef
from scaler_core.errors import GraphCycleError, GraphError, ScalerError
from scaler_core.graph_ids import node_task_id
from scaler_core.serialization import dumps_with_references


class GraphSubmission:
    """Checks a {key: (fn, args, kwargs)} graph and orders it so every task follows its dependencies.

    Dependencies are the KeyRefs found in each task's arguments (walked iteratively, so neither
    deep graphs nor long chains recurse). Keys become integer node ids once; culling and ordering
    then run on integer arrays (graph_order), with GraphBLAS for big graphs."""

    def __init__(self, tasks: Dict[Any, Tuple[Callable, tuple, dict]], keys: Sequence,
                 reference_of_objects: Callable[[Any], Optional[bytes]], priorities: Optional[Dict[Any, int]] = None):
        self.tasks = tasks
        self.requested = set(keys)
        self._reference_of_objects = reference_of_objects
        self.priorities = priorities or {}
        self.task_ids: Dict[Any, bytes] = {}
        self.task_id_set = set()
        self.submitted = set()  # keys already handed to the scheduler, in dependency order
        self.fused: Dict[Any, Tuple[Callable, tuple, dict]] = {}  # chain tail -> the fused chain's task

    def prepare(self, graph_id: bytes) -> List:
        """The needed keys in dependency order; fills task ids and the shape (`structure`)."""
        missing = [key for key in self.requested if key not in self.tasks]
        if missing:
            raise KeyError(missing[0] if len(missing) == 1 else missing)
        keys = list(self.tasks)
        index = self._index = {key: position for position, key in enumerate(keys)}
        offsets = array.array("q", [0])
        flat = array.array("q")
        for key in keys:
            _, args, kwargs = self.tasks[key]
            references = _key_refs(args, kwargs)
            if references:
                try:
                    flat.extend(dict.fromkeys(index[dep] for dep in references))
                except KeyError as error:
                    raise GraphError(f"Missing dependency {error.args[0]!r} for key {key!r}") from None
            offsets.append(len(flat))
        indptr = np.frombuffer(offsets, dtype=np.int64)
        indices = np.frombuffer(flat, dtype=np.int64)
        try:
            needed, order, _ = cull_and_order(indptr, indices, [index[k] for k in self.requested])
        except CycleFound as cycle:
            on_cycle = [keys[i] for i in cycle.remaining.tolist()]
            dependencies = {keys[i]: [keys[j] for j in indices[indptr[i]:indptr[i + 1]].tolist()]
                            for i in cycle.remaining.tolist()}
            raise GraphCycleError(*_describe_cycle(set(on_cycle), dependencies)) from None
        dependents = np.repeat(np.arange(len(keys), dtype=np.int64), np.diff(indptr))
        counts = np.bincount(indices[needed[dependents]], minlength=len(keys)) if len(indices) else \
            np.zeros(len(keys), dtype=np.int64)
        order, dependency_source = self._fuse_chains(keys, indptr, indices, order, counts)
        ordered = [keys[i] for i in order]
        self.structure = _renumbered_dependencies(indptr, indices, np.asarray(order, dtype=np.int64), len(keys),
                                                  dependency_source)
        for position, key in enumerate(ordered):
            task_id = node_task_id(graph_id, position)
            self.task_ids[key] = task_id
            self.task_id_set.add(task_id)
        return ordered

    def spec(self, key) -> Tuple[Callable, tuple, dict]:
        """What to submit for `key`: its own task, or the fused chain it ends."""
        return self.fused.get(key) or self.tasks[key]

    def _fuse_chains(self, keys, indptr, indices, order, counts):
        """Linear chains become one task each (graph_fusion); returns the order without their inner
        nodes and, per node, whose dependencies it takes (a chain's tail takes its head's)."""
        requested = np.zeros(len(keys), dtype=bool)
        requested[[self._index[key] for key in self.requested]] = True
        indptr_list, indices_list = indptr.tolist(), indices.tolist()

        def step_blob(node: int) -> Optional[bytes]:
            previous = keys[indices_list[indptr_list[node]]]
            _, args, kwargs = self.tasks[keys[node]]

            def only_previous(obj):
                if type(obj) is KeyRef and obj.key == previous:
                    return PREVIOUS
                raise _NotAStep

            try:
                frames, _ = dumps_with_references((args, kwargs), only_previous, expect_references=True)
            except _NotAStep:
                return None
            return frames[0] if len(frames) == 1 else None

        chains, blobs = find_chains(indptr_list, indices_list, order, counts.tolist(), requested.__getitem__, step_blob)
        dependency_source = np.arange(len(keys), dtype=np.int64)
        inner = set()
        for tail, chain in chains.items():
            head_fn, head_args, head_kwargs = self.tasks[keys[chain[0]]]
            functions = [head_fn] + [self.tasks[keys[node]][0] for node in chain[1:]]
            self.fused[keys[tail]] = (run_chain, (functions, head_args, head_kwargs, [blobs[node] for node in chain[1:]]), {})
            dependency_source[tail] = chain[0]
            inner.update(chain[:-1])
        if inner:
            order = [node for node in order if node not in inner]
        return order, dependency_source

    def reference_of(self, obj) -> Optional[bytes]:
        if type(obj) is KeyRef:
            if obj.key not in self.submitted:
                raise GraphError(
                    f"KeyRef({obj.key!r}) is hidden inside an object the graph walk cannot see into; "
                    "put KeyRefs directly in arguments or in list/tuple/set/dict containers")
            return self.task_ids[obj.key]
        return self._reference_of_objects(obj)

    def priority_of(self, key) -> int:
        # dask.order: lower numbers run first; the scheduler runs higher priorities first
        return -min(int(self.priorities.get(key, 0)), (1 << 21) - 1)


class _NotAStep(ScalerError):
    """A node whose arguments refer to more than the previous chain step."""


_CONTAINERS = (list, tuple, set, frozenset)


def _renumbered_dependencies(indptr: np.ndarray, indices: np.ndarray, order: np.ndarray, n: int,
                             dependency_source: np.ndarray):
    """CSR dependencies of the ordered nodes, in their new numbering (position in `order`).

    Node v takes the dependencies of `dependency_source[v]` (itself, or a fused chain's head)."""
    position = np.full(n, -1, dtype=np.int64)
    position[order] = np.arange(len(order), dtype=np.int64)
    sources = dependency_source[order]
    degrees = (indptr[1:] - indptr[:-1])[sources]
    new_indptr = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(degrees, out=new_indptr[1:])
    gather = np.repeat(indptr[:-1][sources] - new_indptr[:-1], degrees) + np.arange(int(new_indptr[-1]), dtype=np.int64)
    return new_indptr, position[indices[gather]].astype(np.int32)


def _key_refs(args, kwargs) -> List:
    """Keys of the KeyRefs in a task's arguments, walking containers and nested calls."""
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


def _describe_cycle(unsorted, dependencies) -> Tuple[str, List]:
    sorter = graphlib.TopologicalSorter({key: [dep for dep in dependencies[key] if dep in unsorted]
                                         for key in unsorted})
    try:
        sorter.prepare()
        cycle = sorted(unsorted, key=repr)  # pragma: no cover - unsorted keys always contain a cycle
    except graphlib.CycleError as error:
        # graphlib lists each dependency before its dependent; name each key before what it needs
        cycle = list(reversed(error.args[1]))[:-1]
    return f"the graph has a cycle: {' -> '.join(map(repr, cycle + cycle[:1]))}", cycle


# --- Dask-style dict graphs (Client.get) --------------------------------------------------------


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
    if kind in (list, tuple):
        return kind(_evaluate(item) for item in expression)
    if kind is dict:
        return {key: _evaluate(value) for key, value in expression.items()}
    return expression


def _run_expression(expression):
    return _evaluate(expression)


def _is_task(value) -> bool:
    return type(value) is tuple and len(value) > 0 and callable(value[0])


def _is_key(item, graph) -> bool:
    if type(item) not in (str, bytes, int, float, tuple):
        return False
    try:
        return item in graph
    except TypeError:
        return False


def _convert_argument(value, graph):
    """A legacy-graph argument with keys turned into KeyRefs and nested tasks into _Call nodes."""
    if _is_key(value, graph):
        return KeyRef(value)
    if _is_task(value):
        return _Call(value[0], tuple(_convert_argument(arg, graph) for arg in value[1:]))
    kind = type(value)
    if kind in (list, tuple):
        return kind(_convert_argument(item, graph) for item in value)
    if kind is dict:
        return {key: _convert_argument(item, graph) for key, item in value.items()}
    return value


def _contains_call(value) -> bool:
    kind = type(value)
    if kind is _Call:
        return True
    if kind in (list, tuple):
        return any(_contains_call(item) for item in value)
    if kind is dict:
        return any(_contains_call(item) for item in value.values())
    return False


def convert_legacy_graph(graph: Dict[Hashable, Any]) -> Dict[Hashable, Tuple[Callable, tuple, dict]]:
    """{key: (fn, *args) | alias key | literal} -> {key: (fn, args, kwargs)} with KeyRefs."""
    tasks = {}
    for key, value in graph.items():
        if _is_task(value):
            args = tuple(_convert_argument(arg, graph) for arg in value[1:])
            if any(_contains_call(arg) for arg in args):
                tasks[key] = (_run_expression, (_Call(value[0], args),), {})
            else:
                tasks[key] = (value[0], args, {})
        elif _is_key(value, graph) and value != key:
            tasks[key] = (_identity, (KeyRef(value),), {})
        else:
            converted = _convert_argument(value, graph) if type(value) in (list, dict) else value
            if _contains_call(converted):
                tasks[key] = (_run_expression, (converted,), {})
            else:
                tasks[key] = (_identity, (converted,), {})
    return tasks

