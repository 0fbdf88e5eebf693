"""Declared graphs (GraphSubmit) in the scheduler state machine, on both frontier paths."""

import pickle

import numpy as np
import pytest

from scaler_core import protocol
from scaler_core.errors import GraphError
from scaler_core.graph_ids import node_task_id
from scaler_core.scheduler.graph_frontier import GraphBLASFrontier, PythonFrontier, successor_csr
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.state import SchedulerSettings, SchedulerState

CLIENT = b"C|client-1"
GRAPH = b"g" * 16
PATHS = ["python", "graphblas"]


def worker_id(n):
    return b"W|host|%d" % n


@pytest.fixture(params=PATHS)
def state(request, monkeypatch):
    # every batch as a sparse product, however small, so that path is what these tests exercise
    monkeypatch.setattr(GraphBLASFrontier, "SPARSE_MIN_BATCH", 1)
    state = SchedulerState(SchedulerSettings(object_storage_address="tcp://127.0.0.1:1", graph_frontier=request.param),
                           validate=True)
    state.on_message(CLIENT, protocol.ClientHello(), now=0.0)
    return state


def hello(state, n):
    state.on_message(worker_id(n), protocol.WorkerHello(worker_id=worker_id(n), cluster_id=b"K|c"), now=0.0)


def nid(index, graph=GRAPH):
    return node_task_id(graph, index)


def declare(state, dependencies, requested=None, priorities=None, graph=GRAPH):
    """dependencies: list (per node) of lists of earlier node indices."""
    n = len(dependencies)
    indptr = np.cumsum([0] + [len(d) for d in dependencies]).astype("<i8")
    indices = np.array([i for d in dependencies for i in d], dtype="<i4")
    requested = [1] * n if requested is None else requested
    state.on_message(CLIENT, protocol.GraphSubmit(
        graph_id=graph, node_count=n, dependency_offsets=indptr.tobytes(), dependency_indices=indices.tobytes(),
        priorities=np.array(priorities or [0] * n, dtype="<i4").tobytes(),
        requested=bytes(requested)), now=0.0)


def rows(state, indices, graph=GRAPH, requested=None):
    tasks = [protocol.make_task(nid(i, graph), b"", b"f", b"args%d" % i, 0, True if requested is None else requested[i],
                                False, graph) for i in indices]
    state.on_message(CLIENT, protocol.TaskBatch(tasks=tasks), now=0.0)


def take(state):
    outgoing = state.take_outgoing()
    dispatched = [t for dest, msg, _ in outgoing if type(msg) is protocol.TaskBatch for t in msg.tasks]
    results = [r for dest, msg, _ in outgoing if type(msg) is protocol.ResultBatch and dest == CLIENT for r in msg.results]
    deleted = [i for dest, msg, _ in outgoing if dest == OBJECT_STORAGE and type(msg) is protocol.ObjectDelete
               for i in msg.object_ids]
    return dispatched, results, deleted


def finish(state, worker, index, status="success", value=b"v", stored=False):
    result = protocol.TaskResult(task_id=nid(index), status=status, value=value, stored=stored,
                                 profiling=protocol.Profiling(duration_seconds=1.0))
    state.on_message(worker_id(worker), protocol.ResultBatch(results=[result]), now=0.0)


def test_diamond_runs_in_order_with_inputs(state):
    hello(state, 1)
    declare(state, [[], [0], [0], [1, 2]])
    rows(state, range(4))
    dispatched, _, _ = take(state)
    assert [t.task_id for t in dispatched] == [nid(0)]
    assert dispatched[0].args == b"args0" and dispatched[0].function_id == b"f"
    finish(state, 1, 0, value=b"zero")
    dispatched, results, _ = take(state)
    assert [r.task_id for r in results] == [nid(0)]
    assert sorted(t.task_id for t in dispatched) == [nid(1), nid(2)]
    assert all([(i.object_id, i.inline) for i in t.inputs] == [(nid(0), b"zero")] for t in dispatched)
    finish(state, 1, 1, value=b"one")
    finish(state, 1, 2, value=b"two", stored=True)
    dispatched, _, _ = take(state)
    assert [(i.object_id, i.inline, i.stored) for i in dispatched[0].inputs] == [
        (nid(1), b"one", False), (nid(2), b"", True)]
    finish(state, 1, 3)
    take(state)
    assert state.tasks == {} and state.pending == 0
    assert GRAPH in state.graphs  # node 2's stored result is the client's until it lets go (lineage)
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[nid(2)]), now=0.0)
    assert take(state)[2] == [nid(2)] and state.graphs == {}


def test_rows_may_arrive_after_their_dependencies_finished(state):
    hello(state, 1)
    declare(state, [[], [0]])
    rows(state, [0])
    take(state)
    finish(state, 1, 0)
    assert take(state)[0] == []
    rows(state, [1])
    assert [t.task_id for t in take(state)[0]] == [nid(1)]


def test_priorities_order_ready_nodes(state):
    hello(state, 1)
    state.workers[worker_id(1)].limit = 1
    declare(state, [[], [], []], priorities=[1, 5, 3])
    rows(state, range(3))
    order = []
    for _ in range(3):
        dispatched, _, _ = take(state)
        order += [t.task_id for t in dispatched]
        finish(state, 1, int.from_bytes(order[-1][-4:], "big"))
    assert order == [nid(1), nid(2), nid(0)]


def test_failure_reaches_every_descendant_once(state):
    hello(state, 1)
    chain = [[]] + [[i] for i in range(2000)]  # long chain: no recursion anywhere
    declare(state, chain + [[0]], requested=[0] * 2000 + [1, 1])
    rows(state, range(2002))
    take(state)
    error = pickle.dumps(ValueError("boom"))
    finish(state, 1, 0, status="failed", value=error)
    dispatched, results, _ = take(state)
    assert dispatched == []
    assert sorted(r.task_id for r in results) == [nid(2000), nid(2001)]
    assert all(r.status == "failed" and r.value == error for r in results)
    assert state.counts["failed"] == 2002 and state.pending == 0 and state.graphs == {}


def test_cancel_a_waiting_node_cancels_its_descendants_only(state):
    hello(state, 1)
    declare(state, [[], [0], [1], []])
    rows(state, range(4))
    take(state)
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[nid(1)]), now=0.0)
    _, results, _ = take(state)
    assert sorted((r.task_id, r.status) for r in results) == [(nid(1), "cancelled"), (nid(2), "cancelled")]
    finish(state, 1, 0)
    finish(state, 1, 3)
    take(state)
    assert state.graphs == {} and state.pending == 0


def test_cancel_a_running_node_goes_to_its_worker(state):
    hello(state, 1)
    declare(state, [[], [0]])
    rows(state, range(2))
    take(state)
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[nid(0)]), now=0.0)
    outgoing = state.take_outgoing()
    assert [(d, m.task_ids) for d, m, _ in outgoing if type(m) is protocol.TaskCancel] == [(worker_id(1), [nid(0)])]
    finish(state, 1, 0, status="cancelled", value=b"")
    _, results, _ = take(state)
    assert sorted((r.task_id, r.status) for r in results) == [(nid(0), "cancelled"), (nid(1), "cancelled")]


def test_stored_intermediate_deleted_once_its_dependents_finish(state):
    hello(state, 1)
    declare(state, [[], [0], [0]], requested=[0, 1, 1])
    rows(state, range(3))
    take(state)
    finish(state, 1, 0, stored=True, value=b"")
    take(state)
    finish(state, 1, 1)
    assert take(state)[2] == []
    finish(state, 1, 2)
    assert take(state)[2] == [nid(0)]


def test_requested_stored_result_released_by_client_only_after_dependents(state):
    hello(state, 1)
    declare(state, [[], [0]])
    rows(state, range(2))
    take(state)
    finish(state, 1, 0, stored=True, value=b"")
    take(state)
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[nid(0)]), now=0.0)
    assert take(state)[2] == [], "node 1 still needs it"
    finish(state, 1, 1)
    assert take(state)[2] == [nid(0)]


def test_dead_worker_node_reruns_elsewhere(state):
    hello(state, 1)
    declare(state, [[], [0]])
    rows(state, range(2))
    take(state)
    hello(state, 2)
    state.on_message(b"K|c", protocol.WorkerDied(worker_id=worker_id(1), exit_code=-9), now=0.0)
    dispatched, _, _ = take(state)
    assert [t.task_id for t in dispatched] == [nid(0)] and dispatched[0].retries == 1
    finish(state, 2, 0)
    assert [t.task_id for t in take(state)[0]] == [nid(1)]


def test_client_leaving_drops_its_graph_and_cancels_running_nodes(state):
    hello(state, 1)
    declare(state, [[], [], [0, 1]])
    rows(state, range(3))
    take(state)
    state.on_message(CLIENT, protocol.ClientDisconnect(), now=0.0)
    outgoing = state.take_outgoing()
    assert sorted(i for _, m, _ in outgoing if type(m) is protocol.TaskCancel for i in m.task_ids) == [nid(0), nid(1)]
    finish(state, 1, 0, status="cancelled", value=b"")
    finish(state, 1, 1, status="cancelled", value=b"")
    take(state)
    assert state.graphs == {} and state.tasks == {} and state.pending == 0


@pytest.mark.parametrize("shape", ["forward edge", "self edge", "short offsets"])
def test_malformed_graph_is_refused_and_requested_nodes_fail(state, shape):
    indptr = np.array([0, 0, 1], dtype="<i8")
    indices = np.array([1 if shape == "forward edge" else 0], dtype="<i4")
    if shape == "self edge":
        indptr = np.array([0, 1, 1], dtype="<i8")
    if shape == "short offsets":
        indptr = indptr[:2]
    state.on_message(CLIENT, protocol.GraphSubmit(
        graph_id=GRAPH, node_count=2, dependency_offsets=indptr.tobytes(), dependency_indices=indices.tobytes(),
        priorities=bytes(8), requested=b"\x01\x01"), now=0.0)
    _, results, _ = take(state)
    assert [r.status for r in results] == ["schedulerError"] * 2
    assert isinstance(pickle.loads(results[0].value), GraphError)
    assert state.graphs == {} and state.pending == 0


def random_dag(n, seed=1):
    """A quarter of the nodes are roots, so batches get wide; the rest depend on 1-3 earlier nodes."""
    rng = np.random.default_rng(seed)
    return [sorted(set(rng.integers(0, i, size=1 + i % 3).tolist())) if i % 4 else [] for i in range(n)]


def test_both_frontiers_agree_on_random_dags():
    dependencies = random_dag(3000)
    indptr = np.cumsum([0] + [len(d) for d in dependencies]).astype(np.int64)
    indices = np.array([i for d in dependencies for i in d], dtype=np.int64)
    sparse_only = GraphBLASFrontier(3000, indptr, indices)
    sparse_only.SPARSE_MIN_BATCH = 1
    hybrid = GraphBLASFrontier(3000, indptr, indices)
    hybrid.SPARSE_MIN_BATCH = 8
    frontiers = [PythonFrontier(3000, indptr, indices), sparse_only, hybrid]
    rng = np.random.default_rng(2)
    ready = [i for i, d in enumerate(dependencies) if not d]
    done = set()
    while ready:
        batch = rng.permutation(ready)[: max(1, len(ready) // 2)].tolist()
        ready = [i for i in ready if i not in set(batch)]
        done.update(batch)
        answers = [sorted(f.complete(batch)) for f in frontiers]
        released = [sorted(f.release(batch)) for f in frontiers]
        assert answers[0] == answers[1] == answers[2] and released[0] == released[1] == released[2]
        ready += answers[0]
    assert len(done) == 3000
    assert sorted(frontiers[0].descendants([5])) == sorted(frontiers[1].descendants([5])) == \
        sorted(frontiers[2].descendants([5]))
    succ_indptr, succ_indices = successor_csr(3000, indptr, indices)
    assert int(succ_indptr[-1]) == len(indices)


def test_a_node_goes_to_the_worker_that_holds_its_stored_input(state):
    hello(state, 1)
    declare(state, [[], [], [0]])
    rows(state, range(3))
    dispatched, _, _ = take(state)
    assert [t.task_id for t in dispatched] == [nid(0), nid(1)]  # both on worker 1, the only one yet
    hello(state, 2)
    take(state)
    finish(state, 1, 1)
    finish(state, 1, 0, stored=True)  # worker 1 made node 0's stored result
    # both workers idle: node 2 goes where its input was made
    outgoing = state.take_outgoing()
    placed = {dest: [t.task_id for t in msg.tasks] for dest, msg, _ in outgoing if type(msg) is protocol.TaskBatch}
    assert placed == {worker_id(1): [nid(2)]}


def test_a_busy_holder_leaves_the_node_to_an_idle_worker_of_its_host(state):
    hello(state, 1)
    declare(state, [[], [], [0]])
    rows(state, range(3))
    take(state)
    hello(state, 2)  # same cluster: it maps node 0's result from the host store in place
    take(state)
    finish(state, 1, 0, stored=True)  # worker 1 still runs node 1
    outgoing = state.take_outgoing()
    placed = {dest: [t.task_id for t in msg.tasks] for dest, msg, _ in outgoing if type(msg) is protocol.TaskBatch}
    assert placed == {worker_id(2): [nid(2)]}


def dispatched_to(state):
    outgoing = state.take_outgoing()
    return {dest: [t for t in msg.tasks] for dest, msg, _ in outgoing if type(msg) is protocol.TaskBatch}


def test_roots_feeding_one_node_are_made_side_by_side(state):
    # a transpose's shape: nodes 2 and 3 each read blocks 0 and 1 (x[i, j] + x[j, i].T)
    hello(state, 1)
    hello(state, 2)
    take(state)
    declare(state, [[], [], [0, 1], [0, 1]], requested=[0, 0, 1, 1], priorities=[4, 3, 2, 1])
    rows(state, range(4), requested=[False, False, True, True])
    placed = dispatched_to(state)
    # least-loaded alone would alternate; block 1 goes beside block 0, its sibling
    assert [[t.task_id for t in tasks] for tasks in placed.values()] == [[nid(0), nid(1)]]


def test_a_root_follows_its_sibling_one_past_the_pipeline(state):
    hello(state, 1)
    hello(state, 2)
    take(state)
    # four pairs of roots, each pair read by one node; a worker has 2 slots
    pairs = 4
    dependencies = [[] for _ in range(2 * pairs)] + [[2 * k, 2 * k + 1] for k in range(pairs)]
    n = len(dependencies)
    declare(state, dependencies, requested=[0] * 2 * pairs + [1] * pairs, priorities=list(range(n, 0, -1)))
    rows(state, range(n), requested=[False] * 2 * pairs + [True] * pairs)

    def indices(placed):
        return {dest: [int.from_bytes(t.task_id[-4:], "big") for t in tasks] for dest, tasks in placed.items()}

    assert indices(dispatched_to(state)) == {worker_id(1): [0, 1], worker_id(2): [2, 3]}
    finish(state, 1, 0, stored=True)
    # worker 1 has a free slot: root 4 takes it, and root 5 follows it there, one past the pipeline
    assert indices(dispatched_to(state)) == {worker_id(1): [4, 5]}


def test_only_results_read_by_narrow_dependents_are_held(state):
    hello(state, 1)
    take(state)
    wide = list(range(2, 2 + 9))  # node 11 reads nine inputs: a shuffle's join
    dependencies = [[], [0]] + [[] for _ in wide] + [wide]
    spread = len(dependencies)  # read by nine tasks of one input each: a shuffle's splits of a partition
    dependencies += [[]] + [[spread] for _ in range(9)]
    n = len(dependencies)
    requested = [0] * n
    requested[11] = 1
    for index in range(spread + 1, n):
        requested[index] = 1
    declare(state, dependencies, requested=requested)
    rows(state, range(n), requested=[bool(r) for r in requested])
    held = {}
    for _ in range(n):
        for tasks in dispatched_to(state).values():
            for task in tasks:
                index = int.from_bytes(task.task_id[-4:], "big")
                held[index] = task.hold_result
                finish(state, 1, index)
    assert held[0] is True  # read by node 1 alone
    assert held[1] is False  # nobody reads it
    assert not any(held[index] for index in wide)  # read by the wide join: written at once
    assert held[spread] is False  # read by many: written at once
    assert held[spread + 1] is False  # requested by the client


def test_a_finished_nodes_large_argument_blob_is_deleted(state):
    hello(state, 1)
    declare(state, [[], [0]])
    node = protocol.make_task(nid(1), b"", b"f", b"", 0, True, False, GRAPH)
    node.args_stored, node.args_object_id = True, b"args-of-node-1"
    rows(state, [0])
    state.on_message(CLIENT, protocol.TaskBatch(tasks=[node]), now=0.0)
    take(state)
    finish(state, 1, 0)
    take(state)
    finish(state, 1, 1)
    _, _, deleted = take(state)
    assert b"args-of-node-1" in deleted


def lose(state, worker, index, lost_object_id):
    result = protocol.TaskResult(task_id=nid(index), status="inputLost", value=lost_object_id,
                                 profiling=protocol.Profiling())
    state.on_message(worker_id(worker), protocol.ResultBatch(results=[result]), now=0.0)


def test_a_lost_input_is_made_again_with_the_lineage_it_needs(state):
    hello(state, 1)
    declare(state, [[], [0], [1]], requested=[0, 0, 1])  # a chain 0 -> 1 -> 2
    rows(state, range(3), requested=[0, 0, 1])
    assert [t.task_id for t in take(state)[0]] == [nid(0)]
    finish(state, 1, 0, stored=True)
    assert [t.task_id for t in take(state)[0]] == [nid(1)]
    finish(state, 1, 1, stored=True)
    dispatched, _, deleted = take(state)
    assert [t.task_id for t in dispatched] == [nid(2)] and deleted == [nid(0)]  # 0 is released: gone
    lose(state, 1, 2, nid(1))  # node 1's only copy is gone with its host
    # 1 runs again, and before it 0, whose result was released already; 2 waits for them
    assert [t.task_id for t in take(state)[0]] == [nid(0)]
    finish(state, 1, 0, stored=True)
    assert [t.task_id for t in take(state)[0]] == [nid(1)]
    finish(state, 1, 1, stored=True)
    assert [t.task_id for t in take(state)[0]] == [nid(2)]
    finish(state, 1, 2, value=b"done")
    _, results, _ = take(state)
    assert [(r.task_id, r.status, r.value) for r in results] == [(nid(2), "success", b"done")]
    assert state.counts["succeeded"] == 3 and GRAPH not in state.graphs


def test_a_lost_input_that_no_node_made_fails_the_task(state):
    hello(state, 1)
    declare(state, [[], [0]], requested=[0, 1])
    rows(state, range(2), requested=[0, 1])
    take(state)
    finish(state, 1, 0, stored=True)
    take(state)
    lose(state, 1, 1, b"s" * 16)  # e.g. an object the client sent, gone with the client's host
    _, results, _ = take(state)
    assert [(r.task_id, r.status) for r in results] == [(nid(1), "failed")]
    assert b"nothing can make it again" in results[0].value


def test_an_input_lost_again_and_again_fails_the_task_at_the_retry_limit(state):
    hello(state, 1)
    declare(state, [[], [0]], requested=[0, 1])
    rows(state, range(2), requested=[0, 1])
    take(state)
    for _ in range(state.settings.max_task_retries):
        finish(state, 1, 0, stored=True)
        assert [t.task_id for t in take(state)[0]] == [nid(1)]
        lose(state, 1, 1, nid(0))
        take(state)
    finish(state, 1, 0, stored=True)
    take(state)
    lose(state, 1, 1, nid(0))
    _, results, _ = take(state)
    assert [(r.task_id, r.status) for r in results] == [(nid(1), "failed")]
    assert b"made again 3 times" in results[0].value


def test_ready_dependents_of_a_lost_result_wait_for_it_again(state):
    hello(state, 1)
    n = 12
    declare(state, [[]] + [[0]] * (n - 1), requested=[0] + [1] * (n - 1))
    rows(state, range(n), requested=[0] + [1] * (n - 1))
    take(state)
    finish(state, 1, 0, stored=True)
    first = take(state)[0]  # a few dependents handed out, the rest ready in the graph's table
    lose(state, 1, first[0].task_id[-1], nid(0))
    pending = [t.task_id[-1] for t in first[1:]]
    dispatched = []
    for _ in range(40):
        for t in take(state)[0]:
            dispatched.append(t)
            pending.append(t.task_id[-1])
        if not pending:
            break
        finish(state, 1, pending.pop(0), stored=True)
    assert nid(0) in [t.task_id for t in dispatched], "node 0 runs again"
    assert all(item.stored for t in dispatched for item in t.inputs), "no dependent got an empty inline input"


def test_a_cancel_crossing_an_input_lost_report_stands(state):
    hello(state, 1)
    declare(state, [[], [0]], requested=[0, 1])
    rows(state, range(2), requested=[0, 1])
    take(state)
    finish(state, 1, 0, stored=True)
    take(state)
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[nid(1)]), now=0.0)
    take(state)
    lose(state, 1, 1, nid(0))
    dispatched, results, _ = take(state)
    assert dispatched == [] and [(r.task_id, r.status) for r in results] == [(nid(1), "cancelled")]


def test_a_requested_result_the_client_holds_is_not_made_again_nor_reported_twice(state):
    hello(state, 1)
    declare(state, [[], [0], [1]], requested=[1, 0, 1])
    rows(state, range(3), requested=[1, 0, 1])
    reported = []
    take(state)
    finish(state, 1, 0, stored=True)
    reported += take(state)[1]
    finish(state, 1, 1, stored=True)
    reported += take(state)[1]
    lose(state, 1, 2, nid(1))
    dispatched, results, _ = take(state)
    assert [t.task_id for t in dispatched] == [nid(1)], "node 0's result is still the client's: only 1 runs again"
    finish(state, 1, 1, stored=True)
    reported += results + take(state)[1]
    assert [r.task_id for r in reported].count(nid(0)) == 1


def test_a_release_while_the_result_is_made_again_waits_for_its_dependents(state):
    hello(state, 1)
    declare(state, [[], [0]], requested=[1, 1])
    rows(state, range(2), requested=[1, 1])
    take(state)
    finish(state, 1, 0, stored=True)
    take(state)
    lose(state, 1, 1, nid(0))
    assert [t.task_id for t in take(state)[0]] == [nid(0)]
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[nid(0)]), now=0.0)  # e.g. a kept future collected
    assert take(state)[2] == [], "node 1 still needs it"
    finish(state, 1, 0, stored=True)
    take(state)
    finish(state, 1, 1, stored=True)
    assert nid(0) in take(state)[2], "deleted once its dependents are done"


def test_a_kept_result_lost_after_its_graph_finished_is_made_again_for_later_readers(state):
    """Persist: a graph's requested stored results stay on the cluster for the client; later tasks
    (plain ones, and nodes of another graph) read them. When the only copy is gone, the node that
    made it runs again, and each reader waits for it."""
    hello(state, 1)
    declare(state, [[], [0]], requested=[0, 1])  # 0 -> 1; 1 is kept for the client
    rows(state, range(2), requested=[0, 1])
    take(state)
    finish(state, 1, 0, stored=True)
    take(state)
    finish(state, 1, 1, stored=True)
    _, results, _ = take(state)
    assert [r.task_id for r in results] == [nid(1)] and GRAPH in state.graphs  # held while the client keeps it
    # a plain task reading the kept result, and a node of a second graph reading it too
    reader = protocol.make_task(b"r" * 16, b"", b"f", b"args", 0, True, False, b"")
    reader.inputs = [protocol.make_object_input(nid(1), b"", True)]
    state.on_message(CLIENT, protocol.TaskBatch(tasks=[reader]), now=0.0)
    other = b"o" * 16
    declare(state, [[]], graph=other)
    second = protocol.make_task(nid(0, other), b"", b"f", b"args", 0, True, False, other)
    second.inputs = [protocol.make_object_input(nid(1), b"", True)]
    state.on_message(CLIENT, protocol.TaskBatch(tasks=[second]), now=0.0)
    assert sorted(t.task_id for t in take(state)[0]) == sorted([b"r" * 16, nid(0, other)])
    for task_id in (b"r" * 16, nid(0, other)):  # both find its only copy gone
        state.on_message(worker_id(1), protocol.ResultBatch(results=[protocol.TaskResult(
            task_id=task_id, status="inputLost", value=nid(1), profiling=protocol.Profiling())]), now=0.0)
    # the lineage runs again (0 was released, so it too), and the readers wait for it
    assert [t.task_id for t in take(state)[0]] == [nid(0)]
    finish(state, 1, 0, stored=True)
    assert [t.task_id for t in take(state)[0]] == [nid(1)]
    finish(state, 1, 1, stored=True)
    dispatched, results, _ = take(state)
    assert sorted(t.task_id for t in dispatched) == sorted([b"r" * 16, nid(0, other)])
    assert not [r for r in results if r.task_id == nid(1)], "a remade result is not reported again"
    state.on_message(worker_id(1), protocol.ResultBatch(results=[protocol.TaskResult(
        task_id=b"r" * 16, status="success", value=b"read", profiling=protocol.Profiling())]), now=0.0)
    _, results, _ = take(state)
    assert [(r.task_id, r.status) for r in results] == [(b"r" * 16, "success")]
