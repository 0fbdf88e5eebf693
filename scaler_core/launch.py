"""Starting the engine's processes: shared by SchedulerClusterCombo and the command-line tools."""

from __future__ import annotations

import subprocess
import time
from typing import List, Sequence

from scaler_core.child import spawn
from scaler_core.logging_setup import setup_logging
from scaler_core.optional import require
from scaler_core.security import CurveKeys
from scaler_core.settings import ObjectStorageSettings, WorkerSettings
from scaler_core.worker.cluster import run_cluster


def _object_storage_main(address, logging_level, logging_paths, keys, settings):
    from scaler_core.object_storage.server import run_object_storage_server

    setup_logging(logging_level, logging_paths)
    run_object_storage_server(address, keys, settings)


def _scheduler_main(address, object_storage_address, monitor_address, settings, allocate_policy, event_loop,
                    logging_level, logging_paths, keys):
    from scaler_core.scheduler.server import run_scheduler

    setup_logging(logging_level, logging_paths)
    run_scheduler(address, object_storage_address, monitor_address, settings, allocate_policy, event_loop, keys)


class ProcessHandle:
    """A child process with multiprocessing.Process's verbs (upstream's combo exposes those)."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.pid = process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()

    def terminate(self) -> None:
        self.process.terminate()

    def join(self, timeout: float = None) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    @property
    def exitcode(self):
        return self.process.poll()


class ChildProcesses:
    """Processes started by this one, stopped together (most recently started first)."""

    def __init__(self):
        self._children: List[subprocess.Popen] = []

    def start_object_storage(self, address: str, logging_level: str, logging_paths: Sequence[str],
                             keys: CurveKeys = CurveKeys(), settings: ObjectStorageSettings = ObjectStorageSettings(),
                             detached: bool = False):
        """`detached`: it outlives this process and is not stopped with the others (it ends by itself)."""
        arguments = (address, logging_level, tuple(logging_paths), keys, settings)
        if detached:
            return spawn(_object_storage_main, arguments, "object-storage", detached=True)
        return self._start(_object_storage_main, "object-storage", *arguments)

    def start_scheduler(self, address, object_storage_address, monitor_address, settings, allocate_policy,
                        event_loop, logging_level, logging_paths, keys: CurveKeys = CurveKeys()):
        if event_loop == "uvloop":
            require("uvloop", "--event-loop uvloop")  # fail here, not in a child whose error nobody reads
        return self._start(_scheduler_main, "scheduler", address, object_storage_address, monitor_address, settings,
                           allocate_policy, event_loop, logging_level, tuple(logging_paths), keys)

    def start_cluster(self, scheduler_address: str, n_workers: int, settings: WorkerSettings, logging_level: str,
                      logging_paths: Sequence[str], cluster_id: bytes = b""):
        return self._start(run_cluster, "cluster", scheduler_address, n_workers, settings, logging_level,
                           tuple(logging_paths), cluster_id)

    def start(self, function, name: str, *args) -> subprocess.Popen:
        """Any picklable `function(*args)` in a child of this process (the launcher's sections)."""
        return self._start(function, name, *args)

    def stop(self, process: subprocess.Popen, timeout: float = 5.0) -> None:
        """Stop one child started here."""
        if process in self._children:
            self._children.remove(process)
        _stop([process], timeout)

    def _start(self, function, name, *args) -> subprocess.Popen:
        process = spawn(function, args, name)
        self._children.append(process)
        return process

    def alive(self) -> List[subprocess.Popen]:
        return [process for process in self._children if process.poll() is None]

    def stop_all(self, timeout: float = 5.0) -> None:
        children, self._children = self._children, []
        _stop(list(reversed(children)), timeout)


def _stop(processes: List[subprocess.Popen], timeout: float) -> None:
    """SIGTERM all, wait up to `timeout` in total, SIGKILL whatever is left."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(2)
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
