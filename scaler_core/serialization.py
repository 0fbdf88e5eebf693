"""How Python values become bytes and back: functions, arguments, results and exceptions.

Pickle protocol 5 with out-of-band buffers, so a large numpy array travels as its own frame without
being copied into the pickle stream. Values whose pickled size is at most ``INLINE_THRESHOLD`` ride
inline inside task and result messages; larger ones go to the object storage as a list of frames
(the pickle stream, then its buffers).

Placeholders inside arguments (references to objects sent with ``send_object``, to results of
other graph tasks, and futures of the same client) are pickled as persistent ids, so the receiving side can resolve them without
scanning the arguments.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import pickle
import threading
import traceback
from typing import Any, Callable, List, Optional, Sequence, Tuple

import cloudpickle
from tblib import pickling_support

from scaler_core.references import KeyRef, ObjectReference
from scaler_core.errors import RemoteError, ScalerError, SerializationError

# Measured (benchmarks/inline_threshold.py): below ~64 KiB carrying the bytes inside the message
# through the scheduler is cheaper than a put/get/delete round trip to the object storage.
INLINE_THRESHOLD = int(os.environ.get("SCALER_INLINE_THRESHOLD", 64 * 1024))

Frames = List[Any]  # bytes, memoryview or zmq.Frame


_ID_PREFIX = os.urandom(8)
_id_counter = itertools.count()


def new_id() -> bytes:
    """A 16-byte id unique across processes: a random per-process prefix and a counter."""
    return _ID_PREFIX + next(_id_counter).to_bytes(8, "big")


def content_id(owner: bytes, payload: bytes) -> bytes:
    """Deterministic id of a payload within one owner (functions are shipped once per client)."""
    return hashlib.blake2b(payload, digest_size=16, key=owner[:64]).digest()


class _ReferenceMixin:
    """Turns placeholder objects into persistent ids.

    `reference_of(obj)` returns the object id a placeholder stands for, or None for ordinary
    objects; every id met is appended to `references`."""

    def _setup(self, reference_of: Callable[[Any], Optional[bytes]]):
        self._reference_of = reference_of
        self.references: List[bytes] = []

    def persistent_id(self, obj):
        if type(obj) not in _PLACEHOLDER_TYPES:
            return None
        object_id = self._reference_of(obj)
        if object_id is None:
            return None
        self.references.append(object_id)
        return object_id


class ReferencePickler(_ReferenceMixin, cloudpickle.Pickler):
    """cloudpickle with placeholders as persistent ids: handles lambdas, locals and __main__."""

    def __init__(self, file, reference_of, buffer_callback=None):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self._setup(reference_of)


class PlainReferencePickler(pickle.Pickler):
    """The C pickler, placeholders saved as calls to `resolve_placeholder`: the fast way for plain data.

    `reducer_override` is consulted only for objects of non-builtin types, whereas `persistent_id`
    would be called for every int, str and tuple too (~90 Python calls per dask.array task)."""

    def __init__(self, file, reference_of, buffer_callback=None):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self._reference_of = reference_of
        self.references: List[bytes] = []

    def reducer_override(self, obj):
        if type(obj) in _PLACEHOLDER_TYPES:
            object_id = self._reference_of(obj)
            if object_id is not None:
                self.references.append(object_id)
                return resolve_placeholder, (object_id,)
        return NotImplemented


_resolving = threading.local()


def resolve_placeholder(object_id: bytes) -> Any:
    """Unpickling a placeholder: the value behind `object_id`, from the loader's resolver."""
    resolve = getattr(_resolving, "resolve", None)
    if resolve is None:
        raise SerializationError(f"placeholder {object_id.hex()} unpickled outside loads_with_references")
    return resolve(object_id)


class ReferenceUnpickler(pickle.Unpickler):
    def __init__(self, file, resolve: Callable[[bytes], Any], buffers=None):
        super().__init__(file, buffers=buffers)
        self._resolve = resolve

    def persistent_load(self, pid):
        return self._resolve(pid)


def _plain_dumps(obj, buffer_callback=None) -> Optional[bytes]:
    """The C pickler, for the common case of plain data; None when cloudpickle is needed.

    Anything plain pickle would save by a reference into __main__ (which the other side cannot
    import), cannot save at all (lambdas, local classes, futures: their lock does not pickle), or
    that holds placeholders (KeyRef/ObjectReference, found by their module's name in the pickle:
    they must become persistent ids) goes the slow way."""
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=buffer_callback)
    except Exception:
        return None
    return None if b"__main__" in data or _PLACEHOLDER_MODULE in data else data


_PLACEHOLDER_MODULE = KeyRef.__module__.encode()  # found in a pickle that holds a placeholder
# A set, looked up by exact type: persistent_id runs for every object pickled, isinstance would cost more.
_PLACEHOLDER_TYPES = {KeyRef, ObjectReference}


def register_placeholder_type(cls: type) -> None:
    """Objects of exactly `cls` go to the pickler's `reference_of` (the client's futures: registered
    by their module, which this one must not import)."""
    _PLACEHOLDER_TYPES.add(cls)


def dumps_with_references(obj, reference_of, expect_references: bool = False) -> Tuple[List[Any], List[bytes]]:
    """Pickle `obj` turning placeholders into persistent ids.

    Returns (frames, placeholder ids met). A single frame means the value may ride inline; large
    values come back as [pickle stream, out-of-band buffers...] for the object storage.
    `expect_references` skips the placeholder-free attempt (a graph task with dependencies)."""
    buffers: List[pickle.PickleBuffer] = []
    plain = None if expect_references else _plain_dumps(obj, buffers.append)
    if plain is not None:
        frames = [plain] + [buffer.raw() for buffer in buffers]
        if len(frames) == 1 or frames_size(frames) > INLINE_THRESHOLD:
            return frames, []
        return [pickle.dumps(obj, protocol=5)], []
    for pickler_class in (PlainReferencePickler, ReferencePickler):
        buffers = []
        stream = io.BytesIO()
        pickler = pickler_class(stream, reference_of, buffer_callback=buffers.append)
        try:
            pickler.dump(obj)
        except ScalerError:
            raise
        except Exception as error:
            if pickler_class is ReferencePickler:
                raise SerializationError(f"cannot pickle {_describe(obj)}: {error!r}") from error
            continue
        if pickler_class is PlainReferencePickler and b"__main__" in stream.getvalue():
            continue  # a reference into __main__ the other side cannot import: pickle it by value
        break
    frames = [stream.getvalue()] + [buffer.raw() for buffer in buffers]
    if len(frames) > 1 and frames_size(frames) <= INLINE_THRESHOLD:
        stream = io.BytesIO()
        pickler = pickler_class(stream, reference_of)
        pickler.dump(obj)
        frames = [stream.getvalue()]
    return frames, pickler.references


def loads_with_references(frames: Sequence[Any], resolve) -> Any:
    head, *buffers = frames
    if resolve is None:  # nothing to resolve: the C unpickler alone
        return pickle.loads(_as_buffer(head), buffers=[_as_buffer(buffer) for buffer in buffers])
    unpickler = ReferenceUnpickler(io.BytesIO(_as_buffer(head)), resolve,
                                   buffers=[_as_buffer(buffer) for buffer in buffers])
    previous = getattr(_resolving, "resolve", None)
    _resolving.resolve = resolve
    try:
        return unpickler.load()
    finally:
        _resolving.resolve = previous


def dumps(obj) -> bytes:
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as error:
        raise SerializationError(f"cannot pickle {_describe(obj)}: {error!r}") from error


def dumps_frames(obj) -> Frames:
    """Pickle with out-of-band buffers: [pickle stream, buffer, buffer, ...], zero-copy."""
    buffers: List[pickle.PickleBuffer] = []
    plain = _plain_dumps(obj, buffers.append)
    if plain is not None:
        return [plain] + [buffer.raw() for buffer in buffers]
    buffers = []
    try:
        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as error:
        raise SerializationError(f"cannot pickle {_describe(obj)}: {error!r}") from error
    return [head] + [buffer.raw() for buffer in buffers]


def frames_size(frames: Sequence[Any]) -> int:
    return sum(len(frame) if not isinstance(frame, memoryview) else frame.nbytes for frame in frames)


def loads_frames(frames: Sequence[Any]) -> Any:
    head, *buffers = frames
    return pickle.loads(_as_buffer(head), buffers=[_as_buffer(buffer) for buffer in buffers])


def _as_buffer(frame):
    # zmq.Frame exposes .buffer (a memoryview on the message, no copy)
    return frame.buffer if hasattr(frame, "buffer") else frame


def dumps_value(obj) -> Tuple[bool, Any]:
    """Pickle a result or argument blob: (True, bytes) when small enough to ride inline, else
    (False, frames) for the object storage."""
    frames = dumps_frames(obj)
    if len(frames) == 1 and len(frames[0]) <= INLINE_THRESHOLD:
        return True, frames[0]
    if frames_size(frames) <= INLINE_THRESHOLD:
        return True, dumps(obj)
    return False, frames


# --- exceptions ---------------------------------------------------------------------------------


def dumps_exception(error: BaseException) -> bytes:
    """Pickle a task's exception with its traceback; never fails.

    Falls back to a RemoteError carrying the type name and formatted traceback when the exception
    itself cannot be pickled (or unpickled: checked here, on the side that still has the real one)."""
    formatted = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        pickling_support.install(error)
        payload = cloudpickle.dumps(error, protocol=5)
        pickle.loads(payload)
        return payload
    except Exception as pickling_error:
        fallback = RemoteError(
            f"{type(error).__qualname__}: {_safe_str(error)} "
            f"(the exception could not be sent back as itself: {pickling_error!r})",
            remote_type=f"{type(error).__module__}.{type(error).__qualname__}",
            remote_traceback=formatted,
        )
        return cloudpickle.dumps(fallback, protocol=5)


def loads_exception(payload) -> BaseException:
    try:
        error = pickle.loads(payload)
    except Exception as unpickling_error:
        return RemoteError(f"the task failed, and its exception could not be unpickled here: {unpickling_error!r}")
    if not isinstance(error, BaseException):
        return RemoteError(f"the task failed with a non-exception {error!r}")
    return error


Warning_ = Tuple[type, str, str, int]  # category, message, filename, lineno


def dumps_warnings(caught: Sequence[Warning_]) -> bytes:
    """The warnings a task raised, for its caller. A category that cannot be pickled travels as a
    UserWarning naming it, rather than losing the warning."""
    try:
        return cloudpickle.dumps(list(caught))
    except Exception:
        return pickle.dumps([(UserWarning, f"{getattr(category, '__name__', category)}: {message}", filename, lineno)
                             for category, message, filename, lineno in caught])


def loads_warnings(payload: bytes) -> List[Warning_]:
    try:
        caught = pickle.loads(payload)
    except Exception as error:  # e.g. a warning class the caller cannot import
        return [(UserWarning, f"a task raised warnings that cannot be unpickled here: {error!r}", "<worker>", 0)]
    return [(category if isinstance(category, type) and issubclass(category, Warning) else UserWarning,
             message, filename, lineno) for category, message, filename, lineno in caught]


def _safe_str(obj) -> str:
    try:
        return str(obj)
    except Exception:
        return object.__repr__(obj)


def _describe(obj) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = object.__repr__(obj)
    return text if len(text) <= 200 else text[:200] + "..."
