"""Exceptions the engine raises in the caller, beside the tasks' own exceptions."""

import graphlib
from concurrent.futures import CancelledError, TimeoutError  # noqa: F401  (re-exported)


class ScalerError(Exception):
    """Base of the engine's own errors."""


class ClientError(ScalerError):
    """The client could not do what was asked (not connected, closed, bad arguments)."""


class NoSchedulerAddressError(ClientError, ValueError):
    """Client() without an address, outside of a worker: there is no scheduler to default to."""


class ConnectTimeoutError(ClientError, ConnectionError):
    """Nothing answered at the scheduler address within the client's timeout."""


class SchedulerDiedError(ScalerError, ConnectionError, TimeoutError):
    """The scheduler stopped answering; every pending future of the client fails with this (also a
    TimeoutError: the client timed out waiting, as upstream Scaler reports it)."""


class ShutdownRefusedError(ClientError, ValueError):
    """Client.shutdown() on a protected scheduler (a ValueError, as upstream Scaler raises)."""


class MissingObjectError(ClientError, KeyError):
    """A task names an object this client freed (clear(), clear_object())."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ObjectStorageSilentError(ScalerError, ConnectionError):
    """An object was asked of the object storage, which did not answer in time: it is gone (killed,
    or its host unreachable). A storage answers every get, if only with "not found", within its
    get_wait_seconds."""


class WorkerDiedError(ScalerError):
    """The task's worker died too often while running it (it probably kills its worker)."""


# upstream Scaler's names for the same errors
ProcessorDiedError = WorkerDiedError
MissingObjects = MissingObjectError


class TaskTimeoutError(ScalerError, TimeoutError):
    """The task ran longer than the cluster's task timeout and was stopped."""


class NoWorkerError(ScalerError):
    """No connected worker can ever run the task (its capabilities are not offered)."""


class GraphError(ScalerError, ValueError):
    """A task graph that cannot run: missing dependency, bad key."""


class GraphCycleError(GraphError, graphlib.CycleError):
    """The graph has a cycle; `cycle` holds the keys on it (also a graphlib.CycleError)."""

    def __init__(self, message, cycle=()):
        super().__init__(message)
        self.cycle = list(cycle)


class SerializationError(ScalerError, TypeError):
    """A function, argument, result or exception could not be (un)pickled."""


class RemoteError(ScalerError):
    """A task failed with an exception that could not be sent back as itself.

    `remote_type` names the original exception type and `remote_traceback` holds its formatted
    traceback."""

    def __init__(self, message, remote_type="", remote_traceback=""):
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback

    def __str__(self):
        text = super().__str__()
        return f"{text}\n\nRemote traceback:\n{self.remote_traceback}" if self.remote_traceback else text
