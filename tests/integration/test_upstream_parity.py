"""Behaviours upstream Scaler's own black-box tests check (graphs, nested tasks, clusters, the client,
the worker manager's TOML handling) that no other test here covered; see docs/upstream-parity.md."""

import concurrent.futures
import subprocess
import sys
import time

import pytest

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.utility.exceptions import MissingObjects

from tests.conftest import wait_until


def node_sum(a, b):
    return a + b


def node_first(a, _maybe_none):
    return a


def node_fail_after(_seconds, *_):
    time.sleep(_seconds)
    raise ValueError("node failed")


def node_sleep(seconds, *_):
    time.sleep(seconds)
    return seconds


def squares_through_the_client(client, n):
    return sum(client.starmap(pow, [(value, 2) for value in range(n)]))


def fibonacci(client, n):
    if n < 2:
        return n
    left, right = client.submit(fibonacci, client, n - 1), client.submit(fibonacci, client, n - 2)
    return left.result() + right.result()


@pytest.fixture(scope="module")
def empty_combo():
    """A combo without workers: tasks stay unassigned until a worker manager joins."""
    with SchedulerClusterCombo(n_workers=0, logging_level="WARNING") as cluster:
        yield cluster


# ---- graphs (upstream tests/graph/test_graph.py)

def test_graph_data_keys_may_be_references_none_or_plain_values(client):
    reference = client.send_object(5, name="five")
    graph = {"a": 2, "ref": reference, "none": None, "data": [1],
             "b": (node_sum, "a", "ref"), "c": (node_first, "b", "none")}
    assert client.get(graph, keys=["c", "b", "data"]) == {"c": 7, "b": 7, "data": [1]}
    assert list(client.get(graph, keys=["data", "c"])) == ["data", "c"], "results in the order of the keys"


def test_a_failed_node_fails_every_requested_key_that_depends_on_it(client):
    graph = {"a": 1, "fails": (node_fail_after, 0.2, "a"), "slow": (node_sleep, 0.5, "a"),
             "after": (node_sum, "fails", "slow"), "last": (node_sleep, 0.1, "after")}
    futures = client.get(graph, keys=["fails", "after", "last"], block=False)
    for key, future in futures.items():
        with pytest.raises(ValueError, match="node failed"):
            future.result(timeout=30)
    with pytest.raises(ValueError, match="node failed"):
        client.get(graph, keys=["last"])


def test_leaving_the_client_cancels_its_unfinished_graph_futures(combo):
    with Client(combo.address, timeout_seconds=30) as client:
        futures = client.get({"a": 1, "b": (node_sleep, 30, "a")}, keys=["b"], block=False)
        wait_until(lambda: futures["b"].running(), 10, message="graph submitted")
    wait_until(lambda: all(future.cancelled() for future in futures.values()), 10, message="graph futures cancelled")


def test_an_unassigned_graph_task_cancels(empty_combo):
    with Client(empty_combo.address, timeout_seconds=30) as client:
        future = client.get({"a": 3.14, "b": (round, "a"), "c": (node_sum, "a", "b")}, ["c"], block=False)["c"]
        assert future.cancel() and future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=5)


def test_cull_graph_keeps_what_the_keys_need():
    from scaler_core.utility.graph.optimization import cull_graph

    graph = {"a": (print,), "b": (print, "a"), "c": (print, "a"), "d": (print, "b"),
             "e": (print, "b", "c", [1]), "f": (print, "c"), "x": 5}
    only = lambda *keys: {key: graph[key] for key in keys}  # noqa: E731
    assert cull_graph(graph, ["d"]) == only("a", "b", "d")
    assert cull_graph(graph, ["e"]) == only("a", "b", "c", "e")
    assert cull_graph(graph, ["f", "x"]) == only("a", "c", "f", "x")
    assert cull_graph(graph, ["d", "e", "f", "x"]) == graph
    with pytest.raises(KeyError):
        cull_graph(graph, ["missing"])


# ---- nested tasks (upstream tests/test_nested_task.py, with today's map/starmap)

def test_a_task_given_the_client_maps_and_recurses_through_it(client):
    assert client.submit(squares_through_the_client, client, 30).result(timeout=60) == sum(v * v for v in range(30))
    assert client.submit(fibonacci, client, 7).result(timeout=60) == 13


# ---- the client (upstream tests/client/test_client.py, test_future.py)

def test_a_reference_freed_by_clear_is_a_missing_object(client):
    reference = client.send_object(0.5)
    pending = client.submit(node_sleep, reference)
    client.clear()
    with pytest.raises(concurrent.futures.CancelledError):
        pending.result(timeout=10)
    with pytest.raises(MissingObjects):
        client.submit(node_sleep, reference).result(timeout=10)


def test_no_address_outside_a_worker_says_so_in_upstreams_words():
    with pytest.raises(ValueError) as info:
        Client()
    assert "No scheduler address provided" in str(info.value)
    assert "not running inside a worker context" in str(info.value)


def test_upstream_module_paths_users_import():
    from scaler_core.client.client import Client as client_class
    from scaler_core.client.future import ScalerFuture
    from scaler_core.cluster.combo import SchedulerClusterCombo as combo_class
    import scaler_core

    assert client_class is Client and combo_class is SchedulerClusterCombo
    assert ScalerFuture is scaler_core.ScalerFuture


# ---- clusters (upstream tests/cluster/test_cluster_disconnect.py)

def test_a_cluster_that_leaves_mid_task_then_clear_cancels_the_task(empty_combo):
    manager = subprocess.Popen(
        [sys.executable, "-c", "from scaler_core.cli import worker_manager_main; worker_manager_main()",
         "baremetal_native", empty_combo.address, "--worker-manager-id", "wm-leaving", "--mode", "fixed",
         "--max-task-concurrency", "1", "--logging-level", "WARNING"])
    try:
        with Client(empty_combo.address, timeout_seconds=30) as client:
            assert client.submit(node_sum, 1, 2).result(timeout=60) == 3, "the manager's worker joined"
            future = client.submit(node_sleep, 30)
            manager.terminate()
            manager.wait(20)
            client.clear()
            with pytest.raises(concurrent.futures.CancelledError):
                future.result(timeout=20)
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait(10)


# ---- scaler_worker_manager with a TOML file (upstream tests/entry_points/test_worker_manager.py)

@pytest.mark.parametrize("entries, message", [
    ([("symphony", "wm-sym")], "no [[worker_manager]] entry with type = 'baremetal_native'"),
    ([("baremetal_native", "wm-1"), ("baremetal_native", "wm-2")], "2 [[worker_manager]] entries"),
])
def test_worker_manager_file_without_exactly_one_entry_of_its_type_exits_1(tmp_path, entries, message):
    path = tmp_path / "managers.toml"
    path.write_text("".join(f'[[worker_manager]]\ntype = "{kind}"\nscheduler_address = "tcp://127.0.0.1:6378"\n'
                            f'worker_manager_id = "{name}"\n\n' for kind, name in entries))
    completed = subprocess.run(
        [sys.executable, "-c", "from scaler_core.cli import worker_manager_main; worker_manager_main()",
         "baremetal_native", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1 and message in completed.stderr, completed.stderr


def test_toml_keys_may_be_written_with_dashes_as_upstream_reads_them(tmp_path):
    from scaler_core import config

    path = tmp_path / "scheduler.toml"
    path.write_text('[scheduler]\nbind-address = "tcp://127.0.0.1:6378"\nworker-timeout-seconds = 20\n')
    values = config.parse("scheduler", ["-c", str(path)])
    assert values["address"] == "tcp://127.0.0.1:6378" and values["worker_timeout_seconds"] == 20


def test_cull_graph_follows_aliases_and_nested_keys():
    from scaler_core.utility.graph.optimization import cull_graph

    graph = {"a": 1, "b": (abs, "a"), "alias": "b", "c": (sum, ["alias", "a"]), "unused": (abs, "a")}
    assert cull_graph(graph, ["c"]) == {key: graph[key] for key in ("a", "b", "alias", "c")}
