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
    NativeManagerSettings, SchedulerSettings, SecuritySettings, SettingsError, SlurmManagerSettings,
    WorkerManagerSettings, WorkerSettings, settings_from,
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
        if settings.journal:
            _object_storage_for_journal(children, object_storage_address, settings, logging_settings, keys)
        else:
            logger.info("Scheduler: starting its own object storage server at %s", object_storage_address)
            children.start_object_storage(object_storage_address, logging_settings.logging_level,
                                          logging_settings.logging_paths, keys)
    try:
        run_scheduler(address, object_storage_address, settings.monitor_address or shift_port(address, 2),
                      settings, settings.allocate_policy, settings.event_loop, keys)
    finally:
        children.stop_all()


def _object_storage_for_journal(children, address: str, settings: SchedulerSettings, logging_settings, keys) -> None:
    """A journaled scheduler's storage outlives it, so objects survive a restart: the previous start's
    storage is used when it still listens; a new one ends by itself when no scheduler comes back."""
    if _object_storage_answers(address, keys):
        logger.info("Scheduler: using the object storage server still running at %s", address)
        return
    logger.info("Scheduler: starting its own object storage server at %s (it outlives this scheduler for a "
                "restart)", address)
    waits = 2 * settings.client_timeout_seconds  # a restart is expected well within the clients' timeout
    children.start_object_storage(address, logging_settings.logging_level, logging_settings.logging_paths, keys,
                                  ObjectStorageSettings(scheduler_timeout_seconds=waits), detached=True)


def _object_storage_answers(address: str, keys, timeout_seconds: float = 2.0) -> bool:
    """An object storage (not just anything) listens at `address`: it echoes a heartbeat."""
    import zmq

    from scaler_core import protocol, transport
    from scaler_core.security import secure_client

    context = zmq.Context()
    try:
        probe = transport.configure(context.socket(zmq.DEALER), linger_ms=0)
        secure_client(probe, keys)
        probe.connect(address)
        transport.send(probe, protocol.Heartbeat())
        if not probe.poll(int(timeout_seconds * 1000)):
            return False
        return any(type(message) is protocol.HeartbeatEcho for message in transport.receive_waiting(probe))
    finally:
        context.destroy(linger=0)


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
    cluster_id = b"K|" + cluster.worker_group_id.encode() if cluster.worker_group_id else b""
    run_cluster(address, n_workers, worker_settings, logging_settings.logging_level, logging_settings.logging_paths,
                cluster_id)


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


def worker_manager_settings(values, kind: str = "baremetal_native"):
    """The manager's own settings (common, then its type's), checked beyond their types; raises
    SettingsError naming the key."""
    manager = settings_from(WorkerManagerSettings, values)
    if not manager.worker_manager_id:
        raise SettingsError("worker_manager_id", "is required (a name for this worker manager)")
    if "|" in manager.worker_manager_id:
        raise SettingsError("worker_manager_id", f"may not contain '|', got {manager.worker_manager_id!r}")
    if kind == "slurm":
        own = settings_from(SlurmManagerSettings, values)
        if not own.partition:
            raise SettingsError("partition", "is required (the Slurm partition the jobs go to)")
        if own.cores_per_job < 1:
            raise SettingsError("cores_per_job", f"must be at least 1, got {own.cores_per_job}")
        if own.poll_interval_seconds <= 0:
            raise SettingsError("poll_interval_seconds", f"must be above 0, got {own.poll_interval_seconds}")
    else:
        own = settings_from(NativeManagerSettings, values)
        if own.mode == "fixed" and manager.max_task_concurrency < 1:
            raise SettingsError("max_task_concurrency", f"fixed mode starts that many workers: it must be at least "
                                                        f"1, got {manager.max_task_concurrency}")
        if own.workers_per_group < 1:
            raise SettingsError("workers_per_group", f"must be at least 1, got {own.workers_per_group}")
    if manager.max_task_concurrency == 0 or manager.max_task_concurrency < -1:
        raise SettingsError("max_task_concurrency", f"must be at least 1, or -1 for no limit, got "
                                                    f"{manager.max_task_concurrency}")
    return manager, own


def _max_groups(max_workers: int, workers_per_group: int) -> int:
    return -1 if max_workers < 0 else max(1, max_workers // workers_per_group)


def _worker_options(values) -> list:
    """The command-line options that give a worker group's workers this manager's worker settings."""
    from scaler_core.settings import options

    arguments = []
    for cls in (WorkerSettings, SecuritySettings):
        for option in options(cls):
            value = values.get(option.name, option.default)
            if value != option.default:
                arguments += ["--" + option.name.replace("_", "-"), str(value)]
    if values.get("logging_level", LoggingSettings.logging_level) != LoggingSettings.logging_level:
        arguments += ["--logging-level", values["logging_level"]]
    return arguments


def run_worker_manager_values(values, kind: str = "baremetal_native") -> None:
    from scaler_core.worker.cluster import new_cluster_id, run_cluster
    from scaler_core.worker_manager.agent import WorkerManagerAgent, run_agent

    address = values["address"]
    try:
        manager, own = worker_manager_settings(values, kind)
    except SettingsError as error:
        sys.exit(f"error: --{error.key.replace('_', '-')}: {error.reason}")
    worker_settings = _worker_settings(values)
    logging_settings = _build(LoggingSettings, values)
    if kind == "baremetal_native" and own.mode == "fixed":
        # the manager's id leads the cluster's identity, so the scheduler's logs and the monitor show whose workers
        cluster_id = b"K|" + manager.worker_manager_id.encode() + new_cluster_id()[1:]
        run_cluster(address, manager.max_task_concurrency, worker_settings, logging_settings.logging_level,
                    logging_settings.logging_paths, cluster_id)
        return
    setup_logging(logging_settings.logging_level, logging_settings.logging_paths)
    poll_interval = 0.5
    if kind == "slurm":
        from scaler_core.worker_manager.slurm import SlurmGroups, SlurmJobSpec, cluster_command, default_log_dir

        log_dir = own.job_log_dir or default_log_dir(manager.worker_manager_id)
        spec = SlurmJobSpec(own.partition, own.account, own.walltime, own.cores_per_job, own.memory_per_job,
                            own.job_extra, log_dir)
        command = cluster_command(address, ["--num-of-workers", str(own.cores_per_job), *_worker_options(values)])
        backend = SlurmGroups(spec, command, _max_groups(manager.max_task_concurrency, own.cores_per_job),
                              worker_settings.capabilities, job_name_prefix="scaler")
        poll_interval = own.poll_interval_seconds
        logger.info("worker manager %s (slurm): jobs go to partition %s; their output to %s",
                    manager.worker_manager_id, own.partition, log_dir)
    else:
        from scaler_core.worker_manager.native import NativeGroups

        backend = NativeGroups(address, own.workers_per_group,
                               _max_groups(manager.max_task_concurrency, own.workers_per_group), worker_settings,
                               logging_settings.logging_level, logging_settings.logging_paths)
    run_agent(WorkerManagerAgent(address, manager.worker_manager_id, backend,
                                 heartbeat_interval_seconds=worker_settings.heartbeat_interval_seconds,
                                 death_timeout_seconds=worker_settings.death_timeout_seconds,
                                 poll_interval_seconds=poll_interval, keys=worker_settings.keys))


WORKER_MANAGER_USAGE = ("usage: scaler_worker_manager {" + ",".join(WORKER_MANAGER_TYPES) + "} SCHEDULER_ADDRESS "
                        "--worker-manager-id ID [--max-task-concurrency N] [--mode fixed|dynamic | --partition P ...] "
                        "[options]\n`scaler_worker_manager baremetal_native -h` and `scaler_worker_manager slurm -h` "
                        "list the options.")


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
    values, _ = _parse(config.WORKER_MANAGER_COMPONENTS[kind], argv, f"scaler_worker_manager {kind}", kind=kind)
    run_worker_manager_values(values, kind)


RUNNERS = {
    "object_storage_server": run_object_storage_values,
    "scheduler": run_scheduler_values,
    "cluster": run_cluster_values,
    "native_worker_adapter": run_native_worker_adapter_values,
    "worker_manager": run_worker_manager_values,
    "worker_manager_slurm": lambda values: run_worker_manager_values(values, "slurm"),
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
