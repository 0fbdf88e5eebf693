"""Crossover of the two graph-ordering paths (scaler_core.client.graph_order).

    python -m benchmarks.graph_ordering [--sizes 10000,100000,1000000] [--repeat 3]

Culls and orders synthetic graphs (chain, tree reduction, random DAG) with the pure-Python path and
with the GraphBLAS path, interleaved, and prints the median seconds of each with min-max.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from scaler_core.client.graph_order import cull_and_order, graphblas_module


def chain(n):
    indptr = np.concatenate([[0], np.arange(n, dtype=np.int64)])
    return indptr, np.arange(n - 1, dtype=np.int64), [n - 1]


def tree(n):
    leaves = (n + 1) // 2
    deps = []
    level = list(range(leaves))
    count = leaves
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            deps.append((level[i], level[i + 1]))
            nxt.append(count)
            count += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    indptr = np.concatenate([[0], np.zeros(leaves, dtype=np.int64), 2 * np.arange(1, len(deps) + 1)])
    return indptr, np.array(deps, dtype=np.int64).ravel(), [count - 1]


def random_dag(n, seed=3):
    rng = np.random.default_rng(seed)
    degrees = rng.integers(0, 4, size=n)
    degrees[0] = 0
    indptr = np.concatenate([[0], np.cumsum(degrees)])
    owners = np.repeat(np.arange(n), degrees)
    indices = (rng.random(len(owners)) * owners).astype(np.int64)
    return indptr, indices, list(range(n - 100, n))


SHAPES = {"chain": chain, "tree": tree, "random": random_dag}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    if graphblas_module() is None:
        raise SystemExit("python-graphblas is not usable here")
    print(f"{'shape':8s} {'nodes':>9s} {'python s':>18s} {'graphblas s':>18s} {'ratio':>6s}")
    for shape, make in SHAPES.items():
        for size in map(int, arguments.sizes.split(",")):
            indptr, indices, roots = make(size)
            times = {"python": [], "graphblas": []}
            for _ in range(arguments.repeat):
                for path in ("python", "graphblas"):
                    started = time.perf_counter()
                    cull_and_order(indptr, indices, roots, force=path)
                    times[path].append(time.perf_counter() - started)
            cells = [f"{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})" for t in times.values()]
            ratio = statistics.median(times["python"]) / statistics.median(times["graphblas"])
            print(f"{shape:8s} {size:9d} {cells[0]:>18s} {cells[1]:>18s} {ratio:6.2f}", flush=True)


if __name__ == "__main__":
    random.seed(0)
    main()
