"""Lone results that go from their worker straight to a client on the same host (direct_results.py),
with real processes."""

import os
import signal
import time

import pytest

from scaler_core import Client, SchedulerClusterCombo, direct_results

from tests.conftest import engine_processes, wait_until

pytestmark = pytest.mark.timeout(120)


def answer_when_released(started, release, value):
    with open(started, "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.005)
    return value


def test_a_lone_result_reaches_its_client_while_the_scheduler_is_stopped(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo, \
            Client(combo.address, timeout_seconds=60) as client:
        assert client.submit(pow, 2, 3).result(timeout=30) == 8  # the worker has met this client
        future = client.submit(answer_when_released, str(started), str(release), 42)
        wait_until(started.exists, timeout=30, message="the task running")
        (scheduler,) = engine_processes(combo, "child_entry scheduler")
        os.kill(scheduler.pid, signal.SIGSTOP)
        try:
            release.touch()
            assert future.result(timeout=20) == 42
        finally:
            os.kill(scheduler.pid, signal.SIGCONT)
        # the scheduler heard of it too: the worker is free for the next task, which comes back once
        assert [client.submit(pow, 3, n).result(timeout=30) for n in range(3)] == [1, 3, 9]
        inbox = direct_results.inbox_path(client._connection.client_id)
        assert os.path.exists(inbox)
    assert not os.path.exists(inbox), "the client's inbox outlived it"


def print_and_answer(value):
    print("printed by the task")
    return value


def test_a_task_that_prints_has_its_output_shown_before_its_result(capfd):
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo, \
            Client(combo.address, timeout_seconds=60, stream_output=True) as client:
        for _ in range(3):  # the later ones would go directly if anything could
            assert client.submit(print_and_answer, 7).result(timeout=30) == 7
            assert "printed by the task" in capfd.readouterr().out


def add(a, b):
    return a + b


def test_the_scheduler_and_its_peers_on_one_host_talk_through_inboxes_in_order():
    """Bursts of submits leave as task batches of many sizes, some too large for a datagram (ZeroMQ),
    between lone submits that go by datagram (local_link.py); each result comes back to its future."""
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as combo, \
            Client(combo.address, timeout_seconds=60) as client:
        assert client.submit(add, 1, 2).result(timeout=30) == 3
        scheduler_inbox = client._connection.io.scheduler_inbox
        assert scheduler_inbox, "the welcome named no scheduler inbox"
        path = direct_results.inbox_path(scheduler_inbox)
        assert os.path.exists(path)
        futures, expected = [], []
        for round_ in range(10):
            for index in range(5000 if round_ % 2 else 3):
                futures.append(client.submit(add, index, round_))
                expected.append(index + round_)
        assert [future.result(timeout=60) for future in futures] == expected
    assert not os.path.exists(path), "the scheduler's inbox outlived it"
