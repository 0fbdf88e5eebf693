"""Object refs and the calls behind them: what a ref waits on, how refs travel in a task's
arguments, and when a call's arguments are ready to submit."""

from __future__ import annotations

import operator
import threading
import time
import uuid
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from scaler_core.compat.ray.exceptions import GetTimeoutError, TaskCancelledError, as_task_error
from scaler_core.references import ObjectReference

if TYPE_CHECKING:
    from scaler_core.compat.ray._runtime import _ActorState

_changed = threading.Condition()  # notified whenever any call settles: ray.wait sleeps on it


def _notify(*_ignored) -> None:
    with _changed:
        _changed.notify_all()


class _Ready:
    """The source of a ref whose outcome is known here (a put, or a ref that travelled in a task)."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: Optional[BaseException] = None):
        self.value, self.error = value, error

    def done(self) -> bool:
        return True

    def outcome(self, timeout: Optional[float]) -> Any:
        if self.error is not None:
            raise self.error
        if type(self.value) is ObjectReference:  # a put ref pickled outside a task: fetch it back
            from scaler_core.compat.ray._session import _runtime  # here: the session imports this module

            return _runtime().client.submit(_identity, self.value).result(timeout)
        return self.value


def _identity(value):
    return value


class _Call:
    """One task of this layer: submitted now, or later by the dispatcher once its arguments are ready."""

    __slots__ = ("future", "error", "submitted", "actor", "client", "elements", "__weakref__")

    def __init__(self, actor: Optional["_ActorState"] = None):
        self.future = None  # the engine's future once submitted
        self.client = None
        self.elements: Dict[int, Any] = {}
        self.error: Optional[BaseException] = None  # decided here: cancelled, actor killed, dependency failed
        self.submitted = threading.Event()
        self.actor = actor

    def attach(self, future, client) -> None:
        self.future, self.client = future, client
        self.submitted.set()
        future.add_done_callback(_notify)
        _notify()

    def element(self, index: int):
        """The engine future of one of several returns, computed on the cluster."""
        future = self.elements.get(index)
        if future is None:
            future = self.elements[index] = self.client.submit(operator.getitem, self.future, index)
        return future

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.submitted.set()
        _notify()

    def done(self) -> bool:
        return self.error is not None or (self.future is not None and self.future.done())

    def outcome(self, timeout: Optional[float]) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.submitted.wait(timeout):
            raise GetTimeoutError(f"the task was not submitted within {timeout}s (its arguments are not ready)")
        if self.error is not None:
            raise self.error
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            error = self.future.exception(remaining)
        except CancelledError:
            raise self.error or TaskCancelledError("the task was cancelled") from None
        except TimeoutError:
            if self.error is not None:
                raise self.error from None
            raise GetTimeoutError(f"the task did not finish within {timeout}s") from None
        if self.error is not None:
            raise self.error
        if error is not None:
            raise as_task_error(error)
        return self.future.result(0)


class ObjectRef:
    """A value being computed (or put) on the cluster; read it with `ray.get`."""

    __slots__ = ("_source", "_index", "_id", "_object_reference", "__weakref__")

    def __init__(self, source, index: Optional[int] = None, object_reference: Optional[ObjectReference] = None,
                 ref_id: Optional[str] = None):
        self._source = source
        self._index = index
        self._object_reference = object_reference
        self._id = ref_id or uuid.uuid4().hex

    def hex(self) -> str:
        return self._id

    def done(self) -> bool:
        return self._source.done()

    def _get(self, timeout: Optional[float]) -> Any:
        value = self._source.outcome(timeout)
        return value if self._index is None else value[self._index]

    def __repr__(self):
        return f"ObjectRef({self._id})"

    def __eq__(self, other):
        return type(other) is ObjectRef and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __reduce__(self):
        # A ref travelling inside a task's arguments (nested) or result carries its outcome; the
        # dispatcher waited for it before pickling. A put ref carries its ObjectReference, which the
        # engine swaps for the stored value in the worker: the value is not sent again.
        if self._object_reference is not None:
            return _carried_ref, (self._id, self._object_reference, None)
        try:
            return _carried_ref, (self._id, self._get(None), None)
        except Exception as error:
            return _carried_ref, (self._id, None, error)


def _carried_ref(ref_id: str, value: Any, error: Optional[BaseException]) -> ObjectRef:
    return ObjectRef(_Ready(value, error), ref_id=ref_id)


def _refs_for(call: _Call, num_returns: int):
    if num_returns == 0:
        return None
    if num_returns == 1:
        return ObjectRef(call)
    return [ObjectRef(call, index) for index in range(num_returns)]


def _nested_refs(value: Any, found: List[ObjectRef], depth: int = 0) -> None:
    if type(value) is ObjectRef:
        found.append(value)
    elif depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _nested_refs(item, found, depth + 1)
    elif depth < 8 and isinstance(value, dict):
        for item in value.values():
            _nested_refs(item, found, depth + 1)


def _resolve_arguments(args: tuple, kwargs: dict, client) -> Tuple[tuple, dict]:
    """What Client.submit receives for the top-level arguments of `.remote()` (Ray resolves those
    to values; nested refs stay ObjectRefs, see ObjectRef.__reduce__).

    A task ref of this client goes as its engine future: the engine runs the dependent once the
    input is done and hands it the value on the cluster, which never comes back here (a ref of one
    of several returns goes as the future of a small `getitem` task). A put ref goes as its
    ObjectReference, which the worker receives as the stored value. Any other ref (of an earlier
    runtime, or carried into a task) goes as its value. A dependency that failed here raises its error."""
    def top(value):
        if type(value) is not ObjectRef:
            return value
        if value._object_reference is not None:
            return value._object_reference
        call = value._source
        if type(call) is _Call and call.error is None and call.future is not None and call.client is client:
            return call.future if value._index is None else call.element(value._index)
        return value._get(None)

    return tuple(top(arg) for arg in args), {name: top(value) for name, value in kwargs.items()}


def _dependencies_ready(args: tuple, kwargs: dict, in_order: bool) -> Callable[[], bool]:
    """When the call may be submitted: nested refs done (their values travel in the arguments);
    top-level task refs submitted, or done for an actor call (the engine would start a later call
    whose inputs are ready before an earlier one still waiting for its own)."""
    top_level: List[ObjectRef] = []
    nested: List[ObjectRef] = []
    for value in (*args, *kwargs.values()):
        if type(value) is ObjectRef:
            top_level.append(value)
        else:
            _nested_refs(value, nested)

    def ready() -> bool:
        if not all(ref.done() for ref in nested):
            return False
        for ref in top_level:
            if in_order or type(ref._source) is not _Call:
                if not ref.done():
                    return False
            elif not ref._source.submitted.is_set():
                return False
        return True

    return ready
