"""`scaler FILE.toml`: every section of one TOML file, each in its own process (upstream Scaler 2.x).

    [object_storage_server]   bind_address          -> scaler_object_storage_server
    [scheduler]               bind_address          -> scaler_scheduler
    [[worker_manager]]        scheduler_address     -> scaler_worker_manager TYPE (one process per entry)
    [cluster]                 scheduler_address     -> scaler_cluster
    [native_worker_adapter]   scheduler_address     -> scaler_worker_adapter_native
    [webui] or [gui]          monitor_address       -> scaler_ui

Every other key of a section is the option of that command, checked by config.check_table and the
settings classes exactly as the command's own --config reads it: a bad key stops the launcher before
anything starts, with a message naming the section and the key. [top] is interactive and is left to
`scaler_top`.

Sections start in the order above. Worker managers (`type = "baremetal_native"` or `"slurm"`)
connect to their scheduler and register; its scaling policy asks them for worker groups.

The launcher then waits. SIGTERM or SIGINT (Ctrl-C) stops every section; so does any section
exiting on its own, since a half-running stack is worse than a stopped one. Each section stops its
own children (a cluster its workers); children of a launcher killed with SIGKILL exit by themselves
(child.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing.connection
import os
import signal
import sys
from typing import Any, Dict, List, Optional, Sequence

from scaler_core import config
from scaler_core.settings import WORKER_MANAGER_TYPES, SettingsError, settings_from
from scaler_core.transport import parse_tcp_address, shift_port

logger = logging.getLogger(__name__)

# section -> component, in start-up order: storage before the scheduler, the scheduler before its workers
SECTIONS = (
    ("object_storage_server", "object_storage_server"),
    ("scheduler", "scheduler"),
    ("worker_manager", "worker_manager"),
    ("cluster", "cluster"),
    ("native_worker_adapter", "native_worker_adapter"),
    ("webui", "webui"),
    ("gui", "webui"),
)
NOT_STARTED = ("top",)
MANAGER_KINDS = {component: kind for kind, component in config.WORKER_MANAGER_COMPONENTS.items()}
STOP_TIMEOUT_SECONDS = 10.0


class LaunchConfigError(ValueError):
    """A section of the launcher's file that cannot start; the message names the file, section and key."""

    def __init__(self, message: str, section: Optional[str] = None, key: Optional[str] = None):
        super().__init__(message)
        self.section = section
        self.key = key


@dataclasses.dataclass
class Section:
    title: str                 # as messages name it: "[scheduler]", "[[worker_manager]] #2 (wm-gpu)"
    component: str             # the command it runs (a key of config.COMPONENTS)
    values: Dict[str, Any]     # option name -> value, defaults included, plus "address"
    process_name: str


def _fail(path: str, title: str, reason: str, key: Optional[str] = None) -> LaunchConfigError:
    where = f"section {title}" + (f", key {key!r}" if key else "")
    return LaunchConfigError(f"{path}: {where}: {reason}", title, key)


def _tables(document: Dict[str, Any], path: str):
    """(section name, component, title, table) for every section to start, in start-up order."""
    known = {name for name, _ in SECTIONS} | set(NOT_STARTED)
    for name in document:
        if name not in known:
            raise LaunchConfigError(
                f"{path}: unknown section [{name}]; `scaler` starts {', '.join(f'[{n}]' for n, _ in SECTIONS)} "
                "(worker_manager as [[worker_manager]])", f"[{name}]")
    if "webui" in document and "gui" in document:
        raise LaunchConfigError(f"{path}: sections [webui] and [gui] both configure the web UI; keep one", "[gui]")
    for name, component in SECTIONS:
        if name not in document:
            continue
        table = document[name]
        if name in config.ARRAY_SECTIONS:
            entries = [table] if isinstance(table, dict) else table
            if not isinstance(entries, list):
                raise LaunchConfigError(f"{path}: [[{name}]] must be an array of tables", f"[[{name}]]")
            for index, entry in enumerate(entries, 1):
                label = entry.get("worker_manager_id") if isinstance(entry, dict) else None
                title = f"[[{name}]] #{index}" + (f" ({label})" if isinstance(label, str) and label else "")
                yield name, component, title, entry
        else:
            yield name, component, f"[{name}]", table


def _check_address(path: str, section: Section, key: str) -> None:
    try:
        parse_tcp_address(section.values["address"])
    except ValueError as error:
        raise _fail(path, section.title, str(error), key) from None


def _check_settings(path: str, section: Section) -> None:
    """Build the section's settings as its command would, so parsed values (capabilities, preload,
    the manager's own rules) fail here, before any process starts."""
    from scaler_core import cli

    try:
        for cls in config.COMPONENTS[section.component]["classes"]:
            settings_from(cls, section.values)
        if section.component in MANAGER_KINDS:
            cli.worker_manager_settings(section.values, MANAGER_KINDS[section.component])
    except SettingsError as error:
        raise _fail(path, section.title, error.reason, error.key) from None
    preload = section.values.get("preload")
    if preload:
        from scaler_core.worker.preload import PreloadError, parse_preload

        try:
            parse_preload(preload)
        except PreloadError as error:
            raise _fail(path, section.title, str(error), "preload") from None


def load(path: str) -> List[Section]:
    """Every section of the file, checked, in start-up order; raises LaunchConfigError. Starts nothing."""
    try:
        document = config.read_toml(path)
    except ValueError as error:
        raise LaunchConfigError(str(error)) from None
    sections: List[Section] = []
    address_keys: Dict[str, str] = {}
    manager_ids: Dict[str, str] = {}
    for name, component, title, table in _tables(document, path):
        if name == "worker_manager" and isinstance(table, dict):
            kind = table.get("type")
            if kind is None:
                raise _fail(path, title, f"is required: one of {list(WORKER_MANAGER_TYPES)}", "type")
            if kind not in WORKER_MANAGER_TYPES:
                raise _fail(path, title, f"{kind!r} is not a worker manager type of this engine; it has "
                                         f"{list(WORKER_MANAGER_TYPES)}", "type")
            component = config.WORKER_MANAGER_COMPONENTS[kind]
        try:
            checked = config.check_table(component, table, path, title)
        except ValueError as error:
            raise LaunchConfigError(str(error), title) from None
        values = config.defaults(component)
        values.update(checked)
        values.setdefault("address", None)
        process_name = name if name not in config.ARRAY_SECTIONS else f"{name}-{len(sections)}"
        sections.append(Section(title, component, values, process_name))
        address_keys[title] = config.COMPONENTS[component]["address_keys"][0]
    if not sections:
        raise LaunchConfigError(f"{path}: nothing to start; `scaler` starts "
                                f"{', '.join(f'[{n}]' for n, _ in SECTIONS)} sections")
    scheduler = next((section for section in sections if section.component == "scheduler"), None)
    for section in sections:
        key = address_keys[section.title]
        if not section.values["address"]:
            section.values["address"] = _default_address(section, scheduler)
            if not section.values["address"]:
                raise _fail(path, section.title, "is required (tcp://HOST:PORT)", key)
        _check_address(path, section, key)
        _check_settings(path, section)
        if section.component in MANAGER_KINDS:
            manager_id = section.values["worker_manager_id"]
            if manager_id in manager_ids:
                raise _fail(path, section.title, f"{manager_id!r} is also the id of {manager_ids[manager_id]}",
                            "worker_manager_id")
            manager_ids[manager_id] = section.title
            section.process_name = f"worker-manager-{manager_id}"
    return sections


def _default_address(section: Section, scheduler: Optional[Section]) -> Optional[str]:
    """Workers and the web UI of a file that has a scheduler default to that scheduler."""
    if scheduler is None or not scheduler.values["address"]:
        return None
    if section.component in ("cluster", "native_worker_adapter", *MANAGER_KINDS):
        return scheduler.values["address"]
    if section.component == "webui":
        return scheduler.values["monitor_address"] or shift_port(scheduler.values["address"], 2)
    return None


def run(sections: Sequence[Section]) -> int:
    """Start every section, wait for a signal or for one to exit, stop them all; the exit code."""
    from scaler_core import cli
    from scaler_core.launch import ChildProcesses

    wake_reader, wake_writer = os.pipe()
    os.set_blocking(wake_writer, False)
    received: List[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        try:
            os.write(wake_writer, b"x")
        except BlockingIOError:
            pass

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    children = ChildProcesses()
    watched: Dict[int, tuple] = {}
    code = 0
    try:
        for section in sections:
            if received:
                break
            process = children.start(cli.run_component, section.process_name, section.component, section.values)
            watched[os.pidfd_open(process.pid)] = (section, process)
            logger.info("scaler: started %s as %s (pid %d) at %s", section.title, section.process_name, process.pid,
                        section.values["address"])
        if not received:
            ended = multiprocessing.connection.wait(list(watched) + [wake_reader])
            # Ctrl-C reaches the sections too, and one may exit before our handler runs: a signal wins
            exited = [fd for fd in ended if fd in watched]
            if exited and not received:
                section, process = watched[exited[0]]
                code = process.wait()
                logger.error("scaler: %s exited (code %s); stopping the others", section.title, code)
        if received:
            logger.info("scaler: %s received, stopping", signal.Signals(received[0]).name)
    finally:
        for section, process in watched.values():  # the final stop: a journaled scheduler takes SIGTERM for a restart
            if section.component == "scheduler" and process.poll() is None:
                process.send_signal(signal.SIGINT)
        children.stop_all(STOP_TIMEOUT_SECONDS)
        # the handlers write to the wake pipe: they go before it closes
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for fd in watched:
            os.close(fd)
        os.close(wake_reader)
        os.close(wake_writer)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaler", description=__doc__.split("\n\n")[0].strip("`"),
        epilog="Sections: [object_storage_server] (bind_address), [scheduler] (bind_address, object_storage_address, "
               "and every scaler_scheduler option), [[worker_manager]] (type = \"baremetal_native\" or \"slurm\", "
               "scheduler_address, worker_manager_id, max_task_concurrency, and the options of "
               "scaler_worker_manager TYPE -h: mode = \"fixed\"|\"dynamic\", or partition, walltime, "
               "cores_per_job, ...), [cluster], [native_worker_adapter], [webui] or [gui] "
               "(monitor_address, gui_address or web_host/web_port). Each key is the long option of that command "
               "with underscores.")
    parser.add_argument("config", help="the TOML file")
    parser.add_argument("--check", action="store_true", help="check the file and print what it would start")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    from scaler_core.logging_setup import setup_logging

    arguments = _parser().parse_args(argv)
    try:
        sections = load(arguments.config)
    except LaunchConfigError as error:
        sys.exit(f"scaler: error: {error}")
    setup_logging("INFO", ("/dev/stdout",))
    if arguments.check:
        for section in sections:
            extra = ""
            if section.component == "scheduler" and section.values["adapter_webhook_url"]:
                extra = f", asks {section.values['adapter_webhook_url']} for workers"
            elif section.component in MANAGER_KINDS:
                kind = MANAGER_KINDS[section.component]
                mode = section.values.get("mode", "dynamic")
                extra = f", {kind}, {mode}, {section.values['max_task_concurrency']} workers" + \
                    (" at most" if mode == "dynamic" else "")
            component = "worker_manager" if section.component in MANAGER_KINDS else section.component
            print(f"{section.title}: {component} at {section.values['address']}{extra}")
        return
    sys.exit(run(sections))
