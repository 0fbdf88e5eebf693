"""Fixtures for the tests/integration/test_dask_*.py modules (each imports the ones it uses).

They build on ``combo`` and ``client`` of tests/conftest.py: one 2-worker
cluster per test module, checked for leftover processes at session end.
"""

from __future__ import annotations

import dask
import pytest


@pytest.fixture
def engine_get(client):
    """A scheduler get bound to the module's cluster."""
    from scaler_dask import get_for

    return get_for(client)


@pytest.fixture
def configured_address(combo):
    """``scaler.address`` set to the module's cluster, for plain ``scaler_get``."""
    from scaler_dask import cluster

    with dask.config.set({"scaler.address": combo.address}):
        yield combo.address
    cluster.shutdown_default_clients()
