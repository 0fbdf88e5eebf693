"""Starting the engine's processes: shared by SchedulerClusterCombo and the command-line tools.

Processes are started with the "spawn" method (no inherited sockets or threads) and get the read
end of a pipe whose write end their parent keeps: when the parent dies, even by SIGKILL, the pipe
closes and the child exits, so nothing is left behind.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import List, Optional, Sequence

from scaler_core.logging_setup import setup_logging
from scaler_core.worker.cluster import run_cluster, watch_parent
from scaler_core.worker.process import WorkerSettings

_spawn = multiprocessing.get_context("spawn")


def _object_storage_main(address, logging_level, logging_paths, parent_pipe):
    from scaler_core.object_storage.server import run_object_storage_server

    setup_logging(logging_level, logging_paths)
    if parent_pipe is not None:
        watch_parent(parent_pipe)
    run_object_storage_server(address)


def _scheduler_main(address, object_storage_address, monitor_address, settings, allocate_policy, event_loop,
                    logging_level, logging_paths, parent_pipe):
    from scaler_core.scheduler.server import run_scheduler

    setup_logging(logging_level, logging_paths)
    if parent_pipe is not None:
        watch_parent(parent_pipe)
    run_scheduler(address, object_storage_address, monitor_address, settings, allocate_policy, event_loop)


class ChildProcesses:
    """Processes started by this one, stopped together (most recently started first)."""

    def __init__(self):
        self._children: List[tuple] = []

    def start(self, target, name: str, *args) -> multiprocessing.Process:
        reader, writer = _spawn.Pipe(duplex=False)
        process = _spawn.Process(target=target, name=name, args=(*args, reader))
        process.start()
        reader.close()
        self._children.append((process, writer))
        return process

    def start_object_storage(self, address: str, logging_level: str, logging_paths: Sequence[str]):
        return self.start(_object_storage_main, "scaler-object-storage", address, logging_level, tuple(logging_paths))

    def start_scheduler(self, address, object_storage_address, monitor_address, settings, allocate_policy,
                        event_loop, logging_level, logging_paths):
        return self.start(_scheduler_main, "scaler-scheduler", address, object_storage_address, monitor_address,
                          settings, allocate_policy, event_loop, logging_level, tuple(logging_paths))

    def start_cluster(self, scheduler_address: str, n_workers: int, settings: WorkerSettings, logging_level: str,
                      logging_paths: Sequence[str]):
        return self.start(run_cluster, "scaler-cluster", scheduler_address, n_workers, settings, logging_level,
                          tuple(logging_paths))

    def alive(self) -> List[multiprocessing.Process]:
        return [process for process, _ in self._children if process.is_alive()]

    def stop_all(self, timeout: float = 5.0) -> None:
        children, self._children = self._children, []
        for process, _ in reversed(children):
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout
        for process, writer in reversed(children):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(2)
            writer.close()

    def wait_any(self, timeout: Optional[float] = None) -> None:
        from multiprocessing.connection import wait

        sentinels = [process.sentinel for process, _ in self._children]
        if sentinels:
            wait(sentinels, timeout)
