"""Actors on the caller's side: `@ray.remote` on a class, `@ray.method`, handles, method calls,
`ray.kill`. The worker side is `_actor_host`."""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Tuple

from scaler_core.compat.ray import _actor_host
from scaler_core.compat.ray._options import _bind, _check_num_returns, _checked_actor_options, _signature_of
from scaler_core.compat.ray._refs import _Call, _refs_for
from scaler_core.compat.ray._session import _runtime
from scaler_core.compat.ray.exceptions import ActorDiedError

def method(*, num_returns: int = 1, **options):
    """`@ray.method(num_returns=N)` on an actor method."""
    if options:
        raise ValueError(f"ray.method options {sorted(options)} are not supported")
    _check_num_returns(num_returns)

    def decorate(fn):
        fn.__ray_num_returns__ = num_returns
        return fn

    return decorate


class ActorClass:
    def __init__(self, cls: type, options: Dict[str, Any]):
        self._cls = cls
        self._options = _checked_actor_options(options)
        self._methods: Dict[str, Tuple[Optional[inspect.Signature], int]] = {}
        for name, member in inspect.getmembers(cls, callable):
            if name.startswith("__"):
                continue
            if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
                raise TypeError(f"{cls.__name__}.{name} is async: async actors are not supported by "
                                "scaler_core.compat.ray")
            signature = _signature_of(member)
            raw = inspect.getattr_static(cls, name)
            if signature is not None and not isinstance(raw, (staticmethod, classmethod)):
                parameters = list(signature.parameters.values())[1:]  # without self
                signature = signature.replace(parameters=parameters)
            self._methods[name] = (signature, getattr(member, "__ray_num_returns__", 1))
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor class {self.__name__} cannot be instantiated directly; use {self.__name__}.remote()")

    def options(self, **options) -> "ActorClass":
        return ActorClass(self._cls, {**self._options, **options})

    def remote(self, *args, **kwargs) -> "ActorHandle":
        _bind(_signature_of(self._cls), self.__qualname__, args, kwargs)
        state = _runtime().create_actor(self._cls, args, kwargs)
        return ActorHandle(state.actor_id, self.__name__, self._methods)


class ActorHandle:
    """A running actor; `handle.method.remote(...)` calls run in its process, in submission order."""

    def __init__(self, actor_id: str, class_name: str, methods: Dict[str, Tuple[Optional[inspect.Signature], int]]):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods

    def __getattr__(self, name: str) -> "ActorMethod":
        methods = self.__dict__.get("_methods") or {}
        if name not in methods:
            raise AttributeError(f"actor {self.__dict__.get('_class_name')!s} has no method {name!r}")
        signature, num_returns = methods[name]
        return ActorMethod(self, name, signature, num_returns)

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id})"

    def __reduce__(self):
        # signatures may not pickle; the receiving side skips the local argument check
        methods = {name: (None, num_returns) for name, (_signature, num_returns) in self._methods.items()}
        return ActorHandle, (self._actor_id, self._class_name, methods)


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, signature, num_returns: int):
        self._handle, self._name, self._signature, self._num_returns = handle, name, signature, num_returns

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor method {self._name} cannot be called directly; use .{self._name}.remote()")

    def options(self, num_returns: Optional[int] = None, **options) -> "ActorMethod":
        if options:
            raise ValueError(f"actor method options {sorted(options)} are not supported")
        chosen = self._num_returns if num_returns is None else _check_num_returns(num_returns)
        return ActorMethod(self._handle, self._name, self._signature, chosen)

    def remote(self, *args, **kwargs):
        _bind(self._signature, f"{self._handle._class_name}.{self._name}", args, kwargs)
        runtime = _runtime()
        state = runtime.actor_state(self._handle._actor_id)
        call = _Call(state)
        if state.dead:
            call.fail(ActorDiedError(f"actor {state.actor_id} cannot run the call: {state.dead}"))
            return _refs_for(call, self._num_returns)
        state.calls.add(call)
        actor_id, name, num_returns = state.actor_id, self._name, self._num_returns
        runtime.submit(call, _actor_host.call, args, kwargs, state.capabilities, state,
                       pack=lambda a, k: ((actor_id, name, num_returns, a, k), {}))
        return _refs_for(call, num_returns)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop the actor's process; its unfinished and later calls fail with ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"ray.kill needs an actor handle, got {actor!r}")
    _runtime().kill_actor(actor._actor_id)


def get_actor(name: str, namespace: Optional[str] = None):
    raise ValueError(f"named actors are not supported by scaler_core.compat.ray (ray.get_actor({name!r}))")
