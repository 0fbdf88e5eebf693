"""Lineage for plain tasks' stored results: how to make one again while it is alive.

A graph's nodes run again from their graph's table (graph_tasks.py). A plain task's record is
forgotten once no dependent needs it, yet its stored result lives on while its client holds the
future, and a task submitted later may read it. For as long as that result is alive the scheduler
keeps a **recipe**: the task as it ran (function, arguments, inputs with its dependencies resolved)
and its argument blob. A task that finds such an input lost with its host waits while the recipe
runs again as a fresh task under the same id, whose result goes to the object storage as the lost
one did; nobody but the waiting tasks hears of that run. A recipe goes when its object is deleted
(released by the client, forgotten unrequested, or its client left), so lineage reaches back
through results still alive, no further, and at most `max_task_retries` times per object.
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, Iterable, List

from scaler_core import protocol
from scaler_core.scheduler.lifecycle import Event
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.records import TaskRecord, TaskState

logger = logging.getLogger(__name__)


class Recipe:
    __slots__ = ("task", "remade")

    def __init__(self, task: "protocol.Task", remade: int):
        self.task = task
        self.remade = remade  # times its result was made again after a loss


class PlainLineage:
    """Mixin for SchedulerState."""

    def _init_plain_lineage(self) -> None:
        self.recipes: Dict[bytes, Recipe] = {}
        self._plain_remakes: Dict[bytes, List[TaskRecord]] = {}  # object being made again -> tasks waiting

    def _keep_recipe(self, record: TaskRecord) -> None:
        """A plain task's result was stored: remember how it was made (its argument blob stays too)."""
        known = self.recipes.get(record.task_id)
        self.recipes[record.task_id] = Recipe(record.task, known.remade if known is not None else 0)

    def _drop_recipes(self, object_ids: Iterable[bytes]) -> None:
        """These objects are deleted: their recipes go, and the argument blobs kept for them."""
        blobs = []
        for object_id in object_ids:
            recipe = self.recipes.pop(object_id, None)
            if recipe is not None and recipe.task.args_stored and not self.journaling:
                blobs.append(recipe.task.args_object_id)
        if blobs:
            self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=blobs))

    def _drop_client_recipes(self, client_id: bytes) -> None:
        """The client left: the storage deletes everything it owned (blobs included)."""
        gone = [object_id for object_id, recipe in self.recipes.items() if recipe.task.client_id == client_id]
        for object_id in gone:
            del self.recipes[object_id]

    def _remake_plain(self, record: TaskRecord, object_id: bytes) -> bool:
        """`record` (a plain task) found `object_id` lost: run its recipe again and let `record` wait
        for it. False when there is no recipe of the record's client for it, or it was remade too
        often: the caller fails the task."""
        recipe = self.recipes.get(object_id)
        if recipe is None or recipe.task.client_id != record.client_id or record.graph is not None:
            return False
        waiters = self._plain_remakes.get(object_id)
        if waiters is None:
            existing = self.tasks.get(object_id)
            if recipe.remade >= self.settings.max_task_retries or (
                    existing is not None and existing.state != TaskState.DONE):
                return False
            recipe.remade += 1
            self._plain_remakes[object_id] = waiters = []
            self._run_recipe(recipe, existing)
        record.state = self._shift(record.state, Event.AWAIT_REMAKE)
        record.waiting_on = 1
        waiters.append(record)
        return True

    def _run_recipe(self, recipe: Recipe, existing) -> None:
        task = copy.copy(recipe.task)
        task.retries = 0
        # its dependencies' results are among its inputs already (the first run resolved them), and
        # they counted this task as a dependent once: it must not release them a second time
        task.dependencies = ()
        task.inputs = list(task.inputs)
        remake = TaskRecord(task)
        remake.remade = True
        if existing is not None:  # still kept for dependents that finished or run elsewhere: replaced
            remake.pending_dependents = existing.pending_dependents
            remake.client_released = existing.client_released
            existing.state = self._shift(existing.state, Event.FORGET)
        self.tasks[task.task_id] = remake
        client = self.clients.get(task.client_id)
        if client is not None:
            client.tasks[task.task_id] = None
        # the storage forgets the lost copy (it answers "not found" for it at once): a reader's get that
        # overtakes the new copy's put then waits for it
        self.outbox.send(OBJECT_STORAGE, protocol.ObjectDelete(object_ids=[task.task_id]))
        self._enqueue(remake)
        logger.warning("scheduler: the result of task %s was lost with its holder; running it again (time %d)",
                       task.task_id.hex(), recipe.remade)

    def _settle_plain_remake(self, record: TaskRecord, status: str, value: bytes) -> None:
        """A recipe's run finished: the tasks waiting for its result go on, or fail as it did."""
        for waiter in self._plain_remakes.pop(record.task_id, ()):
            self._resume_after_remake(waiter, status, value)

    def _resume_after_remake(self, waiter: TaskRecord, status: str, value: bytes) -> None:
        """A plain task waited for a lost input to be made again (a graph node's or a plain task's)."""
        if self.tasks.get(waiter.task_id) is not waiter or waiter.state != TaskState.WAITING:
            return  # cancelled meanwhile
        if status == "success":
            waiter.waiting_on -= 1
            self._enqueue(waiter)
        else:
            self._finish(waiter, status, value, False, None)
