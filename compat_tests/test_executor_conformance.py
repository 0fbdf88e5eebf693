"""Part 3: ``concurrent.futures`` conformance, written from the library docs.

Every test runs against ``ProcessPoolExecutor`` (to validate the test itself)
and against ``ScalerExecutor`` on the shared session cluster. Tasks that must
stay busy block on a gate file that the test creates to release them; no test
sleeps to wait for a condition.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Future,
    ProcessPoolExecutor,
    as_completed,
    wait,
)

import pytest

from compat_tests import executor_helpers as helpers
from scaler_dask import ScalerExecutor

pytestmark = pytest.mark.timeout(90)

RESULT_LIMIT = 60  # seconds any single result may take before a test fails


class Gate:
    """A file whose creation releases ``block_until_file_exists`` tasks."""

    def __init__(self, path):
        self.path = str(path)

    def open(self):
        with open(self.path, "w"):
            pass


@pytest.fixture
def gate(tmp_path):
    return Gate(tmp_path / "gate")


@pytest.fixture(params=["process", "scaler"])
def make_executor(request, gate):
    """A factory of executors of the parametrized kind, all shut down after the test."""
    created = []

    def make(max_workers=2, **options):
        if request.param == "process":
            # forkserver: children do not inherit the test process's threads.
            executor = ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("forkserver"), **options)
        else:
            address = request.getfixturevalue("scaler_address")
            executor = ScalerExecutor(max_workers, address=address, **options)
        created.append(executor)
        return executor

    make.kind = request.param
    yield make
    gate.open()  # release blocked tasks before waiting for them
    for executor in created:
        executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def executor(make_executor):
    return make_executor()


def occupy_all_workers(executor, gate, count=2):
    """Futures that keep ``count`` workers busy until the gate opens, once they run."""
    return [executor.submit(helpers.block_until_file_exists, gate.path) for _ in range(count)]


def poll_until(condition, limit=RESULT_LIMIT):
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# --- submit and results ------------------------------------------------------


def test_submit_returns_a_standard_future_with_the_result(executor):
    future = executor.submit(helpers.square, 7)
    assert isinstance(future, Future)
    assert future.result(timeout=RESULT_LIMIT) == 49
    assert future.done() and not future.cancelled() and not future.running()
    assert future.exception() is None


def test_submit_passes_arguments_named_like_its_own_parameters(executor):
    future = executor.submit(helpers.capture, 1, self=2, fn=3)
    assert future.result(timeout=RESULT_LIMIT) == ((1,), {"self": 2, "fn": 3})


def test_submit_takes_fn_positionally_only(executor):
    with pytest.raises(TypeError):
        executor.submit(fn=helpers.square)


def test_exception_keeps_its_type_and_attributes(executor):
    future = executor.submit(helpers.raise_custom, 5)
    error = future.exception(timeout=RESULT_LIMIT)
    assert isinstance(error, helpers.CustomError)
    assert (error.code, error.detail) == (5, "detail")
    with pytest.raises(helpers.CustomError):
        future.result()


def test_result_timeout_raises_timeout_error(executor, gate):
    future = executor.submit(helpers.block_until_file_exists, gate.path)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    gate.open()
    assert future.result(timeout=RESULT_LIMIT) == gate.path


def test_exception_timeout_raises_timeout_error(executor, gate):
    future = executor.submit(helpers.block_until_file_exists, gate.path)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.2)


# --- map -----------------------------------------------------------------------


def test_map_yields_results_in_order(executor):
    assert list(executor.map(helpers.square, range(20))) == [x * x for x in range(20)]


def test_map_stops_at_the_shortest_iterable(executor):
    assert list(executor.map(helpers.add, range(5), range(10, 13))) == [10, 12, 14]


def test_map_of_nothing_is_empty(executor):
    assert list(executor.map(helpers.square, [])) == []


@pytest.mark.parametrize("chunksize", [1, 3, 7, 100])
def test_map_chunksize_keeps_order(executor, chunksize):
    assert list(executor.map(helpers.square, range(50), chunksize=chunksize)) == [x * x for x in range(50)]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_keeps_no_reference_to_a_yielded_result(executor, chunksize):
    # CPython issue 14406: once the caller lets go of a yielded result, it can be collected
    for result in executor.map(helpers.make_result, range(10), chunksize=chunksize):
        reference = weakref.ref(result)
        del result
        gc.collect()
        poll_until(lambda: reference() is None, limit=10)


def test_map_rejects_chunksize_below_one(executor):
    with pytest.raises(ValueError):
        executor.map(helpers.square, range(3), chunksize=0)


def test_map_raises_when_iteration_reaches_the_failed_call(executor):
    results = executor.map(helpers.raise_if_three, range(6))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(helpers.CustomError):
        next(results)


def test_map_returns_an_iterator_before_results_exist(executor, gate):
    results = executor.map(helpers.block_until_file_exists, [gate.path])
    assert isinstance(results, Iterator)
    gate.open()
    assert list(results) == [gate.path]


def test_map_timeout_raises_timeout_error(executor, gate):
    results = executor.map(helpers.block_until_file_exists, [gate.path], timeout=0.3)
    with pytest.raises(TimeoutError):
        list(results)


def test_map_timeout_counts_from_the_map_call(executor, gate):
    results = executor.map(helpers.square, [1, 2], timeout=RESULT_LIMIT)
    assert list(results) == [1, 4]
    results = executor.map(helpers.block_until_file_exists, [gate.path, gate.path], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        next(results)
    assert time.monotonic() - started < 10


# --- wait and as_completed -------------------------------------------------------


def test_wait_all_completed(executor):
    futures = [executor.submit(helpers.square, x) for x in range(10)]
    done, not_done = wait(futures, timeout=RESULT_LIMIT, return_when=ALL_COMPLETED)
    assert done == set(futures) and not not_done


def test_wait_first_completed_returns_before_the_rest(executor, gate):
    blocked = executor.submit(helpers.block_until_file_exists, gate.path)
    quick = executor.submit(helpers.square, 3)
    done, not_done = wait([blocked, quick], timeout=RESULT_LIMIT, return_when=FIRST_COMPLETED)
    assert quick in done and blocked in not_done


def test_wait_first_exception_returns_at_the_failure(executor, gate):
    blocked = executor.submit(helpers.block_until_file_exists, gate.path)
    failing = executor.submit(helpers.raise_custom, 1)
    done, not_done = wait([blocked, failing], timeout=RESULT_LIMIT, return_when=FIRST_EXCEPTION)
    assert failing in done and blocked in not_done


def test_wait_first_exception_without_failures_waits_for_all(executor):
    futures = [executor.submit(helpers.square, x) for x in range(5)]
    done, not_done = wait(futures, timeout=RESULT_LIMIT, return_when=FIRST_EXCEPTION)
    assert done == set(futures) and not not_done


def test_wait_timeout_returns_unfinished_futures(executor, gate):
    blocked = executor.submit(helpers.block_until_file_exists, gate.path)
    done, not_done = wait([blocked], timeout=0.2)
    assert not done and not_done == {blocked}


def test_as_completed_yields_every_future_once(executor):
    futures = [executor.submit(helpers.square, x) for x in range(10)]
    assert sorted(f.result() for f in as_completed(futures, timeout=RESULT_LIMIT)) == sorted(x * x for x in range(10))


def test_as_completed_yields_finished_futures_first_then_times_out(executor, gate):
    quick = executor.submit(helpers.square, 2)
    quick.result(timeout=RESULT_LIMIT)
    blocked = executor.submit(helpers.block_until_file_exists, gate.path)
    iterator = as_completed([blocked, quick], timeout=0.5)
    assert next(iterator) is quick
    with pytest.raises(TimeoutError):
        next(iterator)


# --- cancel and callbacks -----------------------------------------------------------


def test_cancel_a_queued_future(executor, gate):
    occupy_all_workers(executor, gate)
    queued = [executor.submit(helpers.square, x) for x in range(10)]
    last = queued[-1]
    assert last.cancel()
    assert last.cancelled() and last.done()
    with pytest.raises(CancelledError):
        last.result(timeout=1)
    gate.open()
    done, _ = wait([last], timeout=RESULT_LIMIT)
    assert last in done
    assert [future.result(timeout=RESULT_LIMIT) for future in queued[:5] if not future.cancelled()]


def test_cancel_a_finished_future_fails(executor):
    future = executor.submit(helpers.square, 2)
    future.result(timeout=RESULT_LIMIT)
    assert not future.cancel()
    assert not future.cancelled() and future.result() == 4


def test_done_callback_receives_the_future(executor):
    seen, called = [], threading.Event()

    def callback(future):
        seen.append(future)
        called.set()

    future = executor.submit(helpers.square, 3)
    future.add_done_callback(callback)
    assert called.wait(RESULT_LIMIT)
    assert seen == [future]


def test_done_callback_on_a_finished_future_runs_at_once(executor):
    future = executor.submit(helpers.square, 3)
    future.result(timeout=RESULT_LIMIT)
    seen = []
    future.add_done_callback(seen.append)
    assert seen == [future]


def test_done_callback_runs_on_cancel(executor, gate):
    occupy_all_workers(executor, gate)
    queued = [executor.submit(helpers.square, x) for x in range(10)]
    seen = []
    queued[-1].add_done_callback(seen.append)
    assert queued[-1].cancel()
    assert seen == [queued[-1]] and seen[0].cancelled()


def test_a_queued_future_is_pending_and_a_started_one_running(executor, gate):
    running = occupy_all_workers(executor, gate)
    poll_until(lambda: len(helpers.started_markers(gate.path)) == len(running))
    poll_until(lambda: all(future.running() for future in running))
    queued = [executor.submit(helpers.square, x) for x in range(10)]
    assert not queued[-1].running() and not queued[-1].done()
    assert not running[0].cancel() and running[0].running()
    gate.open()
    assert [future.result(timeout=RESULT_LIMIT) for future in queued] == [x * x for x in range(10)]
    wait(running, timeout=RESULT_LIMIT)
    assert not any(future.running() for future in queued + running)


def test_a_cancelled_future_completes_wait_and_as_completed(executor, gate):
    occupy_all_workers(executor, gate)
    queued = [executor.submit(helpers.square, x) for x in range(10)]
    seen = []
    queued[-1].add_done_callback(lambda future: seen.append(future.cancelled()))
    assert queued[-1].cancel()
    assert seen == [True]
    gate.open()  # the process pool tells waiters of a cancel only when the call would have been sent
    done, not_done = wait(queued[-1:], timeout=RESULT_LIMIT)
    assert done == {queued[-1]} and not not_done
    assert list(as_completed(queued[-1:], timeout=RESULT_LIMIT)) == queued[-1:]


# --- shutdown ------------------------------------------------------------------------


def test_submit_after_shutdown_raises_runtime_error(executor):
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(helpers.square, 1)


def test_shutdown_twice_is_harmless(executor):
    executor.shutdown()
    executor.shutdown()


def test_shutdown_wait_waits_for_pending_work(executor):
    futures = [executor.submit(helpers.sleep_then_return, 0.2, x) for x in range(4)]
    executor.shutdown(wait=True)
    assert all(future.done() for future in futures)
    assert [future.result() for future in futures] == list(range(4))


def test_shutdown_without_wait_still_completes_pending_work(executor):
    futures = [executor.submit(helpers.square, x) for x in range(4)]
    executor.shutdown(wait=False)
    assert [future.result(timeout=RESULT_LIMIT) for future in futures] == [0, 1, 4, 9]


def test_shutdown_cancel_futures_cancels_work_not_started(executor, gate):
    occupy_all_workers(executor, gate)
    queued = [executor.submit(helpers.square, x) for x in range(10)]
    executor.shutdown(wait=False, cancel_futures=True)
    # The process pool cancels from its management thread, so poll.
    poll_until(lambda: queued[-1].cancelled())
    gate.open()
    poll_until(lambda: all(future.done() for future in queued))


def test_shutdown_cancel_futures_spares_running_work(make_executor, gate):
    executor = make_executor()
    running = occupy_all_workers(executor, gate)
    poll_until(lambda: len(helpers.started_markers(gate.path)) == len(running))
    executor.shutdown(wait=False, cancel_futures=True)
    gate.open()
    assert [future.result(timeout=RESULT_LIMIT) for future in running] == [gate.path] * len(running)


def test_shutdown_cancel_futures_right_after_submitting(executor):
    # The documentation: shutdown(cancel_futures=True) cancels the calls not started yet; calls
    # already running complete. With 2 workers and 50 short calls, most never start, some do.
    futures = [executor.submit(time.sleep, 0.1) for _ in range(50)]
    executor.shutdown(wait=True, cancel_futures=True)
    cancelled = [future for future in futures if future.cancelled()]
    others = [future for future in futures if not future.cancelled()]
    assert len(cancelled) > 20
    assert others, "the calls that had started must complete"
    assert all(future.done() and future.exception() is None for future in others)


def test_shutdown_cancel_futures_keeps_finished_results(executor):
    future = executor.submit(helpers.square, 5)
    future.result(timeout=RESULT_LIMIT)
    executor.shutdown(wait=True, cancel_futures=True)
    assert not future.cancelled() and future.result() == 25


def test_context_manager_shuts_down_and_waits(make_executor):
    with make_executor() as executor:
        futures = [executor.submit(helpers.sleep_then_return, 0.1, x) for x in range(3)]
    assert all(future.done() for future in futures)
    with pytest.raises(RuntimeError):
        executor.submit(helpers.square, 1)


# --- construction and initializer --------------------------------------------------------


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_must_be_positive(make_executor, max_workers):
    with pytest.raises(ValueError):
        make_executor(max_workers=max_workers)


def test_initializer_runs_once_per_process_before_its_tasks(make_executor, tmp_path):
    tag = tmp_path.name
    executor = make_executor(initializer=helpers.count_initializer_call, initargs=(tag,))
    results = list(executor.map(helpers.initializer_calls, [tag] * 40))
    assert all(count == 1 for _, count in results)


def test_failing_initializer_breaks_the_executor(make_executor):
    executor = make_executor(initializer=helpers.failing_initializer)
    future = executor.submit(helpers.square, 2)
    with pytest.raises(BrokenExecutor):
        future.result(timeout=RESULT_LIMIT)
    with pytest.raises(BrokenExecutor):
        executor.submit(helpers.square, 2)
