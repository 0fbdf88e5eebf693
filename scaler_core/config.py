"""One definition per component drives its CLI flags, TOML keys, defaults and help.

Precedence: command-line flags > the component's section of the TOML file (--config/-c) >
built-in defaults. TOML keys are the long flag names with underscores; an unknown key or a value
of the wrong type is an error naming the key and the file.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import tomllib


@dataclasses.dataclass(frozen=True)
class Option:
    name: str                      # TOML key; the flag is --name-with-dashes
    type: type
    default: Any
    help: str
    short: Optional[str] = None
    choices: Optional[Sequence] = None
    aliases: Sequence[str] = ()    # more long flags, e.g. the reference's spelling


LOGGING = [
    Option("logging_paths", list, ["/dev/stdout"], "where logs go: paths, /dev/stdout or /dev/stderr", "-lp"),
    Option("logging_level", str, "INFO", "log level", "-ll", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
]

SECURITY = [
    Option("curve_secret_key_file", str, "", "CurveZMQ: this process's key pair (a .key_secret file of "
           "zmq.auth.create_certificates); enables authentication and encryption", "-csk"),
    Option("curve_server_public_key_file", str, "", "CurveZMQ: public key (.key) of the scheduler and object "
           "storage, for processes that connect to them", "-cpk"),
    Option("curve_authorized_keys_dir", str, "", "CurveZMQ, servers: directory of accepted client public keys "
           "(.key files)", "-cak"),
]

COMPONENTS: Dict[str, Dict[str, Any]] = {
    "scheduler": {
        "section": "scheduler",
        "description": "Run a scheduler (and, unless --object-storage-address is given, its own object storage at "
                       "port + 1). Its monitor stream listens at port + 2 unless --monitor-address is given.",
        "options": [
            Option("object_storage_address", str, "", "object storage server to use (default: start one at port + 1)",
                   "-osa"),
            Option("monitor_address", str, "", "address of the monitor stream (default: port + 2)", "-ma"),
            Option("allocate_policy", str, "even", "how tasks are placed on workers", "-ap", ("even", "capability")),
            Option("event_loop", str, "builtin", "asyncio event loop", "-el", ("builtin", "uvloop")),
            Option("heartbeat_interval_seconds", float, 1.0, "how often peers are expected to send heartbeats", "-hi"),
            Option("worker_timeout_seconds", float, 10.0, "a worker silent this long is considered dead", "-wt"),
            Option("client_timeout_seconds", float, 30.0, "a client silent this long is considered gone", "-ct"),
            Option("max_task_retries", int, 3, "a task whose worker died this many times while running it fails",
                   "-mtr"),
            Option("no_worker_grace_seconds", float, 30.0,
                   "a task no connected worker can run fails after this long", "-nwg"),
            Option("protected", bool, True, "refuse shutdown requests from clients", "-p"),
            Option("adapter_webhook_url", str, "", "worker adapter to ask for workers while tasks queue "
                   "(e.g. http://127.0.0.1:8080)", "-awu"),
            Option("adapter_idle_seconds", float, 10.0, "release an adapter's worker group idle this long", "-ais"),
            Option("graph_frontier", str, "auto", "how graph nodes release their dependents: GraphBLAS sparse "
                   "products, pure Python, or auto (GraphBLAS for big graphs)", "-gf", ("auto", "python", "graphblas")),
        ] + SECURITY + LOGGING,
    },
    "cluster": {
        "section": "cluster",
        "description": "Run a cluster: N worker processes on this machine, connected to the scheduler.",
        "options": [
            Option("num_of_workers", int, 0, "number of worker processes (default: number of cores)", "-n"),
            Option("per_worker_capabilities", str, "", 'capabilities of each worker, e.g. "gpu,linux,cpu=8"', "-pwc"),
            Option("heartbeat_interval_seconds", float, 1.0, "how often workers send heartbeats", "-hi"),
            Option("death_timeout_seconds", float, 30.0, "workers exit when the scheduler is silent this long", "-dt"),
            Option("task_timeout_seconds", float, 0.0, "stop a task running longer than this (0: never)", "-tt"),
            Option("worker_memory_limit_bytes", int, 0, "stop a task whose worker grows past this RSS (0: no limit)",
                   "-wml"),
            Option("object_cache_bytes", int, 256 * 1024 * 1024, "bytes of fetched objects a worker keeps", "-ocb"),
            Option("preload", str, "", 'run "package.module:function(args)" once in each worker before its first '
                   "task; a failing preload stops that worker", "-pl"),
            Option("event_loop", str, "builtin", "accepted for compatibility; workers do not use asyncio", "-el",
                   ("builtin", "uvloop")),
        ] + SECURITY + LOGGING,
    },
    "top": {
        "section": "top",
        "description": "Live terminal view of a scheduler's monitor stream (address: the scheduler's monitor address).",
        "options": [
            Option("timeout", int, 5, "seconds without a status message before the view says so", "-t"),
        ] + LOGGING,
    },
    "webui": {
        "section": "webui",
        "description": "Web page with live workers, load, task counts and timelines of a scheduler's monitor stream.",
        "options": [
            Option("web_host", str, "127.0.0.1", "interface the web server binds to", "-wh"),
            Option("web_port", int, 8081, "port of the web server", "-p", aliases=("--port",)),
        ] + LOGGING,
    },
    "native_worker_adapter": {
        "section": "native_worker_adapter",
        "description": "Run the native worker adapter: an HTTP service that starts and stops groups of workers on "
                       "this machine when the scheduler asks (see scaler_core/adapter/native.py for the interface).",
        "options": [
            Option("host", str, "127.0.0.1", "interface of the HTTP service", "-H"),
            Option("port", int, 8080, "port of the HTTP service", "-p"),
            Option("workers_per_group", int, 1, "workers started per request", "-wpg"),
            Option("max_worker_groups", int, 0, "most groups at once (0: number of cores, -1: no limit)", "-mwg"),
            Option("per_worker_capabilities", str, "", 'capabilities of each worker, e.g. "gpu,linux,cpu=8"', "-pwc"),
            Option("heartbeat_interval_seconds", float, 1.0, "how often workers send heartbeats", "-hi"),
            Option("death_timeout_seconds", float, 30.0, "workers exit when the scheduler is silent this long", "-dt"),
            Option("task_timeout_seconds", float, 0.0, "stop a task running longer than this (0: never)", "-tt"),
        ] + SECURITY + LOGGING,
    },
    "object_storage_server": {
        "section": "object_storage_server",
        "description": "Run an object storage server. It stores pickles for anyone who reaches its port.",
        "options": SECURITY + LOGGING,
    },
}


def curve_keys(settings: Dict[str, Any]):
    from scaler_core.security import CurveKeys

    return CurveKeys(settings["curve_secret_key_file"], settings["curve_server_public_key_file"],
                     settings["curve_authorized_keys_dir"])


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


def _flag(option: Option) -> List[str]:
    flags = ["--" + option.name.replace("_", "-")] + list(option.aliases)
    if option.short:
        flags.insert(0, option.short)
    return flags


def build_parser(component: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    spec = COMPONENTS[component]
    parser = argparse.ArgumentParser(
        prog=prog, description=spec["description"], argument_default=argparse.SUPPRESS,
        epilog=f"Every option can also be set in the [{spec['section']}] section of the --config TOML file, "
               "under its long name with underscores (e.g. --logging-level -> logging_level).")
    parser.add_argument("address", nargs="?", help="address to listen on / connect to, tcp://HOST:PORT")
    parser.add_argument("-c", "--config", help="TOML configuration file")
    for option in spec["options"]:
        help_text = f"{option.help} (TOML key {option.name}; default: {option.default!r})"
        if option.type is bool:
            parser.add_argument(*_flag(option), action=argparse.BooleanOptionalAction, help=help_text)
        elif option.type is list:
            parser.add_argument(*_flag(option), nargs="+", help=help_text)
        else:
            parser.add_argument(*_flag(option), type=option.type, choices=option.choices, help=help_text)
    return parser


def _check_toml_value(option: Option, value: Any, path: str, section: str) -> Any:
    where = f"key {option.name!r} in section [{section}] of {path}"
    if option.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if option.type is list and isinstance(value, str):
        value = [value]
    if option.type is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{where} must be a list of strings, got {value!r}")
    elif not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
        raise ValueError(f"{where} must be of type {option.type.__name__}, got {type(value).__name__} {value!r}")
    if option.choices and value not in option.choices:
        raise ValueError(f"{where} must be one of {list(option.choices)}, got {value!r}")
    return value


def load_toml_section(component: str, path: str) -> Dict[str, Any]:
    spec = COMPONENTS[component]
    section = spec["section"]
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    values = document.get(section, {})
    if not isinstance(values, dict):
        raise ValueError(f"[{section}] in {path} must be a table")
    options = {option.name: option for option in spec["options"]}
    checked = {}
    for key, value in values.items():
        if key not in options:
            raise ValueError(f"unknown key {key!r} in section [{section}] of {path}; known keys: {sorted(options)}")
        checked[key] = _check_toml_value(options[key], value, path, section)
    return checked


def parse(component: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Dict[str, Any]:
    """Defaults, then the TOML section, then command-line flags. Exits with a message on bad input."""
    parser = build_parser(component, prog)
    arguments = vars(parser.parse_args(argv))
    settings = {option.name: option.default for option in COMPONENTS[component]["options"]}
    config_path = arguments.pop("config", None)
    if config_path:
        try:
            settings.update(load_toml_section(component, config_path))
        except ValueError as error:
            parser.error(str(error))
    settings.update(arguments)
    settings.setdefault("address", None)
    if not settings["address"]:
        parser.error("an address (tcp://HOST:PORT) is required")
    return settings
