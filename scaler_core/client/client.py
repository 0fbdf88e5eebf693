"""Client: the user-facing API (submit, map, starmap, get, send_object) on top of ClientConnection.

Everything the client sends is pickled with cloudpickle; the cluster unpickles it. Only connect to
schedulers you trust, and only let trusted clients reach yours.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import logging
import os
import sys
import threading
import types
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from scaler_core import protocol
from scaler_core.client.connection import ClientConnection, release_when_collected
from scaler_core.client.futures import EncodedResult, ScalerFuture, WarningSink
from scaler_core.client.graph import GraphSubmission
from scaler_core.graph_plan import build_plan
from scaler_core.references import InputCancelledError, KeyRef, ObjectReference
from scaler_core.client.progress import ProgressBar
from scaler_core.errors import (
    ClientError, ConnectTimeoutError, GraphError, MissingObjectError, NoSchedulerAddressError, SchedulerDiedError,
    ShutdownRefusedError,
)
from scaler_core.memory import freeze_heap, paused_gc
from scaler_core.security import CurveKeys
from scaler_core.serialization import INLINE_THRESHOLD, content_id, dumps_frames, dumps_with_references, frames_size, new_id
from scaler_core.serializer import SerializedValue, SerializerCall
from scaler_core.settings import ClientSettings
from scaler_core import task_context as worker_context

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
NESTED_PRIORITY_STEP = 1 << 22


class Client:
    """Connects to a scheduler and submits tasks.

    `address` defaults to the scheduler of the worker when created inside a task (nested tasks).
    `timeout_seconds` bounds the connection attempt and how long the scheduler may stay silent
    before pending futures fail with SchedulerDiedError."""

    def __init__(self, address: Optional[str] = None, profiling: bool = ClientSettings.profiling,
                 timeout_seconds: float = ClientSettings.timeout_seconds,
                 heartbeat_interval_seconds: float = ClientSettings.heartbeat_interval_seconds,
                 stream_output: bool = ClientSettings.stream_output,
                 security: Optional[CurveKeys] = None, serializer: Any = None):
        if address is None:
            address = worker_context.current_scheduler_address()
            if address is None:
                raise NoSchedulerAddressError(
                    "No scheduler address provided and not running inside a worker context "
                    "(no scheduler address was given): pass Client(address='tcp://HOST:PORT')")
        if not isinstance(address, str) or not address.startswith(("tcp://", "ipc://", "inproc://")):
            raise ClientError(f"invalid scheduler address {address!r}; expected tcp://HOST:PORT")
        if serializer is not None and not (callable(getattr(serializer, "serialize", None)) and
                                           callable(getattr(serializer, "deserialize", None))):
            raise TypeError(f"serializer {serializer!r} needs serialize(obj) -> bytes and deserialize(bytes) -> obj")
        self.serializer = serializer
        self._serializer_calls: Dict[int, Tuple[Callable, SerializerCall, Optional[inspect.Signature]]] = {}
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.profiling = profiling
        self.stream_output = stream_output
        self.client_id = b"C|%d|%s" % (os.getpid(), new_id().hex().encode())
        self._functions: Dict[int, Tuple[Callable, bytes, Optional[inspect.Signature]]] = {}
        self._functions_lock = threading.Lock()
        self._objects: Dict[bytes, ObjectReference] = {}
        # finished futures whose large values were sent again as task inputs -> their object ids
        self._resent: "weakref.WeakKeyDictionary[ScalerFuture, bytes]" = weakref.WeakKeyDictionary()
        self._cleared: set = set()  # ids of objects this client freed: using them again is an error
        self._closed = False
        if security is None:
            security = worker_context.current_keys() or CurveKeys()
        security.validate(server=False, client=True)
        self._connection = ClientConnection(address, self.client_id, timeout_seconds, heartbeat_interval_seconds,
                                            security)
        self._connection.start()
        self._connection.welcomed.wait(timeout_seconds + 5)
        if not self._connection.welcomed.is_set() or self._connection.closed.is_set():
            if not self._connection.closed.is_set():
                self._connection.disconnect(False)
            self._connection.join(5)
            self._closed = True
            raise ConnectTimeoutError(f"could not connect to a scheduler at {address} within {timeout_seconds:g}s")

    # --- pickling: a Client passed to a task reconnects there ---------------------------------

    def __reduce__(self):
        return _nested_client, (self.address,)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()
        return False

    def __repr__(self):
        return f"<Client {self.address} {'closed' if self._closed else 'connected'}>"

    @property
    def connected(self) -> bool:
        return not self._closed and not self._connection.closed.is_set()

    # --- tasks ----------------------------------------------------------------------------------

    def submit(self, fn: Callable, /, *args, reserialize: bool = False, **kwargs) -> ScalerFuture:
        """Run fn(*args, **kwargs) on the cluster; returns a concurrent.futures.Future.

        Futures of this client may be among the arguments, at any depth: the task runs once they
        are done, with their values. `reserialize=True` pickles `fn` again instead of reusing the
        copy this client shipped before (for a callable changed in place since)."""
        return self.submit_verbose(fn, args, kwargs, reserialize=reserialize)

    def submit_verbose(self, fn: Callable, args: Sequence = (), kwargs: Optional[Dict[str, Any]] = None,
                       capabilities: Optional[Dict[str, int]] = None, *, notify_start: bool = False,
                       future_factory: Callable[[bytes, Callable], ScalerFuture] = ScalerFuture,
                       reserialize: bool = False) -> ScalerFuture:
        """submit with explicit arguments; `notify_start=True` makes the future RUNNING (and so no
        longer cancellable, as in concurrent.futures) once a worker starts the task.
        `future_factory(task_id, on_cancel)` makes the future (a ScalerFuture subclass's constructor).
        `reserialize` as for submit."""
        self._check_open()
        if not callable(fn):
            raise TypeError(f"submit needs a callable, got {fn!r}")
        args, kwargs = tuple(args), dict(kwargs or {})
        self._check_call(fn, args, kwargs, reserialize)  # without a serializer this ships fn (again, if asked)
        if self.serializer is not None:
            fn, (args, kwargs) = self._serializer_entry(fn)[1], self._serialized_arguments(args, kwargs)
        function_id = self._function_id(fn, reserialize and self.serializer is not None)
        task, future = self._make_task(function_id, args, kwargs, capabilities, future_factory=future_factory,
                                       notify_start=notify_start)
        if task is not None:  # None: an input had failed, the future carries its error
            self._send_tasks([task], [future])
        return future

    def map(self, fn: Callable, *iterables: Iterable, capabilities: Optional[Dict[str, int]] = None,
            progress: bool = False, reserialize: bool = False) -> List[Any]:
        """Like the builtin map (stops at the shortest iterable), run on the cluster; returns results.

        `progress=True` draws a progress bar on stderr while the results come in. Items may be (or
        hold) futures of this client. `reserialize` as for submit."""
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        return self.starmap(fn, zip(*iterables), capabilities=capabilities, progress=progress,
                            reserialize=reserialize)

    def starmap(self, fn: Callable, iterable: Iterable[Sequence], capabilities: Optional[Dict[str, int]] = None,
                progress: bool = False, reserialize: bool = False) -> List[Any]:
        # Every task keeps a future (and its condition) alive until the end: the cyclic collector's
        # passes would rescan all of them again and again while the results come in (measured 1.2 s
        # of 3.7 s at 100k tasks). Submission pauses it; the futures then leave its sight (before it
        # runs again) until the results are in.
        with paused_gc():
            futures = self.starmap_futures(fn, iterable, capabilities=capabilities, reserialize=reserialize)
            thaw = freeze_heap()
        try:
            if progress:
                ProgressBar(len(futures)).track(futures)
            return [future.result() for future in futures]
        except BaseException:
            self.cancel(futures)
            raise
        finally:
            thaw()

    def starmap_futures(self, fn: Callable, iterable: Iterable[Sequence],
                        capabilities: Optional[Dict[str, int]] = None, *,
                        notify_start: bool = False,
                        future_factory: Callable[[bytes, Callable], ScalerFuture] = ScalerFuture,
                        reserialize: bool = False) -> List[ScalerFuture]:
        """Submit fn(*item) for each item; the function is shipped once for the whole call, the tasks
        travel in batches. `notify_start`, `future_factory` and `reserialize` as for submit_verbose."""
        self._check_open()
        if not callable(fn):
            raise TypeError(f"map needs a callable, got {fn!r}")
        if self.serializer is not None:
            fn = self._serializer_entry(fn)[1]
            iterable = (self._serialized_arguments(tuple(item), {})[0] for item in iterable)
        function_id = self._function_id(fn, reserialize)
        priority = self._base_priority()  # one per call: every task of it has the same
        futures: List[ScalerFuture] = []
        iterator = iter(iterable)
        # Each task leaves a future (and its condition) alive: with the collector running, its passes
        # rescan every earlier future (measured: 32 of 37 us per task at 100k), so it pauses here.
        with paused_gc():
            while True:
                chunk = list(itertools.islice(iterator, BATCH_SIZE))
                if not chunk:
                    return futures
                tasks, chunk_futures = [], []
                for item in chunk:
                    task, future = self._make_task(function_id, tuple(item), {}, capabilities, priority=priority,
                                                   future_factory=future_factory, notify_start=notify_start)
                    if task is not None:  # None: an input had failed, the future carries its error
                        tasks.append(task)
                        chunk_futures.append(future)
                    futures.append(future)
                self._send_tasks(tasks, chunk_futures)

    def cancel(self, futures: Iterable[Future]) -> None:
        for future in futures:
            future.cancel()

    # --- graphs ---------------------------------------------------------------------------------

    def get(self, graph: Dict, keys: Sequence, block: bool = True, capabilities: Optional[Dict[str, int]] = None,
            progress: bool = False, reserialize: bool = False) -> Dict:
        """Compute the Dask-style dict graph and return {key: value} for `keys`.

        `block=False` returns {key: future} at once instead. `progress=True` draws a progress bar of
        the requested keys on stderr. `reserialize=True` pickles the graph's functions again rather
        than reusing copies this client shipped before."""
        if not isinstance(keys, (list, tuple)) or (isinstance(keys, tuple) and keys in graph):
            keys = [keys]
        missing = [key for key in keys if key not in graph]
        if missing:
            raise KeyError(f"keys not in the graph: {missing!r}")
        duplicates = [key for key, count in collections.Counter(keys).items() if count > 1]
        if duplicates:
            raise KeyError(f"keys asked for more than once: {duplicates!r}")
        with paused_gc():
            # normalised, culled, ordered and cycle-checked here, once (graph_plan)
            tasks = build_plan(graph, list(keys))
            if self.serializer is not None:
                for key, (fn, args, kwargs) in tasks.items():
                    tasks[key] = (self._serializer_entry(fn)[1], *self._serialized_arguments(args, kwargs))
        # passed only when asked for: subclasses and test doubles override submit_graph without it
        extra = {"reserialize": True} if reserialize else {}
        futures = self.submit_graph(tasks, list(keys), capabilities=capabilities, **extra)
        if not block:
            return {key: futures[key] for key in keys}
        if progress:
            ProgressBar(len(futures), label="keys").track(futures.values())
        try:
            return {key: futures[key].result() for key in keys}
        except BaseException:
            self.cancel(futures.values())
            raise

    def submit_graph(self, tasks: Dict[Any, Tuple[Callable, tuple, dict]], keys: Sequence,
                     priorities: Optional[Dict[Any, int]] = None,
                     capabilities: Optional[Dict[str, int]] = None,
                     reserialize: bool = False, keep_on_cluster: bool = False) -> Dict[Any, ScalerFuture]:
        """Submit a graph of tasks {key: (fn, args, kwargs)} whose arguments may hold KeyRef(other key).

        Returns {key: future} for `keys`; every other task is an intermediate freed when its
        dependents are done. Raises GraphError / GraphCycleError before anything runs.

        `keep_on_cluster=True` (what a persist needs): a large result stays where it was made; its
        future is done without its bytes, reads them on the first `result()`, and passes them to
        other tasks without this process in between; the cluster frees it once the future is gone."""
        self._check_open()
        with paused_gc():  # millions of short-lived acyclic objects: collections would rescan them all
            return self._submit_graph(tasks, keys, priorities, capabilities, reserialize, keep_on_cluster)

    def _submit_graph(self, tasks, keys, priorities, capabilities, reserialize=False,
                      keep_on_cluster=False) -> Dict[Any, ScalerFuture]:
        submission = GraphSubmission(tasks, keys, self._reference_of_objects, priorities)
        graph_id = new_id()
        ordered = submission.prepare(graph_id)
        base_priority = self._base_priority()
        node_priorities = np.fromiter((base_priority + submission.priority_of(key) for key in ordered),
                                      dtype="<i4", count=len(ordered))
        requested = np.fromiter((key in submission.requested for key in ordered), dtype=np.uint8, count=len(ordered))
        # Every requested future exists before the scheduler hears of the graph: it may answer at once.
        futures: Dict[Any, ScalerFuture] = {}
        graph_warnings = self._connection.graph_warnings[graph_id] = WarningSink()
        for key in ordered:
            if key in submission.requested:
                future = futures[key] = ScalerFuture(submission.task_ids[key], self._cancel_task)
                future._owner = self.client_id
                if self.serializer is not None:
                    future._serializer = self.serializer
                future._graph_warnings = graph_warnings
                if keep_on_cluster:
                    future._kept = True
        self._send_tasks([], list(futures.values()))
        dep_indptr, dep_indices = submission.structure
        self._connection.send_graph(protocol.GraphSubmit(
            graph_id=graph_id, node_count=len(ordered), dependency_offsets=dep_indptr.astype("<i8").tobytes(),
            dependency_indices=dep_indices.astype("<i4").tobytes(), priorities=node_priorities.tobytes(),
            requested=requested.tobytes()), kept=keep_on_cluster)
        batch_tasks = []
        shipped = set() if reserialize else None  # each function pickled again, once per graph
        for position, key in enumerate(ordered):
            fn, args, kwargs = submission.spec(key)
            if shipped is not None and id(fn) not in shipped:
                shipped.add(id(fn))
                function_id = self._function_id(fn, True)
            else:
                function_id = self._function_id(fn)
            task, _ = self._make_task(
                function_id, args, kwargs, capabilities, task_id=submission.task_ids[key],
                reference_of=submission.reference_of, graph_task_ids=submission.task_id_set,
                requested=bool(requested[position]), priority=int(node_priorities[position]), graph_id=graph_id,
                future=False, expect_references=bool(dep_indptr[position + 1] > dep_indptr[position]))
            submission.submitted.add(key)
            batch_tasks.append(task)
            if len(batch_tasks) >= BATCH_SIZE:
                self._send_tasks(batch_tasks, ())
                batch_tasks = []
        if batch_tasks:
            self._send_tasks(batch_tasks, ())
        return futures

    # --- objects --------------------------------------------------------------------------------

    def send_object(self, obj: Any, name: Optional[str] = None) -> ObjectReference:
        """Store `obj` on the cluster once; pass the returned reference to any later task."""
        self._check_open()
        if self.serializer is not None:
            obj = SerializedValue(self.serializer.serialize(obj))
        frames = dumps_frames(obj)
        reference = ObjectReference(new_id(), name or "", frames_size(frames))
        self._connection.put_object(reference.object_id, frames)
        self._objects[reference.object_id] = reference
        return reference

    def clear_object(self, reference: ObjectReference) -> None:
        self._check_open()
        if self._objects.pop(reference.object_id, None) is not None:
            self._cleared.add(reference.object_id)
            self._connection.send_to_storage(protocol.ObjectDelete(object_ids=[reference.object_id]))

    def clear(self) -> None:
        """Cancel every unfinished future of this client and free every object it sent; the
        client stays connected. References from `send_object` are invalid afterwards."""
        self._check_open()
        self.cancel(list(self._connection.futures.values()))
        object_ids, self._objects = list(self._objects), {}
        self._cleared.update(object_ids)
        if object_ids:
            self._connection.send_to_storage(protocol.ObjectDelete(object_ids=object_ids))

    # --- lifecycle ------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Leave the scheduler: pending futures are cancelled, this client's objects are freed."""
        if self._closed:
            return
        self._closed = True
        if not self._connection.closed.is_set():
            try:
                self._connection.disconnect(False)
            except SchedulerDiedError:
                pass
        self._connection.join(10)

    def shutdown(self) -> None:
        """Ask the scheduler to shut down the whole cluster (refused when it is protected)."""
        self._check_open()
        self._connection.disconnect(True)
        self._connection.join(15)
        self._closed = True
        response = self._connection.shutdown_response
        if response is None:
            raise ClientError("the scheduler did not answer the shutdown request")
        if not response.accepted:
            raise ShutdownRefusedError(f"the scheduler refused to shut down: {response.reason}")

    # --- internals ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("this client is disconnected")
        if self._connection.closed.is_set():
            raise self._connection.failure or SchedulerDiedError("the connection to the scheduler is closed")

    def _base_priority(self) -> int:
        parent = worker_context.current_task_priority()
        return 0 if parent is None else (parent // NESTED_PRIORITY_STEP + 1) * NESTED_PRIORITY_STEP

    def _function_id(self, fn: Callable, reserialize: bool = False) -> bytes:
        return self._function_entry(fn, reserialize)[1]

    def _function_entry(self, fn: Callable, reserialize: bool = False) -> Tuple[Callable, bytes, Optional[_CallShape]]:
        """(fn, its function id, the calls it accepts), pickled and shipped once per function object.

        `reserialize` (upstream Scaler's meaning) ignores that cached copy: a callable changed in
        place since (a callable object's attributes, a function's globals or defaults) is pickled
        again; new content gets a new content id, so workers fetch it instead of their cached copy."""
        if not reserialize:
            with self._functions_lock:
                entry = self._functions.get(id(fn))
                if entry is not None and entry[0] is fn:
                    return entry
        frames = dumps_frames(fn)
        function_id = content_id(self.client_id, bytes(frames[0]))
        entry = (fn, function_id, _signature_of(fn))
        with self._functions_lock:
            self._functions[id(fn)] = entry  # holding fn keeps its id() from being reused
        self._connection.put_object(function_id, frames)
        return entry

    def _serializer_entry(self, fn: Callable) -> Tuple[Callable, SerializerCall, Optional[_CallShape]]:
        """(fn, the wrapper shipped instead of fn under the client's serializer, the calls fn accepts)."""
        entry = self._serializer_calls.get(id(fn))
        if entry is None or entry[0] is not fn:
            entry = self._serializer_calls[id(fn)] = (fn, SerializerCall(fn, self.serializer), _signature_of(fn))
        return entry

    def _serialized_arguments(self, args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
        """Arguments under the client's serializer: placeholders stay, the rest go as its bytes."""
        def serialized(value):
            if isinstance(value, (KeyRef, ObjectReference, SerializedValue, ScalerFuture)):
                return value
            return SerializedValue(self.serializer.serialize(value))

        return tuple(serialized(arg) for arg in args), {name: serialized(value) for name, value in kwargs.items()}

    def _check_call(self, fn: Callable, args: tuple, kwargs: dict, reserialize: bool = False) -> None:
        """A call that cannot bind to fn's parameters fails here, not later on a worker."""
        # the cache of what is shipped: under a serializer that is the wrapper, not fn itself
        shape = (self._serializer_entry(fn) if self.serializer is not None
                 else self._function_entry(fn, reserialize))[2]
        if shape is not None:
            try:
                shape.check(args, kwargs)
            except TypeError as error:
                raise TypeError(f"{getattr(fn, '__qualname__', fn)!s}: {error}") from None

    def _reference_of_objects(self, obj) -> Optional[bytes]:
        if type(obj) is not ObjectReference:
            if isinstance(obj, ScalerFuture):  # reached only from a graph: plain tasks go through _TaskInputs
                kept = obj.kept_object_id() if obj._owner == self.client_id else None
                if kept is not None:  # a persisted result: the task reads it where it lies
                    return kept
                raise GraphError(f"{obj!r} is an argument of a graph task: graph tasks cannot take futures; "
                                 "make it a node of the graph (a key), or pass future.result()")
            return None
        if obj.object_id in self._cleared:
            raise MissingObjectError(f"{obj!r} was freed by clear() or clear_object(); send the object again")
        return obj.object_id

    def _reference_of_future(self, future: ScalerFuture, inputs: "_TaskInputs") -> bytes:
        """The placeholder id of a future among a task's arguments (see _TaskInputs)."""
        if future._owner != self.client_id:
            raise ClientError(
                f"{future!r} belongs to another Client (or to one that has disconnected): a task can take "
                "as arguments only futures of the client that submits it; pass the value (future.result()) instead")
        if not future.done():
            inputs.depend(future)
            return future.task_id
        if future.cancelled():
            inputs.fail(InputCancelledError(f"the task's input {future!r} was cancelled"))
            return future.task_id
        error = Future.exception(future, 0)  # the base method: no wait, no warnings re-emitted here
        if error is not None:
            inputs.fail(error)
            return future.task_id
        kept = future.kept_object_id()
        if kept is not None:  # still on the cluster, alive as long as the future: the task reads it there
            inputs.hold(kept, None)
            return kept
        return self._resent_value(future, inputs)

    def _resent_value(self, future: ScalerFuture, inputs: "_TaskInputs") -> bytes:
        """A finished future's value, sent with the task: the scheduler forgets a finished task once
        its result is delivered, so the client, which holds the value, supplies it.

        Small values ride inline in the task; a large one is put in the object storage once per
        future (under a fresh id: the result's own id may be deleted at any moment now that the
        client fetched it) and deleted when the future is garbage collected."""
        object_id = self._resent.get(future)
        if object_id is not None:
            inputs.hold(object_id, None)
            return object_id
        raw = Future.result(future, 0)
        if type(raw) is EncodedResult:
            frames = raw.frames
            if frames is None:  # unpickled already: the frames were let go
                raw = future._decoded
                if self.serializer is not None and type(raw) is not SerializedValue:
                    raw = SerializedValue(self.serializer.serialize(raw))
                frames = dumps_frames(raw)
        else:
            frames = dumps_frames(raw)
        if len(frames) == 1 and len(frames[0]) <= INLINE_THRESHOLD:
            inputs.hold(future.task_id, bytes(frames[0]))
            return future.task_id
        object_id = new_id()
        self._connection.put_object(object_id, frames)
        self._resent[future] = object_id
        weakref.finalize(future, release_when_collected, weakref.ref(self._connection), object_id, False)
        inputs.hold(object_id, None)
        return object_id

    def _make_task(self, function_id: bytes, args: tuple, kwargs: dict, capabilities, *, task_id: bytes = b"",
                   reference_of=None, graph_task_ids=None, requested: bool = True, priority: Optional[int] = None,
                   graph_id: bytes = b"", future: bool = True, expect_references: bool = False,
                   future_factory: Callable[[bytes, Callable], ScalerFuture] = ScalerFuture,
                   notify_start: bool = False, scaler_future: Optional[ScalerFuture] = None):
        """The task for one call, and its future (`scaler_future` when given: a resend).

        The task is None when an input future failed or was cancelled: the future then already
        carries that error and nothing is sent."""
        task_id = task_id or new_id()
        inputs = _TaskInputs(self) if reference_of is None else None
        frames, references = dumps_with_references((args, kwargs), reference_of or inputs, expect_references)
        if scaler_future is None and future:
            scaler_future = future_factory(task_id, self._cancel_task)
            scaler_future._owner = self.client_id
            if self.serializer is not None:
                scaler_future._serializer = self.serializer
        if inputs is not None and inputs.failure is not None:
            scaler_future._settle(error=inputs.failure)
            return None, scaler_future
        task = protocol.make_task(task_id, self.client_id, function_id, b"",
                                  self._base_priority() if priority is None else priority, requested,
                                  self.stream_output, graph_id)
        task.notify_start = notify_start
        if len(frames) == 1 and len(frames[0]) <= INLINE_THRESHOLD:
            task.args = frames[0]
        else:
            task.args_stored = True
            task.args_object_id = new_id()
            self._connection.put_object(task.args_object_id, frames)
        for object_id in dict.fromkeys(references):
            # graph nodes' results come as inputs from the scheduler, which has the shape (GraphSubmit)
            if graph_task_ids is not None and object_id in graph_task_ids:
                continue
            if inputs is not None and object_id in inputs.dependencies:
                task.dependencies.append(object_id)  # the scheduler supplies it where it lives
            elif inputs is not None and object_id in inputs.values:
                inline = inputs.values[object_id]
                task.inputs.append(protocol.ObjectInput(object_id=object_id, inline=inline or b"",
                                                        stored=inline is None))
            else:
                task.inputs.append(protocol.ObjectInput(object_id=object_id, stored=True))
        if capabilities:
            task.capabilities = [protocol.Capability(name=str(name), quantity=int(quantity))
                                 for name, quantity in capabilities.items()]
        if inputs is not None and inputs.dependencies and scaler_future is not None:
            scaler_future._inputs = list(inputs.dependencies.values())
            scaler_future._retry = _Resend(self, scaler_future, function_id, args, kwargs, capabilities,
                                           task.priority, notify_start)
        return task, scaler_future

    def _send_tasks(self, tasks: List, futures: Sequence[Optional[ScalerFuture]]) -> None:
        self._connection.register(futures)
        if tasks:
            encoded = protocol.encode(protocol.TaskBatch(tasks=tasks))
            if self._connection.state.resend_log is None:
                self._connection.send_tasks(encoded)
            else:  # the scheduler may restart: the batch is kept until its tasks are done
                self._connection.send_tasks(encoded, [task.task_id for task in tasks], tasks[0].graph_id,
                                            [task.args_object_id for task in tasks if task.args_stored])

    def _cancel_task(self, task_id: bytes, pending_only: bool) -> None:
        # a pending-only cancel keeps the future registered: its result or its cancellation is still to come
        known = self._connection.futures.get(task_id) if pending_only else self._connection.forget(task_id)
        if known is not None and not self._connection.closed.is_set():
            try:
                self._connection.send_cancel(task_id, pending_only)
            except SchedulerDiedError:
                pass


_NOTHING: Mapping = types.MappingProxyType({})


class _TaskInputs:
    """What one task's arguments point at, met while they are pickled: objects sent with
    send_object, and futures of this client.

    A future that is not done here becomes a dependency: the scheduler holds the task until that
    task finishes and hands its result to the worker where it lives (inline, or in the object
    storage), never through this client. A future already done here is a value this client holds
    (`values`: placeholder id -> inline bytes, or None when put in the storage). A failed or
    cancelled one fails the task before it is sent (`failure`)."""

    __slots__ = ("client", "dependencies", "values", "failure")

    def __init__(self, client: "Client"):
        # one per task, and most tasks take no future: the dicts are made on first use
        self.client = client
        self.dependencies: Mapping[bytes, ScalerFuture] = _NOTHING
        self.values: Mapping[bytes, Optional[bytes]] = _NOTHING
        self.failure: Optional[BaseException] = None

    def depend(self, future: ScalerFuture) -> None:
        if self.dependencies is _NOTHING:
            self.dependencies = {}
        self.dependencies[future.task_id] = future

    def hold(self, object_id: bytes, inline: Optional[bytes]) -> None:
        if self.values is _NOTHING:
            self.values = {}
        self.values[object_id] = inline

    def fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error

    def __call__(self, obj) -> Optional[bytes]:
        if isinstance(obj, ScalerFuture):
            return self.client._reference_of_future(obj, self)
        return self.client._reference_of_objects(obj)


class _Resend:
    """Sends a task again, with its inputs' values, when the scheduler answers that it forgot one.

    That happens when an input finished while the task was on its way: the scheduler forgets a
    finished task once it has delivered the result (and no known dependent needs it). Its result
    reached the client before this answer did (the scheduler sent it first), so once the input
    futures are done here (a stored result may still be fetching), their values go with the task,
    under the same task id (the scheduler forgot the failed attempt too)."""

    __slots__ = ("client", "future", "call", "waiting", "lock")

    def __init__(self, client, future, function_id, args, kwargs, capabilities, priority, notify_start):
        self.client = client
        self.future = future
        self.call = (function_id, args, kwargs, capabilities, priority, notify_start)
        self.waiting = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        inputs = [future for future in self.future._inputs or () if not future.done()]
        self.waiting = len(inputs) + 1
        for future in inputs:
            future.add_done_callback(self._input_done)
        self._input_done(None)

    def _input_done(self, _) -> None:
        with self.lock:
            self.waiting -= 1
            if self.waiting:
                return
        future = self.future
        if future.done():
            return  # cancelled by the user meanwhile
        if not self.client.connected:
            # unregistered while it waited for its inputs, so the closing connection did not settle it
            future._settle(error=self.client._connection.failure or SchedulerDiedError("the client is closed"))
            return
        function_id, args, kwargs, capabilities, priority, notify_start = self.call
        try:
            task, _ = self.client._make_task(function_id, args, kwargs, capabilities, task_id=future.task_id,
                                             priority=priority, notify_start=notify_start, scaler_future=future)
            if task is not None:
                self.client._send_tasks([task], [future])
        except BaseException as error:  # nobody else would tell the future's reader
            future._settle(error=error)


class _CallShape:
    """What calls a function accepts. A call with positional arguments only is checked by counting
    them when that is enough to know (Signature.bind costs several microseconds per submit, on
    the latency path); anything else goes through bind, which also words the error."""

    __slots__ = ("signature", "fewest", "most")

    def __init__(self, signature: inspect.Signature):
        self.signature = signature
        self.fewest: Optional[int] = 0
        self.most = 0
        for parameter in signature.parameters.values():
            kind = parameter.kind
            if kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                self.most += 1
                if parameter.default is parameter.empty:
                    self.fewest = self.most  # a required one after an optional one cannot be
            elif kind is parameter.VAR_POSITIONAL:
                self.most = sys.maxsize
            elif kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
                self.fewest = None  # a positional call never binds: let bind say why

    def check(self, args: tuple, kwargs: dict) -> None:
        if not kwargs and self.fewest is not None and self.fewest <= len(args) <= self.most:
            return
        self.signature.bind(*args, **kwargs)


def _signature_of(fn: Callable) -> Optional[_CallShape]:
    try:
        return _CallShape(inspect.signature(fn))
    except (TypeError, ValueError):  # some builtins and C callables have none to check against
        return None


_nested_clients: Dict[str, Client] = {}
_nested_lock = threading.Lock()


def _nested_client(address: str) -> Client:
    """A Client unpickled inside a worker: one shared connection per scheduler per process."""
    own = worker_context.current_scheduler_address()
    if own is not None and address != own:
        address = own  # the worker knows how to reach its scheduler; the client's view may differ
    with _nested_lock:
        client = _nested_clients.get(address)
        if client is None or not client.connected:
            client = _nested_clients[address] = Client(address)
        return client
