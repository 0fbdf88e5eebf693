"""Receiving the scheduler's monitor stream, and the pieces both views share.

The scheduler publishes one ``MonitorStatus`` about twice a second on its monitor address, and only
while someone subscribes. Each status is a complete snapshot (counters are totals since the
scheduler started), so a view only ever needs the newest one: a slow reader drops the backlog
instead of replaying it.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import zmq

from scaler_core import protocol

# A worker has one task process; a task blocked in a nested get lends its slot to another task, so
# a worker may run up to 1 + blocked tasks at once.


class StatusSubscriber:
    """A SUB socket connected to a scheduler's monitor address."""

    def __init__(self, monitor_address: str, context: Optional[zmq.Context] = None):
        self.monitor_address = monitor_address
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self._socket.connect(monitor_address)
        except zmq.ZMQError as error:
            self._socket.close(linger=0)
            raise ValueError(f"cannot subscribe to the monitor address {monitor_address!r}: {error}") from None

    def receive_latest(self, timeout_seconds: float) -> Optional[Any]:
        """Wait up to `timeout_seconds` for a status; return the newest one queued, or None."""
        if not self._socket.poll(int(max(0.0, timeout_seconds) * 1000)):
            return None
        latest = None
        while True:
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return latest
            try:
                message = protocol.decode(parts[0])
            except protocol.ProtocolError:
                continue  # a garbled frame should not take the view down
            if isinstance(message, protocol.MonitorStatus):
                latest = message

    def wait_for_status(self, timeout_seconds: float) -> Optional[Any]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            status = self.receive_latest(remaining)
            if status is not None:
                return status

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> "StatusSubscriber":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def worker_name(worker: Any) -> str:
    return worker.worker_id.decode("utf-8", errors="backslashreplace")


def shorten(text: str, width: int) -> str:
    """Keep both ends of an over-long id: the front names the host, the end tells workers apart."""
    if len(text) <= width:
        return text
    if width < 4:
        return text[:width]
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + "+" + text[-tail:]


def free_slots(worker: Any) -> int:
    """How many more tasks the scheduler would hand this worker now (its pipeline's free room)."""
    return worker.free


def format_bytes(count: float) -> str:
    """Short human size: 512b, 28.4m, 1.2g (the units top-like tools use)."""
    for unit in ("b", "k", "m", "g", "t"):
        if abs(count) < 1024 or unit == "t":
            return f"{count:.0f}{unit}" if unit == "b" else f"{count:.1f}{unit}"
        count /= 1024
    raise AssertionError("unreachable")


def worker_to_dict(worker: Any) -> Dict[str, Any]:
    return {
        "id": worker_name(worker),
        "hostname": worker.hostname,
        "pid": worker.pid,
        "cpu_percent": round(float(worker.cpu_percent), 1),
        "rss_bytes": worker.rss_bytes,
        "held_bytes": worker.held_bytes,
        "paused": worker.paused,
        "memory_limit_bytes": worker.memory_limit_bytes,
        "running": worker.running,
        "queued": worker.queued,
        "sent": worker.sent,
        "blocked": worker.blocked,
        "free": free_slots(worker),
        "capabilities": {capability.name: capability.quantity for capability in worker.capabilities},
    }


def _counts_to_dict(counts: List[Any]) -> Dict[str, int]:
    return {entry.name: entry.count for entry in counts}


def status_to_dict(status: Any) -> Dict[str, Any]:
    """The JSON form the web UI serves: plain names, ids as text."""
    return {
        "timestamp": status.timestamp,
        "scheduler": {"cpu_percent": round(float(status.cpu_percent), 1), "rss_bytes": status.rss_bytes},
        "tasks": {
            "pending": status.pending,
            "running": status.running,
            "succeeded": status.succeeded,
            "failed": status.failed,
            "cancelled": status.cancelled,
        },
        "clients": status.clients,
        "workers": [worker_to_dict(worker) for worker in status.workers],
        "sent": _counts_to_dict(status.sent),
        "received": _counts_to_dict(status.received),
        "host_stores": [{"cluster": store.cluster_id.decode(errors="replace"), "hostname": store.hostname,
                         "memory_bytes": store.memory_bytes, "disk_bytes": store.disk_bytes,
                         "memory_limit_bytes": store.memory_limit_bytes} for store in status.host_stores],
        "managers": [manager_to_dict(manager) for manager in getattr(status, "managers", ())],
    }


def manager_to_dict(manager: Any) -> Dict[str, Any]:
    return {
        "id": manager.manager_id.decode(errors="replace"),
        "kind": manager.kind,
        "workers_per_group": manager.workers_per_group,
        "max_groups": manager.max_groups,
        "groups": [{"id": group.group_id.decode(errors="replace"), "state": group.state, "workers": group.workers,
                    "busy_workers": group.busy_workers, "external_id": group.external_id}
                   for group in manager.groups],
    }


def manager_rows(manager: Any) -> List[tuple]:
    """`label value` rows summing up a worker manager's groups (scaler_top)."""
    states = [group.state for group in manager.groups]
    workers = sum(group.workers for group in manager.groups)
    busy = sum(group.busy_workers for group in manager.groups)
    limit = "no limit" if manager.max_groups < 0 else str(manager.max_groups)
    return [("kind", manager.kind), ("groups", f"{len(states)} of {limit}"),
            ("pending", f"{states.count('pending')} ({states.count('pending') * manager.workers_per_group} workers)"),
            ("draining", str(states.count("draining") + states.count("stopping"))),
            ("workers", f"{workers} ({busy} busy)")]
