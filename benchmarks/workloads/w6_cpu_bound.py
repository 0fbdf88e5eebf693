"""W6: pure-Python CPU tasks of ~50 ms each; efficiency = ideal time / measured time, where ideal is
n_tasks * (single task time measured alone) / n_workers."""

import time

from benchmarks import task_functions
from benchmarks.workloads.common import Stopwatch


def prepare(n_tasks, task_seconds):
    """Calibrate on an idle machine, before the system under test starts."""
    iterations = task_functions.calibrate_busy_loop(task_seconds)
    alone = []
    for _ in range(5):
        start = time.perf_counter()
        task_functions.busy_loop(iterations)
        alone.append(time.perf_counter() - start)
    return {"n_tasks": n_tasks, "iterations": iterations, "single_task_seconds": min(alone)}


def run_cpu_bound(system, n_tasks, iterations, single_task_seconds):
    with Stopwatch() as watch:
        results = system.map(task_functions.busy_loop, [iterations] * n_tasks)
    if len(results) != n_tasks:
        raise AssertionError("missing results")
    ideal = n_tasks * single_task_seconds / system.n_workers
    return {
        "n_tasks": n_tasks,
        "single_task_ms": round(single_task_seconds * 1000, 2),
        "seconds": round(watch.seconds, 3),
        "ideal_seconds": round(ideal, 3),
        "efficiency": round(ideal / watch.seconds, 4),
    }
