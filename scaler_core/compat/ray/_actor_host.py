"""The worker side of actors: instances live in a module-level registry of the worker process.

Every task of an actor is routed by its `actor-<id>` capability to the one worker process that
offers it, so the registry of that process holds the instance from the creation call on."""

from __future__ import annotations

import os
from typing import Any, Dict

from scaler_core.compat.ray.exceptions import ActorDiedError

_instances: Dict[str, Any] = {}
_failed: Dict[str, BaseException] = {}


def create(actor_id: str, cls: type, args: tuple, kwargs: dict) -> int:
    try:
        _instances[actor_id] = cls(*args, **kwargs)
    except BaseException as error:
        _failed[actor_id] = error
        raise
    return os.getpid()


def call(actor_id: str, method: str, num_returns: int, args: tuple, kwargs: dict) -> Any:
    instance = _instances.get(actor_id)
    if instance is None:
        error = _failed.get(actor_id)
        if error is not None:
            raise ActorDiedError(f"actor {actor_id} is unusable: its constructor raised {error!r}") from error
        raise ActorDiedError(
            f"actor {actor_id} is not in worker process {os.getpid()}: its process was restarted after a crash "
            "(actors are not restarted: max_restarts is unsupported), or the scheduler does not route by "
            "capability (start it with --allocate-policy capability)")
    return check_returns(getattr(instance, method)(*args, **kwargs), num_returns)


def check_returns(value: Any, num_returns: int) -> Any:
    if num_returns == 1:
        return value
    if num_returns == 0:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != num_returns:
        length = len(value) if isinstance(value, (tuple, list)) else "a non-sequence"
        raise ValueError(f"the task returned {length} values but num_returns={num_returns}")
    return tuple(value)


class Returns:
    """A function whose call must give `num_returns` values; checked in the worker so the error is
    the task's. One instance per (function, count) keeps the client's shipped-function cache hit."""

    def __init__(self, fn, num_returns: int):
        self.fn = fn
        self.num_returns = num_returns

    def __call__(self, *args, **kwargs):
        return check_returns(self.fn(*args, **kwargs), self.num_returns)
