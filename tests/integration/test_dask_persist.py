"""scaler_dask.persist with real processes: results stay on the cluster, later computes use them
there, the caller reads only what it asks for, and releasing the collections frees them."""

import gc
import glob

import dask
import dask.array as da
import numpy as np
import pytest

import scaler_dask
from scaler_core.client.connection import ClientConnection
from scaler_dask import scaler_get
from tests.conftest import wait_until
from tests.dask_support import configured_address  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(120)


def stored_files(combo):
    return glob.glob(f"/dev/shm/scaler-objects-{combo.cluster_process.pid}-*/*")


@pytest.fixture
def reads_by_caller(monkeypatch):
    """Counts the kept results the calling process reads back."""
    reads = []
    original = ClientConnection.fetch_kept

    def counting(self, object_id):
        reads.append(object_id)
        return original(self, object_id)

    monkeypatch.setattr(ClientConnection, "fetch_kept", counting)
    return reads


def fail_on_negative(block):
    if (block < 0).any():
        raise ValueError("negative values in a block")
    return block


def test_persisted_results_stay_on_the_cluster_and_feed_later_computes(combo, configured_address, reads_by_caller):
    x = da.random.RandomState(4).random_sample((2000, 2000), chunks=(500, 500))  # 16 chunks of 2 MB
    expected = x.compute(scheduler="sync")
    before = len(stored_files(combo))
    (persisted,) = scaler_dask.persist(x)
    assert len(stored_files(combo)) - before == 16, "every chunk is kept on the cluster"
    assert dask.compute((persisted * 2).sum(), scheduler=scaler_get)[0] == pytest.approx(2 * expected.sum())
    (again,) = scaler_dask.persist(persisted + 1)  # a persist built on a persisted collection
    assert float(dask.compute(again.mean(), scheduler=scaler_get)[0]) == pytest.approx(expected.mean() + 1)
    # the chunks are joined on the cluster: only the finished array comes back
    assert np.array_equal(persisted.compute(scheduler=scaler_get), expected)
    assert reads_by_caller == [], "no chunk came back to the caller"
    first_key = persisted.__dask_keys__()[0][0]
    chunk = dict(persisted.__dask_graph__())[first_key]
    assert np.array_equal(chunk.result(), expected[:500, :500]) and len(reads_by_caller) == 1
    assert np.array_equal(chunk.result(), expected[:500, :500]) and len(reads_by_caller) == 1, "read once"
    # read here or not, the chunks still feed later computes where they lie
    assert dask.compute((persisted * 2).sum(), scheduler=scaler_get)[0] == pytest.approx(2 * expected.sum())
    assert len(reads_by_caller) == 1
    del chunk
    del persisted, again
    gc.collect()
    wait_until(lambda: len(stored_files(combo)) == before, timeout=20, message="released chunks deleted")


def test_a_failing_task_fails_the_persist(combo, configured_address):
    x = da.from_array(np.array([1.0, -1.0, 2.0, 3.0]), chunks=2).map_blocks(fail_on_negative)
    with pytest.raises(ValueError, match="negative values"):
        scaler_dask.persist(x)


def test_small_results_are_held_as_values(configured_address):
    (persisted,) = scaler_dask.persist(da.arange(10, chunks=5) * 3)
    values = list(dict(persisted.__dask_graph__()).values())
    assert all(isinstance(value, np.ndarray) for value in values)
    assert persisted.sum().compute(scheduler=scaler_get) == 135
