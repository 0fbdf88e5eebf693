"""The module-level calls on refs and the `@ray.remote` decorator: remote, get, put, wait, cancel."""

from __future__ import annotations

import inspect
import time
from typing import Any, List, Optional, Sequence, Tuple

from scaler_core.compat.ray._actors import ActorClass
from scaler_core.compat.ray._functions import RemoteFunction
from scaler_core.compat.ray._refs import ObjectRef, _Call, _changed, _Ready
from scaler_core.compat.ray._session import _runtime
from scaler_core.compat.ray.exceptions import TaskCancelledError

def remote(*args, **options):
    """`@ray.remote`, `@ray.remote(num_returns=2, ...)` on a function or a class."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("ray.remote takes a function or a class, or only keyword options")

    def decorate(target):
        return _make_remote(target, options)

    return decorate


def _make_remote(target, options):
    if inspect.isclass(target):
        return ActorClass(target, options)
    return RemoteFunction(target, options)


def _check_refs(object_refs) -> List[ObjectRef]:
    if not isinstance(object_refs, (list, tuple)) or any(type(ref) is not ObjectRef for ref in object_refs):
        raise TypeError(f"expected an ObjectRef or a list of ObjectRefs, got {object_refs!r}")
    return list(object_refs)


def get(object_refs, *, timeout: Optional[float] = None):
    """The value of a ref, or the values of a list of refs; a task's error is raised here as
    RayTaskError(OriginalType), an instance of both."""
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    if type(object_refs) is ObjectRef:
        return object_refs._get(timeout)
    refs = _check_refs(object_refs)
    deadline = None if timeout is None else time.monotonic() + timeout
    return [ref._get(None if deadline is None else max(0.0, deadline - time.monotonic())) for ref in refs]


def put(value: Any) -> ObjectRef:
    """Store `value` on the cluster once (Client.send_object); tasks given the ref receive the value."""
    if type(value) is ObjectRef:
        raise TypeError("ray.put() of an ObjectRef is not allowed")
    reference = _runtime().client.send_object(value)
    return ObjectRef(_Ready(value), object_reference=reference)


def wait(object_refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: Optional[float] = None,
         fetch_local: bool = True) -> Tuple[List[ObjectRef], List[ObjectRef]]:
    """(ready, not_ready): at most `num_returns` ready refs, both lists in the order of the input."""
    refs = _check_refs(object_refs)
    if len(set(ref.hex() for ref in refs)) != len(refs):
        raise ValueError("ray.wait needs a list of unique object refs")
    if not isinstance(num_returns, int) or not 1 <= num_returns <= max(1, len(refs)) or \
            (refs and num_returns > len(refs)):
        raise ValueError(f"num_returns must be between 1 and the number of refs ({len(refs)}), got {num_returns!r}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    with _changed:
        while True:
            ready = [ref for ref in refs if ref.done()]
            if len(ready) >= num_returns or not refs:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            _changed.wait(remaining)
    ready = ready[:num_returns]
    chosen = {id(ref) for ref in ready}
    return ready, [ref for ref in refs if id(ref) not in chosen]


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task of `object_ref`. A queued task is dropped; a running plain task is stopped
    (its worker process is replaced, as with force=True); an actor call only if it has not started."""
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"ray.cancel needs an ObjectRef, got {object_ref!r}")
    call = object_ref._source
    if type(call) is not _Call or call.done():
        return
    if call.actor is not None and force:
        raise ValueError("force=True is not supported for actor tasks")
    if call.future is None:
        # under the runtime's lock, which the dispatcher holds to submit: either it sees the
        # failure and skips the call, or the call was submitted and is cancelled below
        with _runtime().lock:
            if call.future is None:
                call.fail(TaskCancelledError("the task was cancelled before it was submitted"))
                return
    if call.actor is not None:
        call.future.cancel_if_pending()
    else:
        call.future.cancel()
