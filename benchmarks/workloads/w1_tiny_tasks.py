"""W1: many tiny tasks through map; tasks/s and CPU per task summed over every process."""

from benchmarks import measure, task_functions
from benchmarks.workloads.common import Stopwatch, all_process_pids, cpu_ms_per_task


def run_map_throughput(system, n_tasks):
    pids = all_process_pids()
    cpu_before = measure.cpu_seconds_of(pids)
    with Stopwatch() as watch:
        results = system.map(task_functions.increment, range(n_tasks))
    cpu_after = measure.cpu_seconds_of(pids)
    if len(results) != n_tasks or results[-1] != n_tasks:
        raise AssertionError(f"wrong map results: len={len(results)} last={results[-1] if results else None}")
    return {
        "n_tasks": n_tasks,
        "seconds": round(watch.seconds, 4),
        "tasks_per_s": round(n_tasks / watch.seconds, 1),
        "cpu_ms_per_task": cpu_ms_per_task(cpu_before, cpu_after, n_tasks),
    }
