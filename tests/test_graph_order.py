"""Culling and ordering on integer arrays: the GraphBLAS and pure-Python paths agree."""

import operator
import random

import numpy as np
import pytest

from scaler_core import GraphCycleError
from scaler_core.client import graph_order
from scaler_core.client.graph import convert_legacy_graph
from scaler_core.client.graph_order import CycleFound, cull_and_order

from tests import helpers_tasks as tasks

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


@pytest.fixture(params=PATHS)
def ordering_path(request, monkeypatch):
    monkeypatch.setattr(graph_order, "GRAPHBLAS_MIN_NODES", 0 if request.param == "graphblas" else 10**12)
    return request.param


def test_graphs_through_the_client_on_each_path(client, ordering_path):
    graph = {"x0": 1}
    for n in range(1, 500):
        graph[f"x{n}"] = (operator.add, f"x{n - 1}", 1)
    graph["bad"] = (tasks.fail, "x10")
    graph["after_bad"] = (operator.add, "bad", "x20")
    assert client.get(graph, keys=["x499", "x250"]) == {"x499": 500, "x250": 251}
    with pytest.raises(tasks.CustomError):
        client.get(graph, keys=["after_bad"])
    with pytest.raises(GraphCycleError) as info:
        client.get({"a": (operator.neg, "c"), "b": (operator.neg, "a"), "c": (operator.neg, "b")}, keys=["c"])
    assert set(info.value.cycle) == {"a", "b", "c"}


def test_cancel_a_graph_on_each_path(client, ordering_path):
    graph = {"slow": (tasks.sleep_and_return, 30, 1), "next": (operator.neg, "slow")}
    futures = client.submit_graph(convert_legacy_graph(graph), ["next", "slow"])
    assert futures["next"].cancel() and futures["slow"].cancel()
    assert client.submit(tasks.square, 4).result(timeout=30) == 16
