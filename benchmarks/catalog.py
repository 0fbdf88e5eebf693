"""The benchmark cases: which workload, sizes (full and --quick), which systems, which metrics.

Sizes come from issue 4. Systems known to be slow get a cap on the size parameter so that a full run
finishes in reasonable time; a capped cell is labelled with the size it actually ran (rates and per-node
times stay comparable, totals do not)."""

from dataclasses import dataclass, field

W = "benchmarks.workloads."
TASK_SYSTEMS = ["ours", "ours-journal", "ours-executor", "upstream", "distributed", "ppe"]
CLUSTER_SYSTEMS = ["ours", "ours-journal", "upstream", "distributed"]
DASK_SYSTEMS = ["ours", "ours-executor", "distributed", "ppe", "dask-threaded", "dask-processes"]
GRAPH_SYSTEMS = ["ours", "ours-journal", "upstream", "distributed", "dask-threaded", "dask-processes"]
DATA_HEAVY_SYSTEMS = ["ours", "ours-held", "distributed", "dask-threaded"]

# Column order of the tables.
SYSTEM_ORDER = ["ours", "ours-journal", "ours-held", "ours-executor", "upstream", "distributed", "ppe", "dask-threaded", "dask-processes",
                "pyzmq-floor"]
# run only when named in --systems (variants of a system, to measure what an option costs)
OPT_IN_SYSTEMS = {"ours-journal", "ours-held"}


@dataclass
class Case:
    case_id: str
    workload: str
    title: str
    function: str
    params: dict
    systems: list
    metrics: list  # (metric key, label, "higher" | "lower" | None)
    not_applicable: list = field(default_factory=list)  # shown as N/A without running
    size_param: str = None
    caps: dict = field(default_factory=dict)  # system -> max value of size_param
    timeout_factor: float = 1.0

    def params_for(self, system):
        params = dict(self.params)
        cap = self.caps.get(system)
        if self.size_param and cap is not None and params[self.size_param] > cap:
            params[self.size_param] = cap
        return params


def size_label(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# W8 memory: see benchmarks/tree_memory.py and the README's W8 entry.
DATA_HEAVY_METRICS = [("seconds", "seconds", "lower"),
                      ("peak_footprint_mb", "peak memory MB (tree RSS w/o shmem + new /dev/shm)", "lower"),
                      ("peak_tree_rss_mb", "peak summed RSS MB (process tree)", "lower"),
                      ("peak_shm_mb", "new /dev/shm MB at its peak", None)]

THROUGHPUT = [("tasks_per_s", "tasks/s", "higher"), ("cpu_ms_per_task", "CPU ms/task (all procs)", "lower")]


def build_cases(quick):
    q = quick
    cases = []
    for n in ([2000] if q else [10_000, 100_000]):
        cases.append(Case(
            f"W1.map-{size_label(n)}", "W1", f"{size_label(n)} tiny tasks via map",
            W + "w1_tiny_tasks:run_map_throughput", {"n_tasks": n}, TASK_SYSTEMS, THROUGHPUT,
            size_param="n_tasks",
            caps={"upstream": 300 if q else 1000, "distributed": 1000 if q else 10_000}))
    n_trips = 200 if q else 1000
    cases.append(Case(
        f"W2.latency-{size_label(n_trips)}", "W2", f"{n_trips} sequential submit->result",
        W + "w2_latency:run_round_trips", {"n_trips": n_trips}, TASK_SYSTEMS + ["pyzmq-floor"],
        [("p50_ms", "p50 ms", "lower"), ("p99_ms", "p99 ms", "lower")],
        size_param="n_trips", caps={"upstream": 100 if q else 1000}))
    dask_cases = [("array", 160), ("dataframe", 50)] if q else [("array", 660), ("dataframe", 915), ("array", 2080)]
    for kind, size in dask_cases:
        approximate = {160: "600", 50: "600", 660: "10k", 915: "10k", 2080: "100k"}[size]
        # At 100k tasks only the fast Dask paths run: the per-task executors and distributed need many
        # minutes there, and their ratios are measured at 10k.
        systems = DASK_SYSTEMS if size < 2000 else ["ours", "dask-threaded", "dask-processes"]
        cases.append(Case(
            f"W3.{kind}-{approximate}", "W3", f"dask.{kind} graph, ~{approximate} tasks",
            W + "w3_dask_collections:run_dask_collection", {"kind": kind, "size": size}, systems,
            [("seconds", "seconds", "lower"), ("tasks_per_s", "tasks/s", "higher")],
            not_applicable=["upstream"], timeout_factor=1.0 if size < 2000 else 3.0))
    if not q:
        # Issue 7: a dask.array computation of ~1M tasks through scaler_get (compare with W4.map-1M).
        cases.append(Case(
            "W3.array-1M", "W3", "dask.array graph, ~1M tasks", W + "w3_dask_collections:run_dask_collection",
            {"kind": "array", "size": 6580}, ["ours", "distributed", "dask-threaded"],
            [("seconds", "seconds", "lower"), ("tasks_per_s", "tasks/s", "higher"),
             ("scheduler_peak_rss_mb", "scheduler peak RSS MB", "lower")],
            not_applicable=["upstream"], timeout_factor=5.0))
    for n in ([5000] if q else [100_000, 1_000_000]):
        for shape in ("map", "chain", "tree", "random"):
            systems = CLUSTER_SYSTEMS if shape == "map" else GRAPH_SYSTEMS
            cases.append(Case(
                f"W4.{shape}-{size_label(n)}", "W4", f"{shape} graph of {size_label(n)} nodes",
                W + "w4_synthetic_graphs:run_synthetic_graph", {"shape": shape, "n_nodes": n}, systems,
                [("seconds", "seconds", "lower"), ("us_per_node", "us/node", "lower"),
                 ("scheduler_peak_rss_mb", "scheduler peak RSS MB", "lower")],
                size_param="n_nodes",
                caps={"upstream": 200 if q else 2000, "distributed": 500 if q else 20_000,
                      "dask-processes": 200_000},
                timeout_factor=1.0 if n < 1_000_000 else 5.0))
    for function, size, label in ((W + "w5_large_objects:run_array_round_trip", 20 if q else 100, "array-in-out"),
                                  (W + "w5_large_objects:run_send_object", 100 if q else 500, "send-object")):
        systems = CLUSTER_SYSTEMS + (["ppe"] if label == "array-in-out" else []) + ["pyzmq-floor"]
        cases.append(Case(
            f"W5.{label}-{size}MB", "W5", f"{size} MB {label}", function, {"payload_mb": size}, systems,
            [("mb_per_s", "MB/s", "higher"), ("max_peak_rss_mb", "max per-process peak RSS MB", "lower"),
             ("max_peak_over_payload", "peak / payload", "lower"),
             ("max_growth_over_payload", "peak growth / payload", "lower")]))
    n_cpu = 40 if q else 200
    cases.append(Case(
        f"W6.cpu-{n_cpu}x50ms", "W6", f"{n_cpu} tasks of 50 ms pure Python",
        W + "w6_cpu_bound:run_cpu_bound", {"n_tasks": n_cpu, "task_seconds": 0.05}, TASK_SYSTEMS,
        [("efficiency", "efficiency (task CPU / workers x wall)", "higher"),
         ("calibrated_efficiency", "ideal (calibrated) / measured", "higher"), ("seconds", "seconds", "lower")]))
    cases.append(Case(
        "W7.idle", "W7", "idle worker / scheduler RSS", W + "w7_memory:run_idle_memory",
        {"idle_seconds": 0.5 if q else 3.0}, TASK_SYSTEMS,
        [("idle_worker_rss_mb", "idle worker RSS MB", "lower"),
         ("idle_scheduler_rss_mb", "idle scheduler RSS MB", "lower")]))
    n_queued = 10_000 if q else 100_000
    cases.append(Case(
        f"W7.queued-{size_label(n_queued)}", "W7", f"scheduler memory per queued task ({size_label(n_queued)})",
        W + "w7_memory:run_queued_task_memory", {"n_queued": n_queued}, CLUSTER_SYSTEMS,
        [("bytes_per_queued_task", "scheduler bytes/queued task", "lower")],
        not_applicable=["ppe"], size_param="n_queued",
        caps={"upstream": 1000 if q else 10_000, "distributed": 2000 if q else 50_000}))
    cases += data_heavy_cases(q)
    return cases


def data_heavy_cases(q):
    """W8 (issue 15): float64 dask.arrays of random data and a dataframe shuffle of large partitions."""
    float_cases = [  # (case, side, chunk, title)
        ("transpose-add", 4000 if q else 20_000, 1000 if q else 2000, "(x + x.T).mean(), {n}^2 in {k} chunks of {mb} MB"),
        ("matmul", 2000 if q else 12_000, 500 if q else 1500, "(x @ x.T).sum(), {n}^2 in {k} blocks of {mb} MB"),
        ("rechunk", 4000 if q else 16_000, 250 if q else 500,
         "x.rechunk(({c}, {n})).sum() from ({n}, {c}) chunks, {n}^2 ({k} chunks of {mb} MB)"),
    ]
    cases = []
    for case, side, chunk, title in float_cases:
        chunk_mb = (side * chunk if case == "rechunk" else chunk * chunk) * 8 / 1e6
        n_chunks = side // chunk if case == "rechunk" else (side // chunk) ** 2
        cases.append(Case(
            f"W8.{case}", "W8", title.format(n=side, c=chunk, k=n_chunks, mb=f"{chunk_mb:.0f}"),
            W + "w8_data_heavy:run_data_heavy", {"case": case, "side": side, "chunk": chunk},
            DATA_HEAVY_SYSTEMS, DATA_HEAVY_METRICS, timeout_factor=1.0 if q else 5.0))
    partitions, rows = (4, 250_000) if q else (24, 2_000_000)
    cases.append(Case(
        "W8.shuffle", "W8", f"dask.dataframe shuffle on a random key, {partitions} partitions of "
                            f"{rows * 32 / 1e6:.0f} MB",
        W + "w8_data_heavy:run_data_heavy",
        {"case": "shuffle", "partitions": partitions, "rows": rows, "n_keys": 1_000_000},
        DATA_HEAVY_SYSTEMS, DATA_HEAVY_METRICS, timeout_factor=1.0 if q else 5.0))
    side, chunk, limit_mb = (10_000, 1000, 256) if q else (20_000, 2000, 768)
    cases.append(Case(
        "W8.spill", "W8", f"((x - x.mean()) ** 2).mean(), {side}^2 ({side * side * 8 / 1e6:,.0f} MB), "
                          f"memory limit {limit_mb} MB per worker",
        W + "w8_data_heavy:run_data_heavy",
        {"case": "spill", "side": side, "chunk": chunk, "memory_limit_mb_per_worker": limit_mb},
        ["ours", "distributed"], DATA_HEAVY_METRICS + [("peak_spill_directory_mb", "peak spill directory MB", None)],
        not_applicable=["dask-threaded"], timeout_factor=1.0 if q else 5.0))
    return cases
