"""Messages the scheduler state machine wants sent, batched per destination in order."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from scaler_core import protocol

# Destination of messages meant for the object storage server rather than a ROUTER peer.
OBJECT_STORAGE = b""

Outgoing = Tuple[bytes, Any, Sequence[Any]]


class Outbox:
    """Collects outgoing messages; consecutive tasks (or results) for one peer share one batch.

    Order per destination is preserved: a batch only grows while nothing else was queued for that
    peer after it, so a cancel is never overtaken by the task it cancels."""

    def __init__(self):
        self._entries: List[List[Any]] = []  # [destination, message, frames]
        self._open_batch: Dict[bytes, List[Any]] = {}

    def send(self, destination: bytes, message: Any, frames: Sequence[Any] = ()) -> None:
        self._open_batch.pop(destination, None)
        self._entries.append([destination, message, frames])

    def task(self, destination: bytes, task: "protocol.Task") -> None:
        entry = self._open_batch.get(destination)
        if entry is None or type(entry[1]) is not protocol.TaskBatch:
            entry = [destination, protocol.TaskBatch(tasks=[]), ()]
            self._entries.append(entry)
            self._open_batch[destination] = entry
        entry[1].tasks.append(task)

    def result(self, destination: bytes, result: "protocol.TaskResult") -> None:
        entry = self._open_batch.get(destination)
        if entry is None or type(entry[1]) is not protocol.ResultBatch:
            entry = [destination, protocol.ResultBatch(results=[]), ()]
            self._entries.append(entry)
            self._open_batch[destination] = entry
        entry[1].results.append(result)

    def take(self) -> List[Outgoing]:
        entries, self._entries = self._entries, []
        self._open_batch.clear()
        return [tuple(entry) for entry in entries]

    def __len__(self):
        return len(self._entries)
