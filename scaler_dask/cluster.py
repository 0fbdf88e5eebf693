"""Which engine client a ``scaler_get`` call uses when none is given.

Resolution order, first match wins:

1. ``dask.config`` key ``scaler.address``;
2. the ``SCALER_ADDRESS`` environment variable;
3. inside a worker process of the engine: the worker's own scheduler (nested
   compute from a task);
4. an embedded local cluster (one worker per core), started on first use,
   reused by every later call in this process and shut down at exit.

Clients are cached per (process id, address): a forked child must not reuse
its parent's sockets, and concurrent calls from threads share one client.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

import dask

from scaler_core import Client, SchedulerClusterCombo, task_context

ADDRESS_CONFIG_KEY = "scaler.address"
ADDRESS_ENVIRONMENT_VARIABLE = "SCALER_ADDRESS"

_EMBEDDED = "<embedded>"
_WORKER = "<worker>"

_lock = threading.Lock()
_clients: dict[tuple[int, str], Any] = {}
_embedded_cluster: Any = None
_embedded_cluster_pid: int | None = None
_atexit_registered = False


def configured_address() -> str | None:
    """The address from dask.config or the environment, if any."""
    return dask.config.get(ADDRESS_CONFIG_KEY, None) or os.environ.get(ADDRESS_ENVIRONMENT_VARIABLE) or None


def worker_scheduler_address() -> str | None:
    """The scheduler address when running inside an engine worker process."""
    return task_context.current_scheduler_address()


def default_client() -> Any:
    """The cached client for the current configuration, created on demand."""
    address = configured_address()
    if address is None:
        address = _WORKER if worker_scheduler_address() is not None else _EMBEDDED
    cache_key = (os.getpid(), address)
    client = _clients.get(cache_key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(cache_key)
        if client is None:
            client = _connect(address)
            _clients[cache_key] = client
            _register_atexit()
        return client


def forget_client(client: Any) -> None:
    """Drop a client whose scheduler died, so the next call reconnects.

    An embedded cluster that died is shut down and restarted on next use.
    """
    global _embedded_cluster
    with _lock:
        for cache_key, cached in list(_clients.items()):
            if cached is client:
                del _clients[cache_key]
                if cache_key[1] == _EMBEDDED and _embedded_cluster is not None:
                    _shutdown_quietly(_embedded_cluster)
                    _embedded_cluster = None
    _disconnect_quietly(client)


def _connect(address: str) -> Any:
    if address == _WORKER:
        return Client()  # the engine connects a worker's client to its own scheduler
    if address == _EMBEDDED:
        return Client(address=_start_embedded_cluster())
    return Client(address=address)


def _start_embedded_cluster() -> str:
    global _embedded_cluster, _embedded_cluster_pid
    if _embedded_cluster is None or _embedded_cluster_pid != os.getpid():
        _embedded_cluster = SchedulerClusterCombo(n_workers=os.cpu_count() or 1)
        _embedded_cluster_pid = os.getpid()
    return _embedded_cluster.address


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown_default_clients)
        _atexit_registered = True


def shutdown_default_clients() -> None:
    """Disconnect cached clients and stop the embedded cluster of this process."""
    global _embedded_cluster
    with _lock:
        clients = [client for (pid, _), client in _clients.items() if pid == os.getpid()]
        _clients.clear()
        cluster = _embedded_cluster if _embedded_cluster_pid == os.getpid() else None
        _embedded_cluster = None
    for client in clients:
        _disconnect_quietly(client)
    if cluster is not None:
        _shutdown_quietly(cluster)


def _disconnect_quietly(client: Any) -> None:
    try:
        client.disconnect()
    except Exception:  # a dead scheduler may make disconnect fail; nothing to save
        pass


def _shutdown_quietly(cluster: Any) -> None:
    try:
        cluster.shutdown()
    except Exception:
        pass
