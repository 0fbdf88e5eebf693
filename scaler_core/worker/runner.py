"""Running one task inside a worker process: resolve inputs, call, package the outcome."""

from __future__ import annotations

import contextlib
import io
import pickle
import resource
import sys
import threading
import time
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

from scaler_core import protocol
from scaler_core.errors import SerializationError
from scaler_core.serialization import dumps_exception, dumps_value, loads_frames, loads_with_references
from scaler_core import task_context as context


class Outcome:
    """What running a task produced: a status, inline bytes or frames to store, profiling, and the
    warnings the task raised."""

    __slots__ = ("task", "status", "inline", "frames", "profiling", "warnings", "location", "size", "held")

    def __init__(self, task, status: str, inline: bytes = b"", frames: Optional[List] = None, profiling=None,
                 warnings: Optional[List] = None):
        self.task = task
        self.status = status
        self.inline = inline
        self.frames = frames
        self.profiling = profiling or protocol.Profiling()
        self.warnings = warnings
        self.location = ""  # set once the frames are in the host store: the storage gets only this
        self.size = 0
        self.held = False  # kept in this process's memory: the storage was told (ObjectPut{held})


_capture = threading.local()  # .sink: the running task's list of warnings, on the runner's thread


def install_warning_capture() -> None:
    """Once per worker process: warnings raised by a task go to its caller instead of the log.

    Python's default filters stay (DeprecationWarning and the like are ignored), but the
    once-per-place rule does not: a long-lived worker would otherwise warn only the first caller."""
    warnings.filterwarnings("always", append=True)
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        sink = getattr(_capture, "sink", None)
        if sink is None:  # not from a task's own thread
            return shown(message, category, filename, lineno, file, line)
        sink.append((category, str(message), filename, lineno))

    warnings.showwarning = showwarning


class FunctionCache:
    """Deserialized callables by function id; a worker fetches each function once."""

    def __init__(self, capacity: int = 1024):
        self._functions: "OrderedDict[bytes, Callable]" = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._last: Optional[bytes] = None  # most recently used id: already at the LRU end

    def has(self, function_id: bytes) -> bool:
        return function_id in self._functions

    def get(self, function_id: bytes, frames_of: Callable[[bytes], List]) -> Callable:
        function = self._functions.get(function_id)  # a map's tasks share one function: no lock, no reordering
        if function is not None and self._last == function_id:
            return function
        with self._lock:
            function = self._functions.get(function_id)
            if function is not None:
                self._functions.move_to_end(function_id)
                self._last = function_id
                return function
        function = loads_frames(frames_of(function_id))
        with self._lock:
            self._functions[function_id] = function
            self._last = function_id
            while len(self._functions) > self._capacity:
                self._functions.popitem(last=False)
        return function


class _TaskOutput(io.TextIOBase):
    """A stdout/stderr replacement that forwards a task's prints to its client."""

    def __init__(self, task_id: bytes, stream: str, emit: Callable[[Any], None]):
        self._task_id = task_id
        self._stream = stream
        self._emit = emit

    def writable(self):
        return True

    def write(self, text):
        if text:
            self._emit(protocol.TaskLog(task_id=self._task_id, stream=self._stream, text=text))
        return len(text)


_redirect_lock = threading.Lock()


def run_task(task, functions: FunctionCache, frames_of: Callable[[bytes], List],
             emit: Callable[[Any], None]) -> Outcome:
    """Execute `task`; every failure becomes an Outcome, nothing raises."""
    started = time.perf_counter()
    cpu_started = time.thread_time()
    try:
        function = functions.get(task.function_id, frames_of)
        values: Dict[bytes, Any] = {}
        for item in task.inputs:
            values[item.object_id] = loads_frames(frames_of(item.object_id)) if item.stored else pickle.loads(item.inline)
        arguments = frames_of(task.args_object_id) if task.args_stored else (task.args,)
        args, kwargs = loads_with_references(arguments, values.__getitem__ if values else None)
    except Exception as error:
        wrapped = error if isinstance(error, (SerializationError, ImportError, AttributeError, ValueError, TypeError)) \
            else SerializationError(f"cannot load the task's function or arguments: {error!r}")
        return Outcome(task, "failed", dumps_exception(wrapped), profiling=_profile(started, cpu_started))

    context.set_current_task_priority(task.priority)
    _capture.sink = caught = []
    try:
        if task.stream_output:
            with _streamed(task, emit):
                value = function(*args, **kwargs)
        else:
            value = function(*args, **kwargs)
    except BaseException as error:  # a task's SystemExit/KeyboardInterrupt is its failure, not ours
        return Outcome(task, "failed", dumps_exception(error), profiling=_profile(started, cpu_started),
                       warnings=caught or None)
    finally:
        _capture.sink = None
        context.set_current_task_priority(None)

    try:
        inline_ok, payload = dumps_value(value)
    except Exception as error:
        failure = SerializationError(f"the task's result could not be pickled: {error}")
        return Outcome(task, "failed", dumps_exception(failure), profiling=_profile(started, cpu_started))
    profiling = _profile(started, cpu_started)
    if inline_ok:
        return Outcome(task, "success", inline=payload, profiling=profiling, warnings=caught or None)
    return Outcome(task, "success", frames=payload, profiling=profiling, warnings=caught or None)


def _profile(started: float, cpu_started: float) -> "protocol.Profiling":
    return protocol.make_profiling(time.perf_counter() - started, time.thread_time() - cpu_started,
                                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


@contextlib.contextmanager
def _streamed(task, emit):
    with _redirect_lock:
        saved = sys.stdout, sys.stderr
        sys.stdout = _TaskOutput(task.task_id, "stdout", emit)
        sys.stderr = _TaskOutput(task.task_id, "stderr", emit)
    try:
        yield
    finally:
        with _redirect_lock:
            sys.stdout, sys.stderr = saved
