"""What `@ray.remote` and `.options()` accept for functions and actors, and the local check of a
call's arguments against the signature."""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

# Options that change nothing here: one worker is one CPU slot, retries are the scheduler's own
# (--max-task-retries), placement is the scheduler's.
_IGNORED_TASK_OPTIONS = {"num_cpus", "memory", "max_retries", "retry_exceptions", "name", "scheduling_strategy",
                         "max_calls", "enable_task_events", "_metadata"}
_IGNORED_ACTOR_OPTIONS = {"num_cpus", "memory", "max_task_retries", "scheduling_strategy", "enable_task_events",
                          "_metadata"}


def _check_num_returns(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"num_returns must be an integer >= 0 here, got {value!r} "
                         "('dynamic' and 'streaming' generators are not supported)")
    return value


def _capabilities_of(options: Dict[str, Any]) -> Optional[Dict[str, int]]:
    """num_gpus / resources as engine capabilities (honoured under --allocate-policy capability)."""
    capabilities: Dict[str, int] = {}
    requested = dict(options.get("resources") or {})
    if options.get("num_gpus"):
        requested["gpu"] = options["num_gpus"]
    for name, quantity in requested.items():
        if quantity != int(quantity):
            raise ValueError(f"resource {name!r}={quantity!r}: capabilities are whole numbers here")
        if quantity:
            capabilities[str(name)] = int(quantity)
    return capabilities or None


def _checked_task_options(options: Dict[str, Any]) -> Dict[str, Any]:
    for name, value in options.items():
        if name == "num_returns":
            _check_num_returns(value)
        elif name == "runtime_env":
            if value:
                raise ValueError("runtime_env is not supported: install packages on the workers")
        elif name not in _IGNORED_TASK_OPTIONS and name not in ("num_gpus", "resources"):
            raise ValueError(f"remote function option {name!r} is not supported by scaler_core.compat.ray")
    _capabilities_of(options)
    return options


def _checked_actor_options(options: Dict[str, Any]) -> Dict[str, Any]:
    for name, value in options.items():
        if name in _IGNORED_ACTOR_OPTIONS:
            continue
        if name == "max_restarts" and value == 0:
            continue
        if name == "max_concurrency" and value == 1:
            continue
        if name in ("num_gpus", "resources") and not value:
            continue
        if name == "runtime_env" and not value:
            continue
        reasons = {
            "max_restarts": "actors are not restarted after their process dies",
            "max_concurrency": "an actor runs one call at a time",
            "name": "named actors are not supported", "namespace": "named actors are not supported",
            "get_if_exists": "named actors are not supported", "lifetime": "detached actors are not supported",
            "num_gpus": "an actor runs in a process started on the caller's machine",
            "resources": "an actor runs in a process started on the caller's machine",
        }
        raise ValueError(f"actor option {name}={value!r} is not supported by scaler_core.compat.ray: "
                         f"{reasons.get(name, 'unknown option')}")
    return options


def _signature_of(fn) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _bind(signature: Optional[inspect.Signature], name: str, args: tuple, kwargs: dict) -> None:
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{name}: {error}") from None
