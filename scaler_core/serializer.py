"""The interface of a client's serializer (`Client(address, serializer=...)`), as in upstream Scaler."""

from __future__ import annotations

import abc
import pickle
from typing import Any

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
