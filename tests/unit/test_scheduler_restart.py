"""A journaled scheduler's restart, part by part and without processes: the journal, the scheduler
asking its peers back, the client re-sending its unfinished work, the worker carrying on."""

import pickle

from scaler_core import protocol
from scaler_core.client.resend_log import ResendLog
from scaler_core.client.state import ClientState, Welcomed
from scaler_core.errors import SchedulerDiedError
from scaler_core.graph_ids import node_task_id
from scaler_core.instructions import ConnectStorage, Leave, ToScheduler, ToStorage
from scaler_core.scheduler.journal import Journal, Recovered, client_record, replay
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.state import SchedulerSettings, SchedulerState
from scaler_core.worker.objects import ObjectCache
from scaler_core.worker.runner import FunctionCache
from scaler_core.worker.state import WorkerLimits, WorkerState

CLIENT = b"C|client-1"
WORKER = b"W|host|1"
STORAGE = "tcp://127.0.0.1:1"


def tid(n):
    return b"t%015d" % n


def task(n, deps=()):
    return protocol.Task(task_id=tid(n), client_id=CLIENT, function_id=b"f" * 16, args=b"a",
                         dependencies=[tid(d) for d in deps], requested=True)


# --- the journal --------------------------------------------------------------------------------


def test_the_journal_counts_starts_and_keeps_the_clients_still_connected(tmp_path):
    path = str(tmp_path / "scheduler.journal")
    journal, recovered = Journal.open(path)
    assert recovered == Recovered(1, set())
    journal.append([client_record(b"C|a", True), client_record(b"C|b", True), client_record(b"C|a", False)])
    journal.close()
    with open(path, "a") as torn:
        torn.write('{"client": "43')  # a crash in the middle of a line
    journal, recovered = Journal.open(path)
    journal.close()
    assert recovered == Recovered(2, {b"C|b"})
    assert open(path).read().splitlines() == ['{"epoch": 2}', client_record(b"C|b", True)]  # compacted


def test_a_journal_that_grew_is_rewritten_from_the_live_state(tmp_path):
    path = str(tmp_path / "scheduler.journal")
    journal, _ = Journal.open(path)
    journal.append([client_record(b"C|%d" % n, live) for n in range(3) for live in (True, False)])
    assert journal.appended == 6
    journal.rewrite(1, {b"C|kept"})
    journal.append([client_record(b"C|new", True)])
    journal.close()
    assert journal.appended == 1
    assert replay(open(path)) == Recovered(2, {b"C|kept", b"C|new"})


def test_replay_ignores_lines_that_are_not_records():
    assert replay(["", "garbage", '{"epoch": "x"}', '{"epoch": 4}', '[1, 2]']) == Recovered(5, set())


# --- the scheduler --------------------------------------------------------------------------------


def journaled_state(**settings):
    return SchedulerState(SchedulerSettings(object_storage_address=STORAGE, journal="unused-by-the-state",
                                            **settings), validate=True)


def messages_to(outgoing, destination, kind):
    return [message for target, message, _ in outgoing if target == destination and type(message) is kind]


def test_a_restarted_scheduler_asks_back_the_clients_of_its_journal_and_no_one_else():
    state = journaled_state()
    state.resume_from(Recovered(3, {CLIENT}), now=0.0)
    state.on_message(CLIENT, protocol.Heartbeat(), now=1.0)
    state.on_message(b"C|stranger", protocol.Heartbeat(), now=1.0)
    outgoing = state.take_outgoing()
    assert messages_to(outgoing, CLIENT, protocol.Reintroduce) == [protocol.Reintroduce(epoch=3)]
    assert messages_to(outgoing, b"C|stranger", protocol.SchedulerShutdown)  # dropped before: start over
    state.on_message(CLIENT, protocol.ClientHello(client_id=CLIENT), now=1.5)
    (welcome,) = messages_to(state.take_outgoing(), CLIENT, protocol.Welcome)
    assert welcome.resumable and welcome.epoch == 3
    assert state.take_journal_lines() == [client_record(CLIENT, True)]


def test_workers_are_asked_back_during_the_recovery_window_only():
    state = journaled_state(client_timeout_seconds=10.0)
    state.resume_from(Recovered(2, set()), now=0.0)
    state.on_message(WORKER, protocol.Heartbeat(), now=5.0)
    assert messages_to(state.take_outgoing(), WORKER, protocol.Reintroduce) == [protocol.Reintroduce(epoch=2)]
    state.on_tick(11.0)
    state.on_message(b"W|host|2", protocol.Heartbeat(), now=11.0)
    outgoing = state.take_outgoing()
    assert messages_to(outgoing, b"W|host|2", protocol.SchedulerShutdown) and \
        not messages_to(outgoing, b"W|host|2", protocol.Reintroduce)


def test_clients_that_never_come_back_have_their_objects_freed_when_the_window_closes():
    state = journaled_state(client_timeout_seconds=10.0)
    state.resume_from(Recovered(2, {CLIENT, b"C|back"}), now=0.0)
    state.on_message(b"C|back", protocol.ClientHello(client_id=b"C|back"), now=1.0)
    state.take_outgoing()
    state.take_journal_lines()
    state.on_tick(10.5)
    freed = messages_to(state.take_outgoing(), OBJECT_STORAGE, protocol.ObjectDeleteOwner)
    assert freed == [protocol.ObjectDeleteOwner(owner_id=CLIENT)]
    assert state.take_journal_lines() == [client_record(CLIENT, False)]
    state.on_message(CLIENT, protocol.Heartbeat(), now=11.0)  # too late: told to start over
    assert messages_to(state.take_outgoing(), CLIENT, protocol.SchedulerShutdown)


def test_a_resubmitted_task_whose_worker_kept_running_it_takes_that_workers_result():
    """The worker said hello again with the task still running; the client re-sent it; the task went
    back to that worker (which does not take it twice) and its result finishes it."""
    state = journaled_state()
    state.resume_from(Recovered(2, {CLIENT}), now=0.0)
    state.on_message(WORKER, protocol.WorkerHello(worker_id=WORKER, cluster_id=b"K|c"), now=0.0)
    state.on_message(CLIENT, protocol.ClientHello(client_id=CLIENT), now=0.0)
    state.on_message(CLIENT, protocol.TaskBatch(tasks=[task(1)]), now=0.0)
    assert any(type(m) is protocol.TaskBatch for _, m, _ in state.take_outgoing())
    state.on_message(WORKER, protocol.ResultBatch(results=[
        protocol.make_result(tid(1), "success", pickle.dumps(2), False, protocol.Profiling())]), now=0.1)
    (batch,) = messages_to(state.take_outgoing(), CLIENT, protocol.ResultBatch)
    assert [r.task_id for r in batch.results] == [tid(1)]


def test_a_shutdown_tells_the_journal_that_nobody_comes_back():
    state = journaled_state()
    state.on_message(CLIENT, protocol.ClientHello(client_id=CLIENT), now=0.0)
    state.take_journal_lines()
    state.shutdown("asked to")
    assert state.take_journal_lines() == [client_record(CLIENT, False)]


def test_without_a_journal_nothing_is_journaled_and_nobody_is_asked_back():
    state = SchedulerState(SchedulerSettings(object_storage_address=STORAGE), validate=True)
    state.on_message(CLIENT, protocol.ClientHello(client_id=CLIENT), now=0.0)
    (welcome,) = messages_to(state.take_outgoing(), CLIENT, protocol.Welcome)
    assert not welcome.resumable
    state.on_message(WORKER, protocol.Heartbeat(), now=1.0)
    assert messages_to(state.take_outgoing(), WORKER, protocol.SchedulerShutdown)
    assert state.take_journal_lines() == []


# --- the client ---------------------------------------------------------------------------------


class FakeFuture:
    _kept = False

    def __init__(self, task_id):
        self.task_id = task_id


def encoded(*numbers):
    return protocol.encode(protocol.TaskBatch(tasks=[task(n) for n in numbers]))


def test_the_resend_log_keeps_pending_tasks_and_asks_a_graph_only_for_undelivered_results():
    log = ResendLog()
    log.add_tasks(encoded(1, 2), [tid(1), tid(2)], blobs=[b"blob-of-1"])
    log.add_tasks(encoded(3), [tid(3)], blobs=[b"blob-of-3"])
    graph_id = b"g" * 16
    submit = protocol.GraphSubmit(graph_id=graph_id, node_count=3, requested=bytes([0, 1, 1]))
    log.add_graph(submit)
    log.add_tasks(b"graph-batch", [node_task_id(graph_id, i) for i in range(3)], graph_id, blobs=[b"graph-blob"])
    pending = {tid(2), node_task_id(graph_id, 2)}
    first, graph, graph_batch = log.replay(pending, fetching=set())
    assert [t.task_id for t in protocol.decode(first).tasks] == [tid(2)]  # 1 was delivered, 3's batch is done
    assert graph.requested == bytes([0, 0, 1]) and graph_batch == b"graph-batch"
    # what is done goes, and with it the argument blobs only its tasks could read (the client frees them)
    assert log.prune(pending) == [b"blob-of-3"] and len(log) == 2
    assert sorted(log.prune(set())) == [b"blob-of-1", b"graph-blob"]
    assert len(log) == 0 and log.replay(set(), set()) == []


def test_a_task_resent_with_its_inputs_values_is_replayed_by_its_latest_row_only():
    """A dependent whose input the scheduler had forgotten was re-sent with the value (MissingInputError):
    replaying its first row too would fail it again, with its one retry spent."""
    log = ResendLog()
    with_dependency = protocol.Task(task_id=tid(2), client_id=CLIENT, function_id=b"f" * 16, args=b"a",
                                    dependencies=[tid(1)], requested=True)
    with_value = protocol.Task(task_id=tid(2), client_id=CLIENT, function_id=b"f" * 16, args=b"a",
                               inputs=[protocol.ObjectInput(object_id=tid(1), inline=b"v")], requested=True)
    log.add_tasks(protocol.encode(protocol.TaskBatch(tasks=[task(5), with_dependency])), [tid(5), tid(2)])
    log.add_tasks(protocol.encode(protocol.TaskBatch(tasks=[with_value])), [tid(2)])
    replayed = [t for message in log.replay({tid(2), tid(5)}, set()) for t in protocol.decode(message).tasks]
    assert [(t.task_id, list(t.dependencies)) for t in replayed] == [(tid(5), []), (tid(2), [])]


def test_a_kept_graph_still_asks_for_its_delivered_results_so_they_stay_on_the_cluster():
    log = ResendLog()
    graph_id = b"k" * 16
    log.add_graph(protocol.GraphSubmit(graph_id=graph_id, node_count=2, requested=bytes([1, 1])), kept=True)
    log.add_tasks(b"rows", [node_task_id(graph_id, 0), node_task_id(graph_id, 1)], graph_id, blobs=[b"blob"])
    submit, rows = log.replay({node_task_id(graph_id, 1)}, set())
    assert submit.requested == bytes([1, 1]) and rows == b"rows"
    assert log.prune(set()) == []  # a kept result may be made again from its node: its blob stays


def test_a_reintroduced_client_says_hello_and_resends_once_per_restart():
    state = ClientState(b"C|me", "tcp://127.0.0.1:2", 30.0, 1.0, now=0.0)
    assert state.on_scheduler(protocol.Welcome(object_storage_address=STORAGE, resumable=True, epoch=1), 0.0) == \
        [ConnectStorage(STORAGE), Welcomed()]
    futures = [FakeFuture(tid(1)), FakeFuture(tid(2))]
    state.register(futures)
    state.remember_tasks(encoded(1, 2), [tid(1), tid(2)])
    state.on_scheduler(protocol.ResultBatch(results=[
        protocol.make_result(tid(1), "success", pickle.dumps(1), False, protocol.Profiling())]), 1.0)
    instructions = state.on_scheduler(protocol.Reintroduce(epoch=2), 2.0)
    hello, resent = instructions
    assert hello == ToScheduler(protocol.ClientHello(client_id=b"C|me", version=protocol.PROTOCOL_VERSION))
    assert [t.task_id for t in protocol.decode(resent.message).tasks] == [tid(2)]
    assert state.on_scheduler(protocol.Reintroduce(epoch=2), 2.1) == []  # several messages reached it first


def test_a_pending_only_cancel_is_sent_again_after_the_work_it_cancels():
    state = ClientState(b"C|me", "tcp://127.0.0.1:2", 30.0, 1.0, now=0.0)
    state.on_scheduler(protocol.Welcome(object_storage_address=STORAGE, resumable=True, epoch=1), 0.0)
    state.register([FakeFuture(tid(1)), FakeFuture(tid(2))])
    state.remember_tasks(encoded(1, 2), [tid(1), tid(2)])
    state.remember_cancel(tid(2))  # executor.shutdown(cancel_futures=True) while the scheduler was away
    *_, resent, cancel = state.on_scheduler(protocol.Reintroduce(epoch=2), 1.0)
    assert cancel.message == protocol.TaskCancel(task_ids=[tid(2)], pending_only=True)


def test_a_client_of_a_scheduler_without_journal_fails_when_asked_back():
    state = ClientState(b"C|me", "tcp://127.0.0.1:2", 30.0, 1.0, now=0.0)
    state.on_scheduler(protocol.Welcome(object_storage_address=STORAGE), 0.0)
    state.register([FakeFuture(tid(1))])
    instructions = state.on_scheduler(protocol.Reintroduce(epoch=2), 1.0)
    assert isinstance(instructions[0].error, SchedulerDiedError) and isinstance(instructions[-1], Leave)


# --- the worker ---------------------------------------------------------------------------------


def test_a_reintroduced_worker_keeps_its_running_task_and_drops_the_others():
    state = WorkerState(ObjectCache(1 << 20), FunctionCache(), WorkerLimits())
    state.on_welcome(0.0, STORAGE)
    state.on_object(b"f" * 16, True, [pickle.dumps(len)])
    state.on_tasks([task(1), task(2)])
    running, _ = state.take_next(0.0)
    assert running.task_id == tid(1)
    assert state.on_reintroduce(5.0) == []
    assert list(state.tasks) == [tid(1)] and not state.ready and state.last_echo == 5.0
    assert state.on_tasks([task(1)]) == []  # sent again by the new scheduler: not taken twice



# --- an object storage that is gone -------------------------------------------------------------


def test_a_worker_fails_a_task_whose_input_a_silent_storage_never_sends():
    state = WorkerState(ObjectCache(1 << 20), FunctionCache(), WorkerLimits(storage_silence_seconds=10.0))
    state.on_welcome(0.0, STORAGE)
    waiting = protocol.Task(task_id=tid(1), client_id=CLIENT, function_id=b"f" * 16, args=b"a")
    remote = protocol.Task(task_id=tid(2), client_id=CLIENT, function_id=b"g" * 16, args=b"a")
    state.on_tasks([waiting, remote])
    state.on_storage_answered(b"g" * 16)  # located on another host: its own fetch deadlines apply
    assert [type(i) for i in state.on_tick(1.0, 0.0, 0)] == [ToScheduler]  # not waiting long yet
    # a storage that waits longer for a late writer still echoes the heartbeats we send it: alive
    assert ToStorage(protocol.Heartbeat()) in state.on_tick(5.0, 0.0, 0)
    state.storage_heard(9.0)
    assert not [i for i in state.on_tick(18.0, 0.0, 0) if hasattr(i, "result")]
    failed = [i.result for i in state.on_tick(19.5, 0.0, 0) if hasattr(i, "result")]
    assert [(r.task_id, r.status) for r in failed] == [(tid(1), "failed")]
    error = pickle.loads(failed[0].value)
    assert "object storage" in str(error) and (b"f" * 16).hex() in str(error)
    assert list(state.tasks) == [tid(2)]


def test_a_client_fails_a_fetch_a_silent_storage_never_sends():
    from scaler_core.client.state import Settle
    from scaler_core.errors import ObjectStorageSilentError
    from scaler_core.settings import OBJECT_STORAGE_SILENCE_SECONDS

    state = ClientState(b"C|me", "tcp://127.0.0.1:2", 300.0, 1.0, now=0.0)
    state.on_scheduler(protocol.Welcome(object_storage_address=STORAGE), 0.0)
    future = FakeFuture(tid(1))
    state.register([future])
    state.on_scheduler(protocol.ResultBatch(results=[
        protocol.make_result(tid(1), "success", b"", True, protocol.Profiling())]), 1.0)
    assert tid(1) in state.fetching
    state.on_tick(2.0)
    assert ToStorage(protocol.Heartbeat()) in state.on_tick(3.0)
    state.storage_heard(10.0)  # its echo: alive, though the object has not come yet
    assert not [i for i in state.on_tick(9.0 + OBJECT_STORAGE_SILENCE_SECONDS) if type(i) is Settle]
    instructions = state.on_tick(11.0 + OBJECT_STORAGE_SILENCE_SECONDS)
    (settle,) = [i for i in instructions if type(i) is Settle]
    assert settle.future is future and isinstance(settle.error, ObjectStorageSilentError)
    assert not state.fetching and tid(1) not in state.futures
