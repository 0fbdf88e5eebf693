"""Graph submission on the client side: a planned graph's ids, chain fusion and shape.

The graph itself is normalised, culled, ordered and cycle-checked once by
:func:`scaler_core.graph_plan.build_plan`; this module turns that plan into what the scheduler
receives."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from scaler_core.client.graph_fusion import PREVIOUS, find_chains, run_chain
from scaler_core.graph_plan import ENGINE, PlannedGraph, build_plan, normalise_value
from scaler_core.references import KeyRef
from scaler_core.errors import GraphError, ScalerError
from scaler_core.graph_ids import node_task_id
from scaler_core.serialization import dumps_with_references


class GraphSubmission:
    """Gives a graph's nodes their task ids, fuses linear chains and renumbers the dependencies.

    `tasks` is either a PlannedGraph (Client.get and scaler_dask plan before they submit) or a
    {key: (fn, args, kwargs)} engine graph, planned here with KeyRefs as dependencies."""

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
        plan = self.tasks
        if not isinstance(plan, PlannedGraph):
            missing = [key for key in self.requested if key not in plan]
            if missing:
                raise KeyError(missing[0] if len(missing) == 1 else missing)
            plan = self.tasks = build_plan(plan, list(self.requested), form=ENGINE, priorities=self.priorities)
        keys, indptr, indices = plan.keys_by_id, plan.indptr, plan.indices
        self._index = plan._ids
        counts = np.bincount(indices, minlength=len(keys)) if len(indices) else np.zeros(len(keys), dtype=np.int64)
        order, dependency_source = self._fuse_chains(keys, indptr, indices, plan.order, counts)
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


def convert_legacy_graph(graph: Dict[Any, Any]) -> Dict[Any, Tuple[Callable, tuple, dict]]:
    """{key: (fn, *args) | alias key | literal} -> {key: (fn, args, kwargs)} with KeyRefs, every key.

    The same normalisation as the pipeline's (graph_plan), without culling: for callers that
    build an engine graph for submit_graph by hand."""
    tasks = {}
    for key, value in graph.items():
        normalised = normalise_value(key, value, graph)
        if normalised is not None:
            tasks[key] = normalised[0]
    return tasks
