"""The scheduler state machine, driven directly: no sockets, no processes."""

import pickle

import pytest

from scaler_core import protocol
from scaler_core.errors import GraphError, NoWorkerError, WorkerDiedError
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.policies import CapabilityPolicy
from scaler_core.scheduler.state import SchedulerSettings, SchedulerState

CLIENT = b"C|client-1"
OTHER_CLIENT = b"C|client-2"


def worker_id(n):
    return b"W|host|%d" % n


def make_state(**settings):
    policy = settings.pop("policy", None)
    # validate: every step recounts the counters from the records (see lifecycle.check_invariants)
    return SchedulerState(SchedulerSettings(object_storage_address="tcp://127.0.0.1:1", **settings), policy,
                          validate=True)


def hello(state, n, capabilities=None, now=0.0):
    caps = [protocol.Capability(name=k, quantity=v) for k, v in (capabilities or {}).items()]
    state.on_message(worker_id(n), protocol.WorkerHello(worker_id=worker_id(n), capabilities=caps,
                                                        cluster_id=b"K|cluster"), now=now)


def task(n, deps=(), requested=True, priority=0, capabilities=None):
    caps = [protocol.Capability(name=k, quantity=v) for k, v in (capabilities or {}).items()]
    return protocol.Task(task_id=b"t%015d" % n, function_id=b"f", args=b"a", dependencies=[b"t%015d" % d for d in deps],
                         requested=requested, priority=priority, capabilities=caps)


def tid(n):
    return b"t%015d" % n


def submit(state, *tasks, client=CLIENT, now=0.0):
    if client not in state.clients:
        state.on_message(client, protocol.ClientHello(), now=now)
    state.on_message(client, protocol.TaskBatch(tasks=list(tasks)), now=now)


def sent(state):
    return state.take_outgoing()


def tasks_sent(outgoing):
    return {dest: [t.task_id for t in msg.tasks] for dest, msg, _ in outgoing if type(msg) is protocol.TaskBatch}


def results_sent(outgoing, client=CLIENT):
    return [r for dest, msg, _ in outgoing if type(msg) is protocol.ResultBatch and dest == client for r in msg.results]


def succeed(state, n, worker, value=b"v", stored=False, duration=0.1, now=0.0, delivered=False):
    result = protocol.TaskResult(task_id=tid(n), status="success", value=value, stored=stored,
                                 profiling=protocol.Profiling(duration_seconds=duration), delivered=delivered)
    state.on_message(worker_id(worker), protocol.ResultBatch(results=[result]), now=now)


def test_submit_dispatches_and_result_reaches_the_client():
    state = make_state()
    hello(state, 1)
    welcome = sent(state)
    assert type(welcome[0][1]) is protocol.Welcome
    submit(state, task(1))
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1)]}
    succeed(state, 1, 1, value=b"result")
    results = results_sent(sent(state))
    assert [(r.task_id, r.status, r.value) for r in results] == [(tid(1), "success", b"result")]
    assert state.tasks == {}, "finished plain tasks are forgotten"


def test_a_result_its_worker_delivered_to_the_client_is_not_forwarded_but_still_feeds_dependents():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(1), task(2, deps=[1]))
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1)]}
    succeed(state, 1, 1, value=b"one", delivered=True)
    outgoing = sent(state)
    assert results_sent(outgoing) == [], "the client has it from the worker"
    dispatched = [t for dest, msg, _ in outgoing if type(msg) is protocol.TaskBatch for t in msg.tasks]
    assert [t.task_id for t in dispatched] == [tid(2)]
    assert [(i.object_id, i.inline) for i in dispatched[0].inputs] == [(tid(1), b"one")]
    succeed(state, 2, 1, value=b"two")
    assert [(r.task_id, r.value) for r in results_sent(sent(state))] == [(tid(2), b"two")]
    assert state.tasks == {}


def test_tasks_queue_without_workers_and_dispatch_when_one_joins():
    state = make_state()
    submit(state, task(1), task(2))
    assert tasks_sent(sent(state)) == {}
    hello(state, 1)
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1), tid(2)]}


def test_even_load_across_workers():
    state = make_state()
    hello(state, 1)
    hello(state, 2)
    sent(state)
    submit(state, *[task(n) for n in range(4)])
    by_worker = tasks_sent(sent(state))
    assert sorted(len(v) for v in by_worker.values()) == [2, 2]


def test_in_flight_limit_grows_for_tiny_tasks_and_rest_waits():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, *[task(n) for n in range(5000)])
    in_flight = tasks_sent(sent(state))[worker_id(1)]
    assert len(in_flight) == 2, "unknown durations: only a couple in flight"
    for _ in range(5):
        for n in in_flight:
            succeed(state, int(n[1:]), 1, duration=0.00001)
        in_flight = tasks_sent(sent(state))[worker_id(1)]
    assert len(in_flight) > 10, "fast tasks get a deeper pipeline"


def test_priority_orders_the_queue():
    state = make_state()
    submit(state, task(1, priority=0), task(2, priority=5))
    hello(state, 1)
    assert tasks_sent(sent(state))[worker_id(1)] == [tid(2), tid(1)]


def test_graph_runs_in_dependency_order_with_inputs_filled():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(1, requested=False), task(2, requested=False), task(3, deps=(1, 2)))
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1), tid(2)]}
    succeed(state, 1, 1, value=b"one")
    assert tasks_sent(sent(state)) == {}
    succeed(state, 2, 1, value=b"two")
    outgoing = sent(state)
    assert results_sent(outgoing) == [], "intermediates are not sent to the client"
    dispatched = [m for _, m, _ in outgoing if type(m) is protocol.TaskBatch][0].tasks[0]
    assert dispatched.task_id == tid(3)
    assert {(i.object_id, i.inline) for i in dispatched.inputs} == {(tid(1), b"one"), (tid(2), b"two")}
    assert set(state.tasks) == {tid(1), tid(2), tid(3)}
    succeed(state, 3, 1)
    assert [r.task_id for r in results_sent(sent(state))] == [tid(3)]
    assert state.tasks == {}, "intermediates are released once their dependents are done"


def test_stored_intermediate_is_deleted_from_object_storage_when_released():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(1, requested=False), task(2, deps=(1,)))
    sent(state)
    succeed(state, 1, 1, value=b"", stored=True)
    sent(state)
    succeed(state, 2, 1)
    deletes = [m for d, m, _ in sent(state) if d == OBJECT_STORAGE and type(m) is protocol.ObjectDelete]
    assert deletes and deletes[0].object_ids == [tid(1)]


def test_failure_propagates_to_all_dependents_without_recursion():
    state = make_state()
    hello(state, 1)
    sent(state)
    chain = [task(0, requested=False)] + [task(n, deps=(n - 1,), requested=(n == 5000)) for n in range(1, 5001)]
    submit(state, *chain)
    sent(state)
    error = pickle.dumps(ValueError("boom"))
    state.on_message(worker_id(1), protocol.ResultBatch(results=[
        protocol.TaskResult(task_id=tid(0), status="failed", value=error)]), now=0)
    results = results_sent(sent(state))
    assert [(r.task_id, r.status) for r in results] == [(tid(5000), "failed")]
    assert isinstance(pickle.loads(results[0].value), ValueError)
    assert state.tasks == {}


def test_missing_dependency_fails_the_task_clearly():
    state = make_state()
    submit(state, task(1, deps=(99,)))
    results = results_sent(sent(state))
    assert results[0].status == "schedulerError"
    error = pickle.loads(results[0].value)
    assert isinstance(error, GraphError) and "Missing dependency" in str(error)


def test_cancel_queued_task_and_its_dependents():
    state = make_state()
    submit(state, task(1), task(2, deps=(1,)))
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(1)]), now=0)
    statuses = {(r.task_id, r.status) for r in results_sent(sent(state))}
    assert statuses == {(tid(1), "cancelled"), (tid(2), "cancelled")}
    hello(state, 1)
    assert tasks_sent(sent(state)) == {}
    assert state.tasks == {}


def test_cancel_assigned_task_is_forwarded_to_its_worker():
    state = make_state()
    hello(state, 1)
    submit(state, task(1))
    sent(state)
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(1)]), now=0)
    cancels = [(d, m) for d, m, _ in sent(state) if type(m) is protocol.TaskCancel]
    assert cancels == [(worker_id(1), protocol.TaskCancel(task_ids=[tid(1)]))]
    state.on_message(worker_id(1), protocol.ResultBatch(results=[
        protocol.TaskResult(task_id=tid(1), status="cancelled")]), now=0)
    assert [r.status for r in results_sent(sent(state))] == ["cancelled"]


def cancels_sent(state):
    return [(d, m) for d, m, _ in sent(state) if type(m) is protocol.TaskCancel]


def assigned_to_one_worker(*numbers):
    state = make_state()
    hello(state, 1)
    submit(state, *[task(n) for n in numbers])
    sent(state)
    return state


def cancel_pending(state, *numbers):
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(n) for n in numbers], pending_only=True), now=0)


def test_pending_only_cancel_of_a_started_task_is_not_forwarded():
    state = assigned_to_one_worker(1)
    state.on_message(worker_id(1), protocol.TaskStarted(task_ids=[tid(1)]), now=0)
    cancel_pending(state, 1)
    assert cancels_sent(state) == []
    succeed(state, 1, 1, value=b"done")
    assert [(r.status, r.value) for r in results_sent(sent(state))] == [("success", b"done")]


def test_pending_only_cancel_lets_the_worker_decide_and_a_full_cancel_overrides_it():
    state = assigned_to_one_worker(1, 2)
    cancel_pending(state, 1)
    assert cancels_sent(state) == [(worker_id(1), protocol.TaskCancel(task_ids=[tid(1)], pending_only=True))]
    cancel_pending(state, 1)
    assert cancels_sent(state) == [], "asked once"
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(1)]), now=0)
    assert cancels_sent(state) == [(worker_id(1), protocol.TaskCancel(task_ids=[tid(1)]))]
    # the worker had started task 1 before the cancel arrived: its result is delivered
    succeed(state, 1, 1, value=b"done")
    assert [(r.status, r.value) for r in results_sent(sent(state))] == [("success", b"done")]


def test_pending_only_cancel_of_the_task_running_when_its_worker_died_runs_it_again():
    state = assigned_to_one_worker(1, 2)
    cancel_pending(state, 1, 2)
    sent(state)
    state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(1), exit_code=-9), now=0)
    # task 1 may have been running (oldest assigned): it runs again; task 2 had not started: cancelled
    assert [(r.task_id, r.status) for r in results_sent(sent(state))] == [(tid(2), "cancelled")]
    hello(state, 2)
    assert tasks_sent(sent(state)) == {worker_id(2): [tid(1)]}


def test_a_client_cannot_cancel_another_clients_task():
    state = make_state()
    submit(state, task(1))
    state.on_message(OTHER_CLIENT, protocol.TaskCancel(task_ids=[tid(1)]), now=0)
    assert results_sent(sent(state)) == []
    assert tid(1) in state.tasks


def test_dead_worker_tasks_run_elsewhere():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(1), task(2))
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1), tid(2)]}
    hello(state, 2)
    sent(state)
    state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(1), exit_code=-9), now=0)
    assert tasks_sent(sent(state)) == {worker_id(2): [tid(1), tid(2)]}
    assert state.tasks[tid(1)].task.retries == 1, "the running task counts a retry"
    assert state.tasks[tid(2)].task.retries == 0, "a queued task does not"


def test_task_that_keeps_killing_workers_fails_with_a_clear_error():
    state = make_state(max_task_retries=3)
    submit(state, task(1))
    for n in range(3):
        hello(state, n)
        sent(state)
        state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(n), exit_code=-9), now=0)
    results = results_sent(sent(state))
    assert [r.status for r in results] == ["workerDied"]
    assert isinstance(pickle.loads(results[0].value), WorkerDiedError)


def test_worker_heartbeat_timeout_requeues():
    state = make_state(worker_timeout_seconds=5)
    hello(state, 1, now=0)
    submit(state, task(1), now=0)
    sent(state)
    state.on_tick(now=3)
    assert worker_id(1) in state.workers
    state.on_tick(now=6)
    assert worker_id(1) not in state.workers
    from scaler_core.scheduler.records import TaskState
    assert state.tasks[tid(1)].state == TaskState.QUEUED


def test_stale_result_from_a_removed_worker_is_ignored():
    state = make_state()
    hello(state, 1)
    submit(state, task(1))
    sent(state)
    state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(1)), now=0)
    hello(state, 2)
    sent(state)
    succeed(state, 1, 1)  # the dead worker's late answer
    assert results_sent(sent(state)) == []
    succeed(state, 1, 2)
    assert len(results_sent(sent(state))) == 1


def test_client_disconnect_cancels_its_tasks_and_frees_its_objects():
    state = make_state()
    hello(state, 1)
    submit(state, task(1), task(2), task(3))
    submit(state, task(4), client=OTHER_CLIENT)
    sent(state)
    state.on_message(CLIENT, protocol.ClientDisconnect(), now=0)
    outgoing = sent(state)
    assert any(d == OBJECT_STORAGE and m == protocol.ObjectDeleteOwner(owner_id=CLIENT) for d, m, _ in outgoing)
    assert all(r.task_id != tid(4) for r in results_sent(outgoing, OTHER_CLIENT))
    assert tid(4) in state.tasks


def test_client_timeout_counts_as_disconnect():
    state = make_state(client_timeout_seconds=5)
    submit(state, task(1), now=0)
    state.on_tick(now=10)
    assert CLIENT not in state.clients and state.tasks == {}


def test_messages_not_allowed_for_the_role_are_refused():
    state = make_state()
    assert not state.on_message(b"W|worker", protocol.TaskBatch(tasks=[task(1)]), now=0)
    assert not state.on_message(CLIENT, protocol.ResultBatch(results=[]), now=0)
    assert not state.on_message(CLIENT, protocol.WorkerDied(worker_id=b"W|x"), now=0)
    assert not state.on_message(b"X|nobody", protocol.Heartbeat(), now=0)
    assert state.tasks == {}


def test_protected_scheduler_refuses_shutdown():
    state = make_state(protected=True)
    state.on_message(CLIENT, protocol.ClientDisconnect(shutdown_scheduler=True), now=0)
    response = [m for _, m, _ in sent(state) if type(m) is protocol.ShutdownResponse][0]
    assert not response.accepted and "protected" in response.reason
    assert not state.stopping


def test_unprotected_scheduler_shuts_down_everyone():
    state = make_state(protected=False)
    hello(state, 1)
    sent(state)
    state.on_message(CLIENT, protocol.ClientDisconnect(shutdown_scheduler=True), now=0)
    outgoing = sent(state)
    assert state.stopping
    assert any(d == worker_id(1) and type(m) is protocol.SchedulerShutdown for d, m, _ in outgoing)


def test_blocked_worker_gets_more_work():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, *[task(n) for n in range(5)])
    assert len(tasks_sent(sent(state))[worker_id(1)]) == 2
    state.on_message(worker_id(1), protocol.WorkerBlocked(blocked_tasks=2), now=0)
    assert len(tasks_sent(sent(state))[worker_id(1)]) == 2


# --- capability policy ---------------------------------------------------------------------------


def test_capability_routing_by_name():
    state = make_state(policy=CapabilityPolicy())
    hello(state, 1, {"linux": -1})
    hello(state, 2, {"gpu": -1, "linux": -1})
    sent(state)
    submit(state, task(1, capabilities={"gpu": -1}), task(2, capabilities={"gpu": -1}))
    assert tasks_sent(sent(state)) == {worker_id(2): [tid(1), tid(2)]}


def test_capability_quantities_limit_concurrency():
    state = make_state(policy=CapabilityPolicy())
    hello(state, 1, {"gpu": 2})
    sent(state)
    submit(state, *[task(n, capabilities={"gpu": 1}) for n in range(4)])
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(0), tid(1)]}
    succeed(state, 0, 1)
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(2)]}


def test_unsatisfiable_capabilities_fail_after_grace():
    state = make_state(policy=CapabilityPolicy(), no_worker_grace_seconds=5)
    hello(state, 1, {"linux": -1})
    submit(state, task(1, capabilities={"gpu": -1}), task(2, capabilities={"linux": -1}))
    state.on_tick(now=1)
    outgoing = sent(state)
    assert tasks_sent(outgoing) == {worker_id(1): [tid(2)]}
    state.on_tick(now=7)
    results = results_sent(sent(state))
    assert [(r.task_id, r.status) for r in results] == [(tid(1), "noWorker")]
    assert isinstance(pickle.loads(results[0].value), NoWorkerError)


def test_even_policy_ignores_capabilities():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(1, capabilities={"gpu": -1}))
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1)]}


def test_announced_dependents_keep_a_result_across_batches():
    state = make_state()
    hello(state, 1)
    sent(state)
    first = task(1, requested=False)
    first.dependent_count = 1
    submit(state, first)
    sent(state)
    succeed(state, 1, 1, value=b"kept", stored=True)
    outgoing = sent(state)
    assert not any(type(m) is protocol.ObjectDelete for _, m, _ in outgoing), "not released: a dependent is due"
    submit(state, task(2, deps=(1,)))
    dispatched = [m for _, m, _ in sent(state) if type(m) is protocol.TaskBatch][0].tasks[0]
    assert dispatched.inputs[0].object_id == tid(1) and dispatched.inputs[0].stored
    succeed(state, 2, 1)
    assert any(type(m) is protocol.ObjectDelete for _, m, _ in sent(state))
    assert state.tasks == {}


def test_dropped_client_is_told_instead_of_silently_readmitted():
    state = make_state(client_timeout_seconds=5)
    submit(state, task(1), now=0)
    state.on_tick(now=10)
    sent(state)
    state.on_message(CLIENT, protocol.TaskBatch(tasks=[task(2)]), now=11)
    shutdowns = [m for d, m, _ in sent(state) if type(m) is protocol.SchedulerShutdown and d == CLIENT]
    assert shutdowns and shutdowns[0].reconnect
    assert state.tasks == {}


def test_worker_died_only_accepted_from_its_own_cluster():
    state = make_state()
    state.on_message(worker_id(1), protocol.WorkerHello(worker_id=worker_id(1), cluster_id=b"K|mine"), now=0)
    state.on_message(b"K|other", protocol.WorkerDied(worker_id=worker_id(1)), now=0)
    assert worker_id(1) in state.workers
    state.on_message(b"K|mine", protocol.WorkerDied(worker_id=worker_id(1)), now=0)
    assert worker_id(1) not in state.workers


def test_idle_worker_gets_queued_tasks_of_a_busy_one():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, *[task(n) for n in range(2)])
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(0), tid(1)]}
    hello(state, 2)
    outgoing = sent(state)
    requests = [(d, m) for d, m, _ in outgoing if type(m) is protocol.BalanceRequest]
    assert requests == [(worker_id(1), protocol.BalanceRequest(task_ids=[tid(1)]))], "the running one stays"
    state.on_message(worker_id(1), protocol.BalanceResponse(task_ids=[tid(1)]), now=0)
    assert tasks_sent(sent(state)) == {worker_id(2): [tid(1)]}
    hello(state, 3)
    assert not [m for _, m, _ in sent(state) if type(m) is protocol.BalanceRequest], "nothing left to move"


def heartbeat(state, n, paused, now=0.0):
    state.on_message(worker_id(n), protocol.Heartbeat(rss_bytes=1, paused=paused), now=now)


def balance_requests(outgoing):
    return [(d, m.task_ids) for d, m, _ in outgoing if type(m) is protocol.BalanceRequest]


def test_a_paused_worker_gets_no_task_and_gives_back_what_it_has_not_started():
    state = make_state()
    hello(state, 1)
    hello(state, 2)
    sent(state)
    heartbeat(state, 1, paused=True)
    submit(state, *[task(n) for n in range(3)])
    outgoing = sent(state)
    assert list(tasks_sent(outgoing)) == [worker_id(2)], "nothing for the paused worker"
    heartbeat(state, 1, paused=False)
    submit(state, task(3), task(4))
    assert worker_id(1) in tasks_sent(sent(state)), "resumed: it takes work again"
    before = list(state.workers[worker_id(1)].assigned)
    heartbeat(state, 1, paused=True)
    (request,) = balance_requests(sent(state))
    assert request == (worker_id(1), before), "every task it holds: it answers with those not started"
    state.on_message(worker_id(1), protocol.BalanceResponse(task_ids=before[1:]), now=0)
    assert not tasks_sent(sent(state)).get(worker_id(1))
    assert list(state.workers[worker_id(1)].assigned) == before[:1]
    assert balance_requests(sent(state)) == [], "not asked twice"


def test_when_every_worker_is_paused_tasks_wait_where_they_are():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(0), task(1))
    sent(state)
    heartbeat(state, 1, paused=True)
    assert balance_requests(sent(state)) == []
    submit(state, task(2))
    assert tasks_sent(sent(state)) == {}
    hello(state, 2)
    outgoing = sent(state)
    assert balance_requests(outgoing) == [(worker_id(1), [tid(0), tid(1)])] and tasks_sent(outgoing) == {
        worker_id(2): [tid(2)]}


def test_a_paused_worker_that_leaves_is_forgotten():
    state = make_state()
    hello(state, 1)
    heartbeat(state, 1, paused=True)
    state.on_message(worker_id(1), protocol.WorkerDisconnect(reason="memory"), now=0)
    assert state.paused_workers == set()


def test_balance_race_with_a_result_runs_nothing_twice():
    state = make_state()
    hello(state, 1)
    sent(state)
    submit(state, task(0), task(1))
    sent(state)
    hello(state, 2)
    sent(state)
    succeed(state, 1, 1)  # it ran before the request arrived
    assert [r.task_id for r in results_sent(sent(state))] == [tid(1)]
    state.on_message(worker_id(1), protocol.BalanceResponse(task_ids=[tid(1)]), now=0)  # late, stale
    outgoing = sent(state)
    assert tasks_sent(outgoing) == {} and results_sent(outgoing) == []


def test_a_stalled_scheduler_does_not_declare_everyone_dead():
    state = make_state(worker_timeout_seconds=5, client_timeout_seconds=5)
    hello(state, 1, now=0)
    submit(state, task(1), now=0)
    state.on_tick(now=0.5)
    state.on_tick(now=20)  # the loop was busy for 19.5 s: no heartbeat could be read meanwhile
    assert worker_id(1) in state.workers and CLIENT in state.clients
    for step in range(1, 21):  # but silence while we tick normally counts
        state.on_tick(now=20 + step * 0.5)
    assert worker_id(1) not in state.workers


def test_task_started_reaches_only_the_owner():
    state = make_state()
    hello(state, 1)
    submit(state, task(1))
    sent(state)
    state.on_message(worker_id(1), protocol.TaskStarted(task_ids=[tid(1), tid(99)]), now=0)
    started = [(d, m) for d, m, _ in sent(state) if type(m) is protocol.TaskStarted]
    assert started == [(CLIENT, protocol.TaskStarted(task_ids=[tid(1)]))]
    state.on_message(worker_id(2), protocol.TaskStarted(task_ids=[tid(1)]), now=0)  # not its worker
    assert not [m for _, m, _ in sent(state) if type(m) is protocol.TaskStarted]


def test_pending_count_follows_every_transition():
    from scaler_core.scheduler.records import TaskState

    def brute_force():
        return sum(r.state in (TaskState.WAITING, TaskState.QUEUED) for r in state.tasks.values())

    state = make_state(max_task_retries=5)
    hello(state, 1)
    submit(state, task(1), task(2), task(3, deps=(1,)), task(4, deps=(99,)), task(5), task(6))
    sent(state)
    assert state.task_counts()["pending"] == brute_force()
    state.on_message(CLIENT, protocol.TaskCancel(task_ids=[tid(5)]), now=0)
    hello(state, 2)
    sent(state)
    state.on_message(b"K|cluster", protocol.WorkerDied(worker_id=worker_id(1)), now=0)
    sent(state)
    assert state.task_counts()["pending"] == brute_force()
    for n in (1, 2, 3, 6):
        if tid(n) in state.tasks and state.tasks[tid(n)].worker:
            succeed(state, n, int(state.tasks[tid(n)].worker[-1:]))
            sent(state)
        assert state.task_counts()["pending"] == brute_force()


def test_task_warnings_are_forwarded_to_the_owner():
    state = make_state()
    hello(state, 1)
    submit(state, task(1))
    sent(state)
    warned = protocol.TaskWarnings(task_id=tid(1), warnings=b"w")
    state.on_message(worker_id(1), warned, now=0)
    succeed(state, 1, 1)
    outgoing = sent(state)
    assert [(dest, type(msg)) for dest, msg, _ in outgoing] == [(CLIENT, protocol.TaskWarnings),
                                                                 (CLIENT, protocol.ResultBatch)]


def test_a_dependent_goes_to_the_worker_that_holds_its_stored_input():
    state = make_state()
    hello(state, 1)
    submit(state, task(1), task(5))  # both on worker 1, the only one yet
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(1), tid(5)]}
    hello(state, 2)
    submit(state, task(3, deps=[1]))
    sent(state)
    succeed(state, 5, 1, duration=0.001)
    succeed(state, 1, 1, stored=True, duration=0.001)  # a large result, made by worker 1
    # both workers idle: 3 goes where its input was made
    assert tasks_sent(sent(state)) == {worker_id(1): [tid(3)]}


def test_a_busy_holder_leaves_the_dependent_to_an_idle_worker():
    state = make_state()
    hello(state, 1)
    submit(state, task(1), task(5))
    sent(state)
    hello(state, 2)
    submit(state, task(3, deps=[1]))
    sent(state)
    succeed(state, 1, 1, stored=True, duration=0.001)
    # worker 1 still runs 5: the idle worker 2 reads the input from the host store instead of waiting
    assert tasks_sent(sent(state)) == {worker_id(2): [tid(3)]}


def test_locality_yields_when_the_holder_cannot_take_the_task():
    state = make_state()
    hello(state, 1)
    hello(state, 2)
    sent(state)
    submit(state, task(1), task(2, deps=[1]))
    (holder, _), = tasks_sent(sent(state)).items()
    holder_n = int(holder.rsplit(b"|", 1)[1])
    state.workers[holder].closing = True  # the holder takes no new work: the dependent goes elsewhere
    succeed(state, 1, holder_n, stored=True)
    assert tasks_sent(sent(state)) == {worker_id(3 - holder_n): [tid(2)]}


def test_a_finished_tasks_large_argument_blob_is_deleted():
    state = make_state()
    hello(state, 1)
    big_args = task(1)
    big_args.args_stored, big_args.args_object_id = True, b"args-of-task-1"
    submit(state, big_args, task(2))
    sent(state)
    succeed(state, 1, 1)
    succeed(state, 2, 1)
    deletes = [i for d, m, _ in sent(state) if d == OBJECT_STORAGE and type(m) is protocol.ObjectDelete
               for i in m.object_ids]
    assert deletes == [b"args-of-task-1"]


def test_a_worker_filled_by_tiny_tasks_gives_back_the_surplus_once_tasks_turn_slow():
    state = make_state()
    hello(state, 1)
    for n in range(100, 112):  # tiny tasks: the pipeline grows to hundreds of tasks
        submit(state, task(n))
        sent(state)
        succeed(state, n, 1, duration=0.0001)
    submit(state, *[task(n) for n in range(1, 51)])
    assert len(tasks_sent(sent(state))[worker_id(1)]) == 50
    succeed(state, 1, 1, duration=0.05)  # the real tasks are slow: the limit drops at once
    worker = state.workers[worker_id(1)]
    assert worker.limit == 2
    (request,) = [m for d, m, _ in sent(state) if type(m) is protocol.BalanceRequest]
    assert request.task_ids == [tid(n) for n in range(4, 51)]  # all but the running one and the limit
    state.on_message(worker_id(1), protocol.BalanceResponse(task_ids=request.task_ids), now=0.0)
    assert len(worker.assigned) == 2 and state.queued_count() == 47


def test_a_small_surplus_stays_where_it_is():
    from scaler_core.scheduler.pipeline import surplus
    assert surplus(held=50, limit=2, mean_duration=0.05) == 48
    assert surplus(held=50, limit=2, mean_duration=0.001) == 0  # 48 ms of work: not worth moving
    assert surplus(held=3, limit=2, mean_duration=10.0) == 0


def test_durations_jump_up_at_once_and_settle_down_gradually():
    from scaler_core.scheduler.pipeline import next_mean_duration
    assert next_mean_duration(0.001, 0.1) == 0.1
    assert next_mean_duration(0.1, 0.001) == pytest.approx(0.0505)
    assert next_mean_duration(0.00001, 0.001) == pytest.approx(0.000505)  # a pause among tiny tasks: no jump
    assert next_mean_duration(0.01, 0.02) == pytest.approx(0.015)
