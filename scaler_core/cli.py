"""Console entry points: scaler_scheduler, scaler_cluster, scaler_object_storage_server."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Optional, Sequence

from scaler_core import config
from scaler_core.logging_setup import setup_logging
from scaler_core.transport import parse_tcp_address, shift_port

logger = logging.getLogger(__name__)


def _check_address(settings) -> str:
    address = settings["address"]
    try:
        parse_tcp_address(address)
    except ValueError as error:
        sys.exit(f"error: {error}")
    return address


def scheduler_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.launch import ChildProcesses
    from scaler_core.scheduler.server import run_scheduler
    from scaler_core.scheduler.state import SchedulerSettings

    settings = config.parse("scheduler", argv, prog="scaler_scheduler")
    address = _check_address(settings)
    keys = _keys(settings, server=True, client=False)
    setup_logging(settings["logging_level"], settings["logging_paths"])
    logger.info("use event loop: %s", settings["event_loop"])
    children = ChildProcesses()
    object_storage_address = settings["object_storage_address"]
    if not object_storage_address:
        object_storage_address = shift_port(address, 1)
        logger.info("Scheduler: starting its own object storage server at %s", object_storage_address)
        children.start_object_storage(object_storage_address, settings["logging_level"], settings["logging_paths"],
                                      keys)
    scheduler_settings = SchedulerSettings(
        heartbeat_interval_seconds=settings["heartbeat_interval_seconds"],
        worker_timeout_seconds=settings["worker_timeout_seconds"],
        client_timeout_seconds=settings["client_timeout_seconds"],
        max_task_retries=settings["max_task_retries"],
        no_worker_grace_seconds=settings["no_worker_grace_seconds"],
        protected=settings["protected"],
        adapter_webhook_url=settings["adapter_webhook_url"],
        adapter_idle_seconds=settings["adapter_idle_seconds"],
        graph_frontier=settings["graph_frontier"],
    )
    try:
        run_scheduler(address, object_storage_address, settings["monitor_address"] or shift_port(address, 2),
                      scheduler_settings, settings["allocate_policy"], settings["event_loop"], keys)
    finally:
        children.stop_all()


def _worker_settings(settings, **extra):
    """WorkerSettings from the options a cluster and a worker adapter share."""
    from scaler_core.worker.process import WorkerSettings

    try:
        capabilities = config.parse_capabilities(settings["per_worker_capabilities"])
    except ValueError as error:
        sys.exit(f"error: --per-worker-capabilities: {error}")
    return WorkerSettings(
        heartbeat_interval_seconds=settings["heartbeat_interval_seconds"],
        death_timeout_seconds=settings["death_timeout_seconds"],
        task_timeout_seconds=settings["task_timeout_seconds"],
        capabilities=capabilities,
        keys=_keys(settings, server=False, client=True),
        **extra,
    )


def cluster_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.worker.cluster import run_cluster
    from scaler_core.worker.preload import PreloadError, parse_preload

    settings = config.parse("cluster", argv, prog="scaler_cluster")
    address = _check_address(settings)
    try:
        if settings["preload"]:
            parse_preload(settings["preload"])
    except PreloadError as error:
        sys.exit(f"error: --preload: {error}")
    worker_settings = _worker_settings(settings, memory_limit_bytes=settings["worker_memory_limit_bytes"],
                                       object_cache_bytes=settings["object_cache_bytes"],
                                       preload=settings["preload"])
    n_workers = settings["num_of_workers"] or os.cpu_count() or 1
    run_cluster(address, n_workers, worker_settings, settings["logging_level"], settings["logging_paths"])


def native_worker_adapter_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.adapter.native import NativeWorkerAdapter

    settings = config.parse("native_worker_adapter", argv, prog="scaler_worker_adapter_native")
    address = _check_address(settings)
    setup_logging(settings["logging_level"], settings["logging_paths"])
    worker_settings = _worker_settings(settings)
    max_groups = settings["max_worker_groups"] or os.cpu_count() or 1
    adapter = NativeWorkerAdapter(address, settings["workers_per_group"], max_groups, worker_settings,
                                  settings["logging_level"], settings["logging_paths"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    adapter.serve(settings["host"], settings["port"])


def object_storage_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.object_storage.server import run_object_storage_server

    settings = config.parse("object_storage_server", argv, prog="scaler_object_storage_server")
    address = _check_address(settings)
    keys = _keys(settings, server=True, client=False)
    setup_logging(settings["logging_level"], settings["logging_paths"])
    run_object_storage_server(address, keys)


def _keys(settings, *, server: bool, client: bool):
    keys = config.curve_keys(settings)
    try:
        keys.validate(server=server, client=client)
    except ValueError as error:
        sys.exit(f"error: {error}")
    return keys
