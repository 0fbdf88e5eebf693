"""The session: the one runtime of this process, started by `init()` or on first use, stopped by
`shutdown()` (also at exit)."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Optional

from scaler_core.compat.ray._runtime import _Runtime

# ray.init options that change nothing here.
_IGNORED_INIT_OPTIONS = {"include_dashboard", "dashboard_host", "dashboard_port", "log_to_driver", "logging_level",
                         "logging_format", "configure_logging", "namespace", "_temp_dir", "object_store_memory",
                         "num_gpus", "resources"}

_state: Optional[_Runtime] = None
_state_lock = threading.Lock()


def _runtime() -> _Runtime:
    """The runtime, started on first use as Ray does (an embedded cluster, or inside a task the
    worker's own scheduler)."""
    global _state
    runtime = _state
    if runtime is None:
        with _state_lock:
            if _state is None:
                _state = _Runtime(None, None)
            runtime = _state
    return runtime


class RayContext:
    def __init__(self, address: str):
        self.address_info = {"address": address, "gcs_address": address}

    def __getitem__(self, key):
        return self.address_info[key]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()
        return False


def init(address: Optional[str] = None, *, num_cpus: Optional[int] = None, ignore_reinit_error: bool = False,
         **options) -> RayContext:
    """Connect to a scheduler (`tcp://host:port`), or with no address start an embedded local
    cluster of `num_cpus` workers (default: one per core) that `shutdown()` stops."""
    global _state
    for name, value in options.items():
        if name == "local_mode" and not value or name == "runtime_env" and not value:
            continue
        if name not in _IGNORED_INIT_OPTIONS:
            raise ValueError(f"ray.init option {name!r} is not supported by scaler_core.compat.ray")
    if address == "auto":
        address = os.environ.get("SCALER_ADDRESS") or os.environ.get("RAY_ADDRESS")
        if not address:
            raise ConnectionError("ray.init(address='auto'): set SCALER_ADDRESS to the scheduler's tcp:// address")
    if address is not None and not address.startswith(("tcp://", "ipc://")):
        raise ValueError(f"ray.init(address={address!r}): give a scaler scheduler address, tcp://host:port")
    with _state_lock:
        if _state is not None:
            if ignore_reinit_error:
                return RayContext(_state.address)
            raise RuntimeError("ray.init() was already called; call ray.shutdown() first "
                               "or pass ignore_reinit_error=True")
        _state = _Runtime(address, num_cpus)
        return RayContext(_state.address)


def scaler_init(address: Optional[str] = None, *, n_workers: Optional[int] = None, **cluster_options) -> RayContext:
    """Upstream Scaler's entry point: connect to `address`, or start an embedded cluster of
    `n_workers` workers with `cluster_options` (SchedulerClusterCombo's keywords)."""
    global _state
    if address is not None and cluster_options:
        raise ValueError(f"scaler_init: cluster options {sorted(cluster_options)} only apply without an address")
    with _state_lock:
        if _state is not None:
            raise RuntimeError("scaler_init() or ray.init() was already called; call ray.shutdown() first")
        _state = _Runtime(address, n_workers, cluster_options)
        return RayContext(_state.address)


def is_initialized() -> bool:
    return _state is not None


def shutdown() -> None:
    """Kill the actors, disconnect, and stop the embedded cluster if `init()` started one."""
    global _state
    with _state_lock:
        runtime, _state = _state, None
    if runtime is not None:
        runtime.close()


atexit.register(shutdown)
