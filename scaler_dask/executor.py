"""``ScalerExecutor``: a ``concurrent.futures.Executor`` running on the engine.

Constructed like the standard library's executors. Without an ``address`` it
starts (and owns) an embedded local cluster of ``max_workers`` workers. The
futures it returns are the engine's own futures (``ScalerExecutorFuture``, a
``ScalerFuture`` and so a standard ``concurrent.futures.Future``), so ``wait``,
``as_completed`` and ``dask.compute(..., scheduler=executor)`` work.

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
from concurrent.futures import BrokenExecutor, Executor, Future
from concurrent.futures import wait as wait_for_futures
from typing import Any, Callable, Iterable, Iterator

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.client.futures import ScalerFuture
from scaler_core.errors import SchedulerDiedError
from scaler_core.references import MissingInputError


class BrokenScalerExecutor(BrokenExecutor):
    """The executor can no longer run tasks: its cluster died, or a worker's
    initializer failed (the equivalent of ``BrokenProcessPool``)."""


class ScalerExecutorFuture(ScalerFuture):
    """The engine's future for an executor task, with the standard library's meaning of running.

    ``running()`` is true only once a worker has started the call (not from submission, as for
    ``Client.submit``). An error that breaks the executor (its cluster died, an initializer
    failed) breaks it before this future settles, and reaches the caller as
    ``BrokenScalerExecutor``."""

    def __init__(self, task_id: bytes, on_cancel: Callable[[bytes, bool], None], executor: "ScalerExecutor"):
        super().__init__(task_id, on_cancel)
        self._executor = executor  # until settled: only the settling error needs it

    def running(self) -> bool:
        return Future.running(self)

    def _settle(self, value=None, error: BaseException | None = None) -> None:
        if error is not None and self._retry is not None and type(error) is MissingInputError:
            super()._settle(value, error)  # not an outcome: the task is sent again, it settles later
            return
        executor, self._executor = self._executor, None
        if error is not None and executor is not None:
            error = executor._error_breaking(error)
        super()._settle(value, error)


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
        self._pending: set[ScalerExecutorFuture] = set()  # not done yet: what shutdown waits for
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

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> ScalerExecutorFuture:
        if self._initializer is None:
            return self._submit(_call, (fn, args, kwargs))
        return self._submit(_call_initialized,
                            (self._executor_id, self._initializer, self._initargs, fn, args, kwargs))

    def _submit(self, call: Callable, arguments: tuple) -> ScalerExecutorFuture:
        try:
            # Under the lock from the check to the tracking: a shutdown or a break sees every
            # future submitted before it, and no submit slips in after it.
            with self._lock:
                self._check_accepting()
                future = self._client.submit_verbose(call, arguments, notify_start=True,
                                                     future_factory=self._new_future)
                self._track(future)
        except SchedulerDiedError as error:  # the client saw the cluster die before any future did
            raise self._broken_by(error) from None
        return future

    def _submit_many(self, fn: Callable, argument_tuples: Iterable[tuple]) -> list:
        """Many calls fn(*arguments) at once: one shipped function, tasks sent in batches."""
        if self._initializer is not None:
            prefix = (self._executor_id, self._initializer, self._initargs, fn)
            fn, argument_tuples = _call_initialized, (prefix + (arguments, {}) for arguments in argument_tuples)
        try:
            with self._lock:
                self._check_accepting()
                futures = self._client.starmap_futures(fn, argument_tuples, notify_start=True,
                                                       future_factory=self._new_future)
                for future in futures:
                    self._track(future)
        except SchedulerDiedError as error:
            raise self._broken_by(error) from None
        return futures

    def _new_future(self, task_id: bytes, on_cancel: Callable[[bytes, bool], None]) -> ScalerExecutorFuture:
        return ScalerExecutorFuture(task_id, on_cancel, self)

    def _check_accepting(self) -> None:
        if self._broken_reason is not None:
            raise BrokenScalerExecutor(self._broken_reason)
        if self._shutting_down:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _track(self, future: ScalerExecutorFuture) -> None:
        self._pending.add(future)
        future.add_done_callback(self._forget)  # at once when already done

    def _forget(self, future: ScalerExecutorFuture) -> None:
        self._pending.discard(future)

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
                # the worker decides: a start may not have been reported here yet
                future.cancel_if_pending()
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

    def _error_breaking(self, error: BaseException) -> BaseException:
        """The error a future of this executor settles with: one that breaks the executor breaks
        it first (failing every other pending future) and comes out as BrokenScalerExecutor."""
        if isinstance(error, SchedulerDiedError):
            return self._broken_by(error)
        if isinstance(error, BrokenScalerExecutor):
            self._break(str(error))
        return error

    def _broken_by(self, error: SchedulerDiedError) -> BrokenScalerExecutor:
        return BrokenScalerExecutor(self._break(f"The Scaler cluster died: {error}"))

    def _break(self, reason: str) -> str:
        """Mark the executor broken and fail every pending future, like a process pool whose
        worker died; returns the reason it is broken for (the first one)."""
        with self._lock:
            if self._broken_reason is None:
                self._broken_reason = reason
            pending = list(self._pending)
            self._pending.clear()
        for future in pending:
            future._fail_and_drop(BrokenScalerExecutor(self._broken_reason))
        return self._broken_reason
