"""A client's own serializer (`Client(address, serializer=...)`): its interface, as in upstream
Scaler, and how its bytes travel (SerializedValue) and are used on a worker (SerializerCall)."""

from __future__ import annotations

import abc
import pickle
from typing import Any, Callable

import cloudpickle


class Serializer(metaclass=abc.ABCMeta):
    """Turns the client's arguments, results and objects into bytes and back, on both sides."""

    @staticmethod
    @abc.abstractmethod
    def serialize(obj: Any) -> bytes:
        raise NotImplementedError

    @staticmethod
    @abc.abstractmethod
    def deserialize(payload: bytes) -> Any:
        raise NotImplementedError


class DefaultSerializer(Serializer):
    """cloudpickle: what the engine does anyway when no serializer is given."""

    @staticmethod
    def serialize(obj: Any) -> bytes:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def deserialize(payload: bytes) -> Any:
        return pickle.loads(payload)


class SerializedValue:
    """A value that a user's serializer (`Client(serializer=...)`) turned into bytes; it travels as
    those bytes and only that serializer turns it back."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        return SerializedValue, (self.payload,)


class SerializerCall:
    """`fn` on a worker under a user's serializer: arguments that arrive serialized are turned back
    first, and the result leaves serialized."""

    __slots__ = ("fn", "serializer")

    def __init__(self, fn: Callable, serializer: Any):
        self.fn = fn
        self.serializer = serializer

    def __call__(self, *args, **kwargs):
        deserialize = self.serializer.deserialize
        args = [deserialize(arg.payload) if type(arg) is SerializedValue else arg for arg in args]
        kwargs = {name: deserialize(value.payload) if type(value) is SerializedValue else value
                  for name, value in kwargs.items()}
        return SerializedValue(self.serializer.serialize(self.fn(*args, **kwargs)))

    def __reduce__(self):
        return SerializerCall, (self.fn, self.serializer)
