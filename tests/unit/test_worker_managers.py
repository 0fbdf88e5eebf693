"""Worker managers driven through the scheduler's state machine: registration, start, drain and
stop, groups the resource manager ends (no retry counted), failed starts."""

from scaler_core import protocol
from scaler_core.scheduler.state import SchedulerSettings, SchedulerState

from tests.unit.test_scheduler_state import CLIENT, submit, task, tid

MANAGER = b"M|wm-test"


def make_state(**settings):
    return SchedulerState(SchedulerSettings(object_storage_address="tcp://127.0.0.1:1", **settings), validate=True)


def register(state, workers_per_group=1, max_groups=4, capabilities=None, manager=MANAGER, now=0.0):
    caps = [protocol.Capability(name=k, quantity=v) for k, v in (capabilities or {}).items()]
    state.on_message(manager, protocol.WorkerManagerHello(
        manager_id=manager[2:], kind="test", workers_per_group=workers_per_group, capabilities=caps,
        max_groups=max_groups), now=now)
    return [message for _, message, _ in state.take_outgoing()]


def commands(state, cls):
    return [(destination, message) for destination, message, _ in state.take_outgoing() if type(message) is cls]


def group_worker_hello(state, group_id, n=1, now=0.0):
    worker = b"W|%s|%d" % (group_id, n)
    state.on_message(worker, protocol.WorkerHello(worker_id=worker, cluster_id=b"K|" + group_id), now=now)
    return worker


def test_a_registered_manager_is_welcomed_and_asked_for_groups_while_tasks_wait():
    state = make_state()
    assert [type(message) for message in register(state)] == [protocol.Welcome]
    state.on_tick(1.0)
    assert commands(state, protocol.StartWorkerGroup) == []  # nothing to do
    submit(state, task(1), task(2), now=1.0)
    state.on_tick(2.0)
    started = commands(state, protocol.StartWorkerGroup)
    assert [destination for destination, _ in started] == [MANAGER, MANAGER]
    # pending groups count as capacity: no more requests while they connect
    state.on_tick(3.0)
    assert commands(state, protocol.StartWorkerGroup) == []


def test_a_hello_under_another_identity_is_refused():
    state = make_state()
    state.on_message(b"M|other", protocol.WorkerManagerHello(manager_id=b"wm-test", workers_per_group=1), now=0.0)
    assert state.managers.managers == {}


def test_idle_groups_drain_then_stop_and_their_end_removes_nothing_twice():
    state = make_state(scaling_idle_seconds=5.0)
    register(state)
    submit(state, task(1), now=0.0)
    state.on_tick(1.0)
    (_, start), = commands(state, protocol.StartWorkerGroup)
    state.on_message(MANAGER, protocol.WorkerGroupEvent(group_id=start.group_id, event="started"), now=1.0)
    worker = group_worker_hello(state, start.group_id, now=2.0)
    sent = state.take_outgoing()
    assert any(type(m) is protocol.TaskBatch and destination == worker for destination, m, _ in sent)
    state.on_message(worker, protocol.ResultBatch(results=[protocol.TaskResult(task_id=tid(1), status="success")]),
                     now=3.0)
    state.on_tick(4.0)   # idle clock starts
    state.on_tick(8.0)
    assert commands(state, protocol.StopWorkerGroup) == []
    state.on_tick(9.5)
    stops = commands(state, protocol.StopWorkerGroup)
    assert [(d, m.group_id) for d, m in stops] == [(MANAGER, start.group_id)]
    assert state.workers[worker].closing  # drained: no new task goes there
    state.on_message(MANAGER, protocol.WorkerGroupEvent(group_id=start.group_id, event="ended", reason="CANCELLED"),
                     now=10.0)
    assert worker not in state.workers and state.managers.groups == {}


def test_a_busy_draining_group_stops_only_once_its_tasks_are_done():
    state = make_state(policy_engine_type="waterfall_v1", policy_content="1,wm-test,4", scaling_idle_seconds=1.0)
    register(state)
    submit(state, task(1), task(2), now=0.0)
    state.on_tick(0.5)
    groups = [m.group_id for _, m in commands(state, protocol.StartWorkerGroup)]
    workers = [group_worker_hello(state, group, now=1.0) for group in groups]
    state.take_outgoing()
    holder = next(w for w in workers if state.workers[w].assigned)
    other = next(w for w in workers if w != holder)
    state.on_message(other, protocol.ResultBatch(results=[protocol.TaskResult(task_id=next(iter(
        state.workers[other].assigned)), status="success")]), now=1.5)
    state.on_tick(2.0)  # one task left for two workers: surplus starts
    state.on_tick(3.5)  # the last tier drains one of them; whichever it is, nothing is stopped while busy
    stopped = [m.group_id for _, m in commands(state, protocol.StopWorkerGroup)]
    draining = [g for g, group in state.managers.groups.items() if group.draining]
    assert len(draining) == 1
    if stopped:
        assert not state.workers[b"W|%s|1" % stopped[0]].assigned


def test_a_group_the_resource_manager_ends_requeues_its_tasks_without_a_retry():
    state = make_state(max_task_retries=1)
    register(state)
    submit(state, task(1), now=0.0)
    state.on_tick(1.0)
    (_, start), = commands(state, protocol.StartWorkerGroup)
    worker = group_worker_hello(state, start.group_id, now=2.0)
    state.take_outgoing()
    assert tid(1) in state.workers[worker].assigned
    state.on_message(MANAGER, protocol.WorkerGroupEvent(group_id=start.group_id, event="ended",
                                                        reason="TIMEOUT (walltime)"), now=3.0)
    assert worker not in state.workers
    record = state.tasks[tid(1)]
    assert record.task.retries == 0 and record.status is None  # queued again, not failed
    state.on_tick(4.0)  # the policy replaces the capacity
    assert len(commands(state, protocol.StartWorkerGroup)) == 1


def test_a_failed_start_pauses_that_manager():
    state = make_state()
    register(state)
    submit(state, task(1), now=0.0)
    state.on_tick(1.0)
    (_, start), = commands(state, protocol.StartWorkerGroup)
    state.on_message(MANAGER, protocol.WorkerGroupEvent(group_id=start.group_id, event="failed",
                                                        reason="sbatch: error: invalid partition"), now=1.5)
    state.on_tick(2.0)
    assert commands(state, protocol.StartWorkerGroup) == []
    state.on_message(MANAGER, protocol.Heartbeat(), now=11.5)
    state.on_tick(12.0)
    assert len(commands(state, protocol.StartWorkerGroup)) == 1


def test_capability_scaling_starts_only_the_manager_that_offers_the_capability():
    state = make_state(policy_content="allocate=capability; scaling=capability")
    register(state, manager=b"M|wm-cpu")
    register(state, manager=b"M|wm-gpu", capabilities={"gpu": -1})
    submit(state, task(1, capabilities={"gpu": -1}), now=0.0)
    state.on_tick(1.0)
    assert [d for d, _ in commands(state, protocol.StartWorkerGroup)] == [b"M|wm-gpu"]


def test_a_silent_manager_is_forgotten_and_told_to_register_again():
    state = make_state(worker_timeout_seconds=5.0)
    register(state)
    state.on_tick(10.0)
    assert state.managers.managers == {}
    state.on_message(MANAGER, protocol.Heartbeat(), now=10.5)
    (_, message, _), = state.take_outgoing()
    assert type(message) is protocol.SchedulerShutdown and message.reconnect


def test_a_restarted_manager_hello_forgets_groups_it_no_longer_runs_and_adopts_the_ones_it_does():
    state = make_state()
    register(state)
    submit(state, task(1), now=0.0)
    state.on_tick(1.0)
    (_, start), = commands(state, protocol.StartWorkerGroup)
    state.on_message(MANAGER, protocol.WorkerManagerHello(manager_id=b"wm-test", workers_per_group=1, max_groups=4,
                                                          groups=[b"wm-test.kept"]), now=2.0)
    assert set(state.managers.groups) == {start.group_id, b"wm-test.kept"}  # the start may cross the hello
    state.on_message(MANAGER, protocol.WorkerManagerHello(manager_id=b"wm-test", workers_per_group=1, max_groups=4,
                                                          groups=[b"wm-test.kept"]), now=9.0)
    assert set(state.managers.groups) == {b"wm-test.kept"}
