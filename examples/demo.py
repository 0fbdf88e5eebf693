"""A short tour on an embedded local cluster: python examples/demo.py"""

import math
import operator

from scaler_core import Client, SchedulerClusterCombo


def fibonacci(client: Client, n: int):
    if n < 2:
        return n
    a = client.submit(fibonacci, client, n - 1)
    b = client.submit(fibonacci, client, n - 2)
    return a.result() + b.result()


def main():
    with SchedulerClusterCombo(n_workers=2) as cluster, Client(address=cluster.address) as client:
        print("submit:   sqrt(16) =", client.submit(math.sqrt, 16).result())
        print("map:      sum of sqrt(0..99) =", round(sum(client.map(math.sqrt, range(100))), 2))
        print("starmap: ", client.starmap(operator.add, [(1, 10), (2, 20), (3, 30)]))
        graph = {"a": 2, "b": 2, "c": (operator.add, "a", 1), "d": (operator.add, "a", "b"), "e": (operator.sub, "d", "c")}
        print("graph:   ", client.get(graph, keys=["e"]))
        print("nested:   fibonacci(8) =", client.submit(fibonacci, client, 8).result())


if __name__ == "__main__":
    main()
