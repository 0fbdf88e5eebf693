"""`from scaler.utility.exceptions import ...` with the package name changed: the engine's own errors
under upstream Scaler's names (defined in scaler_core.errors)."""

from scaler_core.errors import (  # noqa: F401  (re-exported)
    MissingObjects,
    NoWorkerError,
    ProcessorDiedError,
    SchedulerDiedError as DisconnectedError,
    WorkerDiedError,
)
