"""The futures a Client hands out: standard concurrent.futures.Future objects with extras."""

from __future__ import annotations

import asyncio
import threading
import warnings
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any, Callable, Optional

from scaler_core import task_context as context
from scaler_core.errors import SerializationError
from scaler_core.references import InputCancelledError, MissingInputError
from scaler_core.serialization import loads_frames, register_placeholder_type
from scaler_core.serializer import SerializedValue


def _notify_waiters_if_cancelled(future: "ScalerFuture") -> None:
    # The first done-callback of a ScalerFuture that has callbacks (a plain function: a bound
    # method would tie the future to itself in a cycle, keeping its result until the cyclic
    # collector runs).
    if future.cancelled():
        future._notify_cancelled()


class EncodedResult:
    """A stored result as it arrived (zero-copy frames), unpickled on first read by the reader."""

    __slots__ = ("frames",)

    def __init__(self, frames):
        self.frames = frames


class KeptOnCluster:
    """A stored result left where it lies (a persisted collection's): fetched when first read.
    `fetch(object_id)` returns its frames, or raises LookupError when it is gone."""

    __slots__ = ("object_id", "fetch")

    def __init__(self, object_id: bytes, fetch: Callable[[bytes], Any]):
        self.object_id = object_id
        self.fetch = fetch


class WarningSink(list):
    """Warnings tasks raised, waiting for the thread that reads a result to re-emit them."""

    def drain(self) -> list:
        taken = []
        while self:
            taken.append(self.pop(0))  # one atomic pop at a time: the I/O thread may be appending
        return taken


class ProfilingInfo:
    """What a finished task cost: under this engine's names and under upstream Scaler's."""

    __slots__ = ("duration_seconds", "cpu_seconds", "peak_memory_bytes")

    def __init__(self, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int):
        self.duration_seconds = duration_seconds
        self.cpu_seconds = cpu_seconds
        self.peak_memory_bytes = peak_memory_bytes

    @property
    def duration_s(self) -> float:
        return self.duration_seconds

    @property
    def cpu_time_s(self) -> float:
        return self.cpu_seconds

    @property
    def memory_peak(self) -> int:
        return self.peak_memory_bytes

    def __repr__(self):
        return (f"ProfilingInfo(duration_seconds={self.duration_seconds:.6f}, cpu_seconds={self.cpu_seconds:.6f}, "
                f"peak_memory_bytes={self.peak_memory_bytes})")


_UNDECODED = object()
_UNDECODED_TYPES = (EncodedResult, KeptOnCluster)


class ScalerFuture(Future):
    """A concurrent.futures.Future for one task.

    As in upstream Scaler, `running()` is true from submission until the task is done (queued or
    running), and `cancel()` works on queued and running tasks (a running task's worker process is
    replaced); only a task submitted with notify_start that has started refuses, as the standard
    library's running futures do. Inside a worker, waiting on a future frees the worker's slot for
    other work while it waits.

    Only Future's public API moves the state: `set_running_or_notify_cancel` when a worker starts
    the task (notify_start), `set_result`/`set_exception` when it settles, `cancel`. What else this
    class tracks (started, settling, the converted result) lives in its own attributes under its
    own lock."""

    _serializer = None  # the client's own serializer (Client(serializer=...)), if it has one
    _owner = None       # id of the client that made it: only that client accepts it as an argument
    _inputs = None      # futures this task takes as arguments (to name a cancelled one)
    _retry = None       # resends the task when the scheduler forgot an input (MissingInputError)
    _kept = False       # a stored result stays on the cluster until read or released (persist)

    def __init__(self, task_id: bytes, on_cancel: Optional[Callable[[bytes, bool], None]] = None):
        super().__init__()
        self.task_id = task_id
        self._on_cancel = on_cancel
        self._profiling = None
        self._warnings: Optional[WarningSink] = None        # this task's own
        self._graph_warnings: Optional[WarningSink] = None  # its graph's intermediate tasks'
        # Orders the calls of set_running_or_notify_cancel (which raise when the state moved under
        # them) against each other and against settling; never held while callbacks run.
        self._lock = threading.Lock()
        self._started = False
        self._settling = False  # a result, an error or the scheduler's cancellation came first
        self._notified = False  # the waiters of a cancelled future were told
        self._start_callbacks: Optional[list] = None
        self._decoded = _UNDECODED
        self._notifier_added = False  # see add_done_callback

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_placeholder_type(cls)  # an executor's futures are arguments as much as ours

    def _add_warnings(self, caught) -> None:
        if self._warnings is None:
            self._warnings = WarningSink()
        self._warnings.extend(caught)

    def _reemit_warnings(self) -> None:
        """In the reader's thread, so its own filters and catch_warnings blocks see them."""
        for sink in (self._warnings, self._graph_warnings):
            if sink:
                for category, message, filename, lineno in sink.drain():
                    warnings.warn_explicit(message, category, filename, lineno)

    # --- starting ------------------------------------------------------------------------------

    def on_start(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when a worker starts the task (only for tasks submitted with
        notify_start=True; the future then turns RUNNING, and like any running future of the
        standard library can no longer be cancelled). Called at once when already started or done."""
        with self._lock:
            if not self._started and not self.done():
                if self._start_callbacks is None:
                    self._start_callbacks = []
                self._start_callbacks.append(callback)
                return
        callback()

    def _mark_started(self) -> None:
        with self._lock:
            if self._started or self._settling or self.done():
                return
            if not self.set_running_or_notify_cancel():
                self._notified = True  # a cancel won the race: these were its waiters to tell
                return
            self._started = True
            callbacks, self._start_callbacks = self._start_callbacks, None
        for callback in callbacks or ():
            callback()

    def _notify_cancelled(self) -> None:
        with self._lock:
            if self._notified:
                return
            self._notified = True
            self.set_running_or_notify_cancel()  # CANCELLED -> CANCELLED_AND_NOTIFIED

    def running(self) -> bool:
        return not self.done()

    # --- cancelling ----------------------------------------------------------------------------

    def cancel(self) -> bool:
        was_cancelled = self.cancelled()
        if not self._cancel_here():
            return False
        if not was_cancelled and self._on_cancel is not None:
            self._on_cancel(self.task_id, False)
        return True

    def _cancel_here(self) -> bool:
        """Cancel without telling the scheduler. Refused once started (RUNNING) or settled; the
        future ends CANCELLED_AND_NOTIFIED, its waiters told before its done-callbacks run."""
        if not super().cancel():
            return False
        self._notify_cancelled()  # when no callback was added, nothing told the waiters yet
        return True

    def add_done_callback(self, fn) -> None:
        # The first callback of a future that has any tells a cancel's waiters, so that they are
        # told before the user's callbacks run (one of them may wait on the future). Added only
        # with the first user callback: most futures have none, and it costs on every settle.
        if not self._notifier_added:
            with self._lock:
                if not self._notifier_added:
                    self._notifier_added = True
                    super().add_done_callback(_notify_waiters_if_cancelled)
        super().add_done_callback(fn)

    def cancel_if_pending(self) -> None:
        """Ask for the task to be cancelled only if no worker has started it yet.

        Unlike `cancel()` this decides nothing here: the future settles as cancelled when the
        task had not started, and otherwise runs to its result (what `Executor.shutdown(
        cancel_futures=True)` promises for calls already running)."""
        if self._started or self.done():
            return
        if self._on_cancel is not None:
            self._on_cancel(self.task_id, True)

    # --- called by the client's I/O thread; a user's cancel may have won the race ----------------

    def _begin_settling(self) -> bool:
        with self._lock:
            if self._settling:
                return False
            self._settling = True
            return True

    def _settle(self, value=None, error: Optional[BaseException] = None) -> None:
        if error is not None and self._retry is not None and type(error) is MissingInputError:
            # an input finished and left the scheduler before this task arrived: its result has
            # reached this client by now, which sends the task again with the value
            retry, self._retry = self._retry, None
            retry()
            return
        with self._lock:  # _begin_settling, inlined: this runs for every result
            if self._settling:
                return
            self._settling = True
        if self._inputs is not None or self._retry is not None:
            self._inputs = self._retry = None  # settled: the inputs and the arguments kept for a resend can go
        try:
            if error is None:
                self.set_result(value)
            else:
                self.set_exception(error)
        except InvalidStateError:
            pass  # cancelled meanwhile

    def _settle_cancelled(self) -> None:
        """The task will give no result: cancelled, or when already RUNNING (no longer cancellable
        by the standard rules) failed with CancelledError, so nobody waits forever."""
        if self._inputs and not self.cancelled():
            cancelled = [future for future in self._inputs if future.cancelled()]
            if cancelled:  # the scheduler cancels the dependents of a cancelled task; to the user it failed
                self._settle(error=InputCancelledError(
                    f"task {self.task_id.hex()} cannot run: its input {cancelled[0]!r} was cancelled"))
                return
        if not self._begin_settling() or self._cancel_here():
            return
        try:
            self.set_exception(CancelledError(f"task {self.task_id.hex()} was cancelled"))
        except InvalidStateError:
            pass

    def _fail_and_drop(self, error: BaseException) -> None:
        """Fail with `error` now and cancel the task at the scheduler: its result would reach nobody."""
        self._settle(error=error)
        if self._on_cancel is not None:
            self._on_cancel(self.task_id, False)

    # --- reading -------------------------------------------------------------------------------

    def result(self, timeout=None):
        self.exception(timeout)  # waits (lending a worker's slot inside a task), re-emits warnings
        value = super().result(0)
        if type(value) in _UNDECODED_TYPES or (type(value) is SerializedValue and self._serializer is not None):
            return self._decode(value)
        return value

    def kept_object_id(self) -> Optional[bytes]:
        """The object id of a result left on the cluster (alive as long as this future), else None."""
        value = Future.result(self, 0) if self.done() and not self.cancelled() and Future.exception(self, 0) is None \
            else None
        return value.object_id if type(value) is KeptOnCluster else None

    def _decode(self, value):
        """The value as it arrived -> the task's value, once: one reader converts, later ones reuse."""
        with self._lock:
            if self._decoded is _UNDECODED:
                if type(value) in _UNDECODED_TYPES:
                    frames = value.frames if type(value) is EncodedResult else value.fetch(value.object_id)
                    try:
                        decoded = loads_frames(frames)
                    except Exception as error:
                        raise SerializationError(
                            f"the task's result could not be unpickled here: {error!r}") from None
                else:
                    decoded = value
                if type(decoded) is SerializedValue and self._serializer is not None:
                    decoded = self._serializer.deserialize(decoded.payload)
                self._decoded = decoded
                if type(value) is EncodedResult:
                    value.frames = None  # the future keeps what arrived: only the value stays large
            return self._decoded

    def exception(self, timeout=None):
        if not self.done() and context.in_worker():
            with context.blocked_while_waiting():
                error = super().exception(timeout)
        else:
            error = super().exception(timeout)
        if self._warnings or self._graph_warnings:
            self._reemit_warnings()
        return error

    def profiling_info(self) -> ProfilingInfo:
        """Duration, CPU time and peak memory of the finished task."""
        profiling = self._profiling
        if not self.done() or profiling is None:
            raise ValueError(f"no profiling information for {self!r} yet: it is available once the task is done")
        return ProfilingInfo(profiling.duration_seconds, profiling.cpu_seconds, profiling.peak_memory_bytes)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()

    def _state_name(self) -> str:
        if self.cancelled():
            return "CANCELLED"
        if self.done():
            return "FINISHED"
        return "RUNNING" if self._started else "PENDING"

    def __repr__(self):
        return f"<{type(self).__name__} {self.task_id.hex()[:12]} {self._state_name()}>"


# A future among a task's arguments is pickled as a placeholder for its task's result (client.py).
register_placeholder_type(ScalerFuture)
