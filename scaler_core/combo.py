"""SchedulerClusterCombo: object storage, scheduler and a cluster of workers on this machine."""

from __future__ import annotations

import atexit
import os
import time
import weakref
from typing import Dict, Optional, Sequence, Union

from scaler_core.config import parse_capabilities
from scaler_core.launch import ChildProcesses, ProcessHandle
from scaler_core.monitor.stream import StatusSubscriber
from scaler_core.scheduler.state import SchedulerSettings
from scaler_core.security import CurveKeys
from scaler_core.transport import free_tcp_port, parse_tcp_address, shift_port
from scaler_core.worker.process import WorkerSettings

_live_combos: "weakref.WeakSet[SchedulerClusterCombo]" = weakref.WeakSet()


class SchedulerClusterCombo:
    """Start a whole local cluster in child processes; `address` is where clients connect.

    Without an address everything listens on free ports of 127.0.0.1. The object storage defaults
    to the scheduler's port + 1 and the monitor stream to port + 2 when an address is given."""

    def __init__(self, address: Optional[str] = None, n_workers: Optional[int] = None, *,
                 object_storage_address: Optional[str] = None, monitor_address: Optional[str] = None,
                 per_worker_capabilities: Union[str, Dict[str, int], None] = None, allocate_policy: str = "even",
                 event_loop: str = "builtin", heartbeat_interval_seconds: float = 1.0,
                 worker_timeout_seconds: float = 10.0, client_timeout_seconds: float = 30.0,
                 death_timeout_seconds: float = 30.0, task_timeout_seconds: float = 0.0, max_task_retries: int = 3,
                 no_worker_grace_seconds: float = 30.0, worker_memory_limit_bytes: int = 0,
                 object_cache_bytes: int = 256 * 1024 * 1024, protected: bool = True, logging_level: str = "WARNING",
                 logging_paths: Sequence[str] = ("/dev/stdout",), security: Optional[CurveKeys] = None,
                 graph_frontier: str = "auto", preload: str = ""):
        n_workers = n_workers if n_workers is not None else (os.cpu_count() or 1)
        if n_workers < 0:
            raise ValueError(f"n_workers must be 0 or more, got {n_workers}")
        if address is None:
            address = f"tcp://127.0.0.1:{free_tcp_port()}"
            object_storage_address = object_storage_address or f"tcp://127.0.0.1:{free_tcp_port()}"
            monitor_address = monitor_address or f"tcp://127.0.0.1:{free_tcp_port()}"
        else:
            parse_tcp_address(address)
            object_storage_address = object_storage_address or shift_port(address, 1)
            monitor_address = monitor_address or shift_port(address, 2)
        security = security or CurveKeys()
        security.validate(server=True, client=False)
        capabilities = parse_capabilities(per_worker_capabilities) if isinstance(per_worker_capabilities, str) \
            else dict(per_worker_capabilities or {})
        self.address = address
        self.object_storage_address = object_storage_address
        self.monitor_address = monitor_address
        self.n_workers = n_workers
        self._children = ChildProcesses()
        scheduler_settings = SchedulerSettings(
            heartbeat_interval_seconds=heartbeat_interval_seconds, worker_timeout_seconds=worker_timeout_seconds,
            client_timeout_seconds=client_timeout_seconds, max_task_retries=max_task_retries,
            no_worker_grace_seconds=no_worker_grace_seconds, protected=protected, graph_frontier=graph_frontier)
        worker_settings = WorkerSettings(
            heartbeat_interval_seconds=heartbeat_interval_seconds, death_timeout_seconds=death_timeout_seconds,
            task_timeout_seconds=task_timeout_seconds, memory_limit_bytes=worker_memory_limit_bytes,
            object_cache_bytes=object_cache_bytes, capabilities=capabilities, keys=security, preload=preload)
        try:
            self._children.start_object_storage(object_storage_address, logging_level, logging_paths, security)
            self._scheduler = ProcessHandle(self._children.start_scheduler(
                address, object_storage_address, monitor_address, scheduler_settings, allocate_policy, event_loop,
                logging_level, logging_paths, security))
            # n_workers=0: a scheduler waiting for workers started elsewhere (scaler_cluster, adapters)
            self.cluster_process = self._children.start_cluster(
                address, n_workers, worker_settings, logging_level, logging_paths) if n_workers else None
            self._worker_manager_process = ProcessHandle(self.cluster_process) if self.cluster_process else None
        except BaseException:
            self._children.stop_all()
            raise
        _live_combos.add(self)

    def get_address(self) -> str:
        return self.address

    # upstream Scaler's private names, which code written for it reads
    _address = property(lambda self: self.address)
    _object_storage_address = property(lambda self: self.object_storage_address)

    def wait_for_workers(self, n_workers: Optional[int] = None, timeout_seconds: float = 60.0) -> None:
        """Return once `n_workers` (default: all of this combo's) are connected to the scheduler.

        Read from the monitor stream; raises TimeoutError naming how many joined."""
        wanted = self.n_workers if n_workers is None else n_workers
        deadline = time.monotonic() + timeout_seconds
        connected = 0
        with StatusSubscriber(self.monitor_address) as subscriber:
            while connected < wanted:
                status = subscriber.wait_for_status(deadline - time.monotonic())
                if status is None:
                    raise TimeoutError(f"{connected} of {wanted} workers connected to {self.address} "
                                       f"within {timeout_seconds} s")
                connected = len(status.workers)

    def processes(self):
        """The live child processes (object storage, scheduler, cluster supervisor)."""
        return self._children.alive()

    def shutdown(self) -> None:
        self._children.stop_all()
        _live_combos.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False

    def __repr__(self):
        return f"<SchedulerClusterCombo {self.address} n_workers={self.n_workers}>"


@atexit.register
def _shutdown_live_combos() -> None:
    for combo in list(_live_combos):
        combo.shutdown()
