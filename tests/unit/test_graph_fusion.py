"""Linear chains fused into single tasks (client/graph_fusion.py): same results, same failures."""

import operator

import numpy as np

from scaler_core.client import graph_fusion
from scaler_core.client.graph import GraphSubmission, convert_legacy_graph


def chain_graph(length):
    graph = {"x0": 1}
    for n in range(1, length):
        graph[f"x{n}"] = (operator.add, f"x{n - 1}", 1)
    return graph


def prepared(graph, keys):
    submission = GraphSubmission(convert_legacy_graph(graph), keys, lambda obj: None)
    return submission, submission.prepare(b"g" * 16)


def test_inner_nodes_disappear_and_tails_keep_the_heads_dependencies():
    graph = chain_graph(25)
    graph["y"] = (operator.mul, "x10", 2)  # x10 has two dependents: a chain ends there
    submission, ordered = prepared(graph, ["x24", "y"])
    assert ordered[0] == "x10" and sorted(ordered[1:]) == ["x24", "y"]
    indptr, indices = submission.structure
    assert indptr.tolist() == [0, 0, 1, 2] and indices.tolist() == [0, 0]
    assert set(submission.fused) == {"x10", "x24"}


def test_requested_and_shared_nodes_are_never_inside_a_chain():
    graph = chain_graph(6)
    submission, ordered = prepared(graph, ["x5", "x2"])
    assert ordered == ["x2", "x5"], "x2 is requested: it ends a chain"


def test_long_chains_split_at_the_step_limit(monkeypatch):
    monkeypatch.setattr(graph_fusion, "MAX_CHAIN_STEPS", 100)
    submission, ordered = prepared(chain_graph(1000), ["x999"])
    assert len(ordered) == 10


def test_find_chains_on_arrays():
    # 0 -> 1 -> 2, 2 -> 3 and 2 -> 4 (2 has two dependents), 4 -> 5
    indptr = [0, 0, 1, 2, 3, 4, 5]
    indices = [0, 1, 2, 2, 4]
    counts = np.bincount(indices, minlength=6).tolist()
    chains, blobs = graph_fusion.find_chains(indptr, indices, range(6), counts, lambda node: False, lambda node: b"s")
    assert chains == {2: [0, 1, 2], 5: [4, 5]} and sorted(blobs) == [1, 2, 5]


def test_run_chain_evaluates_in_a_loop():
    from scaler_core.serialization import dumps_with_references
    from scaler_core.references import KeyRef

    step, _ = dumps_with_references(((KeyRef("p"), KeyRef("p")), {}), lambda obj: graph_fusion.PREVIOUS, True)
    assert graph_fusion.run_chain([abs] + [operator.add] * 5000, (-1,), {}, [step[0]] * 5000) == 2 ** 5000
