"""A journaled scheduler killed or stopped and started again: clients and workers carry on, every
future gets exactly one correct result (issue 18). Without a journal, futures fail as before."""

import random
import time

import psutil
import pytest

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.errors import SchedulerDiedError
from tests.ports import port_block
from tests.conftest import wait_until
from tests.integration.test_cli import processes  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(300)


def double(x):
    time.sleep(0.0005)
    return 2 * x


def identity(x):
    return x


def add(*values):
    return sum(values)


def chain_graph(width: int, depth: int):
    """`width` chains of `depth` additions, then one sum per chain: width * (depth + 1) nodes."""
    graph = {}
    for chain in range(width):
        graph[("step", chain, 0)] = (add, chain, 1)
        for level in range(1, depth):
            graph[("step", chain, level)] = (add, ("step", chain, level - 1), 1)
        graph[("end", chain)] = (add, ("step", chain, depth - 1), 0)
    return graph


def kill_at_random_points(combo, futures, kills: int, rng: random.Random):
    """SIGKILL the scheduler `kills` times, each once a random share of the futures is done."""
    for _ in range(kills):
        target = rng.uniform(0.1, 0.6) * len(futures)
        wait_until(lambda: sum(future.done() for future in futures) >= min(target, len(futures) - 1), timeout=120,
                   interval=0.005, message="progress before the kill")
        combo.restart_scheduler(kill=True)


@pytest.mark.parametrize("kills", [1, 2])
def test_tasks_and_a_graph_in_flight_survive_scheduler_kills(tmp_path, kills):
    rng = random.Random(kills)
    with SchedulerClusterCombo(n_workers=2, journal=str(tmp_path / "scheduler.journal"),
                               logging_level="WARNING") as combo, Client(combo.address, timeout_seconds=60) as client:
        futures = client.starmap_futures(double, ((i,) for i in range(10_000)))
        width, depth = 1000, 9
        graph = chain_graph(width, depth)
        assert len(graph) == 10_000
        keys = [("end", chain) for chain in range(width)]
        graph_futures = client.get(graph, keys=keys, block=False)
        delivered = []
        for future in futures:
            future.add_done_callback(delivered.append)  # called once per settle: counts deliveries
        kill_at_random_points(combo, futures + list(graph_futures.values()), kills, rng)
        assert [future.result(timeout=120) for future in futures] == [2 * i for i in range(10_000)]
        assert [graph_futures[key].result(timeout=120) for key in keys] == [chain + depth for chain in range(width)]
        assert len(delivered) == 10_000 and len({id(future) for future in delivered}) == 10_000
        # the client still works with the restarted scheduler
        assert client.submit(double, 21).result(timeout=30) == 42


def slow_increment(x, seconds):
    time.sleep(seconds)
    return x + 1


def test_futures_passed_as_arguments_survive_a_restart(tmp_path):
    """A dependent re-sent after the restart names an input the new scheduler never saw: the finished
    one goes with its value, the unfinished one is a dependency again."""
    with SchedulerClusterCombo(n_workers=2, journal=str(tmp_path / "scheduler.journal"),
                               logging_level="WARNING") as combo, Client(combo.address, timeout_seconds=60) as client:
        first = client.submit(slow_increment, 1, 0.0)
        assert first.result(timeout=30) == 2
        second = client.submit(slow_increment, first, 1.0)
        third = client.submit(slow_increment, second, 0.0)
        combo.restart_scheduler(kill=True)
        assert third.result(timeout=60) == 4 and second.result(timeout=60) == 3


def test_a_dependent_resent_with_its_inputs_value_survives_a_second_restart(tmp_path):
    with SchedulerClusterCombo(n_workers=2, journal=str(tmp_path / "scheduler.journal"),
                               logging_level="WARNING") as combo, Client(combo.address, timeout_seconds=60) as client:
        first = client.submit(slow_increment, 1, 0.5)
        second = client.submit(slow_increment, first, 6.0)  # sent with a dependency on `first`
        assert first.result(timeout=30) == 2
        combo.restart_scheduler(kill=True)  # second comes back with first's value (its input is unknown now)
        wait_until(lambda: second._retry is None, timeout=30, message="second re-sent with first's value")
        assert not second.done()
        combo.restart_scheduler(kill=True)  # replayed again: by its latest row, which needs nothing
        assert second.result(timeout=60) == 3


def big_bytes(value):
    return bytes([value]) * (512 * 1024)  # above the inline threshold: stored, so kept on the cluster


def length_after(data, seconds):
    time.sleep(seconds)
    return len(data)


def test_a_kept_result_delivered_before_a_restart_stays_on_the_cluster(tmp_path):
    from scaler_core.references import KeyRef

    with SchedulerClusterCombo(n_workers=1, journal=str(tmp_path / "scheduler.journal"),
                               logging_level="WARNING") as combo, Client(combo.address, timeout_seconds=60) as client:
        futures = client.submit_graph({"a": (big_bytes, (7,), {}), "b": (length_after, (KeyRef("a"), 3.0), {})},
                                      keys=["a", "b"], keep_on_cluster=True)
        wait_until(lambda: futures["a"].done(), timeout=30, message="a delivered (kept on the cluster)")
        combo.restart_scheduler(kill=True)
        assert futures["b"].result(timeout=60) == 512 * 1024
        assert futures["a"].result(timeout=30) == bytes([7]) * (512 * 1024)  # not freed as an intermediate


@pytest.mark.parametrize("journal", [False, True])
def test_the_combos_shutdown_fails_pending_futures_at_once(tmp_path, journal):
    """A journaled scheduler takes SIGTERM for a restart; the combo's shutdown is a final stop."""
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING",
                                  **({"journal": str(tmp_path / "scheduler.journal")} if journal else {}))
    client = Client(combo.address, timeout_seconds=60)
    try:
        future = client.submit(time.sleep, 30)
        combo.shutdown()
        with pytest.raises(SchedulerDiedError):
            future.result(timeout=10)
    finally:
        client.disconnect()


def test_a_graceful_restart_with_100k_queued_tasks_takes_seconds(tmp_path):
    with SchedulerClusterCombo(n_workers=2, journal=str(tmp_path / "scheduler.journal"),
                               logging_level="WARNING") as combo, Client(combo.address, timeout_seconds=60) as client:
        futures = client.starmap_futures(identity, ((i,) for i in range(100_000)))
        started = time.monotonic()
        combo.restart_scheduler()  # SIGTERM: with a journal, nobody is told to stop
        restarted = time.monotonic()
        assert [future.result(timeout=120) for future in futures] == list(range(100_000))
        finished = time.monotonic()
        # measured here: ~0.05 s to restart, ~2.6 s to finish (3.3 s for the whole run without a restart)
        assert restarted - started < 10 and finished - restarted < 30, (restarted - started, finished - restarted)


def test_without_a_journal_a_restart_fails_the_pending_futures(tmp_path):
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo, \
            Client(combo.address, timeout_seconds=20) as client:
        future = client.submit(time.sleep, 30)
        combo.restart_scheduler(kill=True)
        with pytest.raises(SchedulerDiedError):
            future.result(timeout=30)


# --- the command-line tools -------------------------------------------------------------------------


def listener_on(port: int):
    """The process listening on `port` (a detached object storage), or None."""
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            return psutil.Process(connection.pid) if connection.pid else None
    return None


@pytest.fixture
def tools(processes):  # noqa: F811
    storage_ports = []
    processes.storage_ports = storage_ports
    yield processes
    processes.stop()
    for port in storage_ports:  # a journaled scheduler's storage outlives it: end it here
        process = listener_on(port)
        if process is not None:
            process.kill()


def test_restart_with_a_changed_option_reuses_the_surviving_object_storage(tools, tmp_path):
    port = port_block()  # the scheduler puts its object storage at port + 1
    address = f"tcp://127.0.0.1:{port}"
    tools.storage_ports.append(port + 1)
    journal = str(tmp_path / "scheduler.journal")
    scheduler = tools.start("scaler_scheduler", address, "--journal", journal, "--max-task-retries", "3")
    tools.start("scaler_cluster", address, "--num-of-workers", "2")
    with Client(address, timeout_seconds=60) as client:
        reference = client.send_object(list(range(1000)), name="numbers")
        futures = client.starmap_futures(double, ((i,) for i in range(3000)))
        wait_until(lambda: sum(future.done() for future in futures) > 300, timeout=60, interval=0.005,
                   message="progress before the kill")
        storage = listener_on(port + 1)
        assert storage is not None
        scheduler.kill()
        scheduler.wait(10)
        assert storage.is_running(), "the object storage outlives a journaled scheduler"
        tools.start("scaler_scheduler", address, "--journal", journal, "--max-task-retries", "5")
        assert [future.result(timeout=120) for future in futures] == [2 * i for i in range(3000)]
        # the object sent before the restart is still there (the same storage process serves it)
        assert client.submit(len, reference).result(timeout=30) == 1000
        assert listener_on(port + 1).pid == storage.pid


def test_a_scheduler_that_does_not_come_back_fails_the_futures_and_everything_exits(tools, tmp_path):
    port = port_block()  # the scheduler puts its object storage at port + 1
    address = f"tcp://127.0.0.1:{port}"
    tools.storage_ports.append(port + 1)
    scheduler = tools.start("scaler_scheduler", address, "--journal", str(tmp_path / "scheduler.journal"),
                            "--client-timeout-seconds", "3")
    cluster = tools.start("scaler_cluster", address, "--num-of-workers", "1", "--death-timeout-seconds", "4")
    with Client(address, timeout_seconds=5) as client:
        future = client.submit(time.sleep, 60)
        wait_until(lambda: listener_on(port + 1) is not None, timeout=10, message="the object storage")
        storage = listener_on(port + 1)
        scheduler.kill()
        started = time.monotonic()
        with pytest.raises(SchedulerDiedError):
            future.result(timeout=30)
        assert time.monotonic() - started < 15
    cluster.wait(30)  # the cluster and its workers leave once the scheduler is silent past their timeout
    storage.wait(30)  # the storage once no scheduler came back within twice the clients' timeout
