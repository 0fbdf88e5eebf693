"""SchedulerClusterCombo: object storage, scheduler and a cluster of workers on this machine."""

from __future__ import annotations

import atexit
import os
import signal
import time
import weakref
from typing import Dict, Optional, Sequence, Union

from scaler_core.launch import ChildProcesses, ProcessHandle
from scaler_core.monitor.stream import StatusSubscriber
from scaler_core.security import CurveKeys
from scaler_core.settings import LoggingSettings, SchedulerSettings, WorkerSettings, combo_default, settings_from
from scaler_core.transport import free_tcp_port, parse_tcp_address, shift_port

_live_combos: "weakref.WeakSet[SchedulerClusterCombo]" = weakref.WeakSet()


class SchedulerClusterCombo:
    """Start a whole local cluster in child processes; `address` is where clients connect.

    Without an address everything listens on free ports of 127.0.0.1. The object storage defaults
    to the scheduler's port + 1 and the monitor stream to port + 2 when an address is given.

    The keywords are the command-line options of scaler_scheduler and scaler_cluster (one
    heartbeat_interval_seconds for both); their defaults are those of scaler_core.settings."""

    def __init__(self, address: Optional[str] = None, n_workers: Optional[int] = None, *,
                 object_storage_address: Optional[str] = SchedulerSettings.object_storage_address,
                 monitor_address: Optional[str] = SchedulerSettings.monitor_address,
                 per_worker_capabilities: Union[str, Dict[str, int], None] =
                 combo_default(WorkerSettings, "per_worker_capabilities"),
                 allocate_policy: str = SchedulerSettings.allocate_policy,
                 event_loop: str = SchedulerSettings.event_loop,
                 heartbeat_interval_seconds: float = SchedulerSettings.heartbeat_interval_seconds,
                 worker_timeout_seconds: float = SchedulerSettings.worker_timeout_seconds,
                 client_timeout_seconds: float = SchedulerSettings.client_timeout_seconds,
                 death_timeout_seconds: float = WorkerSettings.death_timeout_seconds,
                 task_timeout_seconds: float = WorkerSettings.task_timeout_seconds,
                 max_task_retries: int = SchedulerSettings.max_task_retries,
                 no_worker_grace_seconds: float = SchedulerSettings.no_worker_grace_seconds,
                 worker_memory_limit_bytes: int = WorkerSettings.memory_limit_bytes,
                 worker_memory_pause_fraction: float = WorkerSettings.memory_pause_fraction,
                 object_cache_bytes: int = WorkerSettings.object_cache_bytes,
                 held_result_bytes: int = WorkerSettings.held_result_bytes,
                 object_memory_limit_bytes: int = WorkerSettings.object_memory_limit_bytes,
                 spill_directory: str = WorkerSettings.spill_directory,
                 object_memory_directory: str = WorkerSettings.object_memory_directory,
                 protected: bool = SchedulerSettings.protected,
                 logging_level: str = combo_default(LoggingSettings, "logging_level"),
                 logging_paths: Sequence[str] = LoggingSettings.logging_paths,
                 security: Optional[CurveKeys] = None,
                 graph_frontier: str = SchedulerSettings.graph_frontier,
                 preload: str = WorkerSettings.preload,
                 adapter_webhook_url: str = SchedulerSettings.adapter_webhook_url,
                 adapter_idle_seconds: float = SchedulerSettings.adapter_idle_seconds,
                 policy_engine_type: str = SchedulerSettings.policy_engine_type,
                 policy_content: str = SchedulerSettings.policy_content,
                 journal: str = SchedulerSettings.journal):
        # The keywords are named like the options of scaler_core.settings, so the settings objects
        # are built from them by name, with no field copied by hand.
        keywords = dict(locals())
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
        keywords.update(object_storage_address=object_storage_address, monitor_address=monitor_address)
        scheduler_settings = settings_from(SchedulerSettings, keywords)
        worker_settings = settings_from(WorkerSettings, keywords, keys=security)
        self.address = address
        self.object_storage_address = object_storage_address
        self.monitor_address = monitor_address
        self.n_workers = n_workers
        self._children = ChildProcesses()
        try:
            self._children.start_object_storage(object_storage_address, logging_level, logging_paths, security)
            self._scheduler_arguments = (address, object_storage_address, monitor_address, scheduler_settings,
                                         scheduler_settings.allocate_policy, event_loop, logging_level, logging_paths,
                                         security)
            self._scheduler = ProcessHandle(self._children.start_scheduler(*self._scheduler_arguments))
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

    def restart_scheduler(self, kill: bool = False, timeout_seconds: float = 10.0) -> None:
        """Stop the scheduler (SIGTERM, or SIGKILL with `kill`) and start it again on the same address
        and settings. With a `journal`, clients and workers carry on with the new one; without, they
        are told to stop (SIGTERM) or fail after their timeouts (SIGKILL)."""
        old = self._scheduler
        old.kill() if kill else old.terminate()
        old.join(timeout_seconds)
        if old.is_alive():
            raise TimeoutError(f"the scheduler did not stop within {timeout_seconds:g}s")
        self._children.stop(old.process)
        self._scheduler = ProcessHandle(self._children.start_scheduler(*self._scheduler_arguments))

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
        if self._scheduler.is_alive():  # the final stop (a journaled scheduler takes SIGTERM for a restart)
            self._scheduler.process.send_signal(signal.SIGINT)
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
