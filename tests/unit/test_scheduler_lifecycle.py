"""The scheduler's task lifecycle: the transition table, the counters it keeps, validate mode."""

import numpy as np
import pytest

from scaler_core import protocol
from scaler_core.graph_ids import node_task_id
from scaler_core.scheduler.lifecycle import (
    EVENT_NAMES, TRANSITIONS, Event, IllegalTransition, InvariantError, TaskLifecycle)
from scaler_core.scheduler.policies import CapabilityPolicy, EvenLoadPolicy
from scaler_core.scheduler.records import TaskState
from scaler_core.scheduler.state import HANDLERS, SchedulerSettings, SchedulerState
from tests.unit.test_scheduler_state import CLIENT, hello, make_state, sent, submit, succeed, task, tid, worker_id

GRAPH = b"g" * 16


def counts(state):
    return {key: value for key, value in state.task_counts().items() if value}


def fail(state, n, worker):
    result = protocol.TaskResult(task_id=tid(n), status="failed", value=b"e", stored=False,
                                 profiling=protocol.Profiling(duration_seconds=0.1))
    state.on_message(worker_id(worker), protocol.ResultBatch(results=[result]), now=0)


# --- the table ----------------------------------------------------------------------------------

def test_every_move_outside_the_table_is_refused():
    state = make_state()
    states = [value for name, value in vars(TaskState).items() if not name.startswith("_")]
    for old in states:
        for event in EVENT_NAMES:
            if event in TRANSITIONS[old]:
                continue
            before = list(state._population)
            with pytest.raises(IllegalTransition):
                state._shift(old, event)
            assert state._population == before, "a refused move changes nothing"


def test_table_has_no_dead_ends():
    """From every state a task can reach a final one (GONE after an outcome, or DROPPED)."""
    final = {TaskState.GONE, TaskState.DROPPED}
    for start in TRANSITIONS:
        seen, frontier = {start}, [start]
        while frontier:
            for target in TRANSITIONS[frontier.pop()].values():
                if target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert seen & final, f"state {start} never finishes"


def test_illegal_move_of_a_record_raises_at_once():
    state = make_state()
    hello(state, 1)
    submit(state, task(1))
    sent(state)
    record = state.tasks[tid(1)]
    assert record.state == TaskState.ASSIGNED
    with pytest.raises(IllegalTransition, match="ASSIGNED cannot take event ASSIGN"):
        state._assign(record, state.workers[worker_id(1)])
    succeed(state, 1, 1)
    with pytest.raises(IllegalTransition, match="GONE cannot take event READY"):
        state._enqueue(record)


def test_only_an_assigned_task_can_succeed():
    for old in TRANSITIONS:
        assert (Event.SUCCEED in TRANSITIONS[old]) == (old == TaskState.ASSIGNED)


# --- counters follow the moves ------------------------------------------------------------------

def test_counters_across_submit_dispatch_start_finish_cancel():
    state = make_state()
    submit(state, task(1), task(2), task(3, deps=(1,)), task(4))
    assert counts(state) == {"pending": 4}
    hello(state, 1)
    state.workers[worker_id(1)].limit = 2
    sent(state)
    assert counts(state) == {"pending": 2, "running": 2}
    state.on_message(worker_id(1), protocol.TaskStarted(task_ids=[tid(1)]), now=0)
    assert counts(state) == {"pending": 2, "running": 2}
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(4)]), now=0)  # queued: cancelled here
    assert counts(state) == {"pending": 1, "running": 2, "cancelled": 1}
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(2)]), now=0)  # assigned: its worker decides
    assert counts(state) == {"pending": 1, "running": 2, "cancelled": 1}
    succeed(state, 1, 1)
    sent(state)
    assert counts(state) == {"running": 2, "succeeded": 1, "cancelled": 1}
    fail(state, 3, 1)
    cancelled = protocol.TaskResult(task_id=tid(2), status="cancelled", value=b"", stored=False,
                                    profiling=protocol.Profiling())
    state.on_message(worker_id(1), protocol.ResultBatch(results=[cancelled]), now=0)
    sent(state)
    assert counts(state) == {"succeeded": 1, "failed": 1, "cancelled": 2}
    assert state.tasks == {}


def test_counters_across_worker_death_and_retries():
    state = make_state(max_task_retries=2)
    submit(state, task(1), task(2), task(3, deps=(1,)))
    hello(state, 1)
    sent(state)
    assert counts(state) == {"pending": 1, "running": 2}
    state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(1)), now=0)
    assert counts(state) == {"pending": 3}
    hello(state, 2)
    sent(state)
    state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(2)), now=0)
    sent(state)
    # task 1 was running both times: it fails, and its dependent with it; task 2 is retried
    assert counts(state) == {"pending": 1, "failed": 2}
    hello(state, 3)
    sent(state)
    assert counts(state) == {"running": 1, "failed": 2}
    succeed(state, 2, 3)
    sent(state)
    assert counts(state) == {"succeeded": 1, "failed": 2}


def test_counters_across_balancing():
    state = make_state()
    hello(state, 1)
    state.workers[worker_id(1)].limit = 6
    submit(state, *[task(n) for n in range(6)])
    sent(state)
    hello(state, 2)
    outgoing = sent(state)
    asked = [msg for dest, msg, _ in outgoing if type(msg) is protocol.BalanceRequest]
    assert asked and counts(state) == {"running": 6}
    state.on_message(worker_id(1), protocol.BalanceResponse(task_ids=asked[0].task_ids), now=0)
    assert counts(state) == {"pending": len(asked[0].task_ids), "running": 6 - len(asked[0].task_ids)}
    sent(state)
    assert counts(state) == {"running": 6}


def declare(state, dependencies, requested=None):
    n = len(dependencies)
    indptr = np.cumsum([0] + [len(d) for d in dependencies]).astype("<i8")
    indices = np.array([i for d in dependencies for i in d], dtype="<i4")
    state.on_message(CLIENT, protocol.GraphSubmit(
        graph_id=GRAPH, node_count=n, dependency_offsets=indptr.tobytes(), dependency_indices=indices.tobytes(),
        priorities=np.zeros(n, dtype="<i4").tobytes(), requested=bytes(requested or [1] * n)), now=0)
    tasks = [protocol.make_task(node_task_id(GRAPH, i), b"", b"f", b"a", 0, True, False, GRAPH) for i in range(n)]
    state.on_message(CLIENT, protocol.TaskBatch(tasks=tasks), now=0)


def node_result(index, status="success"):
    return protocol.TaskResult(task_id=node_task_id(GRAPH, index), status=status, value=b"v", stored=False,
                               profiling=protocol.Profiling(duration_seconds=1e-5))


def test_counters_across_graph_nodes():
    state = make_state()
    submit(state)  # says hello
    declare(state, [[], [0], [0], [1], []])
    assert counts(state) == {"pending": 5}
    hello(state, 1)
    state.workers[worker_id(1)].mean_duration = 1e-5  # tiny tasks: it holds every ready one
    state.workers[worker_id(1)].set_blocked(0)
    sent(state)
    assert counts(state) == {"pending": 3, "running": 2}
    state.on_message(worker_id(1), protocol.ResultBatch(results=[node_result(0)]), now=0)
    assert counts(state) == {"pending": 3, "running": 1, "succeeded": 1}
    sent(state)
    assert counts(state) == {"pending": 1, "running": 3, "succeeded": 1}
    # node 1 fails: node 3 downstream fails with it without ever running
    state.on_message(worker_id(1), protocol.ResultBatch(results=[node_result(1, "failed")]), now=0)
    assert counts(state) == {"running": 2, "succeeded": 1, "failed": 2}
    state.on_message(worker_id(1), protocol.ResultBatch(results=[node_result(2), node_result(4)]), now=0)
    sent(state)
    assert counts(state) == {"succeeded": 3, "failed": 2}
    assert state.graphs == {} and state.tasks == {}


def test_a_graph_of_a_departed_client_leaves_without_outcomes():
    state = make_state()
    submit(state)
    declare(state, [[], [0], []])
    hello(state, 1)
    state.workers[worker_id(1)].limit = 1
    sent(state)
    assert counts(state) == {"pending": 2, "running": 1}
    state.on_message(CLIENT, protocol.ClientDisconnect(), now=0)
    assert counts(state) == {"running": 1}, "nodes that never ran drop out uncounted"
    state.on_message(worker_id(1), protocol.ResultBatch(results=[node_result(0, "cancelled")]), now=0)
    sent(state)
    assert counts(state) == {"cancelled": 1}
    assert state._population[TaskState.DROPPED] == 2


# --- validate mode ------------------------------------------------------------------------------

@pytest.mark.parametrize("corrupt", [
    lambda state: state._population.__setitem__(TaskState.QUEUED, state._population[TaskState.QUEUED] + 1),
    lambda state: state._population.__setitem__(TaskState.ASSIGNED, state._population[TaskState.ASSIGNED] - 1),
    lambda state: state.counts.__setitem__("failed", state.counts["failed"] + 1),
    lambda state: state._population.__setitem__(TaskState.HELD, state._population[TaskState.HELD] + 1),
], ids=["queued", "running", "outcome", "held"])
def test_validate_mode_catches_a_corrupted_counter(corrupt):
    state = make_state()
    submit(state, task(1), task(2))
    hello(state, 1)
    state.workers[worker_id(1)].limit = 1
    sent(state)
    corrupt(state)
    with pytest.raises(InvariantError):
        state.on_message(worker_id(1), protocol.Heartbeat(), now=0)


def test_validate_mode_catches_a_record_out_of_step():
    state = make_state()
    hello(state, 1)
    submit(state, task(1))
    sent(state)
    state.workers[worker_id(1)].assigned.clear()  # the worker forgot it, the record did not
    state._population[TaskState.ASSIGNED] -= 1
    with pytest.raises(InvariantError, match="not held by its worker"):
        state.check_invariants()


def test_validate_is_off_by_default():
    state = SchedulerState(SchedulerSettings())
    assert not state.validate
    state.counts["failed"] += 1
    state.on_message(CLIENT, protocol.ClientHello(), now=0)  # not checked: no cost on the hot path


# --- dispatch is asked for by the moves that need it ----------------------------------------------

def test_dispatch_is_asked_for_by_ready_work_and_freed_capacity_only():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(1, deps=(2,)), task(2))
    assert state._dispatch_needed  # task 2 became ready
    sent(state)
    assert not state._dispatch_needed
    submit(state, task(3, deps=(2,)))
    assert not state._dispatch_needed, "a task still waiting gives a dispatch round nothing to do"
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(2)]), now=0)
    assert not state._dispatch_needed, "cancelling an assigned task only asks its worker"
    succeed(state, 2, 1)
    assert state._dispatch_needed


# --- handlers and policies ----------------------------------------------------------------------

def test_every_handler_is_an_existing_method_and_refusal_is_by_role():
    for table in HANDLERS.values():
        for kind, handler in table.items():
            assert handler.__name__ in ("_on_" + kind.__name__, "_on_TaskLog")
    state = make_state()
    assert not state.on_message(worker_id(1), protocol.TaskBatch(tasks=[]), now=0)
    assert not state.on_message(CLIENT, protocol.ResultBatch(results=[]), now=0)
    assert not state.on_message(b"X|unknown", protocol.Heartbeat(), now=0)
    assert state.on_message(b"K|cluster", protocol.Heartbeat(), now=0)


def test_policies_say_whether_every_worker_can_run_every_task():
    assert EvenLoadPolicy().uniform and not CapabilityPolicy().uniform
    assert issubclass(SchedulerState, TaskLifecycle)
