"""Culling and ordering on integer arrays: the GraphBLAS and pure-Python paths agree."""

import random

import numpy as np
import pytest

from scaler_core.client.graph_order import CycleFound, cull_and_order


PATHS = ["python", "graphblas"]


def csr(dependencies):
    indptr, indices = [0], []
    for deps in dependencies:
        indices.extend(deps)
        indptr.append(len(indices))
    return np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int64)


def chain(n):
    return [[]] + [[i - 1] for i in range(1, n)]


def tree(leaves):
    dependencies = [[] for _ in range(leaves)]
    level = list(range(leaves))
    while len(level) > 1:
        next_level = []
        for i in range(0, len(level) - 1, 2):
            dependencies.append([level[i], level[i + 1]])
            next_level.append(len(dependencies) - 1)
        if len(level) % 2:
            next_level.append(level[-1])
        level = next_level
    return dependencies


def random_dag(n, seed=7):
    rng = random.Random(seed)
    return [sorted(set(rng.randrange(i) for _ in range(rng.randint(0, 3)))) if i else [] for i in range(n)]


def assert_valid(dependencies, roots, needed, order):
    expected = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in expected:
            expected.add(node)
            stack.extend(dependencies[node])
    assert set(np.flatnonzero(needed).tolist()) == expected
    assert sorted(order) == sorted(expected)
    position = {node: i for i, node in enumerate(order)}
    for node in order:
        for dep in dependencies[node]:
            assert position[dep] < position[node]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", ["chain", "tree", "random"])
def test_both_paths_order_the_same_graphs(path, shape):
    dependencies = {"chain": chain(3000), "tree": tree(2048), "random": random_dag(5000)}[shape]
    roots = [len(dependencies) - 1, len(dependencies) // 2]
    indptr, indices = csr(dependencies)
    needed, order, used = cull_and_order(indptr, indices, roots, force=path)
    assert used == path
    assert_valid(dependencies, roots, needed, order)


@pytest.mark.parametrize("path", PATHS)
def test_cycles_are_found_by_both_paths(path):
    dependencies = [[], [0, 3], [1], [2], [3]]  # 1 -> 3 -> 2 -> 1
    indptr, indices = csr(dependencies)
    with pytest.raises(CycleFound) as info:
        cull_and_order(indptr, indices, [4], force=path)
    assert {1, 2, 3} <= set(info.value.remaining.tolist())
