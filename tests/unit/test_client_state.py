"""The client's decisions, driven directly: events in, instructions out; no sockets, no threads."""

import pickle

import pytest

from scaler_core import protocol
from scaler_core.client.futures import EncodedResult, WarningSink
from scaler_core.client.state import (
    AddWarnings, ClientState, DeliverObject, MarkStarted, Settle, SettleCancelled, SettleKept, Welcomed, WriteOutput,
)
from scaler_core.errors import SchedulerDiedError, SerializationError
from scaler_core.instructions import ConnectStorage, Leave, ToScheduler, ToStorage
from scaler_core.serialization import dumps_exception, dumps_warnings

STORAGE = "tcp://127.0.0.1:1"


class FakeFuture:
    _kept = False  # as ScalerFuture: its result is fetched, not left on the cluster

    def __init__(self, n):
        self.task_id = tid(n)


def tid(n):
    return b"t%015d" % n


def fresh(timeout=30.0, heartbeat=1.0):
    return ClientState(b"C|me", "tcp://127.0.0.1:2", timeout, heartbeat, now=0.0)


def welcomed(client_timeout=0.0):
    state = fresh()
    instructions = state.on_scheduler(
        protocol.Welcome(object_storage_address=STORAGE, client_timeout_seconds=client_timeout), 0.0)
    assert instructions == [ConnectStorage(STORAGE), Welcomed()]
    return state


def tracked(state, *numbers):
    futures = [FakeFuture(n) for n in numbers]
    state.register(futures)
    return futures


def result(n, status="success", value=b"", stored=False):
    return protocol.make_result(tid(n), status, value, stored, protocol.Profiling())


def test_the_welcome_connects_the_storage_once_and_adapts_the_heartbeat():
    state = welcomed(client_timeout=1.5)
    assert state.heartbeat_interval_seconds == 0.5
    again = state.on_scheduler(protocol.Welcome(object_storage_address=STORAGE, client_timeout_seconds=0), 1.0)
    assert again == [Welcomed()]


def test_an_inline_result_settles_its_future_once():
    state = welcomed()
    (future,) = tracked(state, 1)
    batch = protocol.ResultBatch(results=[result(1, value=pickle.dumps(42))])
    (settle,) = state.on_scheduler(batch, 1.0)
    assert type(settle) is Settle and settle.future is future and settle.value == 42 and settle.error is None
    assert state.on_scheduler(batch, 1.0) == []  # a duplicate finds nobody waiting
    assert state.futures == {}


def test_a_result_from_a_workers_direct_send_settles_its_future_but_says_nothing_of_the_scheduler():
    state = welcomed()
    (future,) = tracked(state, 1)
    batch = protocol.ResultBatch(results=[result(1, value=pickle.dumps(42))])
    (settle,) = state.on_direct_results(batch)
    assert settle.future is future and settle.value == 42
    assert state.last_heard == 0.0, "only the scheduler's own messages show that it is alive"
    assert state.on_scheduler(batch, 1.0) == []  # the same result forwarded after all: nobody waits


def test_stored_results_are_fetched_in_one_request_then_released_in_one_batch():
    state = welcomed()
    first, second = tracked(state, 1, 2)
    batch = protocol.ResultBatch(results=[result(1, stored=True), result(2, stored=True)])
    assert state.on_scheduler(batch, 1.0) == [ToStorage(protocol.ObjectGet(object_ids=[tid(1), tid(2)]))]
    (settle,) = state.on_storage(protocol.ObjectData(object_id=tid(1), found=True), [b"frame"])
    assert settle.future is first and type(settle.value) is EncodedResult and settle.value.frames == [b"frame"]
    (missing,) = state.on_storage(protocol.ObjectData(object_id=tid(2), found=False), [])
    assert missing.future is second and isinstance(missing.error, LookupError)
    assert state.end_of_cycle() == [ToScheduler(protocol.ObjectDelete(object_ids=[tid(1), tid(2)]))]
    assert state.end_of_cycle() == []


def test_failures_cancellations_and_unreadable_results():
    state = welcomed()
    failed, cancelled, garbled = tracked(state, 1, 2, 3)
    batch = protocol.ResultBatch(results=[result(1, "failed", dumps_exception(KeyError("k"))),
                                          result(2, "cancelled"), result(3, value=b"not a pickle")])
    settle_failed, settle_cancelled, settle_garbled = state.on_scheduler(batch, 1.0)
    assert settle_failed.future is failed and isinstance(settle_failed.error, KeyError)
    assert settle_cancelled == SettleCancelled(cancelled)
    assert settle_garbled.future is garbled and isinstance(settle_garbled.error, SerializationError)


def test_starts_warnings_and_output_reach_their_targets():
    state = welcomed()
    (future,) = tracked(state, 1)
    assert state.on_scheduler(protocol.TaskStarted(task_ids=[tid(1), tid(9)]), 1.0) == [MarkStarted(future)]
    caught = [(UserWarning, "careful", "f.py", 3)]
    own = state.on_scheduler(protocol.TaskWarnings(task_id=tid(1), warnings=dumps_warnings(caught)), 1.0)
    assert own == [AddWarnings(future, caught)]
    sink = state.graph_warnings[b"g"] = WarningSink()
    (for_graph,) = state.on_scheduler(
        protocol.TaskWarnings(task_id=tid(7), graph_id=b"g", warnings=dumps_warnings(caught)), 1.0)
    assert for_graph.target is sink
    assert state.on_scheduler(protocol.TaskLog(stream="stderr", text="hi"), 1.0) == [WriteOutput("stderr", "hi")]


def test_heartbeats_go_out_only_once_welcomed():
    state = fresh()
    assert state.on_tick(1.0) == []
    state.on_scheduler(protocol.Welcome(object_storage_address=STORAGE), 1.0)
    assert state.on_tick(2.0) == [ToScheduler(protocol.Heartbeat())]


def test_no_welcome_within_the_timeout_fails_every_future():
    state = fresh(timeout=5.0)
    (future,) = tracked(state, 1)
    assert state.on_tick(4.0) == []
    settle, leave = state.on_tick(6.0)
    assert settle.future is future and isinstance(settle.error, SchedulerDiedError)
    assert "no scheduler answered" in str(settle.error) and type(leave) is Leave
    with pytest.raises(SchedulerDiedError):
        state.register([FakeFuture(2)])


def test_a_silent_scheduler_fails_the_futures_but_a_heard_one_does_not():
    state = welcomed()
    tracked(state, 1)
    state.on_scheduler(protocol.HeartbeatEcho(), 25.0)
    assert state.on_tick(50.0) == [ToScheduler(protocol.Heartbeat())]  # heard 25 s ago: within 30 s
    settle, leave = state.on_tick(56.0)
    assert "stopped answering" in str(settle.error) and type(leave) is Leave
    assert state.on_tick(57.0) == []  # closed once


def test_a_scheduler_shutting_down_fails_the_futures():
    state = welcomed()
    (future,) = tracked(state, 1)
    settle, leave = state.on_scheduler(protocol.SchedulerShutdown(reason="maintenance"), 1.0)
    assert settle.future is future and "maintenance" in str(settle.error)


def test_disconnect_cancels_what_is_pending_and_leaves():
    state = welcomed()
    (future,) = tracked(state, 1)
    goodbye, cancelled, leave = state.on_disconnect(False, 1.0)
    assert goodbye == ToScheduler(protocol.ClientDisconnect(shutdown_scheduler=False))
    assert cancelled == SettleCancelled(future) and type(leave) is Leave and state.closed
    assert state.on_disconnect(False, 2.0) == []


def test_a_shutdown_request_waits_for_the_answer_then_leaves():
    state = welcomed()
    assert state.on_disconnect(True, 1.0) == [ToScheduler(protocol.ClientDisconnect(shutdown_scheduler=True))]
    assert not state.closed
    answer = protocol.ShutdownResponse(accepted=False, reason="protected")
    assert state.on_scheduler(answer, 1.5) == [Leave()]
    assert state.shutdown_response is answer and state.closed


def test_an_unanswered_shutdown_request_gives_up_after_its_deadline():
    state = welcomed()
    state.on_disconnect(True, 1.0)
    state.on_scheduler(protocol.HeartbeatEcho(), 5.0)
    assert state.on_tick(5.5) == [ToScheduler(protocol.Heartbeat())]
    assert state.on_tick(6.5) == [Leave()] and state.shutdown_response is None


def test_a_kept_result_settles_without_a_fetch_and_is_read_on_demand():
    state = welcomed()
    (future,) = tracked(state, 1)
    future._kept = True  # a persisted collection's result
    instructions = state.on_scheduler(protocol.ResultBatch(results=[result(1, stored=True)]), 0.0)
    assert instructions == [SettleKept(future, tid(1), protocol.Profiling())]
    assert state.fetching == {} and state.end_of_cycle() == []  # not fetched, not released
    first, second = object(), object()
    assert state.request_object(tid(1), first) == [ToStorage(protocol.ObjectGet(object_ids=[tid(1)]))]
    assert state.request_object(tid(1), second) == []  # one request for both readers
    frames = [b"stream"]
    delivered = state.on_storage(protocol.ObjectData(object_id=tid(1), found=True, frame_count=1), frames)
    assert delivered == [DeliverObject(first, frames), DeliverObject(second, frames)]
    assert state.end_of_cycle() == [], "a kept result stays on the cluster after a read"


def test_readers_of_kept_results_are_answered_when_the_client_closes():
    state = welcomed()
    reader = object()
    state.request_object(tid(7), reader)
    instructions = state.on_disconnect(False, 1.0)
    assert DeliverObject(reader, None) in instructions and isinstance(instructions[-1], Leave)
    assert state.request_object(tid(8), reader) == [DeliverObject(reader, None)]
