"""The scheduler's graph frontier on its two paths, driven directly (no sockets, no workers).

    python -m benchmarks.scheduler_graph [--sizes 10000,100000,1000000] [--repeat 3]

For each synthetic shape (chain, tree reduction, random DAG) and size, a fresh process declares the
graph to a `SchedulerState` (GraphSubmit + rows in batches of 1000, as the client sends them) and
plays two workers that answer every dispatched task at once, until the graph is done. Reported:
the scheduler's seconds and microseconds per node, and the process's peak RSS growth (GraphBLAS is
loaded and self-tested before the clock starts, as a running scheduler has it loaded already). Paths run
interleaved, each repetition in its own process so memory is not shared between runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import psutil

from benchmarks.graph_ordering import SHAPES
from scaler_core import protocol
from scaler_core.graph_ids import node_task_id
from scaler_core.graphblas_loader import graphblas_module
from scaler_core.scheduler.state import SchedulerSettings, SchedulerState

CLIENT = b"C|bench"
WORKERS = [b"W|bench|1", b"W|bench|2"]
GRAPH = b"G" * 16


def drive(shape: str, size: int, path: str) -> dict:
    indptr, indices, _ = SHAPES[shape](size)
    n = len(indptr) - 1
    if path == "graphblas" and graphblas_module() is None:  # load and self-test once, outside the timing
        raise SystemExit("python-graphblas is not usable here")
    process = psutil.Process()
    rss_before = process.memory_info().rss
    peak = rss_before
    state = SchedulerState(SchedulerSettings(object_storage_address="tcp://127.0.0.1:1", graph_frontier=path))
    started = time.perf_counter()
    state.on_message(CLIENT, protocol.ClientHello())
    for worker in WORKERS:
        state.on_message(worker, protocol.WorkerHello(worker_id=worker, cluster_id=b"K|bench"))
    requested = np.zeros(n, dtype=np.uint8)
    requested[-1] = 1
    state.on_message(CLIENT, protocol.GraphSubmit(
        graph_id=GRAPH, node_count=n, dependency_offsets=indptr.astype("<i8").tobytes(),
        dependency_indices=indices.astype("<i4").tobytes(), priorities=np.zeros(n, dtype="<i4").tobytes(),
        requested=requested.tobytes()))
    profiling = protocol.Profiling(duration_seconds=0.0001)
    submitted = 0
    finished = 0
    rounds = 0
    while finished < n:
        if submitted < n:  # rows stream in while the graph already runs, as from a real client
            batch = [protocol.make_task(node_task_id(GRAPH, i), b"", b"f", b"args", 0, bool(requested[i]), False, GRAPH)
                     for i in range(submitted, min(n, submitted + 1000))]
            state.on_message(CLIENT, protocol.TaskBatch(tasks=batch))
            submitted += len(batch)
        for destination, message, _ in state.take_outgoing():
            if type(message) is protocol.TaskBatch and destination in state.workers:
                results = [protocol.make_result(task.task_id, "success", b"1", False, profiling) for task in message.tasks]
                state.on_message(destination, protocol.ResultBatch(results=results))
                finished += len(results)
        rounds += 1
        if rounds % 64 == 0:
            peak = max(peak, process.memory_info().rss)
    state.take_outgoing()
    seconds = time.perf_counter() - started
    peak = max(peak, process.memory_info().rss)
    if state.graphs or state.pending:
        raise AssertionError("graph not fully released")
    return {"nodes": n, "seconds": seconds, "us_per_node": seconds * 1e6 / n,
            "peak_growth_mb": (peak - rss_before) / 2**20, "path": path}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", nargs=3, metavar=("SHAPE", "SIZE", "PATH"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        shape, size, path = arguments.one
        print(json.dumps(drive(shape, int(size), path)))
        return
    print(f"{'shape':8s} {'nodes':>9s} {'python us/node':>20s} {'graphblas us/node':>20s} {'py/gb':>6s} "
          f"{'python MB':>10s} {'graphblas MB':>12s}")
    for shape in SHAPES:
        for size in map(int, arguments.sizes.split(",")):
            runs = {"python": [], "graphblas": []}
            for _ in range(arguments.repeat):
                for path in runs:
                    output = subprocess.run([sys.executable, "-m", "benchmarks.scheduler_graph", "--one", shape,
                                             str(size), path], capture_output=True, text=True, check=True, timeout=1800)
                    runs[path].append(json.loads(output.stdout))
            us = {path: [run["us_per_node"] for run in found] for path, found in runs.items()}
            mb = {path: statistics.median(run["peak_growth_mb"] for run in found) for path, found in runs.items()}
            cells = [f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in us.values()]
            ratio = statistics.median(us["python"]) / statistics.median(us["graphblas"])
            print(f"{shape:8s} {size:9d} {cells[0]:>20s} {cells[1]:>20s} {ratio:6.2f} {mb['python']:10.0f} "
                  f"{mb['graphblas']:12.0f}", flush=True)


if __name__ == "__main__":
    main()
