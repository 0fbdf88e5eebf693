"""pytest plugin: run Dask's own tests with the default scheduler forced.

Load it with ``-p compat_tests.dask_suite_plugin`` (repository root on
PYTHONPATH) and choose the scheduler with ``--dask-get=scaler`` (default) or
``--dask-get=threaded`` for the baseline.

Dask's ``assert_eq`` helpers compute with an explicit ``scheduler="sync"``,
which would bypass the default scheduler in most array, dataframe and bag
tests. With ``--route-sync`` (the runner's default) the names "sync",
"synchronous" and "single-threaded" are routed to the chosen get as well, so
those computations go through it too.

``scaler_get`` finds its cluster through ``SCALER_ADDRESS``; without it, it
would start an embedded cluster inside the test process, which
distributed's leak checks may kill (see compat_tests/README.md).
"""

from __future__ import annotations

import dask
import dask.base
import dask.threaded
import pytest

SYNC_NAMES = ("sync", "synchronous", "single-threaded")


def pytest_addoption(parser):
    group = parser.getgroup("dask-suite", "run Dask's tests on a chosen scheduler get")
    group.addoption("--dask-get", choices=("scaler", "threaded"), default="scaler",
                    help="the get forced as Dask's default scheduler")
    group.addoption("--route-sync", action="store_true", default=False,
                    help='also route scheduler="sync" (used by assert_eq) to the chosen get')


def _chosen_get(config):
    if config.getoption("--dask-get") == "threaded":
        return dask.threaded.get
    from scaler_dask import scaler_get

    return scaler_get


def pytest_report_header(config):
    return f"dask-suite: get={config.getoption('--dask-get')} route-sync={config.getoption('--route-sync')}"


@pytest.fixture(autouse=True)
def _force_dask_scheduler(request):
    get = _chosen_get(request.config)
    saved = {name: dask.base.named_schedulers.get(name) for name in SYNC_NAMES}
    if request.config.getoption("--route-sync"):
        for name in SYNC_NAMES:
            dask.base.named_schedulers[name] = get
    try:
        with dask.config.set(scheduler=get):
            yield
    finally:
        for name, original in saved.items():
            if original is not None:
                dask.base.named_schedulers[name] = original


def pytest_unconfigure(config):
    if config.getoption("--dask-get") == "scaler":
        from scaler_dask import cluster

        cluster.shutdown_default_clients()
