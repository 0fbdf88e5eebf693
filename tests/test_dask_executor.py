"""ScalerExecutor basics (the full conformance suite is compat_tests/)."""

from __future__ import annotations

import os
import time
from concurrent.futures import BrokenExecutor, Future, as_completed

import pytest

import dask
import dask.array as da

from scaler_dask import ScalerExecutor

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


def test_dead_cluster_breaks_pending_futures():
    executor = ScalerExecutor(max_workers=1)
    try:
        future = executor.submit(time.sleep, 60)
        executor._cluster.shutdown()
        with pytest.raises(BrokenExecutor):
            future.result(timeout=90)
        with pytest.raises(BrokenExecutor):
            executor.submit(square, 1)
    finally:
        executor.shutdown(wait=False)


def test_invalid_max_workers():
    with pytest.raises(ValueError):
        ScalerExecutor(0)
