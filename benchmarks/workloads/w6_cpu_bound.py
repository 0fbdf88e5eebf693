"""W6: pure-Python CPU tasks of ~50 ms each.

efficiency = CPU seconds the tasks themselves spent (each task measures its own thread's CPU time inside
the worker) / (n_workers * wall seconds). It is 1.0 when every worker core does task work for the whole
run; scheduling gaps, idle workers at the tail and CPU taken from the workers by the scheduler or client
all lower it. Being a ratio of CPU time to wall time on the same run, it does not move with the core's
clock speed or a calibration taken at another moment (on this VM a calibrated 50 ms task measured
31-49 ms from one run to the next, which put the older "ideal / measured" figure anywhere in 0.7-1.3);
that figure is still reported as calibrated_efficiency.
"""

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
        task_cpu_seconds = system.map(task_functions.busy_loop_cpu_seconds, [iterations] * n_tasks)
    if len(task_cpu_seconds) != n_tasks:
        raise AssertionError("missing results")
    busy = sum(task_cpu_seconds)
    ideal = n_tasks * single_task_seconds / system.n_workers
    return {
        "n_tasks": n_tasks,
        "single_task_ms": round(single_task_seconds * 1000, 2),
        "task_cpu_ms_mean": round(busy / n_tasks * 1000, 2),
        "seconds": round(watch.seconds, 3),
        "efficiency": round(busy / (system.n_workers * watch.seconds), 4),
        "calibrated_efficiency": round(ideal / watch.seconds, 4),
    }
