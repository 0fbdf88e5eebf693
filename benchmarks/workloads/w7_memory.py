"""W7: idle memory of workers and scheduler, and scheduler memory per queued task."""

import os
import time

from benchmarks import measure, task_functions
from benchmarks.systems.base import NotSupported

BLOCKER_SECONDS = 3600


def run_idle_memory(system, idle_seconds):
    workers = system.worker_pids()
    time.sleep(idle_seconds)
    worker_rss = [measure.rss_bytes(pid) or 0 for pid in workers]
    scheduler = system.scheduler_pid()
    metrics = {
        "n_workers_seen": len(workers),
        "idle_worker_rss_mb": round(max(worker_rss) / measure.MB, 1),
        "client_rss_mb": round((measure.rss_bytes(os.getpid()) or 0) / measure.MB, 1),
    }
    if scheduler and scheduler != os.getpid():
        metrics["idle_scheduler_rss_mb"] = round((measure.rss_bytes(scheduler) or 0) / measure.MB, 1)
    return metrics


def run_queued_task_memory(system, n_queued):
    """Occupy every worker with a long task, queue n_queued tiny tasks behind them, and divide the
    scheduler's RSS growth by n_queued. The run ends without waiting for the blockers (the harness kills
    the process tree)."""
    scheduler = system.scheduler_pid()
    if scheduler is None:
        raise NotSupported("no scheduler process")
    blockers = [system.submit(task_functions.sleep_seconds, BLOCKER_SECONDS) for _ in range(system.n_workers)]
    time.sleep(1.0)
    before = measure.wait_until_rss_settles(scheduler, settle_seconds=0.5, max_seconds=10)
    start = time.perf_counter()
    queued = [system.submit(task_functions.increment, i) for i in range(n_queued)]
    submit_seconds = time.perf_counter() - start
    after = measure.wait_until_rss_settles(scheduler, settle_seconds=1.0, max_seconds=60)
    done_early = sum(1 for handle in queued[:100] if getattr(handle, "done", lambda: False)())
    return {
        "n_queued": n_queued,
        "submit_seconds": round(submit_seconds, 3),
        "scheduler_rss_before_mb": round(before / measure.MB, 1),
        "scheduler_rss_after_mb": round(after / measure.MB, 1),
        "bytes_per_queued_task": round((after - before) / n_queued, 1),
        "scheduler_in_client_process": scheduler == os.getpid(),
        "tasks_finished_while_blocked": done_early,
        "_abandon_cluster": len(blockers) > 0,  # blockers still run; the harness kills the tree
    }
