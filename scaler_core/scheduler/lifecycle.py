"""A task's life in the scheduler, as a table of allowed moves, and the one function that makes them.

Every task, plain or a node of a declared graph, is in one state (``TaskState``). A move is
``(state, event) -> next state``; ``TRANSITIONS`` lists all that are allowed and anything else
raises ``IllegalTransition`` at once. ``_shift`` is the only place a state changes, so the
scheduler's counters are not kept by hand: ``pending``, ``running`` and the outcome counts
(succeeded / failed / cancelled) all follow from how many tasks sit in each state and which
finishing events happened. The moves that make work ready or free a worker's capacity are the
ones that ask for a dispatch round.

A node of a graph that has no record yet is ``HELD`` by its GraphTable (which tracks, in its own
columns, whether it is still waiting for dependencies or ready); it becomes a record when
dispatch reaches it (MATERIALIZE) and from then on moves like a plain task.

With ``validate`` on (unit tests), ``check_invariants`` recounts everything from the records after
each stimulus and raises on the first disagreement.
"""

from __future__ import annotations

from typing import Dict

from scaler_core import protocol
from scaler_core.scheduler.records import TaskState

WAITING, QUEUED, ASSIGNED, DONE = TaskState.WAITING, TaskState.QUEUED, TaskState.ASSIGNED, TaskState.DONE
HELD, NEW, GONE, DROPPED = TaskState.HELD, TaskState.NEW, TaskState.GONE, TaskState.DROPPED
FINISHED = (DONE, GONE, DROPPED)


class Event:
    SUBMIT = 0       # a plain task arrives and waits for dependencies (READY or FAIL when it need not)
    ADMIT = 1        # a declared graph arrives: its nodes are held by the graph's table
    READY = 2        # its last dependency finished (or it had none)
    MATERIALIZE = 3  # dispatch reached a held graph node: it becomes a queued record
    ASSIGN = 4       # handed to a worker
    RETURN = 5       # back from a worker (the worker died, or gave it back for balancing)
    SUCCEED = 6
    FAIL = 7         # its own failure, a dependency's, a dead worker's, no worker able to run it
    CANCEL = 8
    FORGET = 9       # nobody can need its outcome any more
    DROP = 10        # its client left before it ran: it leaves without an outcome
    LOSE_INPUT = 11  # a graph node's input is gone with its holder: it waits again for it to be remade
    RECOMPUTE = 12   # a finished graph node's lost result must be made again: held, to run anew
    AWAIT_REMAKE = 13  # a plain task's input, another graph's kept result, is gone: it waits for the remake


EVENT_NAMES = {value: name for name, value in vars(Event).items() if not name.startswith("_")}
STATE_NAMES = {value: name for name, value in vars(TaskState).items() if not name.startswith("_")}

# state -> event -> next state
TRANSITIONS = {
    NEW: {Event.SUBMIT: WAITING, Event.READY: QUEUED, Event.FAIL: DONE, Event.ADMIT: HELD},
    WAITING: {Event.READY: QUEUED, Event.FAIL: DONE, Event.CANCEL: DONE},
    HELD: {Event.MATERIALIZE: QUEUED, Event.FAIL: DONE, Event.CANCEL: DONE, Event.DROP: DROPPED},
    QUEUED: {Event.ASSIGN: ASSIGNED, Event.FAIL: DONE, Event.CANCEL: DONE, Event.DROP: DROPPED},
    ASSIGNED: {Event.RETURN: QUEUED, Event.SUCCEED: DONE, Event.FAIL: DONE, Event.CANCEL: DONE,
               Event.LOSE_INPUT: HELD, Event.AWAIT_REMAKE: WAITING},
    DONE: {Event.FORGET: GONE},
    GONE: {Event.RECOMPUTE: HELD},
    DROPPED: {},
}

# Work became ready, or a worker's slot came free, or an outcome may release dependents (and a
# graph's finished nodes are applied in bulk during dispatch): the next round has something to do.
# MATERIALIZE and ASSIGN happen inside a dispatch round, so they need not ask for another.
_WAKING_EVENTS = (Event.READY, Event.RETURN, Event.SUCCEED, Event.FAIL, Event.CANCEL,  # outcomes among them
                  Event.LOSE_INPUT, Event.RECOMPUTE)
_OUTCOMES = {Event.SUCCEED: "succeeded", Event.FAIL: "failed", Event.CANCEL: "cancelled"}
FINISH_EVENT = {"success": Event.SUCCEED, "cancelled": Event.CANCEL}  # any other status: FAIL


def _compile():
    """The table as nested tuples of (next state, wakes dispatch, outcome counted): two index
    operations per move on the hot path instead of dict lookups."""
    states = 1 + max(TRANSITIONS)
    events = 1 + max(EVENT_NAMES)
    steps = [[None] * events for _ in range(states)]
    for state, moves in TRANSITIONS.items():
        for event, target in moves.items():
            assert event in _WAKING_EVENTS or event not in _OUTCOMES, "_shift counts outcomes of waking moves only"
            steps[state][event] = (target, event in _WAKING_EVENTS, _OUTCOMES.get(event))
    return tuple(tuple(row) for row in steps)


_STEPS = _compile()


class IllegalTransition(RuntimeError):
    def __init__(self, state: int, event: int):
        super().__init__(f"a task in state {STATE_NAMES.get(state, state)} cannot take event "
                         f"{EVENT_NAMES.get(event, event)}")
        self.state = state
        self.event = event


class InvariantError(AssertionError):
    pass


class TaskLifecycle:
    """Mixin for SchedulerState: the counters, the one move function, outcome reports, checks."""

    def _init_lifecycle(self, validate: bool) -> None:
        self.validate = validate
        self._population = [0] * len(_STEPS)  # tasks per state; NEW goes negative: -admitted
        self.counts = {"succeeded": 0, "failed": 0, "cancelled": 0}

    def _shift(self, state: int, event: int, n: int = 1) -> int:
        """Move `n` tasks from `state` by `event`; returns their new state (the caller stores it)."""
        try:
            target, wakes, outcome = _STEPS[state][event]
        except (TypeError, IndexError):  # no entry: None does not unpack
            raise IllegalTransition(state, event) from None
        population = self._population
        population[state] -= n
        population[target] += n
        if wakes:
            self._dispatch_needed = True
            if outcome is not None:
                self.counts[outcome] += n
        return target

    def _recompute_finished_node(self, n: int = 1) -> None:
        """Finished graph nodes (successes) whose results were lost go back to be run again: they no
        longer count as succeeded until they succeed again."""
        self._shift(GONE, Event.RECOMPUTE, n)
        self.counts["succeeded"] -= n

    @property
    def pending(self) -> int:
        """Tasks not yet handed to a worker: waiting for dependencies, queued, or held by a graph."""
        population = self._population
        return population[WAITING] + population[QUEUED] + population[HELD]

    @property
    def running(self) -> int:
        return self._population[ASSIGNED]

    def _report_outcome(self, client_id: bytes, task_id: bytes, requested: bool, status: str, value: bytes,
                        stored: bool, profiling, notify_client: bool, report) -> None:
        """Tell the owner a task it asked for finished (plain tasks and graph nodes alike).

        `report` is the worker's own TaskResult when it has one for this task, forwarded as it is
        unless the worker delivered it to the client already (direct_results.py)."""
        if not requested or not notify_client or client_id not in self.clients:
            return
        if report is not None and report.task_id == task_id:
            if report.delivered:
                return
        else:
            report = protocol.TaskResult(task_id=task_id, status=status, value=value, stored=stored,
                                         profiling=profiling if profiling is not None else protocol.Profiling())
        self.outbox.result(client_id, report)

    # --- validate mode --------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Recount every counter from the records and check that they agree with each other."""
        by_state: Dict[int, int] = {}
        for task_id, record in self.tasks.items():
            _expect(record.task_id == task_id, f"task {task_id.hex()} is filed under another id")
            by_state[record.state] = by_state.get(record.state, 0) + 1
            if record.state == ASSIGNED:
                worker = self.workers.get(record.worker)
                _expect(worker is not None and task_id in worker.assigned,
                        f"assigned task {task_id.hex()} is not held by its worker")
            else:
                _expect(record.worker is None, f"task {task_id.hex()} in state {STATE_NAMES[record.state]} has a worker")
            if record.state == WAITING:
                _expect(record.waiting_on > 0, f"waiting task {task_id.hex()} waits on nothing")
            if record.graph is not None:
                _expect(record.graph.materialized.get(record.node) is record,
                        f"graph node record {task_id.hex()} is not its graph's")
                _expect(record.state in (QUEUED, ASSIGNED), f"graph node record {task_id.hex()} is "
                        f"{STATE_NAMES[record.state]}")
        for state in (WAITING, QUEUED, ASSIGNED, DONE):
            _expect(self._population[state] == by_state.get(state, 0),
                    f"{self._population[state]} tasks counted {STATE_NAMES[state]}, "
                    f"{by_state.get(state, 0)} records are")
        held = 0
        for graph in self.graphs.values():
            held += graph.undone_count() - len(graph.materialized)
        _expect(self._population[HELD] == held, f"{self._population[HELD]} graph nodes counted held, "
                f"{held} are")
        assigned = sum(len(worker.assigned) for worker in self.workers.values())
        _expect(self.running == assigned, f"{self.running} tasks counted running, workers hold {assigned}")
        queued_ids = {item for item in self.ready if type(item) is bytes}
        for task_id, record in self.tasks.items():
            if record.state == QUEUED:
                _expect(task_id in queued_ids, f"queued task {task_id.hex()} is not in the ready queue")
        finished = self._population[DONE] + self._population[GONE]
        _expect(sum(self.counts.values()) == finished,
                f"outcomes {self.counts} do not add up to the {finished} tasks that finished")
        for state, count in enumerate(self._population):
            if state != NEW:
                _expect(count >= 0, f"{count} tasks counted {STATE_NAMES.get(state, state)}")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantError(message)
