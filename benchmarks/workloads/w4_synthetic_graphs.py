"""W4: plain dict graphs {key: (fn, *dependency_keys)} of many nodes: time and scheduler peak RSS.

Shapes: chain (fully sequential), tree (binary reduction of n/2 leaves), layered random DAG (width 1000,
each node depends on its predecessor in the previous layer plus up to two random nodes of that layer,
final layer tree-reduced), and map (n independent tiny tasks via map, the baseline the graph times are
compared with)."""

import os
import random

from benchmarks import measure, task_functions
from benchmarks.workloads.common import Stopwatch

RANDOM_DAG_WIDTH = 1000


def chain_graph(n_nodes):
    graph = {"c-0": (task_functions.zero,)}
    for i in range(1, n_nodes):
        graph[f"c-{i}"] = (task_functions.increment, f"c-{i - 1}")
    return graph, [f"c-{n_nodes - 1}"], n_nodes - 1


def _tree_reduce(graph, keys, prefix):
    level = 0
    while len(keys) > 1:
        next_keys = []
        for index in range(0, len(keys) - 1, 2):
            key = f"{prefix}-{level}-{index // 2}"
            graph[key] = (task_functions.add, keys[index], keys[index + 1])
            next_keys.append(key)
        if len(keys) % 2:
            next_keys.append(keys[-1])
        keys = next_keys
        level += 1
    return keys[0]


def tree_graph(n_nodes):
    leaves = max(2, n_nodes // 2)
    graph = {f"leaf-{i}": (task_functions.one,) for i in range(leaves)}
    root = _tree_reduce(graph, list(graph), "sum")
    return graph, [root], leaves


def random_dag_graph(n_nodes, seed=0):
    generator = random.Random(seed)
    width = min(RANDOM_DAG_WIDTH, max(2, n_nodes // 4))
    layers = max(2, n_nodes // width)
    graph = {f"r-0-{j}": (task_functions.one,) for j in range(width)}
    for layer in range(1, layers):
        for j in range(width):
            extra = generator.sample(range(width), generator.randint(0, 2))
            dependencies = [f"r-{layer - 1}-{j}"] + [f"r-{layer - 1}-{k}" for k in extra if k != j]
            graph[f"r-{layer}-{j}"] = (task_functions.sum_modulo, *dependencies)
    root = _tree_reduce(graph, [f"r-{layers - 1}-{j}" for j in range(width)], "final")
    return graph, [root], None


GRAPH_BUILDERS = {"chain": chain_graph, "tree": tree_graph, "random": random_dag_graph}


def _extract(results, key):
    if isinstance(results, dict):
        return results[key]
    if isinstance(results, (list, tuple)):
        return results[0]
    return results


def run_synthetic_graph(system, shape, n_nodes):
    scheduler_pid = system.scheduler_pid() or os.getpid()
    roles = {"scheduler": scheduler_pid, "client": os.getpid()}
    if shape == "map":
        graph_nodes = n_nodes
        with measure.PeakRssMonitor(roles, interval_seconds=0.05) as monitor, Stopwatch() as watch:
            results = system.map(task_functions.increment, range(n_nodes))
        if results[-1] != n_nodes:
            raise AssertionError("wrong map result")
    else:
        graph, keys, expected = GRAPH_BUILDERS[shape](n_nodes)
        graph_nodes = len(graph)
        with measure.PeakRssMonitor(roles, interval_seconds=0.05) as monitor, Stopwatch() as watch:
            results = system.get_graph(graph, keys)
        value = _extract(results, keys[0])
        if hasattr(value, "result"):
            value = value.result()
        if expected is not None and value != expected:
            raise AssertionError(f"{shape} graph result {value!r} != {expected!r}")
    peaks = monitor.peaks_mb()
    return {
        "n_nodes": graph_nodes,
        "seconds": round(watch.seconds, 3),
        "us_per_node": round(watch.seconds * 1e6 / graph_nodes, 2),
        "scheduler_peak_rss_mb": peaks.get("scheduler"),
        "client_peak_rss_mb": peaks.get("client"),
        "scheduler_in_client_process": scheduler_pid == os.getpid(),
    }
