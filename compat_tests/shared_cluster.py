"""A Scaler cluster for a whole test session, outside the pytest process tree.

Tests that start a distributed cluster (``distributed.utils_test``) kill
every ``multiprocessing`` child of the test process when they check for
leaks. A cluster started in a separate process (and session) is not such a
child, so it survives them.

``python -m compat_tests.shared_cluster --workers 2`` prints the scheduler
address on its first output line and runs until its stdin is closed.
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


def start_shared_cluster(n_workers: int = 2) -> tuple[subprocess.Popen, str]:
    """Start the cluster process; return it and the scheduler address."""
    environment = dict(os.environ)
    # Workers import scaler_dask and compat_tests helpers by reference.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [REPOSITORY_ROOT, environment.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "compat_tests.shared_cluster", "--workers", str(n_workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPOSITORY_ROOT,
        env=environment,
        start_new_session=True,
        text=True,
    )
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.5)
        if readable:
            line = process.stdout.readline()
            if line.startswith("tcp://"):
                return process, line.strip()
            if not line:
                break
        if process.poll() is not None:
            break
    stop_shared_cluster(process)
    raise RuntimeError("the shared Scaler cluster did not start")


def stop_shared_cluster(process: subprocess.Popen) -> None:
    """Ask the cluster process to stop; kill its whole session if it hangs."""
    try:
        process.stdin.close()
    except OSError:
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    from scaler_core import SchedulerClusterCombo

    with SchedulerClusterCombo(n_workers=arguments.workers) as cluster:
        print(cluster.address, flush=True)
        sys.stdin.read()  # returns when the parent closes our stdin or dies


if __name__ == "__main__":
    main()
