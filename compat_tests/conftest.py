"""Session fixtures of the compatibility suites.

One Scaler cluster (2 workers) is started for the session in its own process
session and shared: ``scaler_get`` finds it through ``scaler.address``.
"""

from __future__ import annotations

import os

import dask
import pytest

from compat_tests.shared_cluster import start_shared_cluster, stop_shared_cluster


@pytest.fixture(scope="session")
def scaler_address():
    address = os.environ.get("SCALER_ADDRESS")
    if address:  # e.g. run_dask_suite.py already started one
        yield address
        return
    process, address = start_shared_cluster(n_workers=2)
    try:
        yield address
    finally:
        from scaler_dask import cluster

        cluster.shutdown_default_clients()
        stop_shared_cluster(process)


@pytest.fixture
def scaler_config(scaler_address):
    with dask.config.set({"scaler.address": scaler_address}):
        yield scaler_address
