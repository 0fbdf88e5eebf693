"""The futures a Client hands out: standard concurrent.futures.Future objects with extras."""

from __future__ import annotations

import asyncio
import warnings
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Callable, Optional

from scaler_core import task_context as context
from scaler_core.errors import SerializationError
from scaler_core.serialization import loads_frames
from scaler_core.serializer import SerializedValue


def cancel_and_notify(future: Future) -> bool:
    """Future.cancel that also settles the state at once, as an executor does when it drops the work.

    concurrent.futures.wait() and as_completed() count only CANCELLED_AND_NOTIFIED as done, so a
    future left CANCELLED would keep them waiting forever. Done-callbacks run after the waiters are
    told, so a callback may wait on the future too."""
    with future._condition:
        if future._state in ("RUNNING", "FINISHED"):
            return False
        if future._state == "CANCELLED_AND_NOTIFIED":
            return True
        already_cancelled = future._state == "CANCELLED"
        future._state = "CANCELLED"
        future.set_running_or_notify_cancel()  # CANCELLED -> CANCELLED_AND_NOTIFIED, waiters told
        future._condition.notify_all()
    if not already_cancelled:
        future._invoke_callbacks()
    return True


class EncodedResult:
    """A stored result as it arrived (zero-copy frames), unpickled on first read by the reader."""

    __slots__ = ("frames",)

    def __init__(self, frames):
        self.frames = frames


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


class ScalerFuture(Future):
    """A concurrent.futures.Future for one task.

    As in upstream Scaler, `running()` is true from submission until the task is done (queued or
    running), and `cancel()` works on queued and running tasks (a running task's worker process is
    replaced); only a task submitted with notify_start that has started refuses, as the standard
    library's running futures do. Inside a worker, waiting on a future frees the worker's slot for
    other work while it waits."""

    _serializer = None  # the client's own serializer (Client(serializer=...)), if it has one

    def __init__(self, task_id: bytes, on_cancel: Optional[Callable[[bytes, bool], None]] = None):
        super().__init__()
        self.task_id = task_id
        self._on_cancel = on_cancel
        self._profiling = None
        self._start_callbacks = []
        self._warnings: Optional[WarningSink] = None        # this task's own
        self._graph_warnings: Optional[WarningSink] = None  # its graph's intermediate tasks'

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

    def on_start(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when a worker starts the task (only for tasks submitted with
        notify_start=True; the future then turns RUNNING, and like any running future of the
        standard library can no longer be cancelled)."""
        with self._condition:
            if self._state == "PENDING":
                self._start_callbacks.append(callback)
                return
        callback()

    def _mark_started(self) -> None:
        with self._condition:
            if self._state != "PENDING" or not self.set_running_or_notify_cancel():
                return
            callbacks, self._start_callbacks = self._start_callbacks, []
        for callback in callbacks:
            callback()

    def running(self) -> bool:
        return not self.done()

    def cancel(self) -> bool:
        with self._condition:
            if self._state == "RUNNING":
                return False
            if self.done():
                return self.cancelled()
        if self._on_cancel is not None:
            self._on_cancel(self.task_id, False)
        return self._cancel_and_notify()

    def cancel_if_pending(self) -> None:
        """Ask for the task to be cancelled only if no worker has started it yet.

        Unlike `cancel()` this decides nothing here: the future settles as cancelled when the
        task had not started, and otherwise runs to its result (what `Executor.shutdown(
        cancel_futures=True)` promises for calls already running)."""
        with self._condition:
            if self._state != "PENDING":
                return
        if self._on_cancel is not None:
            self._on_cancel(self.task_id, True)

    def _cancel_and_notify(self) -> bool:
        """Cancel without telling the scheduler (see cancel_and_notify)."""
        return cancel_and_notify(self)

    # --- called by the client's I/O thread; a user's cancel may have won the race ----------------

    def _settle(self, value=None, error: Optional[BaseException] = None) -> None:
        try:
            if error is None:
                self.set_result(value)
            else:
                self.set_exception(error)
        except InvalidStateError:
            pass  # cancelled (or settled) meanwhile

    def _settle_cancelled(self) -> None:
        """The task will give no result: cancelled, or when already RUNNING (no longer cancellable
        by the standard rules) failed with CancelledError, so nobody waits forever."""
        if not self._cancel_and_notify():
            self._settle(error=CancelledError(f"task {self.task_id.hex()} was cancelled"))

    def result(self, timeout=None):
        self.exception(timeout)  # waits (lending a worker's slot inside a task), re-emits warnings
        value = super().result(0)
        if type(value) is EncodedResult or (type(value) is SerializedValue and self._serializer is not None):
            return self._decode(value)
        return value

    def _decode(self, value):
        """The value as it arrived -> the task's value, once: one reader converts, later ones reuse."""
        with self._condition:
            if self._result is value:
                try:
                    if type(value) is EncodedResult:
                        value = loads_frames(value.frames)
                except Exception as error:
                    raise SerializationError(f"the task's result could not be unpickled here: {error!r}") from None
                if type(value) is SerializedValue and self._serializer is not None:
                    value = self._serializer.deserialize(value.payload)
                self._result = value
            return self._result

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

    def __repr__(self):
        return f"<ScalerFuture {self.task_id.hex()[:12]} {self._state}>"
