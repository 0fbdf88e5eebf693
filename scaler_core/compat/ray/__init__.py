"""Ray's core API on scaler_core: `import scaler_core.compat.ray as ray`, or `patch_ray()` before
code that does `import ray`. What is supported and how actors are placed: docs/ray-compat.md."""

from __future__ import annotations

import atexit
import inspect
import operator
import os
import queue
import sys
import threading
import time
import uuid
import weakref
from concurrent.futures import CancelledError
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from scaler_core import task_context
from scaler_core.compat.ray import _actor_host, exceptions
from scaler_core.compat.ray.exceptions import (
    ActorDiedError, GetTimeoutError, RayActorError, RayError, RayTaskError, TaskCancelledError, as_task_error,
)
from scaler_core.references import ObjectReference

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "method", "get", "put", "wait", "cancel", "kill", "get_actor",
    "ObjectRef", "exceptions", "patch_ray", "RayTaskError", "GetTimeoutError", "TaskCancelledError",
    "RayActorError", "ActorDiedError",
]

# Options that change nothing here: one worker is one CPU slot, retries are the scheduler's own
# (--max-task-retries), placement is the scheduler's.
_IGNORED_TASK_OPTIONS = {"num_cpus", "memory", "max_retries", "retry_exceptions", "name", "scheduling_strategy",
                         "max_calls", "enable_task_events", "_metadata"}
_IGNORED_ACTOR_OPTIONS = {"num_cpus", "memory", "max_task_retries", "scheduling_strategy", "enable_task_events",
                          "_metadata"}
_IGNORED_INIT_OPTIONS = {"include_dashboard", "dashboard_host", "dashboard_port", "log_to_driver", "logging_level",
                         "logging_format", "configure_logging", "namespace", "_temp_dir", "object_store_memory",
                         "num_gpus", "resources"}

_changed = threading.Condition()  # notified whenever any call settles: ray.wait sleeps on it


def _notify(*_ignored) -> None:
    with _changed:
        _changed.notify_all()


# --- object refs -------------------------------------------------------------------------------


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


# --- the runtime: one client, an optional embedded cluster, actor processes --------------------


class _ActorState:
    def __init__(self, actor_id: str, process=None):
        self.actor_id = actor_id
        self.capabilities = {f"actor-{actor_id}": 1}
        self.process = process  # the actor's one-worker cluster, when started by this process
        self.dead: Optional[str] = None
        self.queued = 0  # calls waiting in the dispatcher: later calls queue behind them, keeping order
        self.calls: "weakref.WeakSet[_Call]" = weakref.WeakSet()
        self.creation: Optional[_Call] = None


class _Runtime:
    def __init__(self, address: Optional[str], num_cpus: Optional[int]):
        from scaler_core import Client, SchedulerClusterCombo
        from scaler_core.launch import ChildProcesses

        self.combo = None
        if address is None and not task_context.in_worker():
            # capability placement: actors are routed to their own worker by capability
            self.combo = SchedulerClusterCombo(n_workers=num_cpus or os.cpu_count() or 1,
                                               allocate_policy="capability", logging_level="WARNING")
        try:
            self.client = Client(self.combo.address if self.combo else address)
        except BaseException:
            if self.combo is not None:
                self.combo.shutdown()
            raise
        self.address = self.client.address
        self.actors: Dict[str, _ActorState] = {}
        self.processes = ChildProcesses()
        self.lock = threading.Lock()
        self.stopping = False
        self.queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self.dispatcher: Optional[threading.Thread] = None

    # Submission: at once when every top-level and nested ref is ready (and no earlier call of the
    # same actor waits), else through one dispatcher thread, FIFO, so `.remote()` never blocks.
    def submit(self, call: _Call, fn: Callable, args: tuple, kwargs: dict, capabilities: Optional[Dict[str, int]],
               actor: Optional[_ActorState] = None, pack: Optional[Callable] = None) -> None:
        ready = _dependencies_ready(args, kwargs, actor is not None)
        item = (call, fn, args, kwargs, capabilities, ready, actor, pack)
        with self.lock:
            if ready() and (actor is None or actor.queued == 0):
                self._submit_now(item, raise_errors=True)
                return
            if actor is not None:
                actor.queued += 1
            if self.dispatcher is None:
                self.dispatcher = threading.Thread(target=self._dispatch_loop, name="ray-compat-dispatch", daemon=True)
                self.dispatcher.start()
        self.queue.put(item)

    def _submit_now(self, item, raise_errors: bool) -> None:
        call, fn, args, kwargs, capabilities, _dependencies, _actor, pack = item
        if call.error is not None:
            return
        try:
            args, kwargs = _resolve_arguments(args, kwargs, self.client)
        except BaseException as error:  # a dependency failed: so does this call, with its error
            call.fail(error)
            return
        if pack is not None:
            args, kwargs = pack(args, kwargs)
        try:
            future = self.client.submit_verbose(fn, args, kwargs, capabilities=capabilities)
        except Exception as error:
            if raise_errors:
                raise
            call.fail(error)
            return
        call.attach(future, self.client)

    def _dispatch_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            call, ready, actor = item[0], item[5], item[6]
            try:
                with _changed:
                    while not self.stopping and call.error is None and not ready():
                        _changed.wait(1.0)
                if self.stopping:
                    call.fail(RayError("ray.shutdown() was called before the task was submitted"))
                else:
                    with self.lock:
                        self._submit_now(item, raise_errors=False)
            finally:
                if actor is not None:
                    with self.lock:
                        actor.queued -= 1

    # --- actors ---------------------------------------------------------------------------------

    def create_actor(self, cls: type, args: tuple, kwargs: dict) -> "_ActorState":
        from scaler_core.settings import WorkerSettings

        actor_id = uuid.uuid4().hex[:16]
        state = _ActorState(actor_id)
        # The actor's own one-worker cluster, joining this scheduler and the only one offering the
        # actor's capability (quantity 1: one call at a time, in the scheduler's FIFO order).
        state.process = self.processes.start_cluster(self.address, 1, WorkerSettings(capabilities=state.capabilities),
                                                     "WARNING", ())
        self.actors[actor_id] = state
        call = _Call(state)
        state.calls.add(call)
        state.creation = call
        self.submit(call, _actor_host.create, args, kwargs, state.capabilities, state,
                    pack=lambda a, k: ((actor_id, cls, a, k), {}))
        return state

    def actor_state(self, actor_id: str) -> _ActorState:
        state = self.actors.get(actor_id)
        if state is None:  # a handle that travelled here: calls route by capability all the same
            state = self.actors[actor_id] = _ActorState(actor_id)
        return state

    def kill_actor(self, actor_id: str) -> None:
        state = self.actors.get(actor_id)
        if state is None or state.process is None:
            raise RayError(f"ray.kill: actor {actor_id} was created by another process, which alone can stop it")
        self._fail_calls(state, "it was killed by ray.kill()")
        self.processes.stop(state.process)

    def _fail_calls(self, state: _ActorState, reason: str) -> None:
        state.dead = reason
        for call in list(state.calls):
            if not call.done():
                call.fail(ActorDiedError(f"actor {state.actor_id} cannot run the call: {reason}"))
                if call.future is not None:
                    call.future.cancel()

    def close(self) -> None:
        self.stopping = True
        _notify()
        if self.dispatcher is not None:
            self.queue.put(None)
            self.dispatcher.join(10)
        for state in self.actors.values():
            if state.process is not None and not state.dead:
                self._fail_calls(state, "ray.shutdown() was called")
        self.processes.stop_all()
        try:
            self.client.disconnect()
        finally:
            if self.combo is not None:
                self.combo.shutdown()


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


# --- options -----------------------------------------------------------------------------------


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


# --- remote functions --------------------------------------------------------------------------


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


# --- actors ------------------------------------------------------------------------------------


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


# --- the module-level API ----------------------------------------------------------------------


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


def is_initialized() -> bool:
    return _state is not None


def shutdown() -> None:
    """Kill the actors, disconnect, and stop the embedded cluster if `init()` started one."""
    global _state
    with _state_lock:
        runtime, _state = _state, None
    if runtime is not None:
        runtime.close()


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
        call.fail(TaskCancelledError("the task was cancelled before it was submitted"))
    elif call.actor is not None:
        call.future.cancel_if_pending()
    else:
        call.future.cancel()


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop the actor's process; its unfinished and later calls fail with ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"ray.kill needs an actor handle, got {actor!r}")
    _runtime().kill_actor(actor._actor_id)


def get_actor(name: str, namespace: Optional[str] = None):
    raise ValueError(f"named actors are not supported by scaler_core.compat.ray (ray.get_actor({name!r}))")


def patch_ray():
    """Make `import ray` (and `ray.exceptions`) give this module, for code not edited at all.
    Call it before that code imports ray; modules that imported the real ray keep it."""
    module = sys.modules[__name__]
    sys.modules["ray"] = module
    sys.modules["ray.exceptions"] = exceptions
    return module


atexit.register(shutdown)
