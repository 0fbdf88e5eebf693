"""Every component's settings, each default and help text written once.

A field's metadata carries what the command line and the TOML file need: its help, short flag,
choices, extra long flags, and, where the flag is spelled differently from the field, its key.
config.py derives flags, TOML keys, type checks and help from these classes; the command-line tools
and SchedulerClusterCombo build them with `settings_from`; Client and the combo take their keyword
defaults from them. tests/unit/test_settings.py checks that all of these still agree.

Only the standard library is imported here: the scheduler's state machine and the monitoring tools
load this module, and they must not pull in sockets.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EVENT_LOOPS = ("builtin", "uvloop")


def setting(default: Any = dataclasses.MISSING, help: str = "", short: Optional[str] = None, *,
            choices: Optional[Sequence] = None, aliases: Sequence[str] = (), key: Optional[str] = None,
            parse: Optional[Callable[[str], Any]] = None, text_default: Optional[str] = None,
            combo: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    """A field that is also a command-line flag and a TOML key.

    `key` names the flag and TOML key when they differ from the field (the reference's spelling).
    A field whose value is parsed from text (`parse`) has `text_default` as its flag's default.
    `combo` is SchedulerClusterCombo's default where it deliberately differs from the tools'.
    `factory` replaces `default` for a mutable default, as in dataclasses.field."""
    metadata = {"help": help, "short": short, "choices": tuple(choices) if choices else None,
                "aliases": tuple(aliases), "key": key, "parse": parse, "text_default": text_default,
                "combo": combo, "option": True}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def internal(help: str, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING):
    """A field set by the program, never by a flag or a TOML key."""
    metadata = {"help": help, "option": False}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_capabilities(text: str) -> Dict[str, int]:
    """'gpu,linux,cpu=8' -> {'gpu': -1, 'linux': -1, 'cpu': 8}."""
    capabilities: Dict[str, int] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, quantity = part.partition("=")
        if not name:
            raise ValueError(f"bad capability {part!r} in {text!r}")
        try:
            capabilities[name] = int(quantity) if quantity else -1
        except ValueError:
            raise ValueError(f"capability {name!r} needs an integer quantity, got {quantity!r}") from None
    return capabilities


def _no_keys():
    # imported late: security needs zmq, and this module must load without it
    from scaler_core.security import CurveKeys

    return CurveKeys()


@dataclasses.dataclass
class LoggingSettings:
    logging_paths: Tuple[str, ...] = setting(("/dev/stdout",), "where logs go: paths, /dev/stdout or /dev/stderr",
                                             "-lp")
    # An embedded cluster writes to its caller's terminal: there it only speaks up about problems.
    logging_level: str = setting("INFO", "log level", "-ll", choices=LOG_LEVELS, combo="WARNING")


@dataclasses.dataclass
class SecuritySettings:
    curve_secret_key_file: str = setting("", "CurveZMQ: this process's key pair (a .key_secret file of "
                                         "zmq.auth.create_certificates); enables authentication and encryption",
                                         "-csk")
    curve_server_public_key_file: str = setting("", "CurveZMQ: public key (.key) of the scheduler and object "
                                                "storage, for processes that connect to them", "-cpk")
    curve_authorized_keys_dir: str = setting("", "CurveZMQ, servers: directory of accepted client public keys "
                                             "(.key files)", "-cak")

    def curve_keys(self):
        from scaler_core.security import CurveKeys

        return CurveKeys(self.curve_secret_key_file, self.curve_server_public_key_file,
                         self.curve_authorized_keys_dir)


@dataclasses.dataclass
class SchedulerSettings:
    object_storage_address: str = setting("", "object storage server to use (default: start one at port + 1)",
                                          "-osa")
    scheduler_address: str = internal("the address the scheduler listens on, set when it starts", "")
    monitor_address: str = setting("", "address of the monitor stream (default: port + 2)", "-ma")
    allocate_policy: str = setting("even", "how tasks are placed on workers", "-ap", choices=("even", "capability"))
    event_loop: str = setting("builtin", "asyncio event loop", "-el", choices=EVENT_LOOPS)
    heartbeat_interval_seconds: float = setting(1.0, "how often peers are expected to send heartbeats", "-hi")
    worker_timeout_seconds: float = setting(10.0, "a worker silent this long is considered dead", "-wt")
    client_timeout_seconds: float = setting(30.0, "a client silent this long is considered gone", "-ct")
    max_task_retries: int = setting(3, "a task whose worker died this many times while running it fails", "-mtr")
    no_worker_grace_seconds: float = setting(30.0, "a task no connected worker can run fails after this long",
                                             "-nwg")
    protected: bool = setting(True, "refuse shutdown requests from clients", "-p")
    adapter_webhook_url: str = setting("", "worker adapter to ask for workers while tasks queue "
                                       "(e.g. http://127.0.0.1:8080)", "-awu")
    adapter_idle_seconds: float = setting(10.0, "release an adapter's worker group idle this long", "-ais")
    graph_frontier: str = setting("auto", "how graph nodes release their dependents: GraphBLAS sparse products, "
                                  "pure Python, or auto (GraphBLAS for big graphs)", "-gf",
                                  choices=("auto", "python", "graphblas"))
    policy_engine_type: str = setting("simple", "upstream 2.x's policy engine: 'simple' (allocate and scaling parts "
                                      "in --policy-content) or 'waterfall_v1' (--policy-content lists tiers "
                                      "PRIORITY,MANAGER_ID,MAX_WORKERS; lower priorities fill first, the last "
                                      "tier drains first)", "-pet", choices=("simple", "waterfall_v1"))
    policy_content: str = setting("", "upstream 2.x's policy text, e.g. 'allocate=even_load; scaling=vanilla': "
                                  "allocate=even_load|capability sets --allocate-policy; scaling=no|vanilla|"
                                  "capability says how worker managers are asked for worker groups (default "
                                  "vanilla); with --policy-engine-type waterfall_v1, items "
                                  "'PRIORITY,MANAGER_ID,MAX_WORKERS' are the tiers", "-pc")
    scaling_tasks_per_worker: float = setting(1.0, "scaling policies start worker groups while tasks (queued or "
                                              "running) per worker exceed this", "-stw")
    scaling_idle_seconds: float = setting(10.0, "scaling policies drain a worker group idle this long (waterfall_v1: "
                                          "surplus workers this long)", "-sis")
    journal: str = setting("", "file in which the scheduler records what it needs to survive a restart: started "
                           "again on the same file and address (within the clients' timeout), clients and workers "
                           "carry on and unfinished work completes; its object storage outlives it meanwhile", "-j")

    def __post_init__(self):
        if self.policy_content:
            self.allocate_policy = allocate_policy_of(self.policy_content, self.allocate_policy)
        scaling_policy_of(self.policy_content)
        if self.policy_engine_type == "waterfall_v1":
            from scaler_core.scheduler.scaling_policies import parse_waterfall_rules  # no I/O: safe to load here

            try:
                rules = parse_waterfall_rules(self.policy_content)
            except ValueError as error:
                raise SettingsError("policy_content", str(error)) from None
            if not rules:
                raise SettingsError("policy_content", "waterfall_v1 needs tiers PRIORITY,MANAGER_ID,MAX_WORKERS, "
                                                      "e.g. '1,wm-onprem,8; 2,wm-burst,32'")
        if self.scaling_tasks_per_worker <= 0:
            raise SettingsError("scaling_tasks_per_worker", f"must be above 0, got {self.scaling_tasks_per_worker}")


# upstream 2.x's allocation names -> this engine's (scheduler/policies.py)
UPSTREAM_ALLOCATE_POLICIES = {"even_load": "even", "capability": "capability"}
SCALING_POLICY_NAMES = ("no", "vanilla", "capability")
DEFAULT_SCALING_POLICY = "vanilla"


def _policy_parts(policy_content: str):
    """(name, value) of each NAME=VALUE part; waterfall tiers (no '=') are left to their parser."""
    for part in filter(None, (piece.strip() for piece in policy_content.split(";"))):
        name, equals, value = (item.strip() for item in part.partition("="))
        if not equals:
            if part.count(",") == 2:
                continue  # a waterfall_v1 tier
            raise SettingsError("policy_content", f"{part!r} is not NAME=VALUE")
        if name not in ("allocate", "scaling"):
            raise SettingsError("policy_content", f"unknown part {name!r} (known: allocate, scaling)")
        yield name, value


def allocate_policy_of(policy_content: str, default: str) -> str:
    """The allocate policy a `--policy-content` text asks for (`default` when it names none);
    SettingsError naming the part that is not understood or not available."""
    allocate = default
    for name, value in _policy_parts(policy_content):
        if name == "allocate":
            if value not in UPSTREAM_ALLOCATE_POLICIES:
                raise SettingsError("policy_content", f"allocate={value!r}: choose one of "
                                    f"{sorted(UPSTREAM_ALLOCATE_POLICIES)}")
            allocate = UPSTREAM_ALLOCATE_POLICIES[value]
    return allocate


def scaling_policy_of(policy_content: str) -> str:
    """The scaling policy a `--policy-content` text asks for (vanilla when it names none)."""
    scaling = DEFAULT_SCALING_POLICY
    for name, value in _policy_parts(policy_content):
        if name == "scaling":
            if value not in SCALING_POLICY_NAMES:
                raise SettingsError("policy_content", f"scaling={value!r}: choose one of {list(SCALING_POLICY_NAMES)} "
                                    "(or --policy-engine-type waterfall_v1 with its tiers)")
            scaling = value
    return scaling


AUTO_MEMORY_LIMIT = -1  # a worker's memory limit: its share of the machine's memory
AUTO_HELD_BYTES = -1  # a worker's held results: its share of half the cluster's object memory limit


@dataclasses.dataclass
class WorkerSettings:
    """What each worker process of a cluster (or of an adapter's worker group) runs with."""

    heartbeat_interval_seconds: float = setting(1.0, "how often workers send heartbeats", "-hi")
    death_timeout_seconds: float = setting(30.0, "workers exit when the scheduler is silent this long", "-dt")
    task_timeout_seconds: float = setting(0.0, "stop a task running longer than this (0: never)", "-tt")
    memory_limit_bytes: int = setting(
        AUTO_MEMORY_LIMIT, "stop a task whose worker's own memory (RSS without the shared-memory objects it maps, "
        "which the object memory limit bounds) passes this; past the pause fraction of it the worker starts "
        "no new task (-1: what the object memory limit leaves of the machine's memory, shared among the "
        "cluster's workers; 0: no limit)", "-wml", key="worker_memory_limit_bytes")
    object_cache_bytes: int = setting(256 * 1024 * 1024, "bytes of fetched objects a worker keeps", "-ocb")
    capabilities: Dict[str, int] = setting(help='capabilities of each worker, e.g. "gpu,linux,cpu=8"', short="-pwc",
                                           key="per_worker_capabilities", parse=parse_capabilities,
                                           text_default="", factory=dict)
    keys: Any = internal("CurveZMQ keys towards the scheduler and the object storage", factory=_no_keys)
    preload: str = setting("", 'run "package.module:function(args)" once in each worker before its first task; '
                           "a failing preload stops that worker", "-pl")
    object_memory_limit_bytes: int = setting(
        0, "bytes of large results a cluster keeps in shared memory; beyond, the least recently used go to "
        "the spill directory (0: a quarter of the machine's memory)", "-oml")
    spill_directory: str = setting("", "where a cluster's results beyond its memory limit go "
                                   "(default: the system's temporary directory)", "-sd")
    object_memory_directory: str = setting("", "the shared-memory directory for a cluster's results "
                                           "(default: /dev/shm)", "-omd")
    held_result_bytes: int = setting(
        0, "bytes of a graph's intermediate results each worker may keep in its own memory, written to the host "
        "store only when another process needs them; they count against the object memory limit (0: none, every "
        "result is written out at once; -1: half that limit, shared among the cluster's workers)", "-hrb")
    memory_pause_fraction: float = setting(
        0.8, "a worker whose RSS passes this fraction of its memory limit starts no new task (its queued ones "
        "go to other workers) until it is below again; one that cannot get below with nothing running is "
        "replaced (0: never pause)", "-wmp", key="worker_memory_pause_fraction")
    host_store_location: str = internal("set by the cluster: its host store, encoded (empty: none)", "")

    def __post_init__(self):
        if self.capabilities is None:  # the old constructor's spelling of "none"
            self.capabilities = {}
        if not 0 <= self.memory_pause_fraction <= 1:
            raise SettingsError("worker_memory_pause_fraction",
                                f"must be between 0 and 1, got {self.memory_pause_fraction!r}")
        if self.held_result_bytes < AUTO_HELD_BYTES:
            raise SettingsError("held_result_bytes", f"must be a number of bytes, 0 (none) or {AUTO_HELD_BYTES} "
                                f"(a share of the object memory limit), got {self.held_result_bytes!r}")
        if self.memory_limit_bytes < AUTO_MEMORY_LIMIT:
            raise SettingsError("worker_memory_limit_bytes", f"must be a number of bytes, 0 (no limit) or "
                                f"{AUTO_MEMORY_LIMIT} (the machine's share), got {self.memory_limit_bytes!r}")

    def with_held_budget_for(self, n_workers: int, object_memory_limit_bytes: int) -> "WorkerSettings":
        """These settings with an automatic held budget made concrete: half the cluster's object memory
        limit (held bytes count against it), shared among its `n_workers`."""
        if self.held_result_bytes != AUTO_HELD_BYTES:
            return self
        share = object_memory_limit_bytes // (2 * max(1, n_workers))
        return dataclasses.replace(self, held_result_bytes=share)

    def with_memory_limit_for(self, n_workers: int, reserved_bytes: int = 0) -> "WorkerSettings":
        """These settings with an automatic memory limit made concrete for a cluster of `n_workers`
        whose host store may keep `reserved_bytes` (at most half the machine is set aside for it)."""
        if self.memory_limit_bytes != AUTO_MEMORY_LIMIT:
            return self
        from scaler_core.memory import machine_memory_bytes  # late: loads psutil

        total = machine_memory_bytes()
        share = (total - min(reserved_bytes, total // 2)) // max(1, n_workers)
        return dataclasses.replace(self, memory_limit_bytes=share)


@dataclasses.dataclass
class ClusterSettings:
    """The supervisor of a cluster; its workers take WorkerSettings."""

    num_of_workers: int = setting(0, "number of worker processes (default: number of cores)", "-n")
    worker_group_id: str = setting("", "set by worker managers: this cluster is their worker group of that id (its "
                                   "identity becomes K|ID, by which the scheduler knows whose workers these are)",
                                   "-wgi")
    event_loop: str = setting("builtin", "accepted for compatibility; workers do not use asyncio", "-el",
                              choices=EVENT_LOOPS)


@dataclasses.dataclass
class NativeWorkerAdapterSettings:
    """The adapter's HTTP service; the workers it starts take WorkerSettings."""

    host: str = setting("127.0.0.1", "interface of the HTTP service", "-H")
    port: int = setting(8080, "port of the HTTP service", "-p")
    workers_per_group: int = setting(1, "workers started per request", "-wpg")
    max_worker_groups: int = setting(0, "most groups at once (0: number of cores, -1: no limit)", "-mwg")


WORKER_MANAGER_TYPES = ("baremetal_native", "slurm")
WORKER_MANAGER_MODES = ("dynamic", "fixed")


@dataclasses.dataclass
class WorkerManagerSettings:
    """What every worker manager type has (upstream 2.x). A dynamic manager registers with the
    scheduler, whose scaling policy (--policy-content scaling=...) asks it for worker groups."""

    worker_manager_id: str = setting("", "name of this worker manager (required)", "-wmi")
    # upstream's default: leave a core for the scheduler and the other services of the machine
    max_task_concurrency: int = setting(max(1, (os.cpu_count() or 2) - 1),
                                        "the most workers at once (-1: no limit); baremetal_native fixed: the "
                                        "number of workers", "-mtc", aliases=("--num-of-workers",))
    object_storage_address: str = setting("", "accepted for upstream's files; workers here learn the object storage "
                                          "address from the scheduler", "-osa")
    event_loop: str = setting("builtin", "accepted for compatibility; workers do not use asyncio", "-el",
                              choices=EVENT_LOOPS)
    io_threads: int = setting(1, "accepted for upstream's files; each worker uses one ZeroMQ I/O thread", "-it")


@dataclasses.dataclass
class NativeManagerSettings:
    """baremetal_native: worker groups are clusters of this machine."""

    mode: str = setting("dynamic", "fixed: start max_task_concurrency workers now and keep them alive; dynamic: "
                        "start a group of --workers-per-group workers each time the scheduler's scaling policy asks",
                        "-m", choices=WORKER_MANAGER_MODES)
    workers_per_group: int = setting(1, "dynamic: workers in each group it starts", "-wpg")


@dataclasses.dataclass
class SlurmManagerSettings:
    """slurm: each worker group is one batch job running scaler_cluster, which connects back."""

    partition: str = setting("", "Slurm partition the jobs go to (required)", "-P")
    account: str = setting("", "Slurm account to charge (sbatch --account)", "-A")
    walltime: str = setting("", "time limit of each job, HH:MM:SS (sbatch --time; default: the partition's)", "-W")
    cores_per_job: int = setting(1, "cores of each job (sbatch --cpus-per-task); one worker per core", "-cpj")
    memory_per_job: str = setting("", "memory of each job, e.g. 4G (sbatch --mem; default: the partition's)", "-mpj")
    job_extra: str = setting("", 'more sbatch options for each job, e.g. "--qos=low --constraint=avx2"', "-je")
    job_log_dir: str = setting("", "where each job's output goes (default: a scaler-slurm-ID directory in the "
                               "temporary directory)", "-jld")
    poll_interval_seconds: float = setting(2.0, "how often squeue is asked which jobs ended", "-pis")


@dataclasses.dataclass
class ObjectStorageSettings:
    get_wait_seconds: float = setting(60.0, "a get for an object that has not arrived yet waits this long for its "
                                      "writer", "-gws")
    scheduler_timeout_seconds: float = setting(0.0, "exit when no scheduler has been heard from for this long "
                                               "(0: never); a journaled scheduler's storage outlives the scheduler "
                                               "this long, waiting for it to restart", "-sto")


# A reader waiting for objects heartbeats the object storage, which echoes even while it waits for a
# late writer; a storage that sends nothing at all for this long is gone (killed, or its host lost), and
# what waited for it fails, naming the object. (An echo queues behind an object still arriving: this
# also bounds one transfer from the storage.)
OBJECT_STORAGE_SILENCE_SECONDS = 60.0


@dataclasses.dataclass
class ClientSettings:
    """Client's keyword defaults (a client has no command line)."""

    profiling: bool = setting(False, "measure each task's duration, CPU time and peak memory")
    timeout_seconds: float = setting(60.0, "fail the connection, and pending futures, after this long without an "
                                     "answer from the scheduler")
    heartbeat_interval_seconds: float = setting(1.0, "how often the client tells the scheduler it is alive")
    stream_output: bool = setting(False, "forward the prints of tasks to this process's stdout/stderr")


@dataclasses.dataclass
class TopSettings:
    timeout: int = setting(5, "seconds without a status message before the view says so", "-t")


@dataclasses.dataclass
class WebUISettings:
    web_host: str = setting("127.0.0.1", "interface the web server binds to", "-wh")
    web_port: int = setting(8081, "port of the web server", "-p", aliases=("--port",))
    gui_address: str = setting("", "HOST:PORT of the web server, upstream scaler_gui's spelling (when set, it "
                               "replaces web_host and web_port)", "-ga")


@dataclasses.dataclass(frozen=True)
class Option:
    """One flag and TOML key, as derived from a settings field."""

    name: str                      # TOML key; the flag is --name-with-dashes
    type: type
    default: Any                   # as the command line and TOML give it (text for parsed fields, lists)
    help: str
    short: Optional[str] = None
    choices: Optional[Sequence] = None
    aliases: Sequence[str] = ()    # more long flags, e.g. the reference's spelling
    field: str = ""                # the dataclass field it sets
    parse: Optional[Callable[[str], Any]] = None


def field_default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _option(field: dataclasses.Field) -> Option:
    meta = field.metadata
    if meta["parse"] is not None:
        default = meta["text_default"]
    else:
        default = field_default(field)
        if isinstance(default, tuple):
            default = list(default)  # what nargs="+" and a TOML array give
    return Option(meta["key"] or field.name, type(default), default, meta["help"], meta["short"], meta["choices"],
                  meta["aliases"], field.name, meta["parse"])


def options(cls) -> List[Option]:
    """The flags and TOML keys of a settings class, in field order."""
    return [_option(field) for field in dataclasses.fields(cls) if field.metadata.get("option")]


def combo_default(cls, key: str) -> Any:
    """SchedulerClusterCombo's default for the keyword that sets option `key` of `cls`."""
    for field in dataclasses.fields(cls):
        if field.metadata.get("option") and (field.metadata["key"] or field.name) == key:
            if field.metadata["combo"] is not dataclasses.MISSING:
                return field.metadata["combo"]
            option = _option(field)
            return tuple(option.default) if isinstance(option.default, list) else option.default
    raise KeyError(f"{cls.__name__} has no option {key!r}")


class SettingsError(ValueError):
    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def settings_from(cls, values: Mapping[str, Any], **fields: Any):
    """`cls` built from a mapping keyed by option names (parsed flags, combo keywords).

    Keys of other components are ignored; options missing from `values` keep their defaults; a
    text value of a parsed field (capabilities) is parsed, raising SettingsError. `fields` sets
    fields by name, internal ones included."""
    arguments = {}
    for option in options(cls):
        if option.name not in values:
            continue
        value = values[option.name]
        if option.parse is not None and isinstance(value, str):
            try:
                value = option.parse(value)
            except ValueError as error:
                raise SettingsError(option.name, str(error)) from None
        elif isinstance(value, list) and option.type is list:
            value = tuple(value)
        arguments[option.field] = value
    arguments.update(fields)
    return cls(**arguments)
