"""scaler_core: a distributed computation engine in the design of OpenGRIS Scaler."""

from scaler_core.client.client import Client
from scaler_core.client.futures import ScalerFuture
from scaler_core.client.graph_refs import KeyRef, ObjectReference
from scaler_core.combo import SchedulerClusterCombo
from scaler_core.errors import (
    ClientError,
    ConnectTimeoutError,
    GraphCycleError,
    GraphError,
    NoWorkerError,
    RemoteError,
    SchedulerDiedError,
    SerializationError,
    TaskTimeoutError,
    WorkerDiedError,
)

__all__ = [
    "Client", "SchedulerClusterCombo", "ScalerFuture", "KeyRef", "ObjectReference", "ClientError",
    "ConnectTimeoutError", "GraphCycleError", "GraphError", "NoWorkerError", "RemoteError", "SchedulerDiedError",
    "SerializationError", "TaskTimeoutError", "WorkerDiedError",
]
