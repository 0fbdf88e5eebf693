"""The plug-in interface every benchmarked system implements.

A plug-in is started once per single run (inside a fresh subprocess), used by one workload, then stopped.
Methods a system cannot do raise NotSupported; the harness reports that cell as N/A.
"""

import os
import time

from benchmarks import task_functions


class NotSupported(Exception):
    """The system has no equivalent of the requested operation."""


class SystemUnavailable(Exception):
    """The system cannot be imported or started in this environment."""


class SystemAdapter:
    name = "base"
    description = ""
    # Which interpreter runs this system: "main" (the harness interpreter) or "upstream" (--upstream-python).
    interpreter = "main"
    # Where the scheduler lives, for the W4/W7 memory notes: "process", "client-process" or "none".
    scheduler_location = "process"

    def __init__(self, n_workers):
        self.n_workers = n_workers

    # --- lifecycle ---
    def start(self):
        raise NotImplementedError

    def stop(self):
        pass

    # --- operations used by workloads ---
    def map(self, fn, items):
        """Run fn over items on the workers and return the list of results in order."""
        raise NotSupported("map")

    def submit(self, fn, *args):
        """Submit one call; returns a handle for result()."""
        raise NotSupported("submit")

    def result(self, handle):
        return handle.result()

    def get_graph(self, graph, keys):
        """Compute a plain dict graph {key: (fn, *dependency_keys)}; returns results for keys."""
        raise NotSupported("plain dict graph")

    def dask_scheduler(self):
        """A value for dask.compute(..., scheduler=<this>)."""
        raise NotSupported("dask scheduler")

    def send_object(self, obj):
        """Place obj in the cluster; returns a reference that tasks accept as an argument."""
        raise NotSupported("send_object")

    # --- process discovery, for memory figures ---
    def scheduler_pid(self):
        return None

    def wait_for_all_workers(self, map_function=None, timeout_seconds=60.0):
        """Every worker connected and warm (it has run a task of `task_functions`), so runs do not
        time worker start-up; polls with a deadline. `map_function` defaults to this system's map."""
        map_function = map_function or self.map
        deadline = time.monotonic() + timeout_seconds
        seen = set()
        while len(seen) < self.n_workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {self.n_workers} workers ran tasks within {timeout_seconds} s")
            seen.update(map_function(task_functions.worker_pid_after_pause, [0.02] * (self.n_workers * 4)))

    def worker_pids(self):
        """Distinct pids that ran tasks; found by running short sleeping getpid tasks."""
        pids = set(self.map(task_functions.worker_pid_after_pause, [0.05] * (self.n_workers * 6)))
        return sorted(pids)

    def client_pid(self):
        return os.getpid()
