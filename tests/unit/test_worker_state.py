"""The worker's decisions, driven directly: events in, instructions out; no sockets, no threads."""

import pickle

import pytest

from scaler_core import protocol
from scaler_core.errors import TaskTimeoutError
from scaler_core.worker.objects import ObjectCache
from scaler_core.worker.runner import FunctionCache, Outcome
from scaler_core.worker.state import (
    ConnectStorage, LogWarning, RelieveMemory, Result, Started, Stop, ToScheduler, ToStorage, WakeRunners, WorkerLimits,
    WorkerState,
)

FUNCTION = b"f" * 16
STORAGE = "tcp://127.0.0.1:1"


def tid(n):
    return b"t%015d" % n


def task(n, priority=0, notify_start=False, stored_input=None):
    inputs = [protocol.ObjectInput(object_id=stored_input, stored=True)] if stored_input else []
    return protocol.Task(task_id=tid(n), client_id=b"C|client", function_id=FUNCTION, args=b"a",
                         priority=priority, notify_start=notify_start, inputs=inputs)


def welcomed(limits=None, function_cached=True):
    state = WorkerState(ObjectCache(1 << 20), FunctionCache(), limits or WorkerLimits())
    assert state.on_welcome(0.0, STORAGE) == [ConnectStorage(STORAGE)]
    if function_cached:
        state.on_object(FUNCTION, True, [pickle.dumps(len)])
    return state


def of_kind(instructions, kind):
    return [item for item in instructions if type(item) is kind]


def results(instructions):
    return [(item.result.task_id, item.result.status) for item in of_kind(instructions, Result)]


def run_next(state, now=0.0):
    started, instructions = state.take_next(now)
    return started, instructions


def test_a_task_before_the_welcome_fails_with_a_clear_error():
    state = WorkerState(ObjectCache(1 << 20), FunctionCache())
    instructions = state.on_tasks([task(1)])
    (result,) = of_kind(instructions, Result)
    assert result.result.status == "failed" and b"before its welcome" in result.result.value
    assert state.tasks == {}


def test_the_welcome_connects_the_storage_once():
    state = welcomed()
    assert state.on_welcome(1.0, STORAGE) == [] and state.last_echo == 1.0


def test_missing_objects_are_fetched_once_then_the_task_is_ready():
    state = welcomed(function_cached=False)
    instructions = state.on_tasks([task(1, stored_input=b"x" * 16), task(2, stored_input=b"x" * 16)])
    (fetch,) = of_kind(instructions, ToStorage)
    assert sorted(fetch.message.object_ids) == sorted([FUNCTION, b"x" * 16])
    assert not state.can_start()
    assert state.on_object(FUNCTION, True, [pickle.dumps(len)]) == []
    assert state.on_object(b"x" * 16, True, [pickle.dumps(3)]) == [WakeRunners()]
    started, _ = run_next(state)
    assert started.task_id == tid(1)


def test_an_input_with_no_copy_left_is_reported_lost_for_the_scheduler_to_decide():
    state = welcomed()
    state.on_tasks([task(1, stored_input=b"y" * 16)])
    instructions = state.on_object(b"y" * 16, False, [])
    assert results(instructions) == [(tid(1), "inputLost")]
    assert of_kind(instructions, Result)[0].result.value == b"y" * 16  # which input: the scheduler remakes it
    assert state.tasks == {} and not state.can_start()


def test_one_task_runs_at_a_time_in_priority_order_and_reports_its_start():
    state = welcomed()
    assert state.on_tasks([task(1), task(2, priority=5, notify_start=True), task(3)]) == [WakeRunners()]
    first, instructions = run_next(state, now=1.0)
    assert first.task_id == tid(2) and instructions == [Started(tid(2))]
    assert run_next(state) == (None, []), "the single slot is taken"
    finished = state.finish(Outcome(first, "success", inline=b"r"))
    assert results(finished) == [(tid(2), "success")] and finished[-1] == WakeRunners()
    second, instructions = run_next(state)
    assert second.task_id == tid(1) and instructions == []


def test_a_blocked_task_lends_its_slot():
    state = welcomed()
    state.on_tasks([task(1), task(2)])
    run_next(state)
    instructions = state.on_block()
    assert of_kind(instructions, ToScheduler)[0].message.blocked_tasks == 1 and instructions[-1] == WakeRunners()
    second, _ = run_next(state)
    assert second.task_id == tid(2)
    assert of_kind(state.on_unblock(), ToScheduler)[0].message.blocked_tasks == 0


def test_a_large_result_goes_to_the_storage_before_its_report():
    state = welcomed()
    state.on_tasks([task(1)])
    started, _ = run_next(state)
    instructions = state.finish(Outcome(started, "success", frames=[b"big"]))
    put, report = instructions[0], instructions[1]
    assert type(put) is ToStorage and put.message.object_id == tid(1) and put.frames == [b"big"]
    assert type(report) is Result and report.result.stored


def test_a_large_result_consumed_on_its_own_worker_is_not_fetched():
    state = welcomed()
    state.on_tasks([task(1)])
    started, _ = run_next(state)
    state.finish(Outcome(started, "success", frames=[b"big"]))
    instructions = state.on_tasks([task(2, stored_input=tid(1))])
    assert not of_kind(instructions, ToStorage)  # no ObjectGet: the producer's copy is here
    assert state.objects.frames_of(tid(1)) == [b"big"] and run_next(state)[0].task_id == tid(2)


def finished(state, outcome_of, **task_fields):
    """Run one task made with `task_fields` and finish it with `outcome_of(task)`; its Result."""
    fields = {"task_id": tid(1), "client_id": b"C|client", "function_id": FUNCTION, "args": b"a", "requested": True}
    fields.update(task_fields)
    state.on_tasks([protocol.Task(**fields)])
    started, _ = run_next(state)
    return of_kind(state.finish(outcome_of(started)), Result)[0]


def test_a_small_successful_result_may_go_straight_to_its_client():
    result = finished(welcomed(), lambda task: Outcome(task, "success", inline=b"v"))
    assert result.client_id == b"C|client" and not result.result.delivered  # the process decides if it went


@pytest.mark.parametrize("outcome_of, task_fields", [
    (lambda task: Outcome(task, "success", frames=[b"big"]), {}),  # fetched from where it is stored
    (lambda task: Outcome(task, "failed", inline=b"error"), {}),
    (lambda task: Outcome(task, "success", inline=b"v", warnings=[object()]), {}),  # warnings go first
    (lambda task: Outcome(task, "success", inline=b"v"), {"stream_output": True}),  # so does its output
    (lambda task: Outcome(task, "success", inline=b"v"), {"graph_id": b"G|1"}),
    (lambda task: Outcome(task, "success", inline=b"v"), {"requested": False}),
], ids=["stored", "failed", "warnings", "streamed", "graph", "not-requested"])
def test_results_the_scheduler_must_see_first_go_through_it(outcome_of, task_fields, monkeypatch):
    monkeypatch.setattr("scaler_core.worker.state.dumps_warnings", lambda warnings: b"w")
    result = finished(welcomed(), outcome_of, **task_fields)
    assert result.client_id == b""


def test_once_leaving_no_result_goes_straight_to_its_client():
    # handed back on SIGTERM: the scheduler runs it again elsewhere, and only that outcome counts
    state = welcomed()
    state.on_tasks([protocol.Task(task_id=tid(1), client_id=b"C|client", function_id=FUNCTION, args=b"a",
                                  requested=True)])
    started, _ = run_next(state)
    assert type(state.on_terminate("the machine is taken back")[-1]) is Stop
    (result,) = of_kind(state.finish(Outcome(started, "success", inline=b"v")), Result)
    assert result.client_id == b""


def test_cancel_of_a_queued_task_reports_it_cancelled():
    state = welcomed()
    state.on_tasks([task(1), task(2)])
    assert results(state.on_cancel([tid(2)], pending_only=False)) == [(tid(2), "cancelled")]
    started, _ = run_next(state)
    state.finish(Outcome(started, "success"))
    assert not state.can_start() and state.tasks == {}


def test_cancel_of_a_running_task_replaces_the_process_and_hands_back_the_rest():
    state = welcomed()
    state.on_tasks([task(1), task(2), task(3)])
    run_next(state)
    instructions = state.on_cancel([tid(1)], pending_only=False)
    assert results(instructions) == [(tid(1), "cancelled")]
    (stop,) = of_kind(instructions, Stop)
    assert stop.replace and stop.goodbye.returned_tasks == [tid(2), tid(3)]


def test_pending_only_cancel_spares_the_running_task_and_the_next_one_a_free_slot_takes():
    state = welcomed()
    state.on_tasks([task(1), task(2), task(3)])
    assert state.on_cancel([tid(1), tid(2), tid(3)], pending_only=True) != []
    # nothing ran yet: task 1 is what the free slot takes now, so it counts as started
    assert list(state.tasks) == [tid(1)]
    state.on_tasks([task(4), task(5)])
    running, _ = run_next(state)
    assert running.task_id == tid(1)
    instructions = state.on_cancel([tid(1), tid(4)], pending_only=True)
    assert results(instructions) == [(tid(4), "cancelled")] and not of_kind(instructions, Stop)


def test_pending_only_cancel_while_inputs_are_fetched_spares_the_oldest():
    state = welcomed(function_cached=False)
    state.on_tasks([task(1), task(2)])
    instructions = state.on_cancel([tid(1), tid(2)], pending_only=True)
    assert results(instructions) == [(tid(2), "cancelled")]
    assert state.on_object(FUNCTION, True, [pickle.dumps(len)]) == [WakeRunners()]


def test_balance_gives_back_only_what_has_not_started():
    state = welcomed()
    state.on_tasks([task(1), task(2), task(3, stored_input=b"z" * 16)])
    run_next(state)
    (response,) = state.on_balance_request([tid(1), tid(2), tid(3), tid(9)])
    assert sorted(response.message.task_ids) == [tid(2), tid(3)]
    assert list(state.tasks) == [tid(1)] and state.waiting_objects == {}


def test_tick_reports_load_and_notices_a_silent_scheduler():
    state = welcomed(WorkerLimits(death_timeout_seconds=30))
    state.on_tasks([task(1), task(2), task(3, stored_input=b"z" * 16)])
    (heartbeat,) = state.on_tick(10.0, cpu_percent=12.5, rss_bytes=100)
    assert heartbeat.message.queued_tasks == 3 and heartbeat.message.rss_bytes == 100
    state.on_heartbeat_echo(20.0)
    assert not of_kind(state.on_tick(45.0, 0.0, 100), Stop)
    (stop,) = of_kind(state.on_tick(51.0, 0.0, 100), Stop)
    assert stop.unexpected and not stop.replace


def test_a_task_over_its_timeout_fails_and_the_process_is_replaced():
    state = welcomed(WorkerLimits(task_timeout_seconds=5))
    state.on_tasks([task(1)])
    run_next(state, now=0.0)
    assert not of_kind(state.on_tick(4.0, 0.0, 100), Stop)
    instructions = state.on_tick(6.0, 0.0, 100)
    assert results(instructions) == [(tid(1), "timeout")]
    assert isinstance(pickle.loads(of_kind(instructions, Result)[0].result.value), TaskTimeoutError)
    assert of_kind(instructions, Stop)[0].replace


@pytest.mark.parametrize("running", [True, False])
def test_the_memory_limit_stops_only_a_running_task(running):
    state = welcomed(WorkerLimits(memory_limit_bytes=1000))
    state.on_tasks([task(1)])
    if running:
        run_next(state)
    instructions = state.on_tick(1.0, 0.0, rss_bytes=2000)
    assert bool(of_kind(instructions, Stop)) == running
    if running:
        assert isinstance(pickle.loads(of_kind(instructions, Result)[0].result.value), MemoryError)


def heartbeats(instructions):
    return [item.message for item in of_kind(instructions, ToScheduler) if type(item.message) is protocol.Heartbeat]


def test_past_the_pause_threshold_no_new_task_starts_and_the_scheduler_hears_it_at_once():
    state = welcomed(WorkerLimits(memory_limit_bytes=1000, memory_pause_fraction=0.8))
    state.on_tasks([task(1), task(2)])
    first, _ = run_next(state)
    (heartbeat,) = heartbeats(state.on_memory(0.0, 900))  # past 800: paused, said without waiting for the tick
    assert heartbeat.paused and heartbeat.rss_bytes == 900
    state.finish(Outcome(first, "success", b"1"))
    assert not state.can_start() and run_next(state) == (None, [])
    assert state.next_to_start() is None  # a pending-only cancel or a balance may take every queued task
    assert heartbeats(state.on_memory(0.0, 950)) == []  # no news, no message
    instructions = state.on_memory(0.0, 700)
    assert not heartbeats(instructions)[0].paused and instructions[-1] == WakeRunners()
    second, _ = run_next(state)
    assert second.task_id == tid(2)


def test_the_regular_heartbeat_says_whether_the_worker_is_paused():
    state = welcomed(WorkerLimits(memory_limit_bytes=1000, memory_pause_fraction=0.5))
    (heartbeat,) = heartbeats(state.on_tick(1.0, 0.0, rss_bytes=400))
    assert not heartbeat.paused
    state.on_tasks([task(1)])
    run_next(state)
    (heartbeat,) = heartbeats(state.on_tick(2.0, 0.0, rss_bytes=600))
    assert heartbeat.paused and not of_kind(state.on_tick(3.0, 0.0, rss_bytes=600), Stop)


def test_a_paused_worker_still_lends_a_blocked_tasks_slot_to_nested_work():
    state = welcomed(WorkerLimits(memory_limit_bytes=1000))
    state.on_tasks([task(1), task(2)])
    run_next(state)
    state.on_memory(0.0, 900)
    state.on_block()
    second, _ = run_next(state)
    assert second.task_id == tid(2)


def test_paused_with_nothing_running_it_frees_what_it_can_then_is_replaced_handing_back_its_tasks():
    state = welcomed(WorkerLimits(memory_limit_bytes=1000))
    state.on_tasks([task(1), task(2), task(3)])
    first, _ = run_next(state)
    state.finish(Outcome(first, "success", b"1"))
    instructions = state.on_memory(0.0, 900)
    assert instructions[-1] == RelieveMemory() and not of_kind(instructions, Stop)
    assert not of_kind(state.on_tick(1.0, 0.0, rss_bytes=900), Stop)  # freeing gets its time
    instructions = state.on_tick(2.5, 0.0, rss_bytes=900)  # still past the threshold after it
    (stop,) = of_kind(instructions, Stop)
    assert stop.replace and sorted(stop.goodbye.returned_tasks) == [tid(2), tid(3)]


def test_a_fresh_worker_past_its_threshold_by_itself_stops_pausing_instead_of_being_replaced_for_ever():
    state = welcomed(WorkerLimits(memory_limit_bytes=1000))
    state.on_tasks([task(1)])
    assert state.on_memory(0.0, 900)[-1] == RelieveMemory()
    instructions = state.on_memory(3.0, 900)
    assert not of_kind(instructions, Stop) and of_kind(instructions, LogWarning)
    assert heartbeats(instructions)[-1].paused is False and instructions[-1] == WakeRunners()
    assert run_next(state)[0].task_id == tid(1)
    assert not heartbeats(state.on_memory(0.0, 990))  # never again in this process


def test_freeing_memory_that_gets_it_below_lets_the_worker_carry_on():
    state = welcomed(WorkerLimits(memory_limit_bytes=1000))
    state.on_tasks([task(1)])
    assert state.on_memory(0.0, 900)[-1] == RelieveMemory()
    assert state.on_memory(0.0, 500)[-1] == WakeRunners()
    assert state.on_memory(0.0, 900)[-1] == RelieveMemory()  # a new pause frees memory again before giving up


@pytest.mark.parametrize("limits", [WorkerLimits(), WorkerLimits(memory_limit_bytes=1000, memory_pause_fraction=0)])
def test_without_a_memory_limit_or_with_a_zero_fraction_the_worker_never_pauses(limits):
    state = welcomed(limits)
    state.on_tasks([task(1)])
    assert state.on_memory(0.0, 10**12) == [] and state.can_start()


def test_scheduler_shutdown_stops_and_asks_for_a_successor_only_on_reconnect():
    state = welcomed()
    assert state.on_scheduler_shutdown("bye", reconnect=False)[0].replace is False
    assert state.on_scheduler_shutdown("you were dropped", reconnect=True)[0].replace is True


def test_inputs_stay_pinned_while_a_task_holds_them():
    cache = ObjectCache(10)
    state = WorkerState(cache, FunctionCache())
    state.on_welcome(0.0, STORAGE)
    state.on_tasks([task(1, stored_input=b"p" * 16)])
    state.on_object(FUNCTION, True, [b"12345678"])
    state.on_object(b"p" * 16, True, [b"12345678"])  # 16 bytes in a budget of 10, but both pinned
    assert cache.has(FUNCTION) and cache.has(b"p" * 16)
    started, _ = run_next(state)
    state.finish(Outcome(started, "success"))
    assert [cache.has(FUNCTION), cache.has(b"p" * 16)] == [False, True], "unpinned when reported: LRU goes"


def test_warnings_travel_ahead_of_the_result():
    state = welcomed()
    state.on_tasks([task(1)])
    started, _ = run_next(state)
    instructions = state.finish(Outcome(started, "success", inline=b"r", warnings=[(UserWarning, "w", "f.py", 3)]))
    assert type(instructions[0]) is ToScheduler and type(instructions[0].message) is protocol.TaskWarnings
    assert pickle.loads(instructions[0].message.warnings) == [(UserWarning, "w", "f.py", 3)]
    assert type(instructions[1]) is Result


def test_terminate_hands_back_every_task_the_running_one_too_and_leaves_without_a_successor():
    state = welcomed()
    state.on_tasks([task(1), task(2)])
    started, _ = run_next(state)
    assert started.task_id == tid(1)
    (stop,) = state.on_terminate("stopped by SIGTERM")
    assert type(stop) is Stop and not stop.replace
    assert stop.goodbye.returned_tasks == [tid(1), tid(2)]
