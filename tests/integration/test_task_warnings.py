"""Warnings raised inside tasks reach the caller, in the thread that reads the result."""

import operator
import warnings

import pytest

from tests import helpers_tasks as tasks


def test_a_task_warning_is_re_emitted_where_the_result_is_read(client):
    with pytest.warns(tasks.CustomWarning, match="careful"):
        assert client.submit(tasks.warn_then_return, "careful", 7, tasks.CustomWarning).result(timeout=30) == 7


def test_every_call_warns_not_only_the_first(client):
    for attempt in range(2):
        with pytest.warns(UserWarning, match=f"again {attempt}"):
            client.submit(tasks.warn_then_return, f"again {attempt}", 1).result(timeout=30)


def test_a_graph_intermediate_warning_reaches_the_caller(client):
    graph = {"a": (tasks.warn_then_return, "inside the graph", 2), "b": (operator.add, "a", 1)}
    with pytest.warns(UserWarning, match="inside the graph"):
        assert client.get(graph, keys=["b"]) == {"b": 3}


def test_the_caller_filters_decide(client):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        future = client.submit(tasks.warn_then_return, "now an error", 1)
        with pytest.raises(UserWarning, match="now an error"):
            future.result(timeout=30)


def test_warnings_ignored_by_default_stay_ignored(client):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.submit(tasks.warn_then_return, "old api", 1, DeprecationWarning).result(timeout=30)
    assert not [w for w in caught if "old api" in str(w.message)]
