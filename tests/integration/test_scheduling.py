"""Scheduling with real processes: balancing, nested tasks without deadlock, capabilities."""

import time

import pytest

from scaler_core import Client, NoWorkerError, SchedulerClusterCombo
from scaler_core.launch import ChildProcesses
from scaler_core.worker.process import WorkerSettings

from tests import helpers_tasks as tasks


def test_queued_tasks_spread_over_eight_processes():
    with SchedulerClusterCombo(n_workers=1, logging_level="ERROR") as cluster, Client(cluster.address) as client:
        client.submit(tasks.square, 1).result(timeout=30)
        futures = [client.submit(tasks.write_marker_then_sleep, "/dev/null", 4) for _ in range(8)]
        more = ChildProcesses()
        try:
            more.start_cluster(cluster.address, 7, WorkerSettings(), "ERROR", ["/dev/stdout"])
            started = time.monotonic()
            pids = {f.result(timeout=60) for f in futures}
            elapsed = time.monotonic() - started
        finally:
            more.stop_all()
    assert len(pids) == 8, "each of the 8 tasks ran in its own process"
    assert elapsed < 4 * 2.5, "they ran side by side, not one after another"


@pytest.mark.parametrize("n_workers", [1, 2])
def test_nested_tasks_do_not_deadlock_a_full_cluster(n_workers):
    with SchedulerClusterCombo(n_workers=n_workers, logging_level="ERROR") as cluster, \
            Client(cluster.address) as client:
        assert client.submit(tasks.fibonacci, client, 8).result(timeout=120) == 21
        # a three-level tree with every slot busy: more parents than workers wait on children at once
        futures = [client.submit(tasks.tree, 3, 2) for _ in range(3)]
        assert [f.result(timeout=120) for f in futures] == [8, 8, 8]


def test_capability_routing_and_quantities():
    with SchedulerClusterCombo(n_workers=1, allocate_policy="capability", per_worker_capabilities="gpu=2,linux",
                               no_worker_grace_seconds=2, logging_level="ERROR") as cluster, \
            Client(cluster.address) as client:
        assert client.submit_verbose(round, args=(3.15,), kwargs={}, capabilities={"gpu": -1}).result(timeout=30) == 3
        graph = {"a": (tasks.square, 3), "b": (tasks.add, "a", 1)}
        assert client.get(graph, keys=["b"], capabilities={"linux": -1}) == {"b": 10}
        with pytest.raises(NoWorkerError, match="windows"):
            client.submit_verbose(round, args=(1.0,), capabilities={"windows": -1}).result(timeout=30)
