"""The Client against a real local cluster (SchedulerClusterCombo): every API of the engine issue."""

import asyncio
import concurrent.futures
import math
import operator
import sys
import threading
import time
import traceback

import numpy as np
import pytest

from scaler_core import Client, ClientError, ConnectTimeoutError, GraphCycleError, GraphError, SerializationError
from scaler_core.errors import SchedulerDiedError
from scaler_core.transport import free_tcp_port

from tests import helpers_tasks as tasks
from tests.conftest import wait_until


def test_submit_every_argument_kind(client):
    assert client.submit(tasks.square, 4).result(timeout=30) == 16
    assert client.submit(tasks.combine, 1, 2, 3, 5, c=6, e=7).result(timeout=30) == (1, 2, (3, 5), 6, 4, [("e", 7)])
    assert client.submit(tasks.combine, a=1, c=3).result(timeout=30) == (1, 10, (), 3, 4, [])
    assert client.submit(tasks.keyword_only, x=3).result(timeout=30) == 6
    assert client.submit(time.sleep, 0).result(timeout=30) is None
    assert client.submit(math.sqrt, 16).result(timeout=30) == 4.0
    assert client.submit(lambda x, *, y: x - y, 5, y=3).result(timeout=30) == 2
    local = 7
    assert client.submit(lambda: local * 6).result(timeout=30) == 42


def test_submit_verbose(client):
    future = client.submit_verbose(round, args=(3.15,), kwargs={})
    assert future.result(timeout=30) == 3
    assert client.submit_verbose(tasks.combine, (1,), {"c": 2}).result(timeout=30) == (1, 10, (), 2, 4, [])


def test_map_and_starmap_are_like_the_builtins(client):
    assert sum(client.map(math.sqrt, range(100))) == pytest.approx(661.46, abs=0.01)
    assert client.map(tasks.add, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
    assert client.map(tasks.add, [1, 2, 3, 4], [10, 20]) == [11, 22], "stops at the shortest iterable"
    assert client.starmap(tasks.add, [(1, 10), (2, 20), (3, 30)]) == [11, 22, 33]
    assert client.map(tasks.square, iter(range(2500))) == [n * n for n in range(2500)]
    assert client.map(tasks.square, []) == []


def test_map_ships_the_function_once(client):
    puts = []
    original = client._connection.put_object

    def counting_put(object_id, frames):
        puts.append(object_id)
        return original(object_id, frames)

    client._connection.put_object = counting_put
    try:
        def fresh(x):
            return x + 1

        assert client.map(fresh, range(3000)) == list(range(1, 3001))
    finally:
        client._connection.put_object = original
    assert len(puts) == 1


def test_futures_are_standard(client):
    futures = [client.submit(tasks.sleep_and_return, 0.05 * (n % 3), n) for n in range(9)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == list(range(9))
    called = []
    futures[0].add_done_callback(lambda f: called.append(f.result()))
    assert called == [0]
    assert futures[0].exception() is None and futures[0].done()


def test_many_threads_submitting_while_results_stream_in(client):
    """User threads send task batches on the scheduler socket themselves when the I/O thread is
    idle, and queue them when it is busy: whatever the interleaving, nothing is lost or mixed up."""
    def submit_one_by_one(offset):
        futures = [client.submit(operator.add, offset, n) for n in range(300)]
        return [future.result(timeout=60) for future in futures]

    def map_in_batches(offset):
        return client.map(operator.add, [offset] * 2500, range(2500))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        one_by_one = [pool.submit(submit_one_by_one, 1000 * k) for k in range(4)]
        batched = [pool.submit(map_in_batches, 10_000 * k) for k in range(2)]
        for k, future in enumerate(one_by_one):
            assert future.result(timeout=120) == [1000 * k + n for n in range(300)]
        for k, future in enumerate(batched):
            assert future.result(timeout=120) == [10_000 * k + n for n in range(2500)]


def test_disconnect_while_threads_submit_leaves_nobody_hanging(combo):
    """Submitting threads race the close of the socket they may be sending on: each submit either
    gives a future that settles or raises ClientError, and every thread ends."""
    own = Client(combo.address, timeout_seconds=30)
    started = threading.Event()

    def keep_submitting():
        outcomes = []
        for n in range(100_000):
            try:
                future = own.submit(operator.add, n, 1)
            except (ClientError, SchedulerDiedError):  # closed before, or while, this submit ran
                return outcomes
            started.set()
            outcomes.append(future)
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        submitters = [pool.submit(keep_submitting) for _ in range(3)]
        assert started.wait(30)
        own.disconnect()
        for submitter in submitters:
            futures = submitter.result(timeout=60)
            done, not_done = concurrent.futures.wait(futures, timeout=60)
            assert not not_done
            assert all(f.cancelled() or f.exception() is not None or isinstance(f.result(), int) for f in done)


def test_cancels_racing_arriving_results_leave_the_client_working(client):
    """A user's cancel can land between the I/O thread finding a future and resolving it."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the two threads as finely as possible
    try:
        for _ in range(20):
            futures = client.starmap_futures(operator.add, [(n, 1) for n in range(3000)])
            futures[0].result(timeout=30)  # results are streaming in now
            for future in futures:
                future.cancel()
            done, not_done = concurrent.futures.wait(futures, timeout=60)
            assert not not_done
            assert all(f.cancelled() or f.result() == n + 1 for n, f in enumerate(futures))
            assert not client._connection.closed.is_set()
    finally:
        sys.setswitchinterval(switch_interval)
    assert client.map(operator.add, range(10), range(10)) == [2 * n for n in range(10)]


def test_callbacks_may_submit_from_the_io_thread(client):
    """A done-callback runs on the client's I/O thread, which holds the socket: its submit queues."""
    second = concurrent.futures.Future()
    first = client.submit(tasks.square, 3)
    first.add_done_callback(lambda done: second.set_result(client.submit(tasks.square, done.result())))
    assert second.result(timeout=30).result(timeout=30) == 81


def test_result_timeout(client):
    future = client.submit(tasks.sleep_and_return, 2, 1)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.05)
    future.cancel()


def test_await_future(client):
    async def main():
        return await client.submit(tasks.square, 9)

    assert asyncio.run(main()) == 81


def test_task_exception_keeps_its_type_and_remote_traceback(client):
    future = client.submit(tasks.fail, "bad")
    with pytest.raises(tasks.CustomError) as info:
        future.result(timeout=30)
    assert info.value.a == "bad" and info.value.b == 2
    formatted = "".join(traceback.format_exception(info.value))
    assert "helpers_tasks.py" in formatted and "in fail" in formatted
    assert isinstance(future.exception(), tasks.CustomError)
    # the client stays usable after a task error
    assert client.submit(tasks.square, 3).result(timeout=30) == 9


def test_locally_defined_exception_class(client):
    class LocalError(Exception):
        pass

    def raise_local():
        raise LocalError("local")

    with pytest.raises(Exception) as info:
        client.submit(raise_local).result(timeout=30)
    assert type(info.value).__name__ == "LocalError" and str(info.value) == "local"


def test_unpicklable_things_give_clear_errors(client):
    import threading

    with pytest.raises(SerializationError, match="cannot pickle"):
        client.submit(tasks.identity, threading.Lock())
    with pytest.raises(SerializationError, match="result could not be pickled"):
        client.submit(tasks.unpicklable_result).result(timeout=30)
    with pytest.raises(Exception, match="UnpicklableError|cannot travel"):
        client.submit(tasks.raise_unpicklable_error).result(timeout=30)
    assert client.submit(tasks.square, 2).result(timeout=30) == 4


def test_cancel_queued_and_running_tasks(client, combo):
    running = client.submit(tasks.sleep_and_return, 30, "never")
    blockers = [client.submit(tasks.sleep_and_return, 30, "never") for _ in range(4)]
    queued = client.submit(tasks.square, 5)
    wait_until(lambda: True)
    assert queued.cancel() and queued.cancelled()
    assert running.cancel() and running.cancelled()
    for future in blockers:
        future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        running.result(timeout=1)
    # the standard helpers see cancelled futures as done at once (CANCELLED_AND_NOTIFIED)
    done, not_done = concurrent.futures.wait([queued, running, *blockers], timeout=10)
    assert not not_done
    assert len(list(concurrent.futures.as_completed([queued, running], timeout=10))) == 2
    # workers that ran the cancelled tasks are replaced, and the cluster keeps working
    assert client.map(tasks.square, range(20)) == [n * n for n in range(20)]


def test_large_arguments_and_results_go_through_object_storage(client):
    array = np.arange(2_000_000, dtype=np.float64)  # 16 MB
    result = client.submit(np.multiply, array, 2).result(timeout=60)
    assert result.shape == array.shape and result[-1] == array[-1] * 2


def test_send_object_as_argument_top_level_and_nested(client):
    reference = client.send_object(list(range(1000)), name="numbers")
    assert client.submit(tasks.total, reference).result(timeout=30) == sum(range(1000))
    assert client.submit(tasks.identity, [reference, {"x": reference}]).result(timeout=30)[1]["x"] == list(range(1000))
    big = client.send_object(np.ones(1_000_000))
    assert client.map(np.sum, [big, big]) == [1_000_000.0, 1_000_000.0]
    graph = {"a": (tasks.total, reference), "b": (tasks.add, "a", 1)}
    assert client.get(graph, keys=["b"]) == {"b": sum(range(1000)) + 1}


def test_graph_from_the_readme(client):
    def inc(i):
        return i + 1

    graph = {"a": 2, "b": 2, "c": (inc, "a"), "d": (operator.add, "a", "b"), "e": (operator.sub, "d", "c")}
    assert client.get(graph, keys=["e"]) == {"e": 1}
    assert client.get(graph, keys=["c", "d", "a"]) == {"c": 3, "d": 4, "a": 2}


def test_graph_features(client):
    graph = {
        ("x", 0): 1,
        ("x", 1): 2,
        "alias": ("x", 1),
        "literal": (operator.add, "not-a-key ", "suffix"),
        "nested": (tasks.total, [("x", 0), ("x", 1), (operator.mul, ("x", 1), 10)]),
        "dict": (operator.itemgetter("k"), {"k": ("x", 0)}),
        "deep": (operator.add, (operator.add, ("x", 0), (tasks.square, ("x", 1))), 100),
    }
    result = client.get(graph, keys=["alias", "literal", "nested", "dict", "deep", ("x", 0)])
    assert result == {"alias": 2, "literal": "not-a-key suffix", "nested": 23, "dict": 1, "deep": 105, ("x", 0): 1}


def test_graph_failure_propagates_to_dependents(client):
    graph = {"a": (tasks.fail, "in a"), "b": (tasks.add, "a", 1), "c": (tasks.square, 3)}
    with pytest.raises(tasks.CustomError):
        client.get(graph, keys=["b"])
    assert client.get(graph, keys=["c"]) == {"c": 9}


def test_graph_errors_before_anything_runs(client):
    with pytest.raises(GraphCycleError) as info:
        client.get({"a": (tasks.add, "b", 1), "b": (tasks.add, "a", 1)}, keys=["a"])
    assert set(info.value.cycle) == {"a", "b"}
    from scaler_core import KeyRef

    with pytest.raises(GraphError, match="Missing dependency 'zzz'"):
        client.submit_graph({"a": (tasks.add, (KeyRef("zzz"), 1), {})}, ["a"])
    with pytest.raises(KeyError):
        client.get({"a": 1}, keys=["b"])


def test_long_chain_graph(client):
    graph = {"x0": 0}
    for n in range(1, 3000):
        graph[f"x{n}"] = (operator.add, f"x{n - 1}", 1)
    assert client.get(graph, keys=["x2999"]) == {"x2999": 2999}


def test_nested_fibonacci_from_the_readme(client):
    assert client.submit(tasks.fibonacci, client, 8).result(timeout=120) == 21


def test_nested_tree_with_clients_created_inside_tasks(client):
    assert client.submit(tasks.tree, 3, 2).result(timeout=120) == 8


def test_profiling_info(client):
    future = client.submit(tasks.sleep_and_return, 0.2, 1)
    with pytest.raises(ValueError):
        future.profiling_info()
    assert future.result(timeout=30) == 1
    info = future.profiling_info()
    assert 0.2 <= info.duration_seconds < 5 and info.cpu_seconds < 0.2 and info.peak_memory_bytes > 2**20
    # upstream Scaler's names for the same figures
    assert (info.duration_s, info.cpu_time_s, info.memory_peak) == \
        (info.duration_seconds, info.cpu_seconds, info.peak_memory_bytes)


def test_stream_output_reaches_the_caller(combo):
    import io
    import sys

    captured = io.StringIO()
    saved = sys.stdout
    sys.stdout = captured
    try:
        with Client(combo.address, stream_output=True) as streaming:
            streaming.submit(tasks.noisy, "streamed text").result(timeout=30)
            wait_until(lambda: "streamed text" in captured.getvalue(), timeout=10)
    finally:
        sys.stdout = saved


def test_connecting_to_nothing_fails_within_the_timeout():
    started = time.monotonic()
    with pytest.raises(ConnectTimeoutError):
        Client(f"tcp://127.0.0.1:{free_tcp_port()}", timeout_seconds=1)
    assert time.monotonic() - started < 10


def test_bad_address_is_rejected():
    with pytest.raises(ClientError, match="address"):
        Client("localhost:1234")
    with pytest.raises(ClientError, match="no scheduler address"):
        Client()


def test_shutdown_is_refused_by_a_protected_scheduler(combo):
    client = Client(combo.address)
    with pytest.raises(ClientError, match="refused"):
        client.shutdown()
    with Client(combo.address) as other:
        assert other.submit(tasks.square, 2).result(timeout=30) == 4


def test_disconnected_client_refuses_work(combo):
    client = Client(combo.address)
    client.disconnect()
    with pytest.raises(ClientError):
        client.submit(tasks.square, 1)


def test_map_and_get_draw_a_progress_bar_when_asked(client, capsys):
    assert client.map(tasks.square, range(50), progress=True) == [n * n for n in range(50)]
    err = capsys.readouterr().err
    assert "50/50 tasks" in err and "100%" in err
    assert client.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]
    assert capsys.readouterr().err == "", "off by default"
    assert client.get({"a": 1, "b": (tasks.add, "a", 1)}, keys=["b"], progress=True) == {"b": 2}
    assert "1/1 keys" in capsys.readouterr().err


def test_notify_start_makes_the_future_running(client, tmp_path):
    marker = str(tmp_path / "started")
    started = []
    future = client.submit_verbose(tasks.write_marker_then_sleep, (marker, 1.0), notify_start=True)
    future.on_start(lambda: started.append(True))
    wait_until(lambda: started, timeout=30, message="the task to be reported running")
    assert started == [True] and future.running()
    assert not future.cancel(), "a started future cannot be cancelled, as in concurrent.futures"
    assert future.result(timeout=30) > 0 and not future.running()


def test_a_large_result_is_unpickled_by_its_reader_not_the_io_thread(client):
    future = client.submit(tasks.identity, b"z" * (2 << 20))
    wait_until(future.done, 30, message="the result to arrive")
    assert type(future._result).__name__ == "EncodedResult", "still as it arrived"
    assert future.result() == b"z" * (2 << 20) and future.result() is future.result()
