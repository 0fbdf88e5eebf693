"""scaler_core: a distributed computation engine in the design of OpenGRIS Scaler.

The public names load on first use, so that importing one part (the scheduler's state machine,
the protocol) does not also load the client, ZeroMQ and the process machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from scaler_core.errors import (
    ClientError,
    ConnectTimeoutError,
    GraphCycleError,
    GraphError,
    MissingObjectError,
    MissingObjects,
    NoSchedulerAddressError,
    NoWorkerError,
    RemoteError,
    SchedulerDiedError,
    ProcessorDiedError,
    SerializationError,
    ShutdownRefusedError,
    TaskTimeoutError,
    WorkerDiedError,
)

if TYPE_CHECKING:
    from scaler_core.client.client import Client
    from scaler_core.client.futures import ScalerFuture
    from scaler_core.combo import SchedulerClusterCombo
    from scaler_core.references import KeyRef, ObjectReference
    from scaler_core.serializer import DefaultSerializer, Serializer

_LAZY = {
    "Client": "scaler_core.client.client",
    "ScalerFuture": "scaler_core.client.futures",
    "SchedulerClusterCombo": "scaler_core.combo",
    "KeyRef": "scaler_core.references",
    "ObjectReference": "scaler_core.references",
    "Serializer": "scaler_core.serializer",
    "DefaultSerializer": "scaler_core.serializer",
}

__all__ = [
    "Client", "SchedulerClusterCombo", "ScalerFuture", "KeyRef", "ObjectReference", "Serializer",
    "DefaultSerializer", "ClientError", "ConnectTimeoutError", "GraphCycleError", "GraphError",
    "MissingObjectError", "MissingObjects", "NoSchedulerAddressError", "NoWorkerError", "ProcessorDiedError",
    "RemoteError", "SchedulerDiedError", "SerializationError", "ShutdownRefusedError", "TaskTimeoutError",
    "WorkerDiedError",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scaler_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
