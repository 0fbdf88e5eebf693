"""The futures a Client hands out: standard concurrent.futures.Future objects with extras."""

from __future__ import annotations

import asyncio
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Callable, Optional

from scaler_core import task_context as context


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


class ScalerFuture(Future):
    """A concurrent.futures.Future for one task.

    `cancel()` works for queued and running tasks (a running task's worker process is replaced).
    Inside a worker, waiting on a future frees the worker's slot for other work while it waits."""

    def __init__(self, task_id: bytes, on_cancel: Optional[Callable[[bytes, bool], None]] = None):
        super().__init__()
        self.task_id = task_id
        self._on_cancel = on_cancel
        self._profiling = None
        self._start_callbacks = []

    def on_start(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when a worker starts the task (only for tasks submitted with
        notify_start=True; the future then turns RUNNING, and like any running future of the
        standard library can no longer be cancelled)."""
        with self._condition:
            if not self.running():
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

    def cancel(self) -> bool:
        with self._condition:
            if self.running():
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
        if not self.done() and context.in_worker():
            with context.blocked_while_waiting():
                return super().result(timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        if not self.done() and context.in_worker():
            with context.blocked_while_waiting():
                return super().exception(timeout)
        return super().exception(timeout)

    def profiling_info(self):
        """Duration, CPU time and peak memory of the finished task (a protocol.Profiling)."""
        if not self.done():
            raise RuntimeError("profiling information is available once the task is done")
        return self._profiling

    def __await__(self):
        return asyncio.wrap_future(self).__await__()

    def __repr__(self):
        return f"<ScalerFuture {self.task_id.hex()[:12]} {self._state}>"
