"""Ray's core API on scaler_core: `import scaler_core.compat.ray as ray`, or `patch_ray()` before
code that does `import ray`. What is supported and how actors are placed: docs/ray-compat.md."""

from __future__ import annotations

import sys

# The public names live in one module per concept; this package re-exports them (also the ones
# outside __all__, which code written for this module may use as attributes).
from scaler_core.compat.ray import exceptions, util
from scaler_core.compat.ray._actors import ActorClass, ActorHandle, ActorMethod, get_actor, kill, method  # noqa: F401
from scaler_core.compat.ray._api import cancel, get, put, remote, wait
from scaler_core.compat.ray._functions import RemoteFunction  # noqa: F401
from scaler_core.compat.ray._refs import ObjectRef
from scaler_core.compat.ray._session import RayContext, init, is_initialized, scaler_init, shutdown  # noqa: F401
from scaler_core.compat.ray.exceptions import (  # noqa: F401
    ActorDiedError, GetTimeoutError, RayActorError, RayError, RayTaskError, TaskCancelledError, as_task_error,
)

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "method", "get", "put", "wait", "cancel", "kill", "get_actor",
    "ObjectRef", "exceptions", "patch_ray", "RayTaskError", "GetTimeoutError", "TaskCancelledError",
    "RayActorError", "ActorDiedError", "scaler_init", "util",
]


def patch_ray():
    """Make `import ray` (and `ray.exceptions`, `ray.util`) give this module, for code not edited at all.
    Call it before that code imports ray; modules that imported the real ray keep it."""
    module = sys.modules[__name__]
    sys.modules["ray"] = module
    sys.modules["ray.exceptions"] = exceptions
    sys.modules["ray.util"] = util
    return module
