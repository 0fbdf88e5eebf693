"""Futures passed as arguments, seen from the scheduler: plain tasks (no graph) whose `dependencies`
name earlier plain tasks of the same client, each submitted in its own batch as a user would.

The scheduler runs in validate mode: every step recounts its counters from the records."""

import pickle

from scaler_core import protocol
from scaler_core.references import MissingInputError
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.state import SchedulerSettings, SchedulerState

CLIENT = b"C|client-1"
WORKER = b"W|host|1"


def make_state():
    return SchedulerState(SchedulerSettings(object_storage_address="tcp://127.0.0.1:1"), validate=True)


def tid(n):
    return b"f%015d" % n


def task(n, deps=()):
    # what Client.submit sends: requested, no graph id, dependent_count 0 (it cannot know its dependents)
    return protocol.Task(task_id=tid(n), function_id=b"fn", args=b"a", dependencies=[tid(d) for d in deps],
                         requested=True)


def cluster():
    state = make_state()
    state.on_message(CLIENT, protocol.ClientHello(), now=0)
    state.on_message(WORKER, protocol.WorkerHello(worker_id=WORKER), now=0)
    state.take_outgoing()
    return state


def submit(state, *tasks):
    for one in tasks:  # one TaskBatch per submit call
        state.on_message(CLIENT, protocol.TaskBatch(tasks=[one]), now=0)


def finish(state, n, status="success", value=b"v", stored=False):
    result = protocol.TaskResult(task_id=tid(n), status=status, value=value, stored=stored,
                                 profiling=protocol.Profiling(duration_seconds=0.01))
    state.on_message(WORKER, protocol.ResultBatch(results=[result]), now=0)


def outgoing(state):
    return state.take_outgoing()


def dispatched(messages):
    return {one.task_id: one for _, message, _ in messages if type(message) is protocol.TaskBatch
            for one in message.tasks}


def results(messages):
    return {result.task_id: result for destination, message, _ in messages
            if destination == CLIENT and type(message) is protocol.ResultBatch for result in message.results}


def storage_deletes(messages):
    return [object_id for destination, message, _ in messages
            if destination == OBJECT_STORAGE and type(message) is protocol.ObjectDelete
            for object_id in message.object_ids]


def test_dependent_waits_and_gets_the_inline_result_which_the_scheduler_keeps_until_it_ran():
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)))
    assert set(dispatched(outgoing(state))) == {tid(1)}, "the dependent waits for its input"
    finish(state, 1, value=b"one")
    messages = outgoing(state)
    assert results(messages)[tid(1)].value == b"one", "the input's own future gets its result as usual"
    [dependent] = dispatched(messages).values()
    assert [(i.object_id, i.inline, i.stored) for i in dependent.inputs] == [(tid(1), b"one", False)]
    assert tid(1) in state.tasks, "kept while its dependent has not finished"
    finish(state, 2)
    outgoing(state)
    assert state.tasks == {}


def test_stored_input_released_by_the_client_is_deleted_only_after_the_dependent_finished():
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)))
    outgoing(state)
    finish(state, 1, value=b"", stored=True)
    [dependent] = dispatched(outgoing(state)).values()
    assert [(i.object_id, i.stored) for i in dependent.inputs] == [(tid(1), True)]
    # the client fetched the result for its own future and releases it: the worker may still need it
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[tid(1)]), now=0)
    assert storage_deletes(outgoing(state)) == []
    finish(state, 2)
    assert storage_deletes(outgoing(state)) == [tid(1)]
    assert state.tasks == {}


def test_input_finished_while_the_dependent_was_on_its_way_kept_for_several_dependents():
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)))
    outgoing(state)
    finish(state, 1, value=b"one")
    outgoing(state)
    # the input is done but still held for task 2: a third task arriving now gets the value at once
    submit(state, task(3, deps=(1,)))
    third = dispatched(outgoing(state))[tid(3)]
    assert [(i.object_id, i.inline) for i in third.inputs] == [(tid(1), b"one")]
    finish(state, 2)
    outgoing(state)
    assert tid(1) in state.tasks, "task 3 still needs it"
    finish(state, 3)
    outgoing(state)
    assert state.tasks == {}


def test_forgotten_input_fails_the_dependent_with_missing_input_error():
    state = cluster()
    submit(state, task(1))
    outgoing(state)
    finish(state, 1)
    outgoing(state)
    assert state.tasks == {}, "a delivered result nobody named is forgotten at once"
    submit(state, task(2, deps=(1,)))
    result = results(outgoing(state))[tid(2)]
    assert result.status == "schedulerError"
    error = pickle.loads(result.value)
    assert type(error) is MissingInputError and tid(1).hex() in str(error)
    assert state.tasks == {}, "the failed attempt is forgotten: the client may send the same id again"
    submit(state, task(2))
    assert tid(2) in dispatched(outgoing(state))


def test_failed_input_fails_waiting_and_later_dependents_with_its_own_error():
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)), task(3, deps=(2,)))
    outgoing(state)
    error = pickle.dumps(KeyError("bad"))
    finish(state, 1, status="failed", value=error)
    got = results(outgoing(state))
    assert {n: (r.status, r.value) for n, r in got.items()} == {
        tid(1): ("failed", error), tid(2): ("failed", error), tid(3): ("failed", error)}
    assert state.tasks == {}


def test_cancelled_input_cancels_its_dependents_at_the_scheduler():
    # the client turns the dependent's "cancelled" into an InputCancelledError naming the input
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)))
    outgoing(state)
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(1)]), now=0)
    [(destination, cancel, _)] = [m for m in outgoing(state) if type(m[1]) is protocol.TaskCancel]
    assert destination == WORKER
    finish(state, 1, status="cancelled", value=b"")
    got = results(outgoing(state))
    assert {n: r.status for n, r in got.items()} == {tid(1): "cancelled", tid(2): "cancelled"}
    assert state.tasks == {}


def test_dependent_cancelled_first_leaves_nothing_behind():
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)))
    outgoing(state)
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(2)]), now=0)
    assert results(outgoing(state))[tid(2)].status == "cancelled"
    finish(state, 1, value=b"", stored=True)
    outgoing(state)
    assert state.tasks == {}, "no dependent left: the input is forgotten once delivered"
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[tid(1)]), now=0)
    assert storage_deletes(outgoing(state)) == [tid(1)]


def test_chain_of_a_hundred_runs_one_after_another_and_releases_as_it_goes():
    state = cluster()
    submit(state, task(0), *[task(n, deps=(n - 1,)) for n in range(1, 100)])
    for n in range(100):
        assert set(dispatched(outgoing(state))) == {tid(n)}
        finish(state, n, value=b"%d" % n)
        assert len(state.tasks) <= 100 - n, "each step lets go of the one before it"
    assert tid(99) in results(outgoing(state))
    assert state.tasks == {}


def test_client_leaving_frees_the_results_kept_for_dependents():
    state = cluster()
    submit(state, task(1), task(2, deps=(1,)))
    outgoing(state)
    finish(state, 1, value=b"", stored=True)
    outgoing(state)
    state.on_message(CLIENT, protocol.ClientDisconnect(), now=0)
    messages = outgoing(state)
    assert tid(1) in storage_deletes(messages)
    assert any(type(m) is protocol.TaskCancel and d == WORKER for d, m, _ in messages), "the running dependent is stopped"
    finish(state, 2, status="cancelled", value=b"")
    assert state.tasks == {}
