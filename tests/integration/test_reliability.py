"""Faults provoked for real: killed workers, schedulers and clients, timeouts, bad input."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import zmq

from scaler_core import Client, SchedulerClusterCombo, SchedulerDiedError, TaskTimeoutError, WorkerDiedError, protocol

from tests import helpers_tasks as tasks
from tests.conftest import wait_until


def worker_processes(combo):
    cluster = psutil.Process(combo.cluster_process.pid)
    return [p for p in cluster.children() if p.status() != psutil.STATUS_ZOMBIE]


def read_pids(path):
    try:
        with open(path) as handle:
            return [int(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def test_killed_worker_task_reruns_elsewhere_quickly_and_worker_is_replaced(combo, client, tmp_path):
    wait_until(lambda: len(worker_processes(combo)) == 2, message="two workers")
    marker = str(tmp_path / "marker")
    future = client.submit(tasks.write_marker_then_sleep, marker, 2)
    first_pid = wait_until(lambda: read_pids(marker), timeout=30, message="task start")[0]
    killed_at = time.monotonic()
    os.kill(first_pid, signal.SIGKILL)
    pids = wait_until(lambda: read_pids(marker)[1:], timeout=10, message="task restart")
    assert time.monotonic() - killed_at < 3, "the dead worker's task must be re-run within a second or so"
    assert future.result(timeout=30) == pids[0] != first_pid
    wait_until(lambda: len(worker_processes(combo)) == 2 and first_pid not in
               [p.pid for p in worker_processes(combo)], timeout=15, message="replacement worker")
    assert client.map(tasks.square, range(10)) == [n * n for n in range(10)]


def test_task_that_kills_its_worker_fails_after_retries(combo, client):
    future = client.submit(tasks.kill_own_process)
    with pytest.raises(WorkerDiedError, match="3 times"):
        future.result(timeout=60)
    assert client.map(tasks.square, range(10)) == [n * n for n in range(10)]


def test_chaos_every_result_correct_none_lost_none_twice(combo, client):
    received = {}
    original = client._connection.state._on_result

    def counting(result):
        received[result.task_id] = received.get(result.task_id, 0) + 1
        return original(result)

    client._connection.state._on_result = counting
    try:
        futures = client.starmap_futures(tasks.sleep_and_return, [(0.001, n) for n in range(10_000)])
        deadline = time.monotonic() + 120
        kills = 0
        while True:
            assert time.monotonic() < deadline, "chaos run did not finish"
            # a kill every 1.5 s until everything is done
            _, pending = concurrent.futures.wait(futures, timeout=1.5)
            if not pending:
                break
            victims = worker_processes(combo)
            if victims and not all(f.done() for f in futures):
                victims[kills % len(victims)].send_signal(signal.SIGKILL)
                kills += 1
        assert [f.result() for f in futures] == list(range(10_000))
        assert kills >= 1
    finally:
        client._connection.state._on_result = original
    assert all(count == 1 for count in received.values()), "a result reached the client twice"


def test_task_timeout_stops_the_task_and_replaces_the_worker():
    with SchedulerClusterCombo(n_workers=1, task_timeout_seconds=1, logging_level="ERROR") as cluster:
        with Client(cluster.address) as client:
            started = time.monotonic()
            with pytest.raises(TaskTimeoutError):
                client.submit(tasks.sleep_and_return, 60).result(timeout=30)
            assert time.monotonic() - started < 10
            assert client.submit(tasks.square, 3).result(timeout=30) == 9


def test_scheduler_death_fails_pending_futures_and_cluster_exits():
    with SchedulerClusterCombo(n_workers=1, death_timeout_seconds=3, logging_level="CRITICAL") as cluster:
        client = Client(cluster.address, timeout_seconds=3)
        future = client.submit(tasks.sleep_and_return, 60)
        scheduler = [p for p in cluster.processes() if p.args[-1] == "scheduler"][0]
        scheduler.send_signal(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(SchedulerDiedError):
            future.result(timeout=30)
        assert time.monotonic() - started < 10
        cluster.cluster_process.wait(timeout=20)  # workers and their supervisor give up on their own
        client.disconnect()


def test_killed_client_has_its_tasks_cancelled():
    with SchedulerClusterCombo(n_workers=1, client_timeout_seconds=2, logging_level="ERROR") as cluster:
        script = textwrap.dedent(f"""
            import time
            from scaler_core import Client
            from tests.helpers_tasks import sleep_and_return
            client = Client({cluster.address!r})
            futures = [client.submit_verbose(sleep_and_return, (60,), notify_start=True) for _ in range(5)]
            deadline = time.monotonic() + 30
            while not futures[0].running() and time.monotonic() < deadline:
                time.sleep(0.01)
            print("running" if futures[0].running() else "not running", flush=True)
            time.sleep(120)  # until killed
        """)
        victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                  cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        try:
            assert victim.stdout.readline().strip() == "running", "the victim holds the only worker"
            with Client(cluster.address) as survivor:
                future = survivor.submit(tasks.square, 7)
                victim.kill()
                victim.wait()
                assert future.result(timeout=30) == 49
        finally:
            victim.kill()
            victim.wait()


def test_garbage_and_wrong_role_messages_leave_the_scheduler_working(combo, client):
    context = zmq.Context()
    scheduler = psutil.Process([p for p in combo.processes() if p.args[-1] == "scheduler"][0].pid)
    rss_before = scheduler.memory_info().rss
    try:
        for identity in (b"C|garbage", b"W|garbage", b"X|nobody"):
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(combo.address)
            for payload in ([b"garbage"], [b""], [b"\xff" * 1000], [os.urandom(64), b"extra"],
                            [protocol.encode(protocol.ResultBatch(results=[protocol.TaskResult(task_id=b"x")]))],
                            [protocol.encode(protocol.WorkerDied(worker_id=b"W|x"))]):
                sock.send_multipart(payload)
            sock.close()
        import socket as raw_socket

        for _ in range(3):
            with raw_socket.create_connection(("127.0.0.1", int(combo.address.rsplit(":", 1)[1]))) as raw:
                raw.sendall(os.urandom(4096))
        assert client.map(tasks.square, range(50)) == [n * n for n in range(50)]
    finally:
        context.term()
    assert scheduler.memory_info().rss - rss_before < 10 * 2**20


def test_stopping_the_cluster_fails_pending_futures_at_once():
    cluster = SchedulerClusterCombo(n_workers=1, logging_level="CRITICAL")
    try:
        client = Client(cluster.address, timeout_seconds=60)
        client.submit(tasks.square, 2).result(timeout=30)  # the worker is up
        future = client.submit(tasks.sleep_and_return, 60)
        started = time.monotonic()
        cluster.shutdown()
        with pytest.raises(SchedulerDiedError, match="stopped"):
            future.result(timeout=30)
        assert time.monotonic() - started < 10, "told at once, not after the client's 60 s timeout"
        client.disconnect()
    finally:
        cluster.shutdown()


def test_memory_limit_stops_the_task_with_a_clear_error():
    with SchedulerClusterCombo(n_workers=1, worker_memory_limit_bytes=300 * 2**20, logging_level="ERROR") as cluster:
        with Client(cluster.address) as client:
            with pytest.raises(MemoryError, match="exceeded its limit"):
                client.submit(tasks.allocate_and_sleep, 600 * 2**20, 30).result(timeout=60)
            assert client.submit(tasks.square, 3).result(timeout=30) == 9


def test_uvloop_event_loop():
    pytest.importorskip("uvloop")
    with SchedulerClusterCombo(n_workers=1, event_loop="uvloop", logging_level="ERROR") as cluster:
        with Client(cluster.address) as client:
            assert client.map(tasks.square, range(10)) == [n * n for n in range(10)]
