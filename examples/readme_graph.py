"""The reference README's "Graph computations". Usage: python readme_graph.py ADDRESS"""

import sys

from scaler_core import Client


def inc(i):
    return i + 1


def add(a, b):
    return a + b


def minus(a, b):
    return a - b


graph = {
    "a": 2,
    "b": 2,

    # the input to task c is the output of task a
    "c": (inc, "a"),  # c = a + 1 = 2 + 1 = 3
    "d": (add, "a", "b"),  # d = a + b = 2 + 2 = 4
    "e": (minus, "d", "c")  # e = d - c = 4 - 3 = 1
}

with Client(address=sys.argv[1]) as client:
    result = client.get(graph, keys=["e"])
    print(result)  # {"e": 1}
