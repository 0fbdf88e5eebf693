"""Large results on the host that made them, with real processes: read in place by dependents on the
same host, spilled past the memory limit, surviving their worker, gone with their owner."""

import contextlib
import glob
import shutil
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.launch import ChildProcesses
from scaler_core.settings import WorkerSettings

from tests.conftest import engine_processes, monitor_status_when, wait_until

pytestmark = pytest.mark.timeout(120)
MiB = 2**20
HELD = 256 * MiB  # --held-result-bytes: graph intermediates stay in their worker's memory


def make_or_sum(what, started_marker=None):
    """One function for both steps, so a worker that ran the first needs nothing new for the second."""
    if isinstance(what, int):
        with open(started_marker, "w"):
            pass
        time.sleep(1.0)
        return np.full(MiB // 8 * 4, what, dtype=np.float64)  # 4 MiB: a stored result
    return float(what.sum())


def block(seed, mib):
    return np.random.default_rng(seed).random(mib * MiB // 8)


def slow_block(seed, mib, seconds):
    time.sleep(seconds)
    return block(seed, mib)


def total(*blocks):
    return float(sum(b.sum() for b in blocks))


def worker_pid():
    return os.getpid()


def store_directories(combo):
    pid = combo.cluster_process.pid
    return glob.glob(f"/dev/shm/scaler-objects-{pid}-*"), glob.glob(f"/tmp/scaler-objects-{pid}-*")


def files_in(directories):
    return [name for directory in directories for name in os.listdir(directory) if not name.startswith(".")]


def test_a_dependent_on_the_same_worker_reads_the_result_in_place_without_the_object_storage(tmp_path):
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo, Client(combo.address) as client:
        marker = tmp_path / "started"
        made = client.submit(make_or_sum, 3, str(marker))
        summed = client.submit(make_or_sum, made)
        wait_until(marker.exists, timeout=30, message="the first task running (its function fetched)")
        (storage,) = engine_processes(combo, "object-storage")
        os.kill(storage.pid, signal.SIGSTOP)  # from here on, any fetch through the object storage hangs
        try:
            assert summed.result(timeout=20) == 3.0 * MiB // 8 * 4
        finally:
            os.kill(storage.pid, signal.SIGCONT)
        assert made.result(timeout=20)[0] == 3


def test_results_past_the_memory_limit_spill_to_disk_and_come_back(tmp_path):
    limit = 24 * MiB
    with SchedulerClusterCombo(n_workers=2, object_memory_limit_bytes=limit, spill_directory=str(tmp_path),
                               logging_level="WARNING") as combo, Client(combo.address) as client:
        # the cluster makes its store when it starts, which the combo does not wait for
        (memory_directory,) = wait_until(lambda: store_directories(combo)[0], message="the cluster's store")
        peak = {"memory": 0, "disk": 0}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak["memory"] = max(peak["memory"], _bytes_in(memory_directory))
                peak["disk"] = max(peak["disk"], _bytes_in(*glob.glob(str(tmp_path / "scaler-objects-*"))))
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            # 24 blocks of 4 MiB (96 MiB, four times the limit) all alive at once, then one task reads them all
            graph = {f"block-{i}": (block, i, 4) for i in range(24)}
            graph["total"] = (total, *graph)
            result = client.get(graph, keys=["total"])["total"]
        finally:
            stop.set()
            watcher.join()
    expected = sum(block(i, 4).sum() for i in range(24))
    assert result == pytest.approx(expected)
    assert peak["memory"] <= limit, "the objects in shared memory stayed within the limit"
    assert peak["disk"] >= 96 * MiB - limit - 8 * MiB, "the rest went to the spill directory"


def test_a_result_outlives_the_worker_that_made_it(tmp_path):
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as combo, Client(combo.address) as client:
        made = client.submit(block, 7, 8)
        gated = client.submit(gate, str(tmp_path / "gate"), 1.5)
        summed = client.submit(checksum, made, gated)  # keeps `made` on the cluster until it has run
        made.exception(timeout=30)
        wait_until((tmp_path / "gate").exists, timeout=30, message="the gate running")
        for process in engine_processes(combo, "worker"):
            os.kill(process.pid, signal.SIGKILL)  # every worker: the only copy left is the file
        assert summed.result(timeout=60) == pytest.approx(block(7, 8).sum())


def test_no_object_is_left_behind_when_the_client_leaves():
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as combo:
        memory_directories = wait_until(lambda: store_directories(combo)[0], message="the cluster's store")
        with Client(combo.address) as client:
            # a graph's intermediates stay on the cluster until the graph is done; the client leaves first
            graph = {f"block-{i}": (slow_block, i, 2, 0.2 * i) for i in range(6)}
            graph["total"] = (total, *graph)
            client.get(graph, keys=["total"], block=False)
            wait_until(lambda: files_in(memory_directories), timeout=30, message="intermediates in the store")
        wait_until(lambda: not files_in(memory_directories), timeout=20, message="the client's objects removed")
    assert not any(os.path.exists(directory) for directory in memory_directories), "the cluster removed its store"


def test_a_result_made_by_another_cluster_on_the_host_is_read_from_its_store():
    with SchedulerClusterCombo(n_workers=1, allocate_policy="capability", per_worker_capabilities="left",
                               logging_level="WARNING") as combo, Client(combo.address) as client:
        other = ChildProcesses()
        try:
            other.start_cluster(combo.address, 1, WorkerSettings(capabilities={"right": -1}), "WARNING", ["/dev/stdout"])
            made = client.submit_verbose(block, args=(11, 8), kwargs={}, capabilities={"left": -1})
            summed = client.submit_verbose(total, args=(made,), kwargs={}, capabilities={"right": -1})
            assert summed.result(timeout=60) == pytest.approx(block(11, 8).sum())
            assert np.array_equal(made.result(timeout=30), block(11, 8))
        finally:
            other.stop_all()


def _bytes_in(*directories):
    size = 0
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        size += entry.stat().st_size
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
    return size


def test_the_monitor_shows_what_each_host_store_holds(tmp_path):
    from scaler_core.monitor.top import render

    with SchedulerClusterCombo(n_workers=2, object_memory_limit_bytes=8 * MiB, spill_directory=str(tmp_path),
                               heartbeat_interval_seconds=0.2, logging_level="WARNING") as combo, \
            Client(combo.address) as client:
        graph = {f"block-{i}": (slow_block, i, 4, 0.0) for i in range(4)}  # 16 MiB: half of it spills
        graph["total"] = (slow_block, 0, 1, 30.0)  # holds the graph (and its blocks) open meanwhile
        for key in list(graph)[:-1]:
            graph[f"use-{key}"] = (total, key, "total")
        client.get(graph, keys=[f"use-block-{i}" for i in range(4)], block=False)
        status, shown = monitor_status_when(
            combo, lambda shown: shown["host_stores"] and shown["host_stores"][0]["disk_bytes"] >= 8 * MiB,
            "the store in the monitor")
        (store,) = shown["host_stores"]
        assert store["memory_limit_bytes"] == 8 * MiB and 0 < store["memory_bytes"] <= 8 * MiB
        assert any("object_memory" in line for line in render(status))


def test_the_monitor_shows_the_results_each_worker_holds_in_memory(tmp_path):
    from scaler_core.monitor.top import render

    with SchedulerClusterCombo(n_workers=1, held_result_bytes=HELD, heartbeat_interval_seconds=0.2,
                               logging_level="WARNING") as combo, Client(combo.address) as client:
        graph = {"made": (block, 3, 16), "gate": (gate, str(tmp_path / "gate"), 30.0, "made"),
                 "summed": (checksum, "made", "gate")}
        client.get(graph, keys=["summed"], block=False)
        status, _ = monitor_status_when(
            combo, lambda shown: shown["workers"] and shown["workers"][0]["held_bytes"] >= 16 * MiB,
            "held bytes in the monitor")
        header = next(line for line in render(status) if "rss" in line and "held" in line)
        assert header.index("rss") < header.index("held")


def checksum(block, *_gates):
    return float(block.sum())


def gate(marker, seconds, *_blocks):
    with open(marker, "w"):
        pass
    time.sleep(seconds)
    return 0


def test_results_lost_with_their_host_are_made_again_from_their_lineage(tmp_path):
    """A cluster holding the only copies of a graph's intermediates is lost (SIGKILLed, its store gone,
    as when its machine dies); another cluster takes over and the graph still completes, correctly."""
    with SchedulerClusterCombo(n_workers=0, worker_timeout_seconds=3, logging_level="WARNING") as combo, \
            Client(combo.address) as client:
        first, second = ChildProcesses(), ChildProcesses()
        try:
            doomed = first.start_cluster(combo.address, 1, WorkerSettings(), "WARNING", ["/dev/stdout"])
            graph = {f"block-{i}": (block, i, 4) for i in range(4)}
            # after the blocks, and holding the consumers back while the first cluster is lost
            graph["gate"] = (gate, str(tmp_path / "gate"), 2.0, *[f"block-{i}" for i in range(4)])
            for i in range(4):
                graph[f"sum-{i}"] = (checksum, f"block-{i}", "gate")
            futures = client.get(graph, keys=[f"sum-{i}" for i in range(4)], block=False)
            memory_directories = wait_until(
                lambda: glob.glob(f"/dev/shm/scaler-objects-{doomed.pid}-*"), message="the first cluster's store")
            # the gate needs every block: they were made (and are held only there, in memory)
            wait_until((tmp_path / "gate").exists, timeout=30, message="the gate running on the first cluster")
            second.start_cluster(combo.address, 1, WorkerSettings(), "WARNING", ["/dev/stdout"])
            for process in [psutil.Process(doomed.pid)] + psutil.Process(doomed.pid).children(recursive=True):
                process.kill()
            for directory in memory_directories + glob.glob(f"/tmp/scaler-objects-{doomed.pid}-*"):
                shutil.rmtree(directory, ignore_errors=True)
            values = [futures[f"sum-{i}"].result(timeout=60) for i in range(4)]
        finally:
            second.stop_all()
            first.stop_all()
    assert values == pytest.approx([block(i, 4).sum() for i in range(4)])


@contextlib.contextmanager
def files_seen_in(directories):
    """The names of the object files that appear in `directories` while the block runs (watched every 5 ms)."""
    seen = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(files_in(directories))
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()


def counted_block(counter, seed, mib):
    with open(counter, "a") as handle:
        handle.write("x\n")
    return block(seed, mib)


def test_a_graph_intermediate_read_on_its_own_worker_is_never_written_out(tmp_path):
    with SchedulerClusterCombo(n_workers=1, held_result_bytes=HELD, logging_level="WARNING") as combo, Client(combo.address) as client:
        memory_directories = wait_until(lambda: store_directories(combo)[0], message="the cluster's store")
        with files_seen_in(memory_directories) as written:
            graph = {"made": (block, 5, 16), "gate": (gate, str(tmp_path / "gate"), 1.0, "made"),
                     "summed": (checksum, "made", "gate")}
            result = client.get(graph, keys=["summed"])["summed"]
    assert result == pytest.approx(block(5, 16).sum())
    assert not written, "the 16 MiB intermediate stayed in its worker's memory"


def test_a_held_intermediate_is_written_out_for_a_reader_on_another_worker(tmp_path):
    counter = tmp_path / "made"
    with SchedulerClusterCombo(n_workers=2, held_result_bytes=HELD, logging_level="WARNING") as combo, \
            Client(combo.address) as client:
        memory_directories = wait_until(lambda: store_directories(combo)[0], message="the cluster's store")
        started = time.monotonic()
        with files_seen_in(memory_directories) as written:
            # blocks made on both workers; `total` reads all of them on one: the others' are written out
            graph = {f"block-{i}": (counted_block, str(counter), i, 4) for i in range(8)}
            graph.update({f"sum-{i}": (checksum, f"block-{i}") for i in range(8)})
            graph["total"] = (total, *[f"block-{i}" for i in range(8)])
            values = client.get(graph, keys=["total"] + [f"sum-{i}" for i in range(8)])
        elapsed = time.monotonic() - started
    assert values["total"] == pytest.approx(sum(block(i, 4).sum() for i in range(8)))
    assert [values[f"sum-{i}"] for i in range(8)] == pytest.approx([block(i, 4).sum() for i in range(8)])
    assert written, "a block read on the other worker was written to the host store"
    assert counter.read_text().count("x") == 8, "each block made once: none was lost and made again"
    assert elapsed < 30, "no reader waited for the storage's 60 s deadline"


def block_with_maker(seed, mib):
    return os.getpid(), block(seed, mib)


def pair_total(first, second):
    return first[0], second[0], float(first[1].sum() + second[1].sum())


def test_blocks_read_together_are_made_on_one_worker():
    """A transpose's shape (each dependent reads two roots, as `x[i, j] + x[j, i].T` does): the
    scheduler makes the second root beside the first, so their dependent reads both from one worker's
    memory. Without it, the least-loaded rule alternates workers and splits about half the pairs."""
    pairs = 16
    graph = {}
    for k in range(pairs):
        graph[f"a-{k}"] = (block_with_maker, 2 * k, 1)
        graph[f"b-{k}"] = (block_with_maker, 2 * k + 1, 1)
        graph[f"pair-{k}"] = (pair_total, f"a-{k}", f"b-{k}")
    with SchedulerClusterCombo(n_workers=2, held_result_bytes=HELD, logging_level="WARNING") as combo, \
            Client(combo.address) as client:
        values = client.get(graph, keys=[f"pair-{k}" for k in range(pairs)])
    assert [values[f"pair-{k}"][2] for k in range(pairs)] == pytest.approx(
        [block(2 * k, 1).sum() + block(2 * k + 1, 1).sum() for k in range(pairs)])
    together = sum(1 for k in range(pairs) if values[f"pair-{k}"][0] == values[f"pair-{k}"][1])
    assert together >= pairs * 3 // 4, f"only {together} of {pairs} pairs were made on one worker"
    assert len({values[f"pair-{k}"][0] for k in range(pairs)}) == 2, "both workers made blocks"


def test_an_intermediate_lost_with_its_holder_process_is_made_again(tmp_path):
    """The worker holding the only copy of an intermediate (in its memory) is SIGKILLed: a dependent
    that needs it gets it made again from its lineage; nothing fails."""
    counter = tmp_path / "made"
    with SchedulerClusterCombo(n_workers=1, held_result_bytes=HELD, logging_level="WARNING") as combo, Client(combo.address) as client:
        graph = {"made": (counted_block, str(counter), 9, 8),
                 "gate": (gate, str(tmp_path / "gate"), 2.0, "made"),
                 "summed": (checksum, "made", "gate")}
        future = client.get(graph, keys=["summed"], block=False)["summed"]
        wait_until((tmp_path / "gate").exists, timeout=30, message="the gate running beside the held block")
        (worker,) = engine_processes(combo, "worker")
        os.kill(worker.pid, signal.SIGKILL)
        assert future.result(timeout=60) == pytest.approx(block(9, 8).sum())
    assert counter.read_text().count("x") == 2, "made once, lost with its holder, made again once"


def array_sum(array):
    return float(array.sum())


def test_an_object_sent_again_after_a_clear_reuses_the_cleared_objects_memory():
    """send_object, clear_object, send_object: the second object is written over the first one's file
    in the client's store (host_store/recycling.py) once nobody maps it, with its own contents."""
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo, Client(combo.address) as client:
        first = client.send_object(np.full(4 * MiB // 8, 1.0))
        assert client.submit(array_sum, first).result(timeout=60) == 4 * MiB // 8
        stores = glob.glob(f"/dev/shm/scaler-objects-{os.getpid()}-*")
        assert len(stores) == 1, stores
        path = os.path.join(stores[0], first.object_id.hex())
        inode = os.stat(path).st_ino
        client.clear_object(first)
        pool = os.path.join(stores[0], ".free")
        wait_until(lambda: os.listdir(pool), timeout=30, message="the cleared object's file in the pool")
        second = client.send_object(np.full(4 * MiB // 8, 2.0))
        assert os.stat(os.path.join(stores[0], second.object_id.hex())).st_ino == inode
        assert client.submit(array_sum, second).result(timeout=60) == 2 * (4 * MiB // 8)
