"""scaler_get: graph forms, key nesting, errors, callbacks, concurrency."""

from __future__ import annotations

import io
import os
import threading
from operator import add

import dask
import pytest
from dask._task_spec import Alias, DataNode, List, Task, TaskRef
from dask.callbacks import Callback
from dask.diagnostics import ProgressBar
from dask.highlevelgraph import HighLevelGraph

from tests.dask_support import configured_address, engine_get  # noqa: F401  (fixtures)
from scaler_dask import get_for, scaler_get
from scaler_dask.convert import GraphCycleError, run_node, to_engine_task

pytestmark = pytest.mark.timeout(120)


def inc(x):
    return x + 1


class MyError(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)
        self.a = a
        self.b = b


def fail_with_my_error(x):
    raise MyError(1, x)


def worker_pid(*_):
    return os.getpid()


def nested_compute(n):
    """Runs inside a worker: computes a small graph on the same cluster."""
    import dask.bag as db

    from scaler_dask import scaler_get as get

    return db.from_sequence(range(n), npartitions=3).map(inc).sum().compute(scheduler=get)


# --- graph forms and keys --------------------------------------------------------


def test_legacy_dict_graph_and_key_nesting(engine_get):
    graph = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    assert engine_get(graph, "z") == 3
    assert engine_get(graph, ["x", ["y", ["z"]]]) == (1, (2, (3,)))
    assert engine_get(graph, [("x")]) == (1,)


def test_tuple_keys_and_literals_equal_to_keys(engine_get):
    graph = {("a", 0): 1, ("a", 1): (inc, ("a", 0)), "b": (add, ("a", 1), 10), "c": "b"}
    assert engine_get(graph, [("a", 1), "b", "c"]) == (2, 12, 12)


def test_new_style_task_spec(engine_get):
    graph = {
        "x": DataNode("x", 5),
        "y": Task("y", inc, TaskRef("x")),
        "l": Task("l", sum, List(TaskRef("x"), TaskRef("y"), 3)),
        "k": Task("k", dict, a=TaskRef("y")),
        "alias": Alias("alias", "l"),
    }
    assert engine_get(graph, ["y", "l", "k", "alias", "x"]) == (6, 14, {"a": 6}, 14, 5)


def test_high_level_graph_and_collections(engine_get):
    graph = HighLevelGraph({"a": {"x": 1, "y": (inc, "x")}, "b": {"z": (add, (inc, "x"), "y")}}, {"a": set(), "b": {"a"}})
    assert engine_get(graph, "z") == 4
    value = dask.delayed(inc)(dask.delayed(add)(1, 2))
    assert value.compute(scheduler=engine_get) == 4
    assert dask.compute(value, value + 1, scheduler=engine_get) == (4, 5)


def test_requested_literal_is_returned_as_is(engine_get):
    payload = {"big": list(range(10))}
    assert engine_get({"x": payload}, "x") is payload
    assert dask.delayed(5).compute(scheduler=engine_get) == 5


def test_unknown_kwargs_are_ignored(engine_get):
    assert engine_get({"x": (inc, 1)}, "x", num_workers=3, pool=None, cache=None, chunksize=2) == 2


def test_keys_are_scoped_per_call(engine_get):
    assert engine_get({"x": (inc, 1)}, "x") == 2
    assert engine_get({"x": (inc, 10)}, "x") == 11
    with pytest.raises(ZeroDivisionError):
        engine_get({"x": (lambda: 1 / 0,)}, "x")
    assert engine_get({"x": (inc, 20)}, "x") == 21


def test_only_needed_tasks_are_shipped():
    from tests.dask_fakes import RecordingClient

    client = RecordingClient()
    graph = {"x": 1, "y": (inc, "x"), "unused": (fail_with_my_error, "x")}
    assert get_for(client)(graph, "y") == 2
    (tasks, keys, _), = client.graph_calls
    assert set(tasks) == {"x", "y"} and keys == ["y"]


def test_simple_tasks_ship_their_function_and_complex_ones_the_node():
    from scaler_core.references import KeyRef

    simple = Task("s", add, TaskRef("a"), 2)
    assert to_engine_task(simple) == (add, (KeyRef("a"), 2), {})
    nested = Task("n", add, Task(None, inc, TaskRef("a")), 2)
    fn, (node, values), kwargs = to_engine_task(nested)
    assert fn is run_node and node is nested and values == {"a": KeyRef("a")}
    assert run_node(nested, {"a": 1}) == 4


# --- errors ---------------------------------------------------------------------------


def test_task_exception_keeps_type_and_attributes(engine_get):
    with pytest.raises(MyError) as caught:
        engine_get({"x": 1, "y": (fail_with_my_error, "x"), "z": (inc, "y")}, "z")
    assert (caught.value.a, caught.value.b) == (1, 1)


def test_missing_requested_key_raises_key_error(engine_get):
    graph = {"x": 1, "y": (inc, "x")}
    with pytest.raises(KeyError):
        engine_get(graph, "nope")
    with pytest.raises(KeyError):
        engine_get(graph, [["nope"], "y"])


def test_missing_dependency_raises_before_running(engine_get):
    with pytest.raises(ValueError, match="Missing dependency"):
        engine_get({"y": (inc, TaskRef("absent"))}, "y")


def test_cycle_raises_dask_and_engine_compatible_error(engine_get):
    from scaler_core.errors import GraphCycleError as EngineCycleError

    graph = {"a": (inc, "b"), "b": (inc, "c"), "c": (inc, "a"), "d": (inc, "a")}
    with pytest.raises(GraphCycleError, match="Cycle detected") as caught:
        engine_get(graph, "d")
    assert isinstance(caught.value, RuntimeError) and isinstance(caught.value, EngineCycleError)


def test_ten_thousand_task_chain_does_not_recurse(engine_get):
    graph = {f"x{i + 1}": (inc, f"x{i}") for i in range(10_000)}
    graph["x0"] = 0
    assert engine_get(graph, "x10000") == 10_000


# --- cluster resolution, concurrency, nesting ------------------------------------------------


def test_scaler_get_uses_configured_address_and_worker_processes(configured_address):
    pids = scaler_get({("p", i): (worker_pid, i) for i in range(8)}, [("p", i) for i in range(8)])
    assert os.getpid() not in pids


def test_get_for_is_not_hijacked_by_persist(engine_get):
    assert getattr(getattr(engine_get, "__self__", engine_get), "persist", None) is None
    import dask.array as da

    (persisted,) = dask.persist(da.arange(10, chunks=3) + 1, scheduler=engine_get)
    assert persisted.sum().compute(scheduler="sync") == 55
    assert len(dict(persisted.__dask_graph__())) == 4


def test_concurrent_calls_from_threads(engine_get):
    results, errors = {}, []

    def compute(n):
        try:
            graph = {"x": n, "y": (inc, "x"), "z": (add, "x", "y")}
            results[n] = engine_get(graph, "z")
        except BaseException as error:  # collected, asserted below
            errors.append(error)

    threads = [threading.Thread(target=compute, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and results == {n: 2 * n + 1 for n in range(8)}


def test_compute_inside_a_task(engine_get):
    graph = {("n", i): (nested_compute, 10 + i) for i in range(3)}
    assert engine_get(graph, [("n", i) for i in range(3)]) == tuple(sum(range(1, 11 + i)) for i in range(3))


# --- callbacks ------------------------------------------------------------------------------


def test_callbacks_see_every_task_in_dependency_order(engine_get):
    events = []
    callback = Callback(
        start=lambda dsk: events.append(("start", len(dsk))),
        pretask=lambda key, dsk, state: events.append(("pre", key)),
        posttask=lambda key, result, dsk, state, worker: events.append(("post", key, result)),
        finish=lambda dsk, state, errored: events.append(("finish", errored, len(state["finished"]))),
    )
    graph = {"x": (inc, 1), "y": (inc, "x"), "z": (add, "x", "y")}
    with callback:
        assert engine_get(graph, "z") == 5
    assert events[0] == ("start", 3) and events[-1] == ("finish", False, 3)
    posts = [event for event in events if event[0] == "post"]
    assert posts == [("post", "x", None), ("post", "y", None), ("post", "z", 5)]
    for key in "xyz":
        assert events.index(("pre", key)) < [event[:2] for event in events].index(("post", key))


def test_callbacks_finish_reports_errors(engine_get):
    finished = []
    with Callback(finish=lambda dsk, state, errored: finished.append(errored)):
        with pytest.raises(MyError):
            engine_get({"x": (fail_with_my_error, 1)}, "x")
    assert finished == [True]


def test_progress_bar_reaches_one_hundred_percent(engine_get):
    import dask.array as da

    output = io.StringIO()
    with ProgressBar(out=output, dt=0.01):
        assert (da.ones(100, chunks=10) + 1).sum().compute(scheduler=engine_get) == 200
    assert "100% Completed" in output.getvalue()


def _config_value(name):
    return dask.config.get(name, "unset")


def test_dask_config_set_around_a_compute_reaches_its_tasks(engine_get):
    value = dask.delayed(_config_value)("scaler-test.answer")
    with dask.config.set({"scaler-test.answer": 42}):
        assert value.compute(scheduler=engine_get) == 42
    assert value.compute(scheduler=engine_get) == "unset"
    with dask.config.set({"scaler-test.answer": 7, "scaler-test.lock": threading.Lock()}):
        assert value.compute(scheduler=engine_get) == 7, "what cannot travel stays behind, the rest goes"
