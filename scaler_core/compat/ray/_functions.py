"""Remote functions: `@ray.remote` on a function, `.options()`, `.remote()`."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from scaler_core.compat.ray import _actor_host
from scaler_core.compat.ray._options import _bind, _capabilities_of, _checked_task_options, _signature_of
from scaler_core.compat.ray._refs import _Call, _refs_for
from scaler_core.compat.ray._session import _runtime

class RemoteFunction:
    def __init__(self, fn: Callable, options: Dict[str, Any], shipped: Optional[dict] = None):
        self._fn = fn
        self._options = _checked_task_options(options)
        self._signature = _signature_of(fn)
        self._shipped = {} if shipped is None else shipped
        self.__name__ = getattr(fn, "__name__", "remote_function")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"remote function {self.__name__} cannot be called directly; use {self.__name__}.remote()")

    def options(self, **options) -> "RemoteFunction":
        return RemoteFunction(self._fn, {**self._options, **options}, self._shipped)

    def remote(self, *args, **kwargs):
        _bind(self._signature, self.__qualname__, args, kwargs)
        num_returns = self._options.get("num_returns", 1)
        fn = self._fn
        if num_returns != 1:
            fn = self._shipped.get(num_returns)
            if fn is None:
                fn = self._shipped[num_returns] = _actor_host.Returns(self._fn, num_returns)
        call = _Call()
        _runtime().submit(call, fn, args, kwargs, _capabilities_of(self._options))
        return _refs_for(call, num_returns)
