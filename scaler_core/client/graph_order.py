"""Culling and ordering a task graph held as integer arrays, with GraphBLAS for big graphs.

A graph of n nodes is given as CSR arrays of dependencies: node i depends on
``indices[indptr[i]:indptr[i + 1]]``. Two interchangeable paths compute (a) the ancestors of the
requested nodes and (b) a dependency order of those ancestors:

* the pure-Python path walks Python lists, one node at a time (Kahn's algorithm);
* the GraphBLAS path orders a whole frontier at once: one sparse matrix-vector product
  decrements the in-degree of every successor of every finished node and yields the newly ready
  set (`order_graphblas`). Culling walks in Python, once per compute (`graph_plan.build_plan`).

GraphBLAS pays off for ordering wide graphs; a deep, narrow graph means many tiny frontiers, so
that path hands over to the Python one when the frontiers stay small. The ordering path is chosen
by the culled graph's size (``GRAPHBLAS_MIN_NODES``, measured with benchmarks/graph_ordering.py:
see benchmarks/README.md); a native library that fails its
self-test at first use is logged and never used, it never breaks a submission.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from scaler_core.graphblas_loader import graphblas_module as load_graphblas

logger = logging.getLogger(__name__)

GRAPHBLAS_MIN_NODES = 100_000
# a frontier smaller than this is cheaper to advance in Python than with a sparse product
SMALL_FRONTIER = 64


class CycleFound(Exception):
    def __init__(self, remaining: np.ndarray):
        super().__init__("cycle")
        self.remaining = remaining  # nodes that could not be ordered (on or behind a cycle)


# --- pure Python ----------------------------------------------------------------------------------


def ancestors_python(indptr: Sequence[int], indices: Sequence[int], roots: Sequence[int], n: int) -> np.ndarray:
    needed = bytearray(n)
    stack = list(roots)
    for root in stack:
        needed[root] = 1
    while stack:
        node = stack.pop()
        for dep in indices[indptr[node]:indptr[node + 1]]:
            if not needed[dep]:
                needed[dep] = 1
                stack.append(dep)
    return np.frombuffer(bytes(needed), dtype=np.uint8).astype(bool)


def order_python(indptr: Sequence[int], indices: Sequence[int], needed: np.ndarray) -> List[int]:
    nodes = np.flatnonzero(needed).tolist()
    remaining = {}
    dependents = {node: [] for node in nodes}
    for node in nodes:
        deps = indices[indptr[node]:indptr[node + 1]]
        remaining[node] = len(deps)
        for dep in deps:
            dependents[dep].append(node)
    ready = [node for node in nodes if remaining[node] == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for dependent in dependents[node]:
            remaining[dependent] -= 1
            if remaining[dependent] == 0:
                ready.append(dependent)
    if len(order) != len(nodes):
        raise CycleFound(np.array([node for node in nodes if remaining[node] > 0]))
    return order


# --- GraphBLAS ------------------------------------------------------------------------------------

def graphblas_module():
    return load_graphblas()


def _edges(indptr: np.ndarray, indices: np.ndarray):
    dependents = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    return indices.astype(np.int64, copy=False), dependents


def order_graphblas(indptr: np.ndarray, indices: np.ndarray, needed: np.ndarray, module=None) -> List[int]:
    gb = module or graphblas_module()
    n = len(indptr) - 1
    deps, dependents = _edges(np.asarray(indptr), np.asarray(indices))
    keep = needed[dependents]
    deps, dependents = deps[keep], dependents[keep]
    matrix = gb.Matrix.from_coo(deps, dependents, np.ones(len(deps), dtype=np.int32), nrows=n, ncols=n,
                                dup_op=gb.binary.plus)
    remaining = np.bincount(dependents, minlength=n).astype(np.int64)
    frontier = np.flatnonzero(needed & (remaining == 0))
    pieces = []
    ordered = 0
    small_levels = 0
    while len(frontier):
        pieces.append(frontier)
        ordered += len(frontier)
        vector = gb.Vector.from_coo(frontier, np.ones(len(frontier), dtype=np.int32), size=n)
        successors, counts = gb.semiring.plus_times(vector @ matrix).new().to_coo()
        successors = successors.astype(np.int64)
        remaining[successors] -= counts
        frontier = successors[remaining[successors] == 0]
        small_levels = small_levels + 1 if len(frontier) < SMALL_FRONTIER else 0
        if small_levels > 16:
            # a deep, narrow stretch: finish node by node in Python
            return _finish_in_python(pieces, frontier, remaining, matrix, needed, ordered)
    order = np.concatenate(pieces).tolist() if pieces else []
    if ordered != int(needed.sum()):
        raise CycleFound(np.flatnonzero(needed & (remaining > 0)))
    return order


def _finish_in_python(pieces, frontier, remaining, matrix, needed, ordered) -> List[int]:
    rows, cols, _ = matrix.to_coo()
    sort = np.argsort(rows, kind="stable")
    rows, cols = rows[sort], cols[sort].astype(np.int64)
    starts = np.searchsorted(rows, np.arange(len(remaining) + 1))
    starts_list, cols_list, left = starts.tolist(), cols.tolist(), remaining.tolist()
    order = np.concatenate(pieces).tolist() if pieces else []
    ready = frontier.tolist()
    while ready:
        node = ready.pop()
        order.append(node)
        for dependent in cols_list[starts_list[node]:starts_list[node + 1]]:
            left[dependent] -= 1
            if left[dependent] == 0:
                ready.append(dependent)
    if len(order) != int(needed.sum()):
        left_array = np.array(left)
        raise CycleFound(np.flatnonzero(needed & (left_array > 0)))
    return order


# --- choice -----------------------------------------------------------------------------------------


def cull_and_order(indptr: np.ndarray, indices: np.ndarray, roots: Sequence[int],
                   force: Optional[str] = None) -> Tuple[np.ndarray, List[int], str]:
    """(needed mask, dependency order of the needed nodes, ordering path used). Raises CycleFound.

    Culling walks only what the roots need, so it stays in Python (measured: a sparse-product
    walk must first build the whole graph's matrix, which costs more than a small culled graph
    takes to order); ordering then takes the GraphBLAS path when enough nodes remain."""
    n = len(indptr) - 1
    indptr_list, indices_list = indptr.tolist(), indices.tolist()
    needed = ancestors_python(indptr_list, indices_list, roots, n)
    use_graphblas = force == "graphblas" or (force is None and int(needed.sum()) >= GRAPHBLAS_MIN_NODES)
    module = graphblas_module() if use_graphblas else None
    if module is not None:
        return needed, order_graphblas(indptr, indices, needed, module), "graphblas"
    return needed, order_python(indptr_list, indices_list, needed), "python"


def order_nodes(indptr: np.ndarray, indices: np.ndarray, force: Optional[str] = None) -> List[int]:
    """Dependency order of every node of an already culled graph. Raises CycleFound."""
    n = len(indptr) - 1
    needed = np.ones(n, dtype=bool)
    use_graphblas = force == "graphblas" or (force is None and n >= GRAPHBLAS_MIN_NODES)
    module = graphblas_module() if use_graphblas else None
    if module is not None:
        return order_graphblas(indptr, indices, needed, module)
    return order_python(indptr.tolist(), indices.tolist(), needed)
