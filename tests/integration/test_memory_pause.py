"""A worker past its memory pause threshold starts no new task, with real processes.

The threshold is `worker_memory_limit_bytes * worker_memory_pause_fraction`; a task that leaves
its worker above it (here: it keeps 640 MiB in a global, as a leaking library would) pauses that
worker: the tasks that follow run on the other one, and a paused worker with nothing running that
cannot get below (after `pause_relief_seconds`) is replaced, so nothing waits for ever."""

import psutil
import pytest

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.memory import machine_memory_bytes
from scaler_core.monitor.top import render

from tests import helpers_tasks as tasks
from tests.conftest import monitor_status_when, wait_until

MIB = 2**20
LIMIT = 1024 * MIB   # 512 MiB pause threshold: a fresh worker is far below, one keeping 640 MiB more is past it
HOARD = 640 * MIB


def worker_pids(combo):
    cluster = psutil.Process(combo.cluster_process.pid)
    return {p.pid for p in cluster.children() if p.status() != psutil.STATUS_ZOMBIE}


@pytest.mark.timeout(120)
def test_tasks_after_a_worker_passes_its_pause_threshold_run_on_the_other_worker():
    with SchedulerClusterCombo(n_workers=2, worker_memory_limit_bytes=LIMIT, worker_memory_pause_fraction=0.5,
                               logging_level="ERROR") as combo, Client(combo.address) as client:
        wait_until(lambda: len(worker_pids(combo)) == 2, timeout=30, message="two workers")
        hoarder = client.submit(tasks.hoard, HOARD).result(timeout=60)
        assert psutil.Process(hoarder).memory_info().rss > LIMIT // 2
        status, _ = monitor_status_when(
            combo, lambda shown: any(worker["pid"] == hoarder and worker["paused"] for worker in shown["workers"]),
            "the paused worker in the monitor")
        assert any(str(hoarder) in line and "paused" in line for line in render(status))
        pids = client.map(tasks.pid, range(40))
        assert hoarder not in pids, "no task started on the paused worker"


@pytest.mark.timeout(120)
def test_a_paused_worker_that_cannot_get_below_is_replaced_and_its_work_completes():
    with SchedulerClusterCombo(n_workers=1, worker_memory_limit_bytes=LIMIT, worker_memory_pause_fraction=0.5,
                               heartbeat_interval_seconds=0.5, logging_level="ERROR") as combo, \
            Client(combo.address) as client:
        hoarder = client.submit(tasks.hoard, HOARD).result(timeout=60)
        pids = client.map(tasks.pid, range(10))  # queued behind the pause: they run on its successor
        assert hoarder not in pids and len(set(pids)) == 1
        wait_until(lambda: not psutil.pid_exists(hoarder) or psutil.Process(hoarder).status() == psutil.STATUS_ZOMBIE,
                   timeout=30, message="the paused worker gone")


@pytest.mark.timeout(120)
def test_large_inputs_mapped_from_the_host_store_do_not_pause_their_reader():
    """A 640 MiB object read by a task is mapped, not copied: it is the host store's memory (bounded by
    the object memory limit), so its reader stays below a 512 MiB pause threshold and keeps working."""
    import numpy as np

    with SchedulerClusterCombo(n_workers=1, worker_memory_limit_bytes=LIMIT, worker_memory_pause_fraction=0.5,
                               logging_level="ERROR") as combo, Client(combo.address) as client:
        data = client.send_object(np.ones(HOARD // 8))
        rss, own, total = client.submit(tasks.memory_after_sum, data).result(timeout=60)
        assert total == HOARD // 8
        assert rss > LIMIT // 2 > own, (rss, own)
        assert len(client.map(tasks.pid, range(10))) == 10
        _, shown = monitor_status_when(combo, lambda shown: len(shown["workers"]) == 1, "the worker")
        assert not shown["workers"][0]["paused"]


@pytest.mark.timeout(120)
def test_workers_have_their_share_of_the_machine_as_memory_limit_by_default():
    """What the cluster's object memory limit leaves of the machine, divided among its workers, as
    the monitor shows it."""
    with SchedulerClusterCombo(n_workers=2, logging_level="ERROR") as combo:
        _, shown = monitor_status_when(  # after each worker's first heartbeat
            combo, lambda shown: len(shown["workers"]) == 2 and shown["host_stores"] and
            all(worker["memory_limit_bytes"] for worker in shown["workers"]), "two workers with a memory limit")
        store_limit = shown["host_stores"][0]["memory_limit_bytes"]
        total = machine_memory_bytes()
        expected = (total - min(store_limit, total // 2)) // 2
        assert [worker["memory_limit_bytes"] for worker in shown["workers"]] == [expected, expected]
        assert all(not worker["paused"] for worker in shown["workers"])
