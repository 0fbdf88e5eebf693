"""``ScalerExecutor``: a ``concurrent.futures.Executor`` running on the engine.

Constructed like the standard library's executors. Without an ``address`` it
starts (and owns) an embedded local cluster of ``max_workers`` workers. The
futures it returns are standard ``concurrent.futures.Future`` objects, so
``wait``, ``as_completed`` and ``dask.compute(..., scheduler=executor)`` work.

A future is pending until a worker starts its task (the engine reports starts
for executor tasks), then running, as with the standard library's pools:
``cancel()`` succeeds for a pending future (and cancels the engine's task as
well) and fails for a running one.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
import uuid
import weakref
from concurrent.futures import BrokenExecutor, Executor, Future, InvalidStateError
from concurrent.futures import wait as wait_for_futures
from typing import Any, Callable, Iterable, Iterator

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.client.futures import cancel_and_notify
from scaler_core.errors import SchedulerDiedError


class BrokenScalerExecutor(BrokenExecutor):
    """The executor can no longer run tasks: its cluster died, or a worker's
    initializer failed (the equivalent of ``BrokenProcessPool``)."""


class _ExecutorFuture(Future):
    """A stdlib Future mirroring one engine future; cancelling it cancels both."""

    def __init__(self) -> None:
        super().__init__()
        self.engine_future: Any = None

    def cancel(self) -> bool:
        if not cancel_and_notify(self):
            return False
        if self.engine_future is not None:
            self.engine_future.cancel()
        return True

    def cancel_if_not_started(self) -> None:
        """Cancel unless a worker has already started the call, which then completes; the answer
        comes from the worker, as the start may not have been reported here yet."""
        if self.engine_future is not None and not self.running():
            self.engine_future.cancel_if_pending()


def _mark_running(future: Future) -> None:
    try:
        future.set_running_or_notify_cancel()  # False (and no change) when already cancelled
    except InvalidStateError:
        pass


# Worker side: executors whose initializer already ran in this process, with
# the failure (or None) it produced. Keyed by a per-executor id so that two
# executors on one cluster each get their own initializer.
_initialized_executors: dict[str, BaseException | None] = {}


def _call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    # The engine's own submit signature never sees user keyword arguments, so
    # ``submit(f, fn=1, self=2)`` passes them through untouched.
    return fn(*args, **kwargs)


def _call_initialized(executor_id: str, initializer: Callable, initargs: tuple, fn: Callable, args: tuple, kwargs: dict) -> Any:
    if executor_id not in _initialized_executors:
        try:
            initializer(*initargs)
            _initialized_executors[executor_id] = None
        except BaseException as failure:  # recorded: every later task here fails too
            _initialized_executors[executor_id] = failure
    failure = _initialized_executors[executor_id]
    if failure is not None:
        raise BrokenScalerExecutor(f"A worker's initializer failed: {failure!r}")
    return fn(*args, **kwargs)


def _result_or_cancel(future: Future, deadline: float | None) -> Any:
    try:
        return future.result(None if deadline is None else deadline - time.monotonic())
    except BaseException:
        future.cancel()
        raise
    finally:
        del future  # the traceback of a raised error must not keep the future (and its result) alive


def _call_chunk(fn: Callable, chunk: list) -> list:
    return [fn(*args) for args in chunk]


_live_executors: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shut_down_live_executors() -> None:
    for executor in list(_live_executors):
        executor.shutdown(wait=False, cancel_futures=True)
        executor._tear_down()


class ScalerExecutor(Executor):
    """Run callables on a Scaler cluster through the standard Executor API.

    :param max_workers: workers of the embedded cluster (default: CPU count);
        with ``address`` it is only the parallelism reported to Dask.
    :param address: scheduler address of an existing cluster to use.
    :param initializer: called as ``initializer(*initargs)`` once in each
        worker process before that process runs this executor's first task.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        address: str | None = None,
        initializer: Callable | None = None,
        initargs: tuple = (),
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        # dask.compute(scheduler=executor) reads _max_workers as its parallelism.
        self._max_workers = max_workers or os.cpu_count() or 1
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._executor_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._pending: set[_ExecutorFuture] = set()
        self._shutting_down = False
        self._broken_reason: str | None = None
        self._torn_down = False
        self._cluster = None
        try:
            if address is None:
                self._cluster = SchedulerClusterCombo(n_workers=self._max_workers)
                # ready when constructed, as a process pool is: work submitted at once has workers
                # to start on, so shutdown(cancel_futures=True) right after submitting spares some
                self._cluster.wait_for_workers()
                address = self._cluster.address
            self._client = Client(address=address)
        except BaseException:
            if self._cluster is not None:
                self._cluster.shutdown()
            raise
        _live_executors.add(self)

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            self._check_accepting()
            if self._initializer is None:
                engine_future = self._client.submit_verbose(_call, (fn, args, kwargs), notify_start=True)
            else:
                engine_future = self._client.submit_verbose(
                    _call_initialized, (self._executor_id, self._initializer, self._initargs, fn, args, kwargs),
                    notify_start=True)
            future = self._track(engine_future)
        engine_future.add_done_callback(lambda done: self._engine_done(future, done))
        return future

    def _submit_many(self, fn: Callable, argument_tuples: Iterable[tuple]) -> list:
        """Many calls fn(*arguments) at once: one shipped function, tasks sent in batches."""
        with self._lock:
            self._check_accepting()
            if self._initializer is None:
                engine_futures = self._client.starmap_futures(fn, argument_tuples, notify_start=True)
            else:
                prefix = (self._executor_id, self._initializer, self._initargs, fn)
                engine_futures = self._client.starmap_futures(
                    _call_initialized, (prefix + (arguments, {}) for arguments in argument_tuples), notify_start=True)
            futures = [self._track(engine_future) for engine_future in engine_futures]
        for future, engine_future in zip(futures, engine_futures):
            engine_future.add_done_callback(lambda done, future=future: self._engine_done(future, done))
        return futures

    def _check_accepting(self) -> None:
        if self._broken_reason is not None:
            raise BrokenScalerExecutor(self._broken_reason)
        if self._shutting_down:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _track(self, engine_future: Any) -> _ExecutorFuture:
        future = _ExecutorFuture()
        future.engine_future = engine_future
        engine_future.on_start(lambda: _mark_running(future))
        self._pending.add(future)
        return future

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None, chunksize: int = 1) -> Iterator:
        """Like ``Executor.map``: all calls are submitted now, results are
        yielded in order; ``timeout`` counts from this call. ``chunksize``
        items are run by one task."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        deadline = None if timeout is None else time.monotonic() + timeout
        if chunksize == 1:
            futures = self._submit_many(fn, zip(*iterables))
        else:
            items = zip(*iterables)
            chunks = iter(lambda: list(itertools.islice(items, chunksize)), [])
            futures = self._submit_many(_call_chunk, ((fn, chunk) for chunk in chunks))
        return self._results_in_order(futures, deadline, chunked=chunksize > 1)

    @staticmethod
    def _results_in_order(futures: list, deadline: float | None, chunked: bool) -> Iterator:
        # Nothing here may keep a result once it is yielded (CPython issue 14406): no local names a
        # yielded value or its future, and a chunk's list gives up each item as it goes out.
        futures.reverse()
        try:
            while futures:
                if chunked:
                    chunk = _result_or_cancel(futures.pop(), deadline)
                    chunk.reverse()
                    while chunk:
                        yield chunk.pop()
                else:
                    yield _result_or_cancel(futures.pop(), deadline)
        finally:
            for future in futures:
                future.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutting_down = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel_if_not_started()
        if wait:
            wait_for_futures(pending)
            self._tear_down()
        else:
            # The stdlib promise: resources are freed once pending work is done.
            threading.Thread(target=self._tear_down_after, args=(pending,), daemon=True).start()

    def _tear_down_after(self, pending: list) -> None:
        wait_for_futures(pending)
        self._tear_down()

    def _tear_down(self) -> None:
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        try:
            self._client.disconnect()
        finally:
            if self._cluster is not None:
                self._cluster.shutdown()
            _live_executors.discard(self)

    def _engine_done(self, future: _ExecutorFuture, engine_future: Any) -> None:
        with self._lock:
            self._pending.discard(future)
        if engine_future.cancelled():
            future.cancel()
            return
        error = engine_future.exception()
        if isinstance(error, SchedulerDiedError):
            self._break(f"The Scaler cluster died: {error}")
            error = BrokenScalerExecutor(self._broken_reason)
        elif isinstance(error, BrokenScalerExecutor):
            self._break(str(error))
        try:
            if error is None:
                future.set_result(engine_future.result())
            else:
                future.set_exception(error)
        except InvalidStateError:
            pass  # cancelled by the user while the result was on its way

    def _break(self, reason: str) -> None:
        """Mark the executor broken and fail every pending future, like a
        process pool whose worker died."""
        with self._lock:
            if self._broken_reason is None:
                self._broken_reason = reason
            pending = list(self._pending)
            self._pending.clear()
        for future in pending:
            try:
                future.set_exception(BrokenScalerExecutor(self._broken_reason))
            except InvalidStateError:
                pass
            # After set_exception: cancelling runs our done callback, which
            # would otherwise mark the future cancelled instead of broken.
            if future.engine_future is not None:
                future.engine_future.cancel()
