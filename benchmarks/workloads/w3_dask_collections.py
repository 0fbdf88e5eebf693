"""W3: dask.array and dask.dataframe graphs computed through each system's Dask entry point."""

from benchmarks import measure
from benchmarks.workloads.common import Stopwatch, all_process_pids, cpu_ms_per_task


def _count_tasks(collection):
    import dask.base
    expression = dask.base.collections_to_expr([collection], optimize_graph=True).optimize()
    return len(expression.__dask_graph__())


def build_array_graph(side):
    """(x + x.T).mean() over a side x side array of ones in 10 x 10 chunks: blockwise work, a transpose
    that crosses chunks, and a tree reduction. Expected value 2.0."""
    import dask.array as da
    x = da.ones((side, side), chunks=(10, 10))
    return (x + x.T).mean(), 2.0


def build_dataframe_graph(partitions):
    """A column expression then a groupby-sum over `partitions` pandas partitions of 10 rows."""
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    rows = partitions * 10
    frame = pd.DataFrame({"k": np.arange(rows) % 7, "x": np.arange(rows, dtype=float), "y": 1.0})
    expected = (frame.x * 2 + frame.y).groupby(frame.k).sum()
    lazy = dd.from_pandas(frame, npartitions=partitions)
    return lazy.assign(z=lazy.x * 2 + lazy.y).groupby("k").z.sum(), expected


def _check(kind, value, expected):
    if kind == "array":
        if abs(float(value) - expected) > 1e-9:
            raise AssertionError(f"array result {value} != {expected}")
    else:
        import numpy as np
        if not np.allclose(value.sort_index().to_numpy(), expected.sort_index().to_numpy()):
            raise AssertionError("dataframe result differs from pandas")


def run_dask_collection(system, kind, size):
    import os

    import dask
    scheduler = system.dask_scheduler()
    build = build_array_graph if kind == "array" else build_dataframe_graph
    # A warm cluster, as a user's session has after its first compute: the workers have imported
    # numpy/pandas/dask (a second or more per process, the whole timed run at 10k tasks) and every
    # system has cached what it caches. Untimed, the same for every system.
    warm_collection, _ = build(40 if kind == "array" else 16)  # 16 chunks / partitions: enough for every worker
    dask.compute(warm_collection, scheduler=scheduler)
    collection, expected = build(size)
    n_tasks = _count_tasks(collection)
    pids = all_process_pids()
    scheduler_pid = system.scheduler_pid() or os.getpid()
    cpu_before = measure.cpu_seconds_of(pids)
    with measure.PeakRssMonitor({"scheduler": scheduler_pid}, interval_seconds=0.05) as monitor, Stopwatch() as watch:
        (value,) = dask.compute(collection, scheduler=scheduler)
    cpu_after = measure.cpu_seconds_of(pids)
    _check(kind, value, expected)
    return {
        "n_tasks": n_tasks,
        "seconds": round(watch.seconds, 4),
        "tasks_per_s": round(n_tasks / watch.seconds, 1),
        "cpu_ms_per_task": cpu_ms_per_task(cpu_before, cpu_after, n_tasks),
        "scheduler_peak_rss_mb": monitor.peaks_mb().get("scheduler"),
        "scheduler_in_client_process": scheduler_pid == os.getpid(),
    }
