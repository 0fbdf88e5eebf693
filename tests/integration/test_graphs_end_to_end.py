"""Graphs through a real cluster: each client ordering path, each scheduler frontier, fused chains."""

import operator

import numpy as np
import pytest

from scaler_core import Client, GraphCycleError, SchedulerClusterCombo
from scaler_core.client import graph_order
from scaler_core.client.graph import convert_legacy_graph
from tests import helpers_tasks as tasks
from tests.unit.test_graph_fusion import chain_graph
from tests.unit.test_graph_order import PATHS as ORDERING_PATHS
from tests.unit.test_scheduler_graphs import PATHS as FRONTIER_PATHS


@pytest.fixture(params=ORDERING_PATHS)
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


# --- end to end: a real cluster whose scheduler is forced onto each frontier path ---------------

@pytest.fixture(scope="module", params=FRONTIER_PATHS)
def frontier_client(request):
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING", graph_frontier=request.param) as cluster:
        with Client(cluster.address, timeout_seconds=30) as client:
            yield client


def test_graphs_end_to_end_on_each_frontier(frontier_client):
    graph = {"x0": 1}
    for n in range(1, 300):
        graph[f"x{n}"] = (operator.add, f"x{n - 1}", 1)
    graph["big"] = (np.ones, 100_000)  # a stored intermediate (above the inline threshold)
    graph["sum"] = (np.sum, "big")
    graph["both"] = (operator.add, "sum", "x299")
    assert frontier_client.get(graph, keys=["both", "x150"]) == {"both": 100_300, "x150": 151}
    graph["bad"] = (tasks.fail, "x10")
    graph["after_bad"] = (operator.add, "bad", "x20")
    with pytest.raises(tasks.CustomError):
        frontier_client.get(graph, keys=["after_bad"])


def test_graph_cancel_end_to_end_on_each_frontier(frontier_client):
    graph = {"slow": (tasks.sleep_and_return, 30, 1), "next": (operator.neg, "slow")}
    futures = frontier_client.submit_graph(convert_legacy_graph(graph), ["next", "slow"])
    assert futures["next"].cancel() and futures["slow"].cancel()
    assert frontier_client.submit(tasks.square, 4).result(timeout=30) == 16


def test_fused_chains_through_a_cluster(client):
    graph = chain_graph(3000)
    graph["side"] = (operator.neg, "x1500")
    assert client.get(graph, keys=["x2999", "side"]) == {"x2999": 3000, "side": -1501}


def test_a_failure_inside_a_chain_reaches_its_tail(client):
    graph = chain_graph(50)
    graph["x20"] = (tasks.fail, "x19")
    with pytest.raises(tasks.CustomError):
        client.get(graph, keys=["x49"])


def test_a_step_using_a_stored_object_is_not_fused_and_still_works(client):
    reference = client.send_object(np.arange(10))
    graph = chain_graph(10)
    graph["x5"] = (operator.add, "x4", reference)
    result = client.get(graph, keys=["x9"])["x9"]
    assert result.tolist() == (np.arange(10) + 9).tolist()
