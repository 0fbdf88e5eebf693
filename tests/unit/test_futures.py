"""ScalerFuture against the concurrent.futures documentation, without a cluster.

The client's I/O thread is played by direct calls of `_mark_started`, `_settle` and
`_settle_cancelled`; `on_cancel` records what the scheduler would be told.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import re
import threading
from concurrent.futures import (
    FIRST_COMPLETED, CancelledError, as_completed, wait,
)

import pytest

from scaler_core.client import futures as futures_module
from scaler_core.client.futures import EncodedResult, ScalerFuture
from scaler_core.serialization import dumps_frames
from scaler_dask.executor import ScalerExecutorFuture

pytestmark = pytest.mark.timeout(60)


class Scheduler:
    """What a future tells the scheduler through on_cancel."""

    def __init__(self):
        self.cancels = []

    def __call__(self, task_id, pending_only):
        self.cancels.append((task_id, pending_only))


@pytest.fixture
def scheduler():
    return Scheduler()


@pytest.fixture
def future(scheduler):
    return ScalerFuture(b"task-1", scheduler)


# --- cancelling a pending future ----------------------------------------------------------------


def test_cancelled_future_counts_as_done_for_wait_and_as_completed(future, scheduler):
    assert future.cancel()
    assert future.cancelled() and future.done() and not future.running()
    done, not_done = wait([future], timeout=0)
    assert done == {future} and not not_done
    assert list(as_completed([future], timeout=0)) == [future]
    with pytest.raises(CancelledError):
        future.result(timeout=0)
    assert scheduler.cancels == [(b"task-1", False)]


def test_a_waiter_blocked_before_the_cancel_is_released(future):
    returned = []
    waiter = threading.Thread(target=lambda: returned.append(wait([future], timeout=30)))
    waiter.start()
    while not future._waiters:  # CPython installs its waiter on the future; then cancel
        threading.Event().wait(0.001)
    assert future.cancel()
    waiter.join(30)
    assert returned and returned[0].done == {future}


def test_callbacks_run_once_and_see_the_waiters_told(future):
    seen = []

    def callback(done):
        # the final state: waiters were told before any callback, so waiting here returns at once
        seen.append((done.cancelled(), wait([done], timeout=0).done == {done},
                     next(as_completed([done], timeout=0)) is done))

    future.add_done_callback(callback)
    assert future.cancel() and future.cancel()
    assert seen == [(True, True, True)]
    later = []
    future.add_done_callback(later.append)  # on a done future: at once
    assert later == [future]


def test_cancelling_twice_tells_the_scheduler_once(future, scheduler):
    assert future.cancel() and future.cancel()
    assert scheduler.cancels == [(b"task-1", False)]


def test_a_cancel_without_the_scheduler_still_completes_waiters(future, scheduler):
    assert future._cancel_here()
    assert wait([future], timeout=0).done == {future}
    assert scheduler.cancels == []


# --- started (notify_start) ----------------------------------------------------------------------


def test_a_started_future_cannot_be_cancelled(future, scheduler):
    started = []
    future.on_start(lambda: started.append(1))
    future._mark_started()
    future._mark_started()  # reported twice: no harm
    assert started == [1]
    assert not future.cancel() and not future.cancelled()
    assert scheduler.cancels == []
    future._settle(7)
    assert future.result(timeout=0) == 7
    late = []
    future.on_start(lambda: late.append(1))  # already started: at once
    assert late == [1]


def test_running_from_submission_for_engine_futures_only_once_started_for_executor_futures(scheduler):
    engine = ScalerFuture(b"e", scheduler)
    executor = ScalerExecutorFuture(b"x", scheduler, executor=None)
    assert isinstance(executor, ScalerFuture)
    assert engine.running(), "upstream Scaler: running from submission"
    assert not executor.running(), "concurrent.futures: pending until a worker starts the call"
    executor._mark_started()
    assert executor.running() and not executor.cancel()
    executor._settle(1)
    assert not executor.running() and executor.result() == 1


def test_engine_future_cancels_while_its_task_runs_unless_started_was_asked(future, scheduler):
    # no notify_start: the worker never reports a start, so cancel() replaces the running task
    assert future.running() and future.cancel()
    assert scheduler.cancels == [(b"task-1", False)]


def test_cancel_if_pending_asks_only_for_futures_not_started(scheduler):
    pending, started, finished = (ScalerFuture(name, scheduler) for name in (b"p", b"s", b"f"))
    started._mark_started()
    finished._settle(1)
    for future in (pending, started, finished):
        future.cancel_if_pending()
    assert scheduler.cancels == [(b"p", True)]
    assert not pending.done(), "the scheduler's answer settles it"
    pending._settle_cancelled()
    assert pending.cancelled() and wait([pending], timeout=0).done == {pending}


def test_scheduler_cancellation_of_a_started_future_fails_it(future):
    future._mark_started()
    future._settle_cancelled()
    assert future.done() and not future.cancelled()
    with pytest.raises(CancelledError):
        future.result(timeout=0)


def test_a_start_reported_after_the_cancel_changes_nothing(future):
    assert future.cancel()
    future._mark_started()
    assert future.cancelled() and not future.running()


# --- settling ------------------------------------------------------------------------------------


def test_the_first_settle_wins(future):
    future._settle(1)
    future._settle(error=ValueError("late"))
    future._settle_cancelled()
    assert future.result(timeout=0) == 1


def test_a_result_after_the_users_cancel_is_dropped(future):
    assert future.cancel()
    future._settle(1)
    assert future.cancelled()


def test_an_arrived_result_is_unpickled_once_by_its_reader(future):
    value = {"payload": list(range(10))}
    future._settle(EncodedResult(dumps_frames(value)))
    first = future.result(timeout=0)
    assert first == value and future.result() is first


def test_a_result_that_cannot_be_unpickled_fails_each_read(future):
    future._settle(EncodedResult([pickle.dumps(1)[:-3]]))
    for _ in range(2):
        with pytest.raises(TypeError, match="unpickled"):
            future.result(timeout=0)


def test_repr_names_the_state():
    executor = ScalerExecutorFuture(b"x", None, executor=None)
    assert "PENDING" in repr(executor)
    executor._mark_started()
    assert "RUNNING" in repr(executor)
    assert executor.cancel() is False and "RUNNING" in repr(executor)
    cancelled = ScalerFuture(b"c", None)
    cancelled.cancel()
    assert "CANCELLED" in repr(cancelled)


# --- races between a user's cancel and the I/O thread ---------------------------------------------


@pytest.mark.parametrize("rounds", [300])
def test_cancel_racing_start_and_settle_leaves_a_consistent_future(rounds, caplog):
    caplog.set_level(logging.DEBUG, logger="concurrent.futures")
    for index in range(rounds):
        future = ScalerExecutorFuture(b"r%d" % index, None, executor=None)
        calls = []
        future.add_done_callback(calls.append)
        barrier = threading.Barrier(2)
        outcome = {}

        def user():
            barrier.wait()
            outcome["cancelled"] = future.cancel()

        def io_thread():
            barrier.wait()
            future._mark_started()
            future._settle(index)

        threads = [threading.Thread(target=user), threading.Thread(target=io_thread)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert calls == [future]
        assert wait([future], timeout=5, return_when=FIRST_COMPLETED).done == {future}
        if outcome["cancelled"]:
            assert future.cancelled()
        else:
            assert future.result(timeout=0) == index
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


# --- only the public API of Future -----------------------------------------------------------------


def test_futures_module_uses_only_the_public_future_api():
    source = inspect.getsource(futures_module)
    for private in ("_state", "_condition", "_result", "_exception", "_invoke_callbacks", "_done_callbacks",
                    "_waiters"):
        assert not re.search(rf"\.{private}\b", source), private
