"""What a client's or a worker's state machine asks its I/O loop to do (`peer_io.PeerIO`).

The states decide and return these; only the loop touches sockets. Process-specific instructions
(a worker's results to batch, a client's futures to settle) live beside their state machines and
reach the process's own handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ToScheduler:
    message: object


@dataclass(frozen=True)
class ToStorage:
    message: object
    frames: Sequence = ()


@dataclass(frozen=True)
class ConnectStorage:
    """The scheduler named the object storage (its Welcome): connect a socket to it."""
    address: str


@dataclass(frozen=True, kw_only=True)
class Leave:
    """End the I/O loop: what is queued goes out, then `goodbye` (if any) last to the scheduler;
    sockets close with `linger_ms` to flush."""
    goodbye: object = None
    linger_ms: int = 1000
