"""Each component's flags, TOML keys, defaults and help, derived from its settings classes.

The options themselves (default, help, short flag, choices) are fields of the dataclasses in
settings.py; this module only groups them per command and reads the command line and the TOML file.
Precedence: command-line flags > the component's section of the TOML file (--config/-c) >
built-in defaults. TOML keys are the long flag names with underscores; an unknown key or a value
of the wrong type is an error naming the key and the file. The positional address may also come
from the section, under the key upstream's files use for it (`bind_address` of [scheduler],
`scheduler_address` of [cluster] and [[worker_manager]], ...): the one-file launcher (launcher.py)
reads whole files through the same checks.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

import tomllib

from scaler_core.settings import (  # noqa: F401  (parse_capabilities, Option: this module's public names)
    WORKER_MANAGER_TYPES, ClusterSettings, LoggingSettings, NativeManagerSettings, NativeWorkerAdapterSettings,
    ObjectStorageSettings, Option, SchedulerSettings, SecuritySettings, SlurmManagerSettings, TopSettings,
    WebUISettings, WorkerManagerSettings, WorkerSettings, options, parse_capabilities,
)


def _component(section: str, description: str, *classes, address_keys=("address",)) -> Dict[str, Any]:
    component_options = [option for cls in classes for option in options(cls)]
    names = [option.name for option in component_options]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise AssertionError(f"[{section}]: options {duplicated} come from more than one settings class")
    clashing = sorted(set(address_keys) & set(names))
    if clashing:
        raise AssertionError(f"[{section}]: {clashing} would name both the address and an option")
    return {"section": section, "description": description, "classes": classes, "options": component_options,
            "address_keys": tuple(address_keys)}


COMPONENTS: Dict[str, Dict[str, Any]] = {
    "scheduler": _component(
        "scheduler",
        "Run a scheduler (and, unless --object-storage-address is given, its own object storage at port + 1). "
        "Its monitor stream listens at port + 2 unless --monitor-address is given.",
        SchedulerSettings, SecuritySettings, LoggingSettings, address_keys=("bind_address", "scheduler_address")),
    "cluster": _component(
        "cluster", "Run a cluster: N worker processes on this machine, connected to the scheduler.",
        ClusterSettings, WorkerSettings, SecuritySettings, LoggingSettings, address_keys=("scheduler_address",)),
    "top": _component(
        "top", "Live terminal view of a scheduler's monitor stream (address: the scheduler's monitor address).",
        TopSettings, LoggingSettings, address_keys=("monitor_address",)),
    "webui": _component(
        "webui", "Web page with live workers, load, task counts and timelines of a scheduler's monitor stream.",
        WebUISettings, LoggingSettings, address_keys=("monitor_address",)),
    "native_worker_adapter": _component(
        "native_worker_adapter",
        "Run the native worker adapter: an HTTP service that starts and stops groups of workers on this machine "
        "when the scheduler asks (see scaler_core/adapter/native.py for the interface).",
        NativeWorkerAdapterSettings, WorkerSettings, SecuritySettings, LoggingSettings,
        address_keys=("scheduler_address",)),
    "object_storage_server": _component(
        "object_storage_server", "Run an object storage server. It stores pickles for anyone who reaches its port.",
        ObjectStorageSettings, SecuritySettings, LoggingSettings,
        address_keys=("bind_address", "object_storage_address")),
    "worker_manager": _component(
        "worker_manager",
        "Run a worker manager of type baremetal_native (upstream Scaler 2.x): workers on this machine for the "
        "scheduler at SCHEDULER_ADDRESS. --mode fixed starts --max-task-concurrency workers at once and keeps them "
        "alive, as scaler_cluster -n does. --mode dynamic (the default) registers with the scheduler, whose scaling "
        "policy (scaler_scheduler --policy-content 'scaling=vanilla|capability', or --policy-engine-type "
        "waterfall_v1) asks it to start and stop groups of --workers-per-group workers, at most "
        "--max-task-concurrency workers in all.",
        WorkerManagerSettings, NativeManagerSettings, WorkerSettings, SecuritySettings, LoggingSettings,
        address_keys=("scheduler_address",)),
    "worker_manager_slurm": _component(
        "worker_manager",
        "Run a worker manager of type slurm: it registers with the scheduler at SCHEDULER_ADDRESS, and each worker "
        "group the scheduler's scaling policy asks for is one sbatch job running scaler_cluster with "
        "--cores-per-job workers, which connects back to the scheduler (the compute nodes must reach it: give the "
        "scheduler an address they can route to). Idle groups are scancel'ed; jobs Slurm ends (time limit, "
        "pre-emption, node failure) are noticed within --poll-interval-seconds and their tasks run again elsewhere.",
        WorkerManagerSettings, SlurmManagerSettings, WorkerSettings, SecuritySettings, LoggingSettings,
        address_keys=("scheduler_address",)),
}

# The launcher's [gui] is upstream scaler_gui's name for the web UI's section.
SECTION_ALIASES = {"gui": "webui"}
# An array of tables, one process each; `type` picks the kind.
ARRAY_SECTIONS = {"worker_manager": "type"}
# worker manager type -> the component that holds its options
WORKER_MANAGER_COMPONENTS = {"baremetal_native": "worker_manager", "slurm": "worker_manager_slurm"}


def _flag(option: Option) -> List[str]:
    flags = ["--" + option.name.replace("_", "-")] + list(option.aliases)
    if option.short:
        flags.insert(0, option.short)
    return flags


def _section_title(section: str) -> str:
    if section in ARRAY_SECTIONS:
        return f"[[{section}]]"
    return f"[{section}]"


def build_parser(component: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    spec = COMPONENTS[component]
    parser = argparse.ArgumentParser(
        prog=prog, description=spec["description"], argument_default=argparse.SUPPRESS,
        epilog=f"Every option can also be set in the {_section_title(spec['section'])} section of the --config TOML "
               "file, "
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
    where = f"key {option.name!r} in section {section} of {path}"
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


def read_toml(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None


def check_table(component: str, values: Any, path: str, section: Optional[str] = None) -> Dict[str, Any]:
    """One TOML table of `component`, checked: option names to values, and "address" when it names one.

    `section` is how errors name the table (e.g. "[[worker_manager]] #2"). The discriminator key of an
    array section (`type`) is the caller's to read; it is accepted here."""
    spec = COMPONENTS[component]
    section = section or f"[{spec['section']}]"
    if not isinstance(values, dict):
        raise ValueError(f"{section} in {path} must be a table")
    known = {option.name: option for option in spec["options"]}
    discriminator = ARRAY_SECTIONS.get(spec["section"])
    checked: Dict[str, Any] = {}
    address_key = None
    for key, value in values.items():
        key = key.replace("-", "_")  # upstream reads `worker-timeout-seconds` as `worker_timeout_seconds`
        if key == discriminator:
            continue
        if key in spec["address_keys"]:
            if address_key is not None:
                raise ValueError(f"keys {address_key!r} and {key!r} in section {section} of {path} both set the "
                                 "address; keep one")
            if not isinstance(value, str):
                raise ValueError(f"key {key!r} in section {section} of {path} must be of type str, got "
                                 f"{type(value).__name__} {value!r}")
            address_key = key
            checked["address"] = value
            continue
        if key not in known:
            raise ValueError(f"unknown key {key!r} in section {section} of {path}; known keys: "
                             f"{sorted(set(known) | set(spec['address_keys']))}")
        checked[key] = _check_toml_value(known[key], value, path, section)
    return checked


def _array_entry(component: str, document: Dict[str, Any], path: str, kind: Optional[str]) -> Dict[str, Any]:
    """The one entry of an array section (e.g. [[worker_manager]]) whose discriminator is `kind`."""
    section = COMPONENTS[component]["section"]
    discriminator = ARRAY_SECTIONS[section]
    entries = document.get(section, [])
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ValueError(f"[[{section}]] in {path} must be an array of tables")
    matching = [entry for entry in entries if not isinstance(entry, dict) or entry.get(discriminator, kind) == kind]
    if not matching:
        if entries:
            found = sorted({str(entry.get(discriminator)) for entry in entries})
            raise ValueError(f"no [[{section}]] entry with {discriminator} = {kind!r} in {path} (found: "
                             f"{', '.join(found)})")
        return {}
    if len(matching) > 1:
        raise ValueError(f"{len(matching)} [[{section}]] entries with {discriminator} = {kind!r} in {path}; "
                         "this command runs one (the `scaler` launcher runs them all)")
    return check_table(component, matching[0], path, f"[[{section}]] ({discriminator} = {kind!r})")


def load_toml_section(component: str, path: str, kind: Optional[str] = None) -> Dict[str, Any]:
    section = COMPONENTS[component]["section"]
    document = read_toml(path)
    if section in ARRAY_SECTIONS:
        return _array_entry(component, document, path, kind)
    return check_table(component, document.get(section, {}), path)


def defaults(component: str) -> Dict[str, Any]:
    return {option.name: list(option.default) if option.type is list else option.default
            for option in COMPONENTS[component]["options"]}


def parse(component: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None,
          kind: Optional[str] = None) -> Dict[str, Any]:
    """Defaults, then the TOML section, then command-line flags. Exits with a message on bad input.

    `kind` picks the entry of an array section ([[worker_manager]] of type `kind`)."""
    parser = build_parser(component, prog)
    arguments = vars(parser.parse_args(argv))
    settings = defaults(component)
    config_path = arguments.pop("config", None)
    if config_path:
        try:
            settings.update(load_toml_section(component, config_path, kind))
        except ValueError as error:  # a problem of the file: exit 1, as upstream does (flags exit 2)
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            sys.exit(1)
    settings.update(arguments)
    settings.setdefault("address", None)
    if not settings["address"]:
        keys = " or ".join(COMPONENTS[component]["address_keys"])
        parser.error(f"an address (tcp://HOST:PORT) is required, on the command line or as {keys} in the TOML file")
    return settings
