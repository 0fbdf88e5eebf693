"""Helpers shared by workloads."""

import os
import time

from benchmarks import measure


class Stopwatch:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def all_process_pids():
    return [os.getpid()] + [process.pid for process in measure.descendants()]


def cpu_ms_per_task(cpu_before, cpu_after, n_tasks):
    return round((cpu_after - cpu_before) * 1000.0 / max(1, n_tasks), 4)


def named_processes(system):
    """{role: pid} for client, scheduler, workers and any other descendant (object storage, nanny, ...)."""
    roles = {"client": os.getpid()}
    scheduler = system.scheduler_pid()
    if scheduler and scheduler != os.getpid():
        roles["scheduler"] = scheduler
    try:
        workers = system.worker_pids()
    except Exception:  # noqa: BLE001 - worker discovery is best effort
        workers = []
    for index, pid in enumerate(workers):
        roles[f"worker{index}"] = pid
    known = set(roles.values())
    for process in measure.descendants():
        if process.pid not in known:
            try:
                if "resource_tracker" in " ".join(process.cmdline()):
                    continue
            except Exception:  # noqa: BLE001
                continue
            roles[f"other-{process.pid}"] = process.pid
    return roles
