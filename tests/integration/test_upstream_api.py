"""What code written for upstream Scaler 2.x expects of the client, the futures and the combo."""

import graphlib
import operator

import pytest

from scaler_core import Client, ClientError, GraphCycleError, SchedulerClusterCombo
from scaler_core.launch import ChildProcesses
from scaler_core.worker.process import WorkerSettings

from tests import helpers_tasks as tasks
from tests.conftest import wait_until


def test_get_without_blocking_returns_futures(client):
    graph = {"a": 2, "b": (operator.add, "a", 3), "c": (operator.mul, "b", "b")}
    futures = client.get(graph, keys=["c", "a"], block=False)
    assert list(futures) == ["c", "a"]
    assert futures["c"].result(timeout=30) == 25 and futures["a"].result(timeout=30) == 2
    assert client.get(graph, ["c"]) == {"c": 25}
    with pytest.raises(KeyError, match="more than once"):
        client.get(graph, ["c", "b", "c"])


def test_a_cycle_is_a_graphlib_cycle_error(client):
    with pytest.raises(graphlib.CycleError) as info:
        client.get({"a": (operator.neg, "b"), "b": (operator.neg, "a")}, keys=["a"])
    assert isinstance(info.value, GraphCycleError)


def test_submit_checks_the_call_against_the_signature(client):
    with pytest.raises(TypeError, match="missing a required argument"):
        client.submit(tasks.add, 1)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        client.submit(tasks.add, 1, 2, c=3)
    with pytest.raises(TypeError):
        client.submit(tasks.keyword_only, 1)
    assert client.submit(tasks.combine, 1, 2, 3, c=4).result(timeout=30) is not None
    assert client.submit(max, [3, 1]).result(timeout=30) == 3  # builtins without a signature still go


def test_running_is_true_until_done_and_cancel_still_works(client):
    slow = client.submit(tasks.sleep_and_return, 30, 1)
    queued = client.submit(tasks.square, 3)
    assert slow.running() and queued.running() and not slow.done()
    assert slow.cancel() and slow.cancelled() and not slow.running()
    assert queued.result(timeout=30) == 9 and not queued.running()


def test_clear_cancels_unfinished_futures_and_frees_objects(client):
    reference = client.send_object(list(range(10)))
    assert client.submit(tasks.total, reference).result(timeout=30) == 45
    pending = [client.submit(tasks.sleep_and_return, 30, n) for n in range(3)]
    client.clear()
    wait_until(lambda: all(future.cancelled() for future in pending), 10, message="cancelled futures")
    with pytest.raises(ClientError, match="freed by clear"):
        client.submit(tasks.total, reference)
    assert client.submit(tasks.square, 5).result(timeout=30) == 25, "the client stays usable"


def test_client_without_an_address_outside_a_worker_is_a_value_error():
    with pytest.raises(ValueError, match="no scheduler address"):
        Client()


def test_combo_without_workers_takes_workers_that_join_later():
    with SchedulerClusterCombo(n_workers=0, logging_level="WARNING") as combo:
        assert combo.get_address() == combo.address
        with Client(combo.address, timeout_seconds=30) as client:
            future = client.submit(tasks.square, 6)
            assert not future.done()
            children = ChildProcesses()
            try:
                children.start_cluster(combo.address, 1, WorkerSettings(), "WARNING", ["/dev/stdout"])
                assert future.result(timeout=60) == 36
            finally:
                children.stop_all()


def test_combo_accepts_the_builtin_event_loop():
    with SchedulerClusterCombo(n_workers=1, event_loop="builtin", logging_level="WARNING") as combo:
        with Client(combo.address, timeout_seconds=30) as client:
            assert client.submit(tasks.square, 2).result(timeout=60) == 4


def test_a_client_serializer_carries_arguments_results_and_objects(combo):
    with Client(combo.address, timeout_seconds=30, serializer=tasks.TaggingSerializer()) as client:
        assert client.submit(tasks.add, 2, b=3).result(timeout=30) == 5
        assert client.map(tasks.square, [1, 2, 3]) == [1, 4, 9]
        reference = client.send_object([1, 2, 3])
        assert client.submit(tasks.total, reference).result(timeout=30) == 6
        assert client.submit(tasks.payload_type, {"a": 1}).result(timeout=30) == "dict", "deserialized on the worker"
        graph = {"a": 4, "b": (tasks.square, "a"), "c": (tasks.add, "b", "a")}
        assert client.get(graph, keys=["c", "b"]) == {"c": 20, "b": 16}
        with pytest.raises(tasks.CustomError, match="boom"):
            client.submit(tasks.fail, "boom").result(timeout=30)


def test_a_serializer_without_both_methods_is_refused(combo):
    with pytest.raises(TypeError, match="serialize"):
        Client(combo.address, serializer=object())


def test_upstream_error_names_and_the_serializer_base(combo):
    from scaler_core import MissingObjects, ProcessorDiedError, Serializer, WorkerDiedError
    from scaler_core.errors import MissingObjectError, SchedulerDiedError, ShutdownRefusedError
    from scaler_core.utility.exceptions import MissingObjects as upstream_missing

    assert MissingObjects is MissingObjectError is upstream_missing and ProcessorDiedError is WorkerDiedError
    assert issubclass(SchedulerDiedError, TimeoutError) and issubclass(ShutdownRefusedError, ValueError)

    class Tagging(Serializer):
        @staticmethod
        def serialize(obj):
            return tasks.TaggingSerializer.serialize(obj)

        @staticmethod
        def deserialize(payload):
            return tasks.TaggingSerializer.deserialize(payload)

    with Client(combo.address, timeout_seconds=30, serializer=Tagging()) as client:
        assert client.submit(tasks.square, 7).result(timeout=30) == 49
    with pytest.raises(TypeError):
        Serializer()


def test_the_combo_exposes_its_processes_as_upstream_does():
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo:
        assert combo._scheduler.is_alive() and combo._worker_manager_process.is_alive()
        with Client(combo.address, timeout_seconds=3) as client:
            assert client.submit(tasks.square, 3).result(timeout=30) == 9
            pending = client.submit(tasks.sleep_and_return, 30, 1)
            combo._scheduler.kill()
            with pytest.raises(TimeoutError):
                pending.result(timeout=30)
        assert not combo._scheduler.is_alive()
