"""Futures as task arguments, and reserialize=, against a real local cluster."""

import concurrent.futures
import operator

import numpy as np
import pytest

from scaler_core import Client, ClientError
from scaler_core.references import InputCancelledError
from tests import helpers_tasks as tasks
from tests.conftest import wait_until


def test_future_as_a_plain_argument_waits_for_its_task(client):
    slow = client.submit(tasks.sleep_and_return, 0.3, 20)
    total = client.submit(operator.add, slow, 22)
    assert total.result(timeout=30) == 42
    assert slow.result(timeout=30) == 20


def test_futures_nested_in_lists_dicts_tuples_and_kwargs(client):
    a = client.submit(tasks.sleep_and_return, 0.2, 1)
    b = client.submit(tasks.square, 3)

    def gather(items, mapping, *, extra):
        return items[0] + items[1][0] + mapping["deep"][0]["b"] + extra

    future = client.submit(gather, [a, (b,)], {"deep": [{"b": b}]}, extra=a)
    assert future.result(timeout=30) == 1 + 9 + 9 + 1
    assert client.submit_verbose(tasks.combine, (a,), {"c": [b]}).result(timeout=30) == (1, 10, (), [9], 4, [])


def test_map_and_starmap_over_futures(client):
    futures = [client.submit(tasks.sleep_and_return, 0.05, n) for n in range(20)]
    assert client.map(tasks.square, futures) == [n * n for n in range(20)]
    assert client.starmap(operator.add, [(f, f) for f in futures]) == [2 * n for n in range(20)]


def test_chain_of_a_hundred_futures(client):
    future = client.submit(tasks.identity, 0)
    for _ in range(100):
        future = client.submit(operator.add, future, 1)
    assert future.result(timeout=60) == 100


def test_failed_input_fails_the_dependent_with_its_own_error(client):
    failing = client.submit(tasks.fail, "the input broke")
    dependent = client.submit(operator.add, failing, 1)
    with pytest.raises(tasks.CustomError, match="the input broke") as raised:
        dependent.result(timeout=30)
    assert type(raised.value) is type(failing.exception(timeout=30))
    # submitted after the failure reached the client: fails at once, the same way
    later = client.submit(tasks.identity, [failing])
    with pytest.raises(tasks.CustomError, match="the input broke"):
        later.result(timeout=30)


def test_cancelled_input_fails_the_dependent_with_a_cancelled_error_naming_it(client):
    blocker = client.submit(tasks.sleep_and_return, 5, "late")
    dependent = client.submit(tasks.identity, blocker)
    assert blocker.cancel()
    with pytest.raises(concurrent.futures.CancelledError, match=blocker.task_id.hex()[:12]) as raised:
        dependent.result(timeout=30)
    assert isinstance(raised.value, InputCancelledError)
    assert not dependent.cancelled(), "the dependent failed; only its input was cancelled"
    after = client.submit(tasks.identity, blocker)
    with pytest.raises(InputCancelledError):
        after.result(timeout=30)


def test_input_already_read_before_the_dependent_is_submitted(client):
    small = client.submit(tasks.square, 7)
    assert small.result(timeout=30) == 49
    large = client.submit(np.arange, 200_000)
    assert large.result(timeout=30).sum() == 199999 * 200000 // 2
    # the scheduler forgot both tasks when it delivered them: the client sends the values it holds
    assert client.submit(operator.add, small, 1).result(timeout=30) == 50
    assert client.submit(np.sum, large).result(timeout=30) == 199999 * 200000 // 2
    assert client.map(np.sum, [large, large]) == [199999 * 200000 // 2] * 2


def test_input_finishing_while_the_dependent_is_on_its_way(client):
    # inputs that finish around the time their dependents arrive take either path; all must work
    for _ in range(20):
        quick = [client.submit(tasks.identity, n) for n in range(10)]
        assert client.map(operator.add, quick, quick) == [2 * n for n in range(10)]


def test_large_input_goes_from_worker_to_worker_without_passing_through_the_client(client):
    gets, puts = [], []
    connection = client._connection
    original_put, original_on_storage = connection.put_object, connection.on_storage

    def counting_put(object_id, frames):
        puts.append(sum(len(memoryview(frame).cast("B")) for frame in frames))
        return original_put(object_id, frames)

    def counting_on_storage(message, frames, now):
        gets.append(message.object_id)
        return original_on_storage(message, frames, now)

    connection.put_object, connection.on_storage = counting_put, counting_on_storage
    try:
        big = client.submit(tasks.sleep_and_return, 0.5, None)  # gives the dependents time to arrive
        array = client.submit(lambda _: np.ones(2_000_000), big)  # 16 MB, stored
        totals = [client.submit(np.sum, array) for _ in range(3)]
        assert [total.result(timeout=60) for total in totals] == [2_000_000.0] * 3
        assert all(size < 1_000_000 for size in puts), "the client never uploads the array"
        # the array's own future still gets its value, fetched once for it, never for its dependents
        assert array.result(timeout=30).shape == (2_000_000,)
        assert gets.count(array.task_id) <= 1
    finally:
        connection.put_object, connection.on_storage = original_put, original_on_storage


def test_future_of_another_or_closed_client_is_refused_at_submit(client, combo):
    with Client(combo.address, timeout_seconds=30) as other:
        foreign = other.submit(tasks.square, 2)
        with pytest.raises(ClientError, match="another Client"):
            client.submit(tasks.identity, foreign)
        with pytest.raises(ClientError, match="another Client"):
            client.map(tasks.identity, [foreign])
        foreign.result(timeout=30)
    with pytest.raises(ClientError, match="another Client"):
        client.submit(tasks.identity, {"x": [foreign]})
    assert client.submit(tasks.square, 3).result(timeout=30) == 9, "the client stays usable"


def test_nested_task_submits_with_futures_it_got(client):
    def pipeline(n):
        inner = Client()
        first = inner.submit(operator.mul, n, 2)
        second = inner.submit(operator.add, first, 1)
        return inner.submit(operator.add, [second][0], first).result()

    assert client.submit(pipeline, 5).result(timeout=60) == (5 * 2 + 1) + 5 * 2
    assert client.map(pipeline, range(4)) == [(n * 2 + 1) + n * 2 for n in range(4)]


def test_dependents_release_their_inputs_at_the_scheduler(client, combo):
    a = client.submit(tasks.sleep_and_return, 0.2, 3)
    b = client.submit(operator.mul, a, 2)
    assert b.result(timeout=30) == 6 and a.result(timeout=30) == 3
    # nothing to observe from outside but that the cluster keeps serving: the retained record is gone
    wait_until(lambda: client.submit(tasks.square, 2).result(timeout=30) == 4, timeout=10)


class Scale:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, value):
        return value * self.factor


def test_reserialize_ships_a_callable_changed_in_place_again(client):
    scale = Scale(2)
    assert client.submit(scale, 10).result(timeout=30) == 20
    scale.factor = 3
    assert client.submit(scale, 10).result(timeout=30) == 20, "the client reuses what it shipped"
    assert client.submit(scale, 10, reserialize=True).result(timeout=30) == 30
    assert client.submit(scale, 10).result(timeout=30) == 30, "the fresh copy is the cached one now"
    scale.factor = 4
    assert client.submit_verbose(scale, (10,), {}, reserialize=True).result(timeout=30) == 40
    scale.factor = 5
    assert client.map(scale, [1, 2], reserialize=True) == [5, 10]
    scale.factor = 6
    assert client.starmap(scale, [(1,)], reserialize=True) == [6]
    scale.factor = 7
    assert client.get({"x": (scale, 1)}, keys=["x"], reserialize=True) == {"x": 7}
