"""Console entry points: scaler_scheduler, scaler_cluster, scaler_object_storage_server, the native adapter."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Optional, Sequence

from scaler_core import config
from scaler_core.logging_setup import setup_logging
from scaler_core.settings import (
    ClusterSettings, LoggingSettings, NativeWorkerAdapterSettings, ObjectStorageSettings, SchedulerSettings,
    SecuritySettings, SettingsError, WorkerSettings, settings_from,
)
from scaler_core.transport import parse_tcp_address, shift_port

logger = logging.getLogger(__name__)


def _parse(component: str, argv: Optional[Sequence[str]], prog: str):
    """The parsed options and the checked address; exits with a message on bad input."""
    values = config.parse(component, argv, prog=prog)
    address = values["address"]
    try:
        parse_tcp_address(address)
    except ValueError as error:
        sys.exit(f"error: {error}")
    return values, address


def _build(cls, values, **fields):
    try:
        return settings_from(cls, values, **fields)
    except SettingsError as error:
        sys.exit(f"error: --{error.key.replace('_', '-')}: {error.reason}")


def _keys(values, *, server: bool, client: bool):
    keys = _build(SecuritySettings, values).curve_keys()
    try:
        keys.validate(server=server, client=client)
    except ValueError as error:
        sys.exit(f"error: {error}")
    return keys


def _logging(values) -> LoggingSettings:
    logging_settings = _build(LoggingSettings, values)
    setup_logging(logging_settings.logging_level, logging_settings.logging_paths)
    return logging_settings


def scheduler_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.launch import ChildProcesses
    from scaler_core.scheduler.server import run_scheduler

    values, address = _parse("scheduler", argv, "scaler_scheduler")
    keys = _keys(values, server=True, client=False)
    settings = _build(SchedulerSettings, values)
    logging_settings = _logging(values)
    logger.info("use event loop: %s", settings.event_loop)
    children = ChildProcesses()
    object_storage_address = settings.object_storage_address
    if not object_storage_address:
        object_storage_address = shift_port(address, 1)
        logger.info("Scheduler: starting its own object storage server at %s", object_storage_address)
        children.start_object_storage(object_storage_address, logging_settings.logging_level,
                                      logging_settings.logging_paths, keys)
    try:
        run_scheduler(address, object_storage_address, settings.monitor_address or shift_port(address, 2),
                      settings, settings.allocate_policy, settings.event_loop, keys)
    finally:
        children.stop_all()


def _worker_settings(values) -> WorkerSettings:
    """The settings of the workers a cluster or an adapter starts; a bad --preload stops here, not in each worker."""
    from scaler_core.worker.preload import PreloadError, parse_preload

    settings = _build(WorkerSettings, values, keys=_keys(values, server=False, client=True))
    try:
        if settings.preload:
            parse_preload(settings.preload)
    except PreloadError as error:
        sys.exit(f"error: --preload: {error}")
    return settings


def cluster_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.worker.cluster import run_cluster

    values, address = _parse("cluster", argv, "scaler_cluster")
    cluster = _build(ClusterSettings, values)
    worker_settings = _worker_settings(values)
    logging_settings = _build(LoggingSettings, values)  # run_cluster sets logging up itself
    n_workers = cluster.num_of_workers or os.cpu_count() or 1
    run_cluster(address, n_workers, worker_settings, logging_settings.logging_level, logging_settings.logging_paths)


def native_worker_adapter_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.adapter.native import NativeWorkerAdapter

    values, address = _parse("native_worker_adapter", argv, "scaler_worker_adapter_native")
    adapter_settings = _build(NativeWorkerAdapterSettings, values)
    logging_settings = _logging(values)
    worker_settings = _worker_settings(values)
    max_groups = adapter_settings.max_worker_groups or os.cpu_count() or 1
    adapter = NativeWorkerAdapter(address, adapter_settings.workers_per_group, max_groups, worker_settings,
                                  logging_settings.logging_level, logging_settings.logging_paths)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    adapter.serve(adapter_settings.host, adapter_settings.port)


def object_storage_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.object_storage.server import run_object_storage_server

    values, address = _parse("object_storage_server", argv, "scaler_object_storage_server")
    keys = _keys(values, server=True, client=False)
    _logging(values)
    run_object_storage_server(address, keys, _build(ObjectStorageSettings, values))
