"""A short tour on an embedded local cluster: python examples/demo.py

The native client first (submit, map, starmap, a graph, nested tasks), then the Dask drop-in:
a dask.delayed computation, a dask.bag and a dask.array, all computed with
``scheduler=scaler_get`` on the same cluster, each checked against the value Dask's own
single-threaded scheduler gives.
"""

import math
import operator
import time

import dask
import dask.array as da
import dask.bag as db
import numpy as np

from scaler_core import Client, SchedulerClusterCombo
from scaler_dask import scaler_get


def fibonacci(client: Client, n: int):
    if n < 2:
        return n
    a = client.submit(fibonacci, client, n - 1)
    b = client.submit(fibonacci, client, n - 2)
    return a.result() + b.result()


def native_client_tour(client: Client) -> None:
    print("submit:   sqrt(16) =", client.submit(math.sqrt, 16).result())
    print("map:      sum of sqrt(0..99) =", round(sum(client.map(math.sqrt, range(100))), 2))
    print("starmap: ", client.starmap(operator.add, [(1, 10), (2, 20), (3, 30)]))
    graph = {"a": 2, "b": 2, "c": (operator.add, "a", 1), "d": (operator.add, "a", "b"), "e": (operator.sub, "d", "c")}
    print("graph:   ", client.get(graph, keys=["e"]))
    print("nested:   fibonacci(8) =", client.submit(fibonacci, client, 8).result())


def word_lengths(line: str) -> list:
    return [len(word) for word in line.split()]


def dask_collections():
    """name -> (collection, what it computes)"""
    squares = [dask.delayed(pow)(i, 2) for i in range(20)]
    delayed_total = dask.delayed(sum)(squares)
    lines = ["the quick brown fox", "jumps over", "the lazy dog"] * 100
    bag = db.from_sequence(lines, npartitions=6).map(word_lengths).flatten().frequencies()
    x = da.random.default_rng(42).random((2000, 2000), chunks=(500, 500))
    array = (x + x.T).mean(axis=0)[:5]
    return {
        "dask.delayed": (delayed_total, "sum of squares 0..19"),
        "dask.bag": (bag, "word-length frequencies of 300 lines"),
        "dask.array": (array, "(x + x.T).mean(axis=0)[:5] of a 2000x2000 array in 16 chunks"),
    }


def same(ours, reference) -> bool:
    if isinstance(reference, np.ndarray):
        return bool(np.allclose(ours, reference))
    if isinstance(reference, list):
        return sorted(ours) == sorted(reference)
    return ours == reference


def dask_tour(address: str) -> None:
    # scaler_get finds the cluster through dask.config (or SCALER_ADDRESS); with neither set it
    # starts an embedded local cluster of its own.
    with dask.config.set({"scaler.address": address}):
        for name, (collection, description) in dask_collections().items():
            started = time.perf_counter()
            (ours,) = dask.compute(collection, scheduler=scaler_get)
            seconds = time.perf_counter() - started
            (reference,) = dask.compute(collection, scheduler="sync")
            if not same(ours, reference):
                raise SystemExit(f"{name}: scaler_get gave {ours!r}, Dask's sync scheduler {reference!r}")
            tasks = len(collection.__dask_graph__())
            shown = np.round(ours, 4).tolist() if isinstance(ours, np.ndarray) else sorted(ours) \
                if isinstance(ours, list) else ours
            print(f"{name + ':':14}{description}: {shown} ({tasks} tasks, {seconds:.2f} s, matches dask sync)")


def main():
    with SchedulerClusterCombo(n_workers=2) as cluster, Client(address=cluster.address) as client:
        native_client_tour(client)
        dask_tour(cluster.address)


if __name__ == "__main__":
    main()
