"""Lineage for plain tasks' stored results (scheduler/plain_lineage.py), driven by feeding the scheduler."""

import pickle

from scaler_core import protocol
from scaler_core.scheduler.outbox import OBJECT_STORAGE

from tests.unit.test_scheduler_state import (
    CLIENT, hello, make_state, results_sent, sent, submit, succeed, task, tasks_sent, tid, worker_id,
)

BLOB = b"b" * 16


def made_and_stored(state, n=1, worker=1, args_blob=False):
    """Task n ran on `worker` and its result was stored; the client has it (its future is done)."""
    made = task(n)
    if args_blob:
        made.args_stored, made.args_object_id, made.args = True, BLOB, b""
    submit(state, made)
    sent(state)
    succeed(state, n, worker, value=b"", stored=True)
    assert [r.task_id for r in results_sent(sent(state))] == [tid(n)]


def reader_of(state, n, made=1):
    """A later task given the done future of `made`: its result is an input, not a dependency."""
    reader = task(n)
    reader.inputs = [protocol.ObjectInput(object_id=tid(made), stored=True)]
    submit(state, reader)
    return tasks_sent(sent(state))


def number_of(worker):
    """A worker id's number (test_scheduler_state.worker_id's argument)."""
    return int(worker.split(b"|")[-1])


def on(state, n):
    """The number of the worker task n is assigned to."""
    return number_of(state.tasks[tid(n)].worker)


def input_lost(state, n, worker, lost=1):
    state.on_message(worker_id(worker), protocol.ResultBatch(results=[protocol.TaskResult(
        task_id=tid(n), status="inputLost", value=tid(lost), profiling=protocol.Profiling())]), now=0.0)


def storage_deletes(outgoing):
    return [object_id for destination, message, _ in outgoing if destination == OBJECT_STORAGE
            and type(message) is protocol.ObjectDelete for object_id in message.object_ids]


def two_workers():
    state = make_state()
    hello(state, 1)
    hello(state, 2)
    sent(state)
    return state


def a_stored_result_and_its_reader():
    """Task 1 ran and stored its result; task 2, submitted later, reads it."""
    state = two_workers()
    made_and_stored(state)
    reader_of(state, 2)
    return state


def reader_failed_saying(state, text):
    """Task 2, the only result sent, failed with an error that says `text`."""
    (result,) = results_sent(sent(state))
    return result.task_id == tid(2) and result.status == "failed" and text in str(pickle.loads(result.value))


def a_reader_finds_the_result_lost(state):
    """Task 1's stored result, read by task 2, is lost with its host: task 1 is run again; returns the
    number of the worker it runs on."""
    input_lost(state, 2, on(state, 2))
    sent(state)
    return on(state, 1)


def test_a_lost_plain_result_is_made_again_and_its_reader_then_runs():
    state = two_workers()
    made_and_stored(state)
    where = reader_of(state, 2)
    (reader_worker,) = [number_of(w) for w in where]
    input_lost(state, 2, reader_worker)
    outgoing = sent(state)
    assert tid(1) in storage_deletes(outgoing), "the storage forgets the lost copy"
    (remade_on, tasks) = next(iter(tasks_sent(outgoing).items()))
    assert tasks == [tid(1)]
    succeed(state, 1, number_of(remade_on), value=b"", stored=True)
    outgoing = sent(state)
    assert results_sent(outgoing) == [], "the client already has this result: nobody but the reader is told"
    assert [tasks for tasks in tasks_sent(outgoing).values()] == [[tid(2)]]
    (runs_on,) = tasks_sent(outgoing)
    succeed(state, 2, number_of(runs_on), value=b"42")
    assert [r.value for r in results_sent(sent(state))] == [b"42"]


def test_several_readers_of_one_lost_result_share_one_remake():
    state = a_stored_result_and_its_reader()
    reader_of(state, 3)
    input_lost(state, 2, on(state, 2))
    input_lost(state, 3, on(state, 3))
    outgoing = sent(state)
    assert sum(tasks.count(tid(1)) for tasks in tasks_sent(outgoing).values()) == 1
    succeed(state, 1, on(state, 1), value=b"", stored=True)
    assert sorted(t for tasks in tasks_sent(sent(state)).values() for t in tasks) == [tid(2), tid(3)]


def test_the_argument_blob_stays_while_the_result_lives_and_goes_with_it():
    state = two_workers()
    made_and_stored(state, args_blob=True)
    assert BLOB not in storage_deletes(sent(state))
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[tid(1)]), now=0.0)
    deleted = storage_deletes(sent(state))
    assert tid(1) in deleted and BLOB in deleted and state.recipes == {}


def test_a_released_result_is_not_made_again_and_its_reader_fails_saying_why():
    state = a_stored_result_and_its_reader()
    state.on_message(CLIENT, protocol.ObjectDelete(object_ids=[tid(1)]), now=0.0)
    input_lost(state, 2, on(state, 2))
    assert reader_failed_saying(state, "nothing of its client that is still alive")


def test_a_remake_that_fails_fails_its_readers_with_its_error():
    state = a_stored_result_and_its_reader()
    remade_on = a_reader_finds_the_result_lost(state)
    state.on_message(worker_id(remade_on), protocol.ResultBatch(results=[protocol.TaskResult(
        task_id=tid(1), status="failed", value=b"boom", profiling=protocol.Profiling())]), now=0.0)
    results = results_sent(sent(state))
    assert [(r.task_id, r.status, r.value) for r in results] == [(tid(2), "failed", b"boom")]


def test_a_result_lost_again_and_again_is_remade_at_most_max_task_retries_times():
    state = a_stored_result_and_its_reader()
    for _ in range(state.settings.max_task_retries):
        succeed(state, 1, a_reader_finds_the_result_lost(state), value=b"", stored=True)
        sent(state)
    input_lost(state, 2, on(state, 2))
    assert reader_failed_saying(state, "made again 3 times")


def test_a_client_that_leaves_takes_its_recipes_along():
    state = two_workers()
    made_and_stored(state)
    state.on_message(CLIENT, protocol.ClientDisconnect(), now=0.0)
    assert state.recipes == {}


def test_a_remade_task_does_not_release_its_own_dependencies_a_second_time():
    state = two_workers()
    submit(state, task(10))
    sent(state)
    maker = task(1, deps=[10])
    other = task(11, deps=[10])
    submit(state, maker, other)
    sent(state)
    succeed(state, 10, on(state, 10), value=b"", stored=True)
    sent(state)
    succeed(state, 1, on(state, 1), value=b"", stored=True)
    sent(state)
    assert state.tasks[tid(10)].pending_dependents == 1, "task 11 still needs it"
    reader_of(state, 2)
    succeed(state, 1, a_reader_finds_the_result_lost(state), value=b"", stored=True)
    sent(state)
    assert state.tasks[tid(10)].pending_dependents == 1, "the remake released it again"
