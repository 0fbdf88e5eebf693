"""Fixtures shared by the tests/test_dask_*.py modules (imported by each).

A real engine cluster (2 workers) is started once per test process and
reused; while ``scaler_core`` lacks a client, the local fake of
``dask_fakes`` stands in so that the graph conversion can still be tested.
"""

from __future__ import annotations

import atexit
import threading

import pytest

from dask_fakes import install_fake_engine_modules

USING_FAKE_ENGINE = install_fake_engine_modules()

import scaler_core  # noqa: E402  (after the fakes are installed, if needed)

_lock = threading.Lock()
_shared: dict = {}


def shared_cluster_address() -> str:
    """Address of the per-process test cluster, started on first use."""
    with _lock:
        if "cluster" not in _shared:
            cluster = scaler_core.SchedulerClusterCombo(n_workers=2)
            _shared["cluster"] = cluster
            atexit.register(_stop_shared_cluster)
        return _shared["cluster"].address


def _stop_shared_cluster() -> None:
    from scaler_dask import cluster as default_clusters

    default_clusters.shutdown_default_clients()
    client = _shared.pop("client", None)
    if client is not None:
        client.disconnect()
    cluster = _shared.pop("cluster", None)
    if cluster is not None:
        cluster.shutdown()


def shared_client():
    address = shared_cluster_address()
    with _lock:
        if "client" not in _shared:
            _shared["client"] = scaler_core.Client(address=address)
        return _shared["client"]


@pytest.fixture
def scaler_client():
    """An engine client connected to the shared test cluster."""
    return shared_client()


@pytest.fixture
def engine_get(scaler_client):
    """A scheduler get bound to the shared test cluster."""
    from scaler_dask import get_for

    return get_for(scaler_client)


@pytest.fixture
def configured_address():
    """``scaler.address`` set to the shared cluster, for plain ``scaler_get``."""
    import dask

    address = shared_cluster_address()
    with dask.config.set({"scaler.address": address}):
        yield address


needs_real_engine = pytest.mark.skipif(USING_FAKE_ENGINE, reason="needs the real engine (worker processes)")
