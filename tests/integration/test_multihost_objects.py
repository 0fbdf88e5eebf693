"""Objects between hosts: two clusters whose shared-memory directories the other cannot see (each its
own network namespace and its own /dev/shm), a scheduler in a third namespace routing between them.

A result made on one cluster and needed on the other moves host to host through the maker's object
server; the client, on neither host, fetches a result the same way; deleting one reaches the holder.
"""

import functools
import shutil
import sys
import textwrap

import pytest

from tests.integration.test_multihost import (SCHEDULER_ADDRESS, InNamespace, LineReader, Namespaces, _run,
                                              _namespace_skip_reason, poll)

SCRIPT_PRELUDE = textwrap.dedent("""
    import concurrent.futures, json, os, sys, time
    import numpy as np
    from scaler_core import Client

    def block(seed, mib):
        return os.environ["CLUSTER_NAME"], np.random.default_rng(seed).random(mib * 2**20 // 8)

    def total(made, *_gates):
        return os.environ["CLUSTER_NAME"], made[0], float(made[1].sum())

    def emit(**fields):
        sys.stdout.write(json.dumps(fields) + "\\n")
        sys.stdout.flush()

    def gate(go, *_inputs):
        while not os.path.exists(go):  # on cluster A; run again on B once A is cut off
            time.sleep(0.05)
        return 0

    def report_reads(readers):
        # readers: a name ending in the seed of the block read -> the future of its total
        for name, future in readers.items():
            ran_on, made_on, value = future.result(timeout=150)
            expected = float(np.random.default_rng(int(name[-1])).random(16 * 2**20 // 8).sum())
            emit(event="read", name=name, ran_on=ran_on, made_on=made_on, correct=abs(value - expected) < 1e-6)
        emit(event="done")
""")

CLIENT_SCRIPT = SCRIPT_PRELUDE + textwrap.dedent("""
    with Client(sys.argv[1], timeout_seconds=60) as client:
        on = lambda name: {name: -1}
        made_a = client.submit_verbose(block, args=(1, 16), kwargs={}, capabilities=on("A"))
        made_b = client.submit_verbose(block, args=(2, 16), kwargs={}, capabilities=on("B"))
        read_on_b = client.submit_verbose(total, args=(made_a,), kwargs={}, capabilities=on("B"))
        read_on_a = client.submit_verbose(total, args=(made_b,), kwargs={}, capabilities=on("A"))
        for name, future, seed in (("a->b", read_on_b, 1), ("b->a", read_on_a, 2)):
            ran_on, made_on, value = future.result(timeout=120)
            expected = float(np.random.default_rng(seed).random(16 * 2**20 // 8).sum())
            emit(event="dependent", name=name, ran_on=ran_on, made_on=made_on, correct=abs(value - expected) < 1e-6)
        maker, array = made_a.result(timeout=120)  # the client is on neither host: fetched from A's server
        emit(event="fetched", made_on=maker, correct=bool(np.array_equal(array, np.random.default_rng(1).random(16 * 2**20 // 8))))
        emit(event="done")
""")


def _cluster_with_private_shm(python, name, scheduler_address, *options):
    # its own mount namespace with a fresh /dev/shm: the other processes cannot see its objects
    command = (f"mount -t tmpfs tmpfs /dev/shm && exec {python} -c "
               f"'from scaler_core.cli import cluster_main; cluster_main()' -n 1 {scheduler_address} "
               f"--per-worker-capabilities {name} --logging-level INFO {' '.join(options)}")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", command]


def _skip_without_namespaces():
    reason = _namespace_skip_reason() or (None if shutil.which("unshare") else "util-linux 'unshare' is missing")
    if reason:
        pytest.skip(reason)


def _start_scheduler(namespaces, tmp_path, *options):
    """The namespaces made and the scheduler started in its own, which routes between the two
    clusters' networks, as a switch would."""
    namespaces.create()
    _run("ip", "netns", "exec", namespaces.scheduler, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return InNamespace(
        namespaces.scheduler,
        [sys.executable, "-c", "from scaler_core.cli import scheduler_main; scheduler_main()", SCHEDULER_ADDRESS,
         *options, "--logging-level", "INFO"], tmp_path / "scheduler.log")


def _diagnostics(processes):
    return "\n".join(f"--- {name} (exit {process.process.poll()}) ---\n{process.log_tail()}"
                     for name, process in processes.items())


@pytest.fixture
def hosts():
    """(namespaces, processes by name, a diagnostics function): whatever the test started is stopped
    and the namespaces deleted at the end."""
    _skip_without_namespaces()
    namespaces = Namespaces()
    processes = {}
    try:
        yield namespaces, processes, functools.partial(_diagnostics, processes)
    finally:
        for name in ("client", "cluster A", "cluster B", "scheduler"):
            if name in processes:
                processes[name].kill()
        namespaces.delete()


@pytest.mark.timeout(180)
def test_results_move_between_hosts_through_the_makers_object_server(tmp_path, hosts):
    namespaces, processes, diagnostics = hosts
    python = sys.executable
    processes["scheduler"] = _start_scheduler(namespaces, tmp_path, "--allocate-policy", "capability")
    for name, namespace in (("A", namespaces.cluster_a), ("B", namespaces.cluster_b)):
        processes[f"cluster {name}"] = InNamespace(
            namespace, _cluster_with_private_shm(python, name, SCHEDULER_ADDRESS),
            tmp_path / f"cluster_{name}.log", env_extra={"CLUSTER_NAME": name})
    client = processes["client"] = InNamespace(
        namespaces.scheduler, [python, "-c", CLIENT_SCRIPT, SCHEDULER_ADDRESS], tmp_path / "client.log",
        capture_stdout=True)
    reader = LineReader(client.process.stdout)

    def finished():
        if client.process.poll() not in (None, 0):
            raise AssertionError(f"client exited with {client.process.poll()}\n{diagnostics()}")
        return reader.snapshot("done")

    poll(finished, 150, "the client's results", diagnostics)
    dependents = {event["name"]: event for event in reader.snapshot("dependent")}
    assert dependents["a->b"]["made_on"] == "A" and dependents["a->b"]["ran_on"] == "B"
    assert dependents["b->a"]["made_on"] == "B" and dependents["b->a"]["ran_on"] == "A"
    assert all(event["correct"] for event in dependents.values()), dependents
    (fetched,) = reader.snapshot("fetched")
    assert fetched["made_on"] == "A" and fetched["correct"]
    served = [line for line in (tmp_path / "cluster_A.log").read_text().splitlines() if "object server" in line]
    assert not any("refused" in line or "cannot read" in line for line in served), served


CUT_CLIENT_SCRIPT = SCRIPT_PRELUDE + textwrap.dedent("""
    go = sys.argv[2]
    with Client(sys.argv[1], timeout_seconds=120) as client:
        # persisted: the blocks stay with their maker, cluster A (the only one connected so far)
        kept = client.submit_graph({"p1": (block, (1, 16), {}), "p2": (block, (2, 16), {})}, keys=["p1", "p2"],
                                   keep_on_cluster=True)
        concurrent.futures.wait(list(kept.values()), timeout=60)
        emit(event="persisted")
        while not os.path.exists(go):  # the test starts cluster B and cuts A's link meanwhile
            time.sleep(0.05)
        readers = {name: client.submit(total, future) for name, future in kept.items()}
        report_reads(readers)
""")


CUT_HELD_CLIENT_SCRIPT = SCRIPT_PRELUDE + textwrap.dedent("""
    go = sys.argv[2]
    with Client(sys.argv[1], timeout_seconds=120) as client:
        # intermediates, held in the memory of cluster A's worker (the only one connected so far)
        graph = {"p1": (block, 1, 16), "p2": (block, 2, 16), "gate": (gate, go, "p1", "p2"),
                 "r1": (total, "p1", "gate"), "r2": (total, "p2", "gate")}
        futures = client.get(graph, keys=["r1", "r2"], block=False)
        emit(event="persisted")
        report_reads({"r1": futures["r1"], "r2": futures["r2"]})
""")


CUT_PLAIN_CLIENT_SCRIPT = SCRIPT_PRELUDE + textwrap.dedent("""
    go = sys.argv[2]
    with Client(sys.argv[1], timeout_seconds=120) as client:
        # plain tasks' results, stored on cluster A (the only one connected so far), read by tasks given
        # their futures before they were done: the scheduler keeps them on the cluster for those readers
        made = {"p1": client.submit(block, 1, 16), "p2": client.submit(block, 2, 16)}
        opened = client.submit(gate, go)
        readers = {name: client.submit(total, future, opened) for name, future in made.items()}
        concurrent.futures.wait(list(made.values()), timeout=60)
        emit(event="persisted")
        report_reads(readers)
""")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script, options", [(CUT_CLIENT_SCRIPT, ()),
                                             (CUT_HELD_CLIENT_SCRIPT, ("--held-result-bytes", str(256 * 2**20))),
                                             (CUT_PLAIN_CLIENT_SCRIPT, ())],
                         ids=["persisted", "held", "plain"])
def test_objects_behind_a_cut_link_are_made_again_from_their_lineage(tmp_path, hosts, script, options):
    """Cluster A holds the only copies of two blocks (persisted results, intermediates held in its
    worker's memory, or plain tasks' results whose futures the client holds); its link is cut. Tasks on cluster B that read them find A unreachable (its object
    server stops answering heartbeats, or the object storage cannot reach the holder), report the inputs
    lost, and the scheduler runs the tasks that made them again, on B: correct results, no hang."""
    namespaces, processes, diagnostics = hosts
    python = sys.executable
    processes["scheduler"] = _start_scheduler(namespaces, tmp_path, "--worker-timeout-seconds", "5")
    processes["cluster A"] = InNamespace(
        namespaces.cluster_a, _cluster_with_private_shm(python, "A", SCHEDULER_ADDRESS, *options),
        tmp_path / "cluster_A.log", env_extra={"CLUSTER_NAME": "A"})
    go = tmp_path / "go"
    client = processes["client"] = InNamespace(
        namespaces.scheduler, [python, "-c", script, SCHEDULER_ADDRESS, str(go)],
        tmp_path / "client.log", capture_stdout=True)
    reader = LineReader(client.process.stdout)

    def client_reached(kind):
        if client.process.poll() not in (None, 0):
            raise AssertionError(f"client exited with {client.process.poll()}\n{diagnostics()}")
        return reader.snapshot(kind)

    poll(lambda: client_reached("persisted"), 120, "the blocks persisted on cluster A", diagnostics)
    processes["cluster B"] = InNamespace(
        namespaces.cluster_b, _cluster_with_private_shm(python, "B", SCHEDULER_ADDRESS),
        tmp_path / "cluster_B.log", env_extra={"CLUSTER_NAME": "B"})
    poll(lambda: "connected" in (tmp_path / "scheduler.log").read_text().split("W|")[-1] and
         (tmp_path / "scheduler.log").read_text().count("connected") >= 2, 60, "cluster B's worker",
         diagnostics)
    namespaces.cut_cluster_a()
    go.write_text("")
    poll(lambda: client_reached("done"), 180, "the blocks read after the cut", diagnostics)
    reads = {event["name"]: event for event in reader.snapshot("read")}
    assert all(event["correct"] for event in reads.values()), reads
    assert all(event["ran_on"] == "B" and event["made_on"] == "B" for event in reads.values()), reads
