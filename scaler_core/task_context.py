"""What code running inside a task can know about its worker.

A process-wide record set by the worker at start-up (scheduler address, a hook to report blocked
tasks) and a thread-local one for the task being run (its priority, so nested submissions can go
ahead of top-level work).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

_worker_scheduler_address: Optional[str] = None
_worker_keys = None
_block_hooks: Optional[tuple] = None
_current = threading.local()


def set_worker(scheduler_address: str, on_block: Callable[[], None], on_unblock: Callable[[], None],
               keys=None) -> None:
    global _worker_scheduler_address, _block_hooks, _worker_keys
    _worker_scheduler_address = scheduler_address
    _block_hooks = (on_block, on_unblock)
    _worker_keys = keys


def current_keys():
    """The CurveZMQ keys of the worker this code runs in (nested clients use them), or None."""
    return _worker_keys


def current_scheduler_address() -> Optional[str]:
    """The scheduler of the worker this code runs in, or None outside a worker."""
    return _worker_scheduler_address


def in_worker() -> bool:
    return _worker_scheduler_address is not None


def set_current_task_priority(priority: Optional[int]) -> None:
    _current.priority = priority


def current_task_priority() -> Optional[int]:
    return getattr(_current, "priority", None)


class blocked_while_waiting:
    """Context manager around a wait on a nested task: the worker may run other work meanwhile."""

    def __enter__(self):
        self._active = _block_hooks is not None and current_task_priority() is not None
        if self._active:
            _block_hooks[0]()
        return self

    def __exit__(self, *exc):
        if self._active:
            _block_hooks[1]()
        return False
