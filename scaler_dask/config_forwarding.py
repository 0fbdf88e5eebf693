"""``dask.config`` set in the caller around a compute applies to that compute's tasks in the workers.

Only what differs from the configuration this process had when scaler_dask was imported travels,
so most computes send nothing. The changes ride with each task's function (a `Configured`
wrapper, shipped once per function per compute) and are applied with ``dask.config.set`` around
the call, as they would be around a local call.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict

import cloudpickle
import dask

# Chosen per process: the worker decides its own scheduler, pool and the engine it talks to.
_LOCAL_ONLY = ("scheduler", "get", "pool", "scaler")

_baseline: Dict[str, Any] = copy.deepcopy(dask.config.config)


def config_changes() -> Dict[str, Any]:
    """{dotted key: value} of every setting that differs from the baseline."""
    changes: Dict[str, Any] = {}
    _diff(dask.config.config, _baseline, "", changes)
    return {key: value for key, value in changes.items() if _travels(value)}


def _travels(value: Any) -> bool:
    """Objects of this process (locks, pools, open files) stay here: a worker could not use them."""
    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


def _diff(current: Dict[str, Any], baseline: Dict[str, Any], prefix: str, changes: Dict[str, Any]) -> None:
    for key, value in current.items():
        if not prefix and key in _LOCAL_ONLY:
            continue
        path = prefix + str(key)
        before = baseline.get(key, _MISSING)
        if isinstance(value, dict) and (before is _MISSING or isinstance(before, dict)):
            _diff(value, {} if before is _MISSING else before, path + ".", changes)
        elif before is _MISSING or not _same(before, value):
            changes[path] = value


def _same(before: Any, value: Any) -> bool:
    try:
        return before is value or bool(before == value)
    except Exception:  # values whose == is not a plain answer (arrays): treat as changed
        return False


_MISSING = object()


class Configured:
    """``fn`` called inside ``dask.config.set(changes)``."""

    __slots__ = ("fn", "changes")

    def __init__(self, fn: Callable, changes: Dict[str, Any]):
        self.fn = fn
        self.changes = changes

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with dask.config.set(self.changes):
            return self.fn(*args, **kwargs)

    def __reduce__(self):
        return Configured, (self.fn, self.changes)


def with_config(tasks: Dict[Any, tuple], changes: Dict[str, Any]) -> None:
    """Wrap every task's function in place; one wrapper per distinct function."""
    wrappers: Dict[int, Configured] = {}
    for key, (fn, args, kwargs) in tasks.items():
        wrapper = wrappers.get(id(fn))
        if wrapper is None:
            wrapper = wrappers[id(fn)] = Configured(fn, changes)
        tasks[key] = (wrapper, args, kwargs)
