"""Each component's flags, TOML keys, defaults and help, derived from its settings classes.

The options themselves (default, help, short flag, choices) are fields of the dataclasses in
settings.py; this module only groups them per command and reads the command line and the TOML file.
Precedence: command-line flags > the component's section of the TOML file (--config/-c) >
built-in defaults. TOML keys are the long flag names with underscores; an unknown key or a value
of the wrong type is an error naming the key and the file.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional, Sequence

import tomllib

from scaler_core.settings import (  # noqa: F401  (parse_capabilities, Option: this module's public names)
    ClusterSettings, LoggingSettings, NativeWorkerAdapterSettings, ObjectStorageSettings, Option, SchedulerSettings,
    SecuritySettings, TopSettings, WebUISettings, WorkerSettings, options, parse_capabilities,
)


def _component(section: str, description: str, *classes) -> Dict[str, Any]:
    component_options = [option for cls in classes for option in options(cls)]
    names = [option.name for option in component_options]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise AssertionError(f"[{section}]: options {duplicated} come from more than one settings class")
    return {"section": section, "description": description, "classes": classes, "options": component_options}


COMPONENTS: Dict[str, Dict[str, Any]] = {
    "scheduler": _component(
        "scheduler",
        "Run a scheduler (and, unless --object-storage-address is given, its own object storage at port + 1). "
        "Its monitor stream listens at port + 2 unless --monitor-address is given.",
        SchedulerSettings, SecuritySettings, LoggingSettings),
    "cluster": _component(
        "cluster", "Run a cluster: N worker processes on this machine, connected to the scheduler.",
        ClusterSettings, WorkerSettings, SecuritySettings, LoggingSettings),
    "top": _component(
        "top", "Live terminal view of a scheduler's monitor stream (address: the scheduler's monitor address).",
        TopSettings, LoggingSettings),
    "webui": _component(
        "webui", "Web page with live workers, load, task counts and timelines of a scheduler's monitor stream.",
        WebUISettings, LoggingSettings),
    "native_worker_adapter": _component(
        "native_worker_adapter",
        "Run the native worker adapter: an HTTP service that starts and stops groups of workers on this machine "
        "when the scheduler asks (see scaler_core/adapter/native.py for the interface).",
        NativeWorkerAdapterSettings, WorkerSettings, SecuritySettings, LoggingSettings),
    "object_storage_server": _component(
        "object_storage_server", "Run an object storage server. It stores pickles for anyone who reaches its port.",
        ObjectStorageSettings, SecuritySettings, LoggingSettings),
}


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
    known = {option.name: option for option in spec["options"]}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown key {key!r} in section [{section}] of {path}; known keys: {sorted(known)}")
        checked[key] = _check_toml_value(known[key], value, path, section)
    return checked


def parse(component: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Dict[str, Any]:
    """Defaults, then the TOML section, then command-line flags. Exits with a message on bad input."""
    parser = build_parser(component, prog)
    arguments = vars(parser.parse_args(argv))
    settings = {option.name: list(option.default) if option.type is list else option.default
                for option in COMPONENTS[component]["options"]}
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
