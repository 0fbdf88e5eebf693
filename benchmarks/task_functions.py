"""Functions executed inside workers. Module-level so every system can import them by reference."""

import os
import time


def increment(x):
    return x + 1


def identity(x):
    return x


def worker_pid(_=None):
    return os.getpid()


def worker_pid_after_pause(seconds):
    """Slow enough that every worker gets some of the tasks, whatever the batching."""
    time.sleep(seconds)
    return os.getpid()


def sleep_seconds(seconds):
    time.sleep(seconds)
    return seconds


def busy_loop(iterations):
    """Pure-Python CPU work; holds the GIL the whole time."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def busy_loop_cpu_seconds(iterations):
    """busy_loop that reports the CPU time its own thread spent on it, measured inside the worker."""
    start = time.thread_time()
    busy_loop(iterations)
    return time.thread_time() - start


def calibrate_busy_loop(target_seconds, probe_iterations=200_000):
    """Iterations of busy_loop that take about target_seconds on this (idle) core."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        busy_loop(probe_iterations)
        best = min(best, time.perf_counter() - start)
    return max(1, int(probe_iterations * target_seconds / best))


def payload_size(obj):
    """Touch a large argument (numpy array, bytes or an object reference resolved by the system)."""
    nbytes = getattr(obj, "nbytes", None)
    return nbytes if nbytes is not None else len(obj)


# --- graph node functions (plain dict graphs: {key: (fn, *dependency_keys)}) ---

def zero():
    return 0


def one():
    return 1


def add(a, b):
    return a + b


def sum_modulo(*values):
    return (1 + sum(values)) % 1_000_003
