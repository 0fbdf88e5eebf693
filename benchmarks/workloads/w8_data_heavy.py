"""W8: data-heavy Dask graphs (issue 15), through each system's Dask entry point, as W3.

Cases (sizes in catalog.py): `(x + x.T).mean()`, `(x @ x.T).sum()`, `x.rechunk(...).sum()` on float64
dask.arrays of random data (fixed seed, generated inside the graph's tasks), a dask.dataframe shuffle of
large partitions, and a spill case (`((x - x.mean()) ** 2).mean()`: every chunk of x is held until the
global mean is known, so the intermediates are the whole array) run on a cluster restarted with a
memory limit smaller than the array.

Metrics: seconds of the timed `dask.compute`, and the memory of the whole process tree during it
(`benchmarks/tree_memory.py`): footprint (RSS without shared-memory mappings + new /dev/shm files) and
plain summed RSS. Every result is checked."""

import os
import shutil
import tempfile

from benchmarks.tree_memory import TreeMemorySampler
from benchmarks.workloads.common import Stopwatch

SEED = 42


# --- collections -----------------------------------------------------------------------------------

def _random_array(side, chunks):
    import dask.array as da
    return da.random.default_rng(SEED).random((side, side), chunks=chunks)


def build_transpose_add(side, chunk):
    x = _random_array(side, (chunk, chunk))
    return (x + x.T).mean(), ("close", 1.0, 1e-3)


def build_matmul(side, chunk):
    x = _random_array(side, (chunk, chunk))
    # E[(x @ x.T).sum()] = sum_ij sum_k x_ik x_jk ~ side^3 / 4 (the diagonal adds side^2 / 12)
    return (x @ x.T).sum(), ("relative", side ** 3 / 4.0, 1e-2)


def build_rechunk(side, chunk):
    x = _random_array(side, (side, chunk))
    return x.rechunk((chunk, side)).sum(), ("relative", side * side / 2.0, 1e-3)


def build_spill(side, chunk):
    x = _random_array(side, (chunk, chunk))
    return ((x - x.mean()) ** 2).mean(), ("close", 1.0 / 12.0, 1e-3)


def make_partition(index, rows, n_keys):
    """One pandas partition of the shuffle case: an int64 key and three float64 columns (32 bytes a row)."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(SEED + index)
    return pd.DataFrame({"key": rng.integers(0, n_keys, rows), "a": rng.random(rows),
                         "b": rng.random(rows), "c": rng.random(rows)})


def partition_summary(frame):
    """Per output partition of the shuffle: rows, sum of `a`, distinct keys. After a correct shuffle on
    `key` no key is in two partitions, so the distinct counts add up to the global distinct count."""
    import pandas as pd
    return pd.DataFrame({"rows": [len(frame)], "a_sum": [float(frame["a"].sum())],
                         "distinct_keys": [int(frame["key"].nunique())]})


def build_shuffle(partitions, rows, n_keys, shuffle_method=None):
    import dask.dataframe as dd
    import pandas as pd
    frame = dd.from_map(make_partition, list(range(partitions)), rows=rows, n_keys=n_keys,
                        meta=make_partition(0, 0, n_keys), divisions=[None] * (partitions + 1))
    shuffled = frame.shuffle("key", shuffle_method=shuffle_method)
    meta = pd.DataFrame({"rows": pd.Series([], dtype="int64"), "a_sum": pd.Series([], dtype="float64"),
                         "distinct_keys": pd.Series([], dtype="int64")})
    return shuffled.map_partitions(partition_summary, meta=meta), ("shuffle", partitions, rows, n_keys)


BUILDERS = {"transpose-add": build_transpose_add, "matmul": build_matmul, "rechunk": build_rechunk,
            "spill": build_spill}


def _check(value, expected):
    kind = expected[0]
    if kind == "close":
        if abs(float(value) - expected[1]) > expected[2]:
            raise AssertionError(f"result {float(value)} != {expected[1]} +- {expected[2]}")
    elif kind == "relative":
        if abs(float(value) / expected[1] - 1.0) > expected[2]:
            raise AssertionError(f"result {float(value)} not within {expected[2]:.0%} of {expected[1]}")
    else:  # shuffle: every row arrived, once, and equal keys went to one partition
        import numpy as np
        _, partitions, rows, n_keys = expected
        keys, a_sum = set(), 0.0
        for index in range(partitions):
            part = make_partition(index, rows, n_keys)
            keys.update(np.unique(part["key"].to_numpy()).tolist())
            a_sum += float(part["a"].sum())
        if int(value["rows"].sum()) != partitions * rows:
            raise AssertionError(f"{int(value['rows'].sum())} rows after the shuffle, expected {partitions * rows}")
        if abs(float(value["a_sum"].sum()) - a_sum) > 1e-6 * max(1.0, abs(a_sum)):
            raise AssertionError("column sum changed in the shuffle")
        if int(value["distinct_keys"].sum()) != len(keys):
            raise AssertionError(f"keys split over partitions: {int(value['distinct_keys'].sum())} vs {len(keys)}")


def _count_tasks(collection):
    import dask.base
    expression = dask.base.collections_to_expr([collection], optimize_graph=True).optimize()
    return len(expression.__dask_graph__())


def _build(case, params, system):
    if case == "shuffle":
        # distributed: its own default for a cluster (p2p when pyarrow is there, as here); the others have
        # no p2p and their default ("disk", a partd directory) is meant for one process, so "tasks".
        method = None if system.name == "distributed" else "tasks"
        return build_shuffle(shuffle_method=method, **params) + (method or "default (p2p)",)
    return BUILDERS[case](**params) + (None,)


def _warm_up(case, scheduler, system):
    """Untimed, as W3: the workers import numpy/pandas/dask and every system caches what it caches."""
    import dask
    if case == "shuffle":
        collection, _, _ = _build(case, {"partitions": 4, "rows": 1000, "n_keys": 100}, system)
    else:
        collection, _, _ = _build(case, {"side": 400, "chunk": 100}, system)
    dask.compute(collection, scheduler=scheduler)


SPILL_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "w8-spill")


def _fresh_spill_directory():
    """A new directory on disk under benchmarks/results/ (git-ignored). Directories of earlier runs are
    removed first: the harness runs one case at a time, and a cluster still running when its run ends is
    killed, so its files cannot be removed at the end of the run itself."""
    os.makedirs(SPILL_ROOT, exist_ok=True)
    for name in os.listdir(SPILL_ROOT):
        shutil.rmtree(os.path.join(SPILL_ROOT, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix="run-", dir=SPILL_ROOT)


def run_data_heavy(system, case, memory_limit_mb_per_worker=None, **params):
    import dask
    extra = {}
    spill_directory = None
    if case == "spill":
        from benchmarks.systems.memory_limited import restart_with_memory_limit
        spill_directory = _fresh_spill_directory()
        extra = restart_with_memory_limit(system, memory_limit_mb_per_worker * 1024 * 1024, spill_directory)
        extra["memory_limit_mb_per_worker"] = memory_limit_mb_per_worker
        extra["array_mb"] = round(params["side"] ** 2 * 8 / 1024 / 1024)
    scheduler = system.dask_scheduler()
    _warm_up(case, scheduler, system)
    collection, expected, shuffle_method = _build(case, params, system)
    n_tasks = _count_tasks(collection)
    with TreeMemorySampler(interval_seconds=0.1, disk_directory=spill_directory) as sampler, Stopwatch() as watch:
        (value,) = dask.compute(collection, scheduler=scheduler)
    spilled_mb_at_end = round(_directory_bytes(spill_directory) / 1024 / 1024, 1) if spill_directory else None
    _check(value, expected)
    metrics = {"seconds": round(watch.seconds, 3), "n_tasks": n_tasks, **sampler.metrics(), **extra}
    if shuffle_method:
        metrics["shuffle_method"] = shuffle_method
    if spill_directory:
        metrics["spill_directory_mb_at_end"] = spilled_mb_at_end
    return metrics


def _directory_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total
