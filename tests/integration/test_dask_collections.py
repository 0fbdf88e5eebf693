"""Dask collections computed with scaler_get match dask.threaded.get."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd

from tests.dask_support import engine_get  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(180)


def both(collection, engine_get):
    """(value with scaler_get, value with dask.threaded.get)."""
    return collection.compute(scheduler=engine_get), collection.compute(scheduler="threads")


def test_array_matrix_product(engine_get):
    x = da.random.RandomState(0).random_sample((400, 300), chunks=(50, 50))
    ours, theirs = both(x @ x.T, engine_get)
    np.testing.assert_allclose(ours, theirs)


def test_array_reductions_over_hundreds_of_chunks(engine_get):
    x = da.random.RandomState(1).standard_normal((2000, 2000), chunks=(100, 100))  # 400 chunks
    expressions = [x.sum(), x.mean(axis=0), x.std(), x.max(axis=1), (x + x.T).min()]
    ours = dask.compute(*expressions, scheduler=engine_get)
    theirs = dask.compute(*expressions, scheduler="threads")
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference)


@pytest.fixture
def frames():
    rng = np.random.default_rng(2)
    left = pd.DataFrame({"key": rng.integers(0, 50, 3000), "value": rng.standard_normal(3000),
                         "name": rng.choice(["a", "b", "c"], 3000)})
    right = pd.DataFrame({"key": np.arange(50), "weight": rng.standard_normal(50)})
    return dd.from_pandas(left, npartitions=8), dd.from_pandas(right, npartitions=3)


def test_dataframe_groupby(frames, engine_get):
    left, _ = frames
    ours, theirs = both(left.groupby("name").value.agg(["sum", "mean", "count"]), engine_get)
    pd.testing.assert_frame_equal(ours.sort_index(), theirs.sort_index())


def test_dataframe_merge(frames, engine_get):
    left, right = frames
    ours, theirs = both(left.merge(right, on="key"), engine_get)
    order = ["key", "value", "name", "weight"]
    pd.testing.assert_frame_equal(ours.sort_values(order).reset_index(drop=True),
                                  theirs.sort_values(order).reset_index(drop=True))


def test_dataframe_set_index(frames, engine_get):
    left, _ = frames
    ours, theirs = both(left.set_index("value"), engine_get)
    pd.testing.assert_frame_equal(ours, theirs)


def test_bag_pipeline(engine_get):
    bag = db.from_sequence(range(1000), npartitions=20)
    result = bag.map(lambda x: (x % 7, x)).foldby(lambda kv: kv[0], lambda total, kv: total + kv[1], 0, lambda a, b: a + b, 0)
    ours, theirs = both(result, engine_get)
    assert sorted(ours) == sorted(theirs)
    assert both(bag.filter(lambda x: x % 3 == 0).frequencies(), engine_get)[0] == list(
        bag.filter(lambda x: x % 3 == 0).frequencies().compute(scheduler="threads"))


def test_delayed_graph(engine_get):
    @dask.delayed
    def square(x):
        return x * x

    total = dask.delayed(sum)([square(i) for i in range(50)])
    ours, theirs = both(total, engine_get)
    assert ours == theirs == sum(i * i for i in range(50))


def test_numpy_and_pandas_types_survive_the_round_trip(engine_get):
    matrix = da.from_array(np.matrix([[1, 2], [3, 4]]), chunks=2, asarray=False)
    assert type(matrix.compute(scheduler=engine_get)) is np.matrix
    series = dd.from_pandas(pd.Series(pd.array([1, None, 3], dtype="Int64")), npartitions=2)
    pd.testing.assert_series_equal(series.compute(scheduler=engine_get), series.compute(scheduler="threads"))
