"""A worker that gets SIGTERM hands its tasks back, the running one too: they run again elsewhere
without counting a retry (what a resource manager's SIGTERM before SIGKILL relies on)."""

import os
import signal

from scaler_core import Client
from tests import helpers_tasks as tasks
from tests.conftest import wait_until
from tests.integration.test_cli import processes  # noqa: F401  (fixture)
from tests.ports import port_block


def test_sigterm_hands_the_running_task_back_without_a_retry(processes, tmp_path):  # noqa: F811
    address = f"tcp://127.0.0.1:{port_block()}"
    # one retry allowed: a retry counted for the interrupted task would fail it with WorkerDiedError
    scheduler = processes.start("scaler_scheduler", address, "--max-task-retries", "1")
    first = processes.start("scaler_cluster", "-n", "1", address)
    marker = tmp_path / "started"
    with Client(address, timeout_seconds=60) as client:
        future = client.submit(tasks.touch_then_sleep, str(marker), 3.0, "done")
        wait_until(marker.exists, timeout=60, interval=0.05, message="the task to start")
        first.send_signal(signal.SIGTERM)  # the supervisor passes it on to its workers
        assert first.wait(30) == 0
        processes.start("scaler_cluster", "-n", "1", address)
        assert future.result(timeout=60) == "done"
    scheduler.send_signal(signal.SIGTERM)
    scheduler.wait(30)
    assert "stopped by SIGTERM" in scheduler.stdout.read() + first.stdout.read()
    assert os.path.exists(marker)
