"""The exception types of `ray.exceptions` that code written for Ray catches.

Kept free of client imports: worker processes import it to raise actor errors."""

from __future__ import annotations

import concurrent.futures
from typing import Dict, Type


class RayError(Exception):
    """Base of every error this layer raises itself."""


class RayTaskError(RayError):
    """A task raised. Errors reach the caller as instances of `RayTaskError(OriginalType)`, a class
    deriving from both, so `except OriginalType` and `except RayTaskError` both catch them."""

    @property
    def cause(self) -> BaseException:
        return self  # the error is its own cause: it is already an instance of the original type


class GetTimeoutError(RayError, TimeoutError):
    """`ray.get(..., timeout=...)` ran out of time."""


class TaskCancelledError(RayError, concurrent.futures.CancelledError):
    """The task was cancelled with `ray.cancel`."""


class RayActorError(RayError):
    """The actor cannot run the call: it was killed, its process died or its constructor failed."""


class ActorDiedError(RayActorError):
    pass


class ObjectLostError(RayError):
    pass


_task_error_classes: Dict[type, type] = {}


def as_task_error(error: BaseException) -> BaseException:
    """`error` re-classed as RayTaskError(type(error)), keeping its args, attributes and traceback.

    Errors whose type cannot be combined (layout conflicts, final classes) come back unchanged:
    their original type is what callers match on most."""
    if isinstance(error, (RayError, concurrent.futures.CancelledError)) or not isinstance(error, Exception):
        return error
    cause_class = type(error)
    combined = _task_error_classes.get(cause_class)
    if combined is None:
        try:
            combined = type(f"RayTaskError({cause_class.__name__})", (RayTaskError, cause_class), {
                "__module__": __name__,
                # the combined class is made at run time: pickle as the original type
                "__reduce__": lambda self: (_rebuild, (cause_class, self.args, dict(self.__dict__))),
                "__str__": lambda self: cause_class.__str__(self),
                "__repr__": lambda self: cause_class.__repr__(self),
            })
        except TypeError:
            combined = False
        _task_error_classes[cause_class] = combined
    if not combined:
        return error
    try:
        error.__class__ = combined
    except TypeError:
        return error
    return error


def _rebuild(cause_class: Type[BaseException], args: tuple, state: dict) -> BaseException:
    error = cause_class.__new__(cause_class, *args)
    error.args = args
    state.pop("cause", None)
    error.__dict__.update(state)
    return error
