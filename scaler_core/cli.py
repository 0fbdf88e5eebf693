"""Console entry points: scaler_scheduler, scaler_cluster, scaler_object_storage_server, the native adapter,
scaler_worker_manager and the one-file launcher `scaler` (launcher.py).

Each command parses its options (config.parse) and hands the values to its `run_*` function; the
launcher checks a whole file the same way and runs each section's `run_*` in a child process
(run_component), so a section of the file and the command line start exactly the same thing."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Optional, Sequence

from scaler_core import config
from scaler_core.logging_setup import setup_logging
from scaler_core.settings import (
    WORKER_MANAGER_TYPES, ClusterSettings, LoggingSettings, NativeWorkerAdapterSettings, ObjectStorageSettings,
    SchedulerSettings, SecuritySettings, SettingsError, WorkerManagerSettings, WorkerSettings, settings_from,
)
from scaler_core.transport import parse_tcp_address, shift_port

logger = logging.getLogger(__name__)


def _parse(component: str, argv: Optional[Sequence[str]], prog: str, kind: Optional[str] = None):
    """The parsed options and the checked address; exits with a message on bad input."""
    values = config.parse(component, argv, prog=prog, kind=kind)
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
    values, _ = _parse("scheduler", argv, "scaler_scheduler")
    run_scheduler_values(values)


def run_scheduler_values(values) -> None:
    from scaler_core.launch import ChildProcesses
    from scaler_core.scheduler.server import run_scheduler

    address = values["address"]
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
    values, _ = _parse("cluster", argv, "scaler_cluster")
    run_cluster_values(values)


def run_cluster_values(values) -> None:
    from scaler_core.worker.cluster import run_cluster

    address = values["address"]
    cluster = _build(ClusterSettings, values)
    worker_settings = _worker_settings(values)
    logging_settings = _build(LoggingSettings, values)  # run_cluster sets logging up itself
    n_workers = cluster.num_of_workers or os.cpu_count() or 1
    run_cluster(address, n_workers, worker_settings, logging_settings.logging_level, logging_settings.logging_paths)


def native_worker_adapter_main(argv: Optional[Sequence[str]] = None) -> None:
    values, _ = _parse("native_worker_adapter", argv, "scaler_worker_adapter_native")
    run_native_worker_adapter_values(values)


def run_native_worker_adapter_values(values) -> None:
    from scaler_core.adapter.native import NativeWorkerAdapter

    address = values["address"]
    adapter_settings = _build(NativeWorkerAdapterSettings, values)
    logging_settings = _logging(values)
    worker_settings = _worker_settings(values)
    max_groups = adapter_settings.max_worker_groups or os.cpu_count() or 1
    adapter = NativeWorkerAdapter(address, adapter_settings.workers_per_group, max_groups, worker_settings,
                                  logging_settings.logging_level, logging_settings.logging_paths)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    adapter.serve(adapter_settings.host, adapter_settings.port)


def object_storage_main(argv: Optional[Sequence[str]] = None) -> None:
    values, _ = _parse("object_storage_server", argv, "scaler_object_storage_server")
    run_object_storage_values(values)


def run_object_storage_values(values) -> None:
    from scaler_core.object_storage.server import run_object_storage_server

    address = values["address"]
    keys = _keys(values, server=True, client=False)
    _logging(values)
    run_object_storage_server(address, keys, _build(ObjectStorageSettings, values))


def worker_manager_settings(values) -> WorkerManagerSettings:
    """The manager's own settings, checked beyond their types; raises SettingsError naming the key."""
    manager = settings_from(WorkerManagerSettings, values)
    if not manager.worker_manager_id:
        raise SettingsError("worker_manager_id", "is required (a name for this worker manager)")
    if manager.mode == "fixed" and manager.max_task_concurrency < 1:
        raise SettingsError("max_task_concurrency", f"fixed mode starts that many workers: it must be at least 1, "
                                                    f"got {manager.max_task_concurrency}")
    if manager.mode == "dynamic" and (manager.max_task_concurrency == 0 or manager.max_task_concurrency < -1):
        raise SettingsError("max_task_concurrency", f"must be at least 1, or -1 for no limit, got "
                                                    f"{manager.max_task_concurrency}")
    if not 0 <= manager.adapter_port <= 65535:
        raise SettingsError("adapter_port", f"must be a port number (0: any free port), got {manager.adapter_port}")
    return manager


def run_worker_manager_values(values) -> None:
    from scaler_core.adapter.native import NativeWorkerAdapter
    from scaler_core.worker.cluster import new_cluster_id, run_cluster

    address = values["address"]
    try:
        manager = worker_manager_settings(values)
    except SettingsError as error:
        sys.exit(f"error: --{error.key.replace('_', '-')}: {error.reason}")
    worker_settings = _worker_settings(values)
    logging_settings = _build(LoggingSettings, values)
    if manager.mode == "fixed":
        # the manager's id leads the cluster's identity, so the scheduler's logs and the monitor show whose workers
        cluster_id = b"K|" + manager.worker_manager_id.encode() + new_cluster_id()[1:]
        run_cluster(address, manager.max_task_concurrency, worker_settings, logging_settings.logging_level,
                    logging_settings.logging_paths, cluster_id)
        return
    setup_logging(logging_settings.logging_level, logging_settings.logging_paths)
    adapter = NativeWorkerAdapter(address, 1, manager.max_task_concurrency, worker_settings,
                                  logging_settings.logging_level, logging_settings.logging_paths)
    logger.info("worker manager %s (baremetal_native, dynamic): workers start when the scheduler at %s asks",
                manager.worker_manager_id, address)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    adapter.serve(manager.adapter_host, manager.adapter_port)


WORKER_MANAGER_USAGE = ("usage: scaler_worker_manager {" + ",".join(WORKER_MANAGER_TYPES) + "} SCHEDULER_ADDRESS "
                        "--worker-manager-id ID [--max-task-concurrency N] [--mode fixed|dynamic] [options]\n"
                        "`scaler_worker_manager baremetal_native -h` lists the options.")


def worker_manager_main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the type comes first, after at most a --config FILE (upstream accepts both orders)
    position = 2 if argv[:1] in (["-c"], ["--config"]) else 0
    kinds = argv[position:position + 1] if len(argv) > position and not argv[position].startswith("-") else []
    if not kinds or kinds[0] not in WORKER_MANAGER_TYPES:
        if any(argument in ("-h", "--help") for argument in argv) and not kinds:
            print(WORKER_MANAGER_USAGE)
            sys.exit(0)
        got = f"unknown worker manager type {kinds[0]!r}" if kinds else "a worker manager type is required"
        sys.exit(f"{WORKER_MANAGER_USAGE}\nscaler_worker_manager: error: {got}; this engine has: "
                 f"{', '.join(WORKER_MANAGER_TYPES)}")
    kind = kinds[0]
    del argv[position]
    values, _ = _parse("worker_manager", argv, f"scaler_worker_manager {kind}", kind=kind)
    run_worker_manager_values(values)


RUNNERS = {
    "object_storage_server": run_object_storage_values,
    "scheduler": run_scheduler_values,
    "cluster": run_cluster_values,
    "native_worker_adapter": run_native_worker_adapter_values,
    "worker_manager": run_worker_manager_values,
}


def run_component(component: str, values) -> None:
    """What a section of the launcher's file runs as, in its own process."""
    if component == "webui":
        from scaler_core.monitor.webui import run_webui

        run_webui(values)
        return
    RUNNERS[component](values)


def launcher_main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.launcher import main

    main(argv)
