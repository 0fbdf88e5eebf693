"""How a graph's finished nodes release other nodes: the scheduler's two interchangeable paths.

A graph of n nodes arrives as CSR arrays of dependencies (node i depends on
``dep_indices[dep_indptr[i]:dep_indptr[i + 1]]``, always on lower indices). Two counters per node
drive everything: `remaining` (dependencies not yet succeeded: at 0 the node may run) and `pending`
(dependents not yet finished: at 0 its result may be dropped). A frontier answers, for a whole
batch of finished nodes at once:

* `complete(batch)`: successors whose last dependency just succeeded (newly ready);
* `release(batch)`: dependencies whose last dependent just finished (result no longer needed);
* `descendants(roots)`: every node downstream (a failure or a cancel reaches all of them).

`PythonFrontier` walks flat `array` columns node by node: cheapest for small graphs and small
batches. `GraphBLASFrontier` does each step as one sparse vector-matrix product over the batch
(in-degree decrement and newly-ready set in bulk, no per-node Python work); it pays off for big
batches, which big wide graphs produce, and falls back to the walk for small batches (a long
chain finishes one node at a time: a product per node would cost ~100x the walk). `make_frontier` picks by size (threshold
measured with benchmarks/scheduler_graph.py, see benchmarks/README.md).
"""

from __future__ import annotations

import array
from typing import List, Sequence

import numpy as np

from scaler_core.graphblas_loader import graphblas_module

# Graphs with at least this many nodes use the GraphBLAS frontier (when the library passed its self-test):
# measured at parity with the walk on 2 workers there, ahead once more workers make rounds wider, and
# never ahead below (benchmarks/README.md, "The scheduler's frontier").
GRAPHBLAS_MIN_NODES = 1_000_000


def _int_array(values: np.ndarray) -> array.array:
    column = array.array("q")
    column.frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return column


def successor_csr(n: int, dep_indptr: np.ndarray, dep_indices: np.ndarray):
    """Reverse adjacency: node i is a dependency of ``succ_indices[succ_indptr[i]:succ_indptr[i + 1]]``."""
    dependents = np.repeat(np.arange(n, dtype=np.int64), np.diff(dep_indptr))
    order = np.argsort(dep_indices, kind="stable")
    succ_indices = dependents[order]
    succ_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(dep_indices, minlength=n), out=succ_indptr[1:])
    return succ_indptr, succ_indices


def _count_down(batch: Sequence[int], ptr, idx, counters) -> List[int]:
    """Decrement the counter of every neighbour (in CSR ptr/idx) of each batch node; those reaching 0."""
    reached_zero = []
    for node in batch:
        for neighbour in idx[ptr[node]:ptr[node + 1]]:
            counters[neighbour] -= 1
            if counters[neighbour] == 0:
                reached_zero.append(neighbour)
    return reached_zero


class PythonFrontier:
    path = "python"

    def __init__(self, n: int, dep_indptr: np.ndarray, dep_indices: np.ndarray):
        succ_indptr, succ_indices = successor_csr(n, dep_indptr, dep_indices)
        self._dep_ptr, self._dep_idx = _int_array(dep_indptr), _int_array(dep_indices)
        self._succ_ptr, self._succ_idx = _int_array(succ_indptr), _int_array(succ_indices)
        self._remaining = _int_array(np.diff(dep_indptr))
        self._pending = _int_array(np.diff(succ_indptr))

    def pending(self, node: int) -> int:
        return self._pending[node]

    def remaining(self, node: int) -> int:
        """Dependencies of `node` not yet succeeded (0: it may run once its payload is here)."""
        return self._remaining[node]

    def dependencies(self, node: int):
        return self._dep_idx[self._dep_ptr[node]:self._dep_ptr[node + 1]]

    def complete(self, batch: Sequence[int]) -> List[int]:
        return _count_down(batch, self._succ_ptr, self._succ_idx, self._remaining)

    def release(self, batch: Sequence[int]) -> List[int]:
        return _count_down(batch, self._dep_ptr, self._dep_idx, self._pending)

    def successors(self, node: int):
        return self._succ_idx[self._succ_ptr[node]:self._succ_ptr[node + 1]]

    def reopen(self, node: int) -> List[int]:
        """A finished node will finish again (its result was lost): its successors wait for it anew
        and it needs its dependencies' results again. Returns the dependencies whose results had
        already been released (nobody needed them any more), which are gone too."""
        for successor in self._succ_idx[self._succ_ptr[node]:self._succ_ptr[node + 1]]:
            self._remaining[successor] += 1
        released = []
        for dependency in self._dep_idx[self._dep_ptr[node]:self._dep_ptr[node + 1]]:
            if self._pending[dependency] == 0:
                released.append(dependency)
            self._pending[dependency] += 1
        return released

    def descendants(self, roots: Sequence[int]) -> List[int]:
        ptr, idx = self._succ_ptr, self._succ_idx
        seen = set(roots)
        stack = list(roots)
        found = []
        while stack:
            node = stack.pop()
            for successor in idx[ptr[node]:ptr[node + 1]]:
                if successor not in seen:
                    seen.add(successor)
                    found.append(successor)
                    stack.append(successor)
        return found


class GraphBLASFrontier(PythonFrontier):
    """Big batches as sparse products, small ones by the inherited array walk, on shared counters.

    A sparse product costs ~130 us of fixed overhead (measured: benchmarks/scheduler_graph.py), so a
    batch below SPARSE_MIN_BATCH nodes is cheaper to walk; both update the same counters."""

    path = "graphblas"
    SPARSE_MIN_BATCH = 512

    def __init__(self, n: int, dep_indptr: np.ndarray, dep_indices: np.ndarray, module=None):
        super().__init__(n, dep_indptr, dep_indices)
        gb = module or graphblas_module()
        self._gb = gb
        self._n = n
        dependents = np.repeat(np.arange(n, dtype=np.int64), np.diff(dep_indptr))
        dependencies = np.asarray(dep_indices, dtype=np.int64)
        ones = np.ones(len(dependencies), dtype=np.int32)
        # Both stored by row so that each product reads only the rows of the batch's nodes.
        self._to_successors = gb.Matrix.from_coo(dependencies, dependents, ones, nrows=n, ncols=n, dup_op=gb.binary.plus)
        self._to_dependencies = gb.Matrix.from_coo(dependents, dependencies, ones, nrows=n, ncols=n, dup_op=gb.binary.plus)
        # numpy counters for the bulk path, seen through memoryviews (fast scalar access) by the walk
        self._remaining_array = np.diff(dep_indptr).astype(np.int64)
        self._pending_array = np.bincount(dependencies, minlength=n).astype(np.int64)
        self._remaining = memoryview(self._remaining_array)
        self._pending = memoryview(self._pending_array)

    def _push(self, batch: Sequence[int], matrix):
        nodes = np.asarray(batch, dtype=np.int64)
        vector = self._gb.Vector.from_coo(nodes, np.ones(len(nodes), dtype=np.int32), size=self._n,
                                          dup_op=self._gb.binary.plus)
        reached, counts = self._gb.semiring.plus_times(vector @ matrix).new().to_coo()
        return reached.astype(np.int64, copy=False), counts

    def complete(self, batch: Sequence[int]) -> List[int]:
        if len(batch) < self.SPARSE_MIN_BATCH:
            return super().complete(batch)
        return self._sparse_count_down(batch, self._to_successors, self._remaining_array)

    def release(self, batch: Sequence[int]) -> List[int]:
        if len(batch) < self.SPARSE_MIN_BATCH:
            return super().release(batch)
        return self._sparse_count_down(batch, self._to_dependencies, self._pending_array)

    def _sparse_count_down(self, batch: Sequence[int], matrix, counters: np.ndarray) -> List[int]:
        """`_count_down` as one product: how many batch nodes each neighbour has, subtracted at once."""
        neighbours, counts = self._push(batch, matrix)
        counters[neighbours] -= counts
        return neighbours[counters[neighbours] == 0].tolist()

    def descendants(self, roots: Sequence[int]) -> List[int]:
        """Level by level: each level is one product while it is wide, a walk while it is narrow."""
        seen = np.zeros(self._n, dtype=bool)
        frontier = np.unique(np.asarray(roots, dtype=np.int64))
        seen[frontier] = True
        found = []
        ptr, idx = self._succ_ptr, self._succ_idx
        while len(frontier):
            if len(frontier) >= self.SPARSE_MIN_BATCH:
                reached, _ = self._push(frontier, self._to_successors)
            else:
                reached = np.fromiter((s for node in frontier.tolist() for s in idx[ptr[node]:ptr[node + 1]]),
                                      dtype=np.int64)
            reached = np.unique(reached)
            frontier = reached[~seen[reached]]
            seen[frontier] = True
            found.append(frontier)
        return np.concatenate(found).tolist() if found else []


def make_frontier(n: int, dep_indptr: np.ndarray, dep_indices: np.ndarray, force: str = ""):
    """The frontier for a graph of n nodes: GraphBLAS from GRAPHBLAS_MIN_NODES on, if it works here."""
    if force == "graphblas" or (not force and n >= GRAPHBLAS_MIN_NODES):
        module = graphblas_module()
        if module is not None:
            return GraphBLASFrontier(n, dep_indptr, dep_indices, module)
    return PythonFrontier(n, dep_indptr, dep_indices)
