"""`ray.util` helpers that upstream Scaler's Ray layer offers: results in completion order."""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, List, Optional

from scaler_core.compat.ray._api import wait
from scaler_core.compat.ray._refs import ObjectRef
from scaler_core.compat.ray.exceptions import GetTimeoutError


def as_completed(object_refs: Iterable[ObjectRef], timeout: Optional[float] = None) -> Iterator[ObjectRef]:
    """Yield each ref once its task is done, the first finished first; GetTimeoutError when
    `timeout` seconds pass before all are done."""
    pending: List[ObjectRef] = list(object_refs)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, pending = wait(pending, num_returns=1, timeout=remaining)
        if not ready:
            raise GetTimeoutError(f"{len(pending)} object refs were not ready within {timeout}s")
        yield ready[0]


def map_unordered(fn: Any, values: Iterable[Any]) -> Iterator[Any]:
    """`fn.remote(value)` for every value, all submitted at once; yields the results as they come."""
    if not callable(getattr(fn, "remote", None)):
        raise TypeError(f"map_unordered needs a @ray.remote function, got {fn!r}")
    refs = [fn.remote(value) for value in values]
    if any(not isinstance(ref, ObjectRef) for ref in refs):
        raise TypeError("map_unordered needs a remote function with num_returns=1")
    from scaler_core.compat.ray._api import get

    for ref in as_completed(refs):
        yield get(ref)
