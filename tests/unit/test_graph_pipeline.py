"""The graph pipeline (scaler_core.graph_plan) without processes: one cull, one order, one cycle
check per compute, and the same engine graph from Client.get and scaler_get."""

from __future__ import annotations

import operator
from concurrent.futures import Future

import dask
import dask.array as da
import pytest
from dask._task_spec import Task, TaskRef

import scaler_core.client.client as client_module
import scaler_core.client.graph as graph_module
import scaler_core.graph_plan as graph_plan
import scaler_dask.get as dask_get
from scaler_core import Client
from scaler_core.client import graph_order
from scaler_core.client.graph import GraphSubmission
from scaler_core.errors import GraphCycleError
from scaler_dask import get_for
from scaler_dask.config_forwarding import Configured
from tests.dask_fakes import RecordingClient


def inc(x):
    return x + 1


class _Counted:
    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.fixture
def counts(monkeypatch):
    """Call counters of every cull, order and cycle check the pipeline could do."""
    counted = {}

    def count(module, name, label):
        wrapper = counted.setdefault(label, _Counted(getattr(module, name)))
        monkeypatch.setattr(module, name, wrapper)

    for module in (client_module, graph_module, dask_get):
        count(module, "build_plan", "cull")  # the one walk from the requested keys
    count(graph_plan, "order_nodes", "graph_order")
    count(dask_get, "order", "dask.order")  # priorities that are also the topological order and cycle check
    count(graph_plan, "cycle_error", "cycle")
    for name in ("cull_and_order", "ancestors_python"):  # a second cull
        count(graph_order, name, "legacy " + name)
    count(graph_plan, "_normalise_dask", "normalise")
    return _Calls(counted)


class _Calls:
    """counts["order"]: calls of either orderer."""

    def __init__(self, counted):
        self.counted = counted

    def __getitem__(self, label):
        if label == "order":
            return _Sum(self.counted["graph_order"].calls + self.counted["dask.order"].calls)
        return self.counted[label]

    def __iter__(self):
        return iter(self.counted)


class _Sum:
    def __init__(self, calls):
        self.calls = calls


class _SubmittingClient:
    """Client.get up to what _submit_graph does with the graph (GraphSubmission.prepare)."""

    def __init__(self):
        self.prepared = []

    def make(self):
        client = Client.__new__(Client)
        client.serializer = None

        def submit_graph(tasks, keys, priorities=None, capabilities=None):
            submission = GraphSubmission(tasks, keys, lambda obj: None, priorities)
            submission.prepare(b"g" * 16)
            self.prepared.append(submission)
            futures = {}
            for key in keys:
                futures[key] = Future()
                futures[key].set_result(None)
            return futures

        client.submit_graph = submit_graph
        return client


def _graph():
    graph = {"x": 1, "y": (inc, "x"), "z": (operator.add, "x", "y"), "w": (sum, ["z", "y"]),
             "unused": (inc, "w")}
    for i in range(20):
        graph[f"c{i + 1}"] = (inc, f"c{i}" if i else "w")
    return graph


def test_native_get_culls_orders_and_checks_cycles_once(counts):
    graph = _graph()
    fake = _SubmittingClient()
    fake.make().get(graph, ["c20", "z"])
    assert counts["cull"].calls == 1 and counts["order"].calls == 1 and counts["cycle"].calls == 0
    assert all(counts[label].calls == 0 for label in counts if label.startswith("legacy"))
    assert counts["normalise"].calls == len(graph) - 1, "each needed value is normalised once"
    assert "unused" not in fake.prepared[0].tasks


def test_dask_get_culls_orders_and_checks_cycles_once(counts):
    graph = _graph()
    client = RecordingClient()
    assert get_for(client)(graph, ["c20", "z"]) == (25, 3)
    assert counts["cull"].calls == 1 and counts["order"].calls == 1 and counts["cycle"].calls == 0
    assert all(counts[label].calls == 0 for label in counts if label.startswith("legacy"))
    assert counts["normalise"].calls == len(graph) - 1


def test_dask_get_submission_does_not_plan_again(counts):
    """The plan scaler_get hands to submit_graph is prepared without another cull or order."""
    fake = _SubmittingClient()
    client = fake.make()
    x = da.ones((40, 40), chunks=10)
    with dask.config.set(scheduler=get_for(client)):
        (x + x.T).sum().compute()
    assert counts["cull"].calls == 1 and counts["order"].calls == 1
    assert all(counts[label].calls == 0 for label in counts if label.startswith("legacy"))


def test_big_dask_graphs_are_ordered_by_graph_order_once(counts):
    with dask.config.set({"scaler.dask-order-max-tasks": 5}):
        get_for(RecordingClient())(_graph(), "c20")
    # dask.order is skipped above the limit, graph_order orders
    assert counts["dask.order"].calls == 0 and counts["graph_order"].calls == 1
    assert counts["cull"].calls == 1 and counts["cycle"].calls == 0


def test_a_cycle_is_found_once_and_named(counts):
    graph = {"a": (inc, "b"), "b": (inc, "c"), "c": (inc, "a"), "d": (inc, "a")}
    fake = _SubmittingClient()
    with pytest.raises(GraphCycleError) as caught:
        fake.make().get(graph, ["d"])
    assert set(caught.value.cycle) == {"a", "b", "c"} and counts["cycle"].calls == 1
    with pytest.raises(RuntimeError, match="Cycle detected") as caught:
        get_for(RecordingClient())(graph, "d")
    assert isinstance(caught.value, GraphCycleError) and set(caught.value.cycle) == {"a", "b", "c"}
    assert not fake.prepared


def _engine_graph(plan):
    """Key -> (task, dependency keys): what the engine receives, independent of node numbering.

    The Dask path wraps functions in `Configured` when the process's dask.config differs from its
    import-time baseline (another test module may have loaded dask.dataframe's defaults); that
    wrapper is config forwarding's business, not the plan's, so it is looked through here."""
    def unwrapped(task):
        fn, args, kwargs = task
        return (fn.fn if type(fn) is Configured else fn), args, kwargs

    return {key: (unwrapped(plan[key]), sorted(plan.dependencies_of(node), key=repr))
            for node, key in enumerate(plan.keys_by_id)}


@pytest.mark.parametrize("graph, keys", [
    (_graph(), ["c20", "z"]),
    ({("x", 0): 1, ("x", 1): 2, "alias": ("x", 1), "literal": (operator.add, "not-a-key ", "suffix"),
      "dict": (operator.itemgetter("k"), {"k": ("x", 0)}), "list": (sum, [("x", 0), ("x", 1)])},
     ["alias", "literal", "dict", "list"]),
    ({"a": 1, "t": Task("t", inc, TaskRef("a")), "u": (operator.add, "t", "a")}, ["u"]),
])
def test_native_and_dask_paths_build_the_same_engine_graph(graph, keys):
    fake = _SubmittingClient()
    fake.make().get(graph, keys)
    native = fake.prepared[0].tasks
    recording = RecordingClient()
    get_for(recording)(graph, keys)
    (dask_plan, requested, _), = recording.graph_calls
    assert _engine_graph(native) == _engine_graph(dask_plan)
    assert sorted(requested, key=repr) == sorted(native.requested, key=repr)


def test_engine_form_goes_through_the_same_plan():
    from scaler_core.references import KeyRef

    tasks = {"a": (inc, (1,), {}), "b": (operator.add, (KeyRef("a"), [KeyRef("a")]), {}), "c": (inc, (5,), {})}
    submission = GraphSubmission(tasks, ["b", "a"], lambda obj: None)
    assert submission.prepare(b"g" * 16) == ["a", "b"]
    assert submission.tasks.dependencies_of(submission.tasks._ids["b"]) == ["a"]
