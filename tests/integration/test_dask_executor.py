"""ScalerExecutor basics (the full conformance suite is compat_tests/)."""

from __future__ import annotations

import gc
import os
from concurrent.futures import BrokenExecutor, CancelledError, Future, as_completed, wait

import pytest

import dask
import dask.array as da

from compat_tests import executor_helpers as helpers
from scaler_core.client.futures import ScalerFuture
from scaler_dask import BrokenScalerExecutor, ScalerExecutor
from scaler_dask.executor import ScalerExecutorFuture
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(120)


def square(x):
    return x * x


def pid(_=None):
    return os.getpid()


@pytest.fixture
def executor(combo):
    with ScalerExecutor(2, address=combo.address) as executor:
        yield executor


def test_submit_map_and_as_completed(executor):
    future = executor.submit(square, 4)
    assert isinstance(future, Future) and future.result(timeout=30) == 16
    assert list(executor.map(square, range(10), chunksize=3)) == [x * x for x in range(10)]
    futures = [executor.submit(square, x) for x in range(5)]
    assert sorted(f.result() for f in as_completed(futures, timeout=30)) == [0, 1, 4, 9, 16]


def test_tasks_run_in_worker_processes(executor):
    assert os.getpid() not in set(executor.map(pid, range(4)))


def test_usable_as_a_dask_scheduler(executor):
    x = da.arange(100, chunks=10)
    assert dask.compute((x * 2).sum(), scheduler=executor) == (9900,)


def test_embedded_cluster_is_owned_and_shut_down():
    executor = ScalerExecutor(max_workers=1)
    processes = executor._cluster.processes()
    assert executor.submit(square, 3).result(timeout=30) == 9
    executor.shutdown(wait=True)
    for process in processes:
        assert process.wait(timeout=30) is not None


def test_dead_cluster_breaks_pending_futures(tmp_path):
    executor = ScalerExecutor(max_workers=1)
    gate = str(tmp_path / "gate")
    try:
        running = executor.submit(helpers.block_until_file_exists, gate)
        queued = [executor.submit(square, x) for x in range(5)]
        wait_until(running.running, 30, message="the first call to start")
        seen = []
        queued[-1].add_done_callback(lambda future: seen.append(future.exception()))
        executor._cluster.shutdown()
        done, not_done = wait([running, *queued], timeout=90)
        assert not not_done
        for future in (running, *queued):
            assert isinstance(future.exception(), BrokenScalerExecutor) and not future.cancelled()
            with pytest.raises(BrokenExecutor):
                future.result()
        assert len(seen) == 1 and isinstance(seen[0], BrokenScalerExecutor), "callbacks see the final state"
        with pytest.raises(BrokenExecutor):
            executor.submit(square, 1)
        with pytest.raises(BrokenExecutor):
            executor.map(square, range(3))
    finally:
        executor.shutdown(wait=False)


def test_failing_initializer_fails_every_pending_call(combo):
    with ScalerExecutor(2, address=combo.address, initializer=helpers.failing_initializer) as executor:
        futures = [executor.submit(square, x) for x in range(20)]
        done, not_done = wait(futures, timeout=60)
        assert not not_done
        assert all(isinstance(future.exception(), BrokenScalerExecutor) for future in futures)
        with pytest.raises(BrokenScalerExecutor):
            executor.submit(square, 1)


# --- the executor's futures are the engine's, with the standard library's states -----------------


def _futures_alive():
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Future))


def test_executor_futures_are_the_engine_futures(executor):
    future = executor.submit(square, 4)
    assert type(future) is ScalerExecutorFuture and isinstance(future, ScalerFuture)
    assert future.result(timeout=30) == 16
    mapped = executor._submit_many(square, [(x,) for x in range(5)])
    assert all(type(item) is ScalerExecutorFuture for item in mapped)
    wait(mapped, timeout=30)
    before = _futures_alive()
    futures = [executor.submit(square, x) for x in range(30)]
    assert _futures_alive() - before < 2 * len(futures), "one future per call: no mirror"
    assert [item.result(timeout=30) for item in futures] == [x * x for x in range(30)]


def occupy(executor, gate, count=2):
    futures = [executor.submit(helpers.block_until_file_exists, gate) for _ in range(count)]
    wait_until(lambda: all(future.running() for future in futures), 30, message="the workers to be busy")
    return futures


def test_pending_until_a_worker_starts_then_running(executor, tmp_path):
    gate = str(tmp_path / "gate")
    running = occupy(executor, gate)
    queued = [executor.submit(square, x) for x in range(4)]
    assert not any(future.running() or future.done() for future in queued), "pending while queued"
    assert queued[-1].cancel(), "a pending future can be cancelled"
    assert queued[-1].cancelled() and wait([queued[-1]], timeout=0).done == {queued[-1]}
    assert not running[0].cancel(), "a running one cannot"
    assert running[0].running() and not running[0].cancelled()
    open(gate, "w").close()
    assert [future.result(timeout=30) for future in running] == [gate, gate]
    assert [future.result(timeout=30) for future in queued[:-1]] == [0, 1, 4]
    with pytest.raises(CancelledError):
        queued[-1].result()


def test_engine_futures_keep_upstream_semantics(executor, tmp_path):
    gate = str(tmp_path / "gate")
    running = occupy(executor, gate)
    engine = executor._client.submit(square, 3)
    assert type(engine) is ScalerFuture and engine.running(), "upstream Scaler: running once submitted"
    assert engine.cancel() and wait([engine], timeout=0).done == {engine}
    open(gate, "w").close()
    wait(running, timeout=30)


def test_shutdown_cancel_futures_cancels_only_calls_not_started(combo, tmp_path):
    gate = str(tmp_path / "gate")
    executor = ScalerExecutor(2, address=combo.address)
    running = occupy(executor, gate)
    queued = [executor.submit(square, x) for x in range(8)]
    executor.shutdown(wait=False, cancel_futures=True)
    done, not_done = wait(queued, timeout=30)
    assert not not_done and all(future.cancelled() for future in queued)
    assert not any(future.done() for future in running)
    open(gate, "w").close()
    assert [future.result(timeout=30) for future in running] == [gate, gate]
    with pytest.raises(RuntimeError):
        executor.submit(square, 1)


def test_invalid_max_workers():
    with pytest.raises(ValueError):
        ScalerExecutor(0)
