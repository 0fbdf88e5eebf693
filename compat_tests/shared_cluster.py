"""A Scaler cluster for a whole test session, outside the pytest process tree.

Tests that start a distributed cluster (``distributed.utils_test``) kill
every ``multiprocessing`` child of the test process when they check for
leaks, and process-leak checks look for descendants of the test process.
The cluster therefore runs in a detached process: a launcher starts it in a
new session and exits at once, so it is re-parented away from pytest.

``python -m compat_tests.shared_cluster --workers 2`` prints "PID ADDRESS" on
its first output line and runs until its stdin is closed.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_LIMIT_SECONDS = 60


class SharedCluster:
    """Handle on the detached cluster process: its pid and our end of its stdin."""

    def __init__(self, pid: int, stdin, address: str):
        self.pid = pid
        self.stdin = stdin
        self.address = address


def start_shared_cluster(n_workers: int = 2) -> tuple[SharedCluster, str]:
    """Start the detached cluster process; return its handle and the scheduler address."""
    environment = dict(os.environ)
    # Workers import scaler_dask and compat_tests helpers by reference.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [REPOSITORY_ROOT, environment.get("PYTHONPATH")]))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "compat_tests.shared_cluster", "--detach", "--workers", str(n_workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPOSITORY_ROOT,
        env=environment,
        text=True,
    )
    launcher.wait(timeout=STARTUP_LIMIT_SECONDS)  # the launcher exits once the cluster process is started
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        readable, _, _ = select.select([launcher.stdout], [], [], 0.5)
        if readable:
            line = launcher.stdout.readline()
            if not line:
                break
            pid_text, _, address = line.strip().partition(" ")
            if address.startswith("tcp://"):
                return SharedCluster(int(pid_text), launcher.stdin, address), address
    launcher.stdin.close()
    raise RuntimeError("the shared Scaler cluster did not start")


def stop_shared_cluster(cluster: SharedCluster) -> None:
    """Close the cluster's stdin so it shuts down; kill its session if it hangs."""
    try:
        cluster.stdin.close()
    except OSError:
        pass
    deadline = time.monotonic() + 30
    while _is_running(cluster.pid):
        if time.monotonic() > deadline:
            os.killpg(cluster.pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie whose parent has not reaped it yet counts as stopped
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detach", action="store_true", help="start the cluster in a new session and exit")
    arguments = parser.parse_args()
    if arguments.detach:
        # The child inherits our stdin/stdout pipes, so the caller still talks to it.
        subprocess.Popen([sys.executable, "-m", "compat_tests.shared_cluster", "--workers", str(arguments.workers)],
                         start_new_session=True)
        return
    from scaler_core import SchedulerClusterCombo

    with SchedulerClusterCombo(n_workers=arguments.workers) as cluster:
        print(os.getpid(), cluster.address, flush=True)
        sys.stdin.read()  # returns when the caller closes our stdin or dies


if __name__ == "__main__":
    main()
