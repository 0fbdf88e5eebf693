"""Functions the executor conformance tests submit.

They live in an importable module (not the test file) so that both process
pools and Scaler workers unpickle them by reference, and so that the
initializer's module-level state is shared by later tasks of the same process.
"""

from __future__ import annotations

import os
import time

_initializer_calls: dict[str, int] = {}


class CustomError(Exception):
    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def square(x):
    return x * x


def add(x, y):
    return x + y


def capture(*args, **kwargs):
    return args, kwargs


def raise_custom(code):
    raise CustomError(code, "detail")


def raise_if_three(x):
    if x == 3:
        raise CustomError(x, "three")
    return x


def block_until_file_exists(path, limit_seconds=60.0):
    """Hold a worker until the test creates ``path`` (or the limit passes).

    Leaves a ``<path>.started.<n>`` marker so a test can see it has started."""
    with open(f"{path}.started.{os.getpid()}.{time.monotonic_ns()}", "w"):
        pass
    deadline = time.monotonic() + limit_seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return path


def started_markers(path):
    directory, name = os.path.split(path)
    return [entry for entry in os.listdir(directory) if entry.startswith(name + ".started.")]


def sleep_then_return(seconds, value):
    time.sleep(seconds)
    return value


def count_initializer_call(tag):
    _initializer_calls[tag] = _initializer_calls.get(tag, 0) + 1


def initializer_calls(tag):
    """(process id, how often this process ran the initializer for ``tag``)."""
    return os.getpid(), _initializer_calls.get(tag, 0)


def failing_initializer():
    raise CustomError(1, "initializer failed")


class Result:
    """A result that can be watched through a weak reference."""


def make_result(_):
    return Result()
