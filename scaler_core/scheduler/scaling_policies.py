"""Scaling policies: how many worker groups the worker managers should run (no I/O here).

Once per tick the scheduler's worker-manager registry (worker_managers.py) describes the situation
in a `ScalingSnapshot` (the managers and what one group of each offers, every group with its load,
the tasks waiting or running, by the capabilities they need) and asks the policy for a
`ScalingDecision`: groups to start (one manager id per group), groups to drain (they get no new
tasks and are stopped once idle) and draining groups to take back into service. Policies keep
only timers between calls, so each is tested by feeding it snapshots.

Shared rules, whatever the policy:
- capacity is counted in workers, and a group asked for but not yet connected (a batch job still in
  its queue) counts as capacity: the policy does not ask again for what is on its way;
- a draining group is not capacity; when more is needed, draining groups come back first, since
  they are running already;
- only the registry stops a group, and only once none of its workers holds a task (drain first);
- a manager whose last start failed is left alone for a while (`paused`): the policy grows elsewhere
  or waits.

`vanilla` grows while tasks per worker exceed `tasks_per_worker` and drains groups idle for
`idle_seconds`; `capability` does the same for each set of required capabilities, on managers
whose groups offer them; `waterfall_v1` grows managers in the priority order of its rules (each up to
its own worker limit) and drains the last tier first when there are more workers than tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

Requirement = Tuple[Tuple[str, int], ...]  # a task's capabilities, sorted: () for tasks that need none


@dataclass(frozen=True)
class ManagerOffer:
    """What one group of a manager offers (from its WorkerManagerHello)."""

    manager_id: str
    workers_per_group: int
    capabilities: Dict[str, int] = field(default_factory=dict)
    max_groups: int = -1  # -1: no limit

    def offers(self, requirement: Requirement) -> bool:
        for name, quantity in requirement:
            offered = self.capabilities.get(name)
            if offered is None or (quantity > 0 and 0 <= offered < quantity):
                return False
        return True


@dataclass
class GroupView:
    group_id: bytes
    manager_id: str
    workers: int = 0                     # connected
    busy_workers: int = 0                # connected and holding at least one task
    pending: bool = True                 # asked for; no worker connected yet
    draining: bool = False
    idle_since: Optional[float] = None   # since when none of its workers held a task (None: busy or pending)


@dataclass
class ScalingSnapshot:
    now: float
    managers: Sequence[ManagerOffer]
    groups: Sequence[GroupView]
    demand: Dict[Requirement, int]        # tasks queued or running, by the capabilities they need
    unmanaged_workers: int = 0            # workers of clusters started by hand: capacity too
    paused: frozenset = frozenset()       # managers not to grow now (their last start failed)

    @property
    def tasks(self) -> int:
        return sum(self.demand.values())


@dataclass
class ScalingDecision:
    start: List[str] = field(default_factory=list)      # one manager id per group to start
    drain: List[bytes] = field(default_factory=list)
    undrain: List[bytes] = field(default_factory=list)

    def __bool__(self):
        return bool(self.start or self.drain or self.undrain)


class ScalingPolicy:
    name = "no"
    # whether `demand` must be broken down by required capabilities (else all of it is under ())
    by_capability = False

    def __init__(self, tasks_per_worker: float = 1.0, idle_seconds: float = 10.0):
        if tasks_per_worker <= 0:
            raise ValueError(f"tasks_per_worker must be above 0, got {tasks_per_worker}")
        self.tasks_per_worker = tasks_per_worker
        self.idle_seconds = idle_seconds

    def decide(self, snapshot: ScalingSnapshot) -> ScalingDecision:
        return ScalingDecision()

    # --- shared steps ---------------------------------------------------------------------------

    def _workers_wanted(self, tasks: int) -> int:
        return math.ceil(tasks / self.tasks_per_worker) if tasks > 0 else 0

    def _grow(self, snapshot: ScalingSnapshot, managers: Iterable[ManagerOffer], workers_needed: int,
              decision: ScalingDecision, limits: Optional[Dict[str, int]] = None) -> int:
        """Cover `workers_needed` from `managers` in order: their draining groups first, then new
        groups within each manager's limits; returns what is still missing."""
        for manager in managers:
            if workers_needed <= 0:
                break
            if manager.manager_id in snapshot.paused:
                continue
            mine = [group for group in snapshot.groups if group.manager_id == manager.manager_id]
            for group in mine:
                if workers_needed > 0 and group.draining and group.group_id not in decision.undrain:
                    decision.undrain.append(group.group_id)
                    workers_needed -= max(group.workers, manager.workers_per_group)
            running = len(mine) + decision.start.count(manager.manager_id)
            room = manager.max_groups - running if manager.max_groups >= 0 else math.inf
            if limits is not None and manager.manager_id in limits:
                used = running * manager.workers_per_group
                room = min(room, max(0, limits[manager.manager_id] - used) // manager.workers_per_group)
            while workers_needed > 0 and room > 0:
                decision.start.append(manager.manager_id)
                workers_needed -= manager.workers_per_group
                room -= 1
        return workers_needed

    def _drain_idle(self, snapshot: ScalingSnapshot, decision: ScalingDecision, can_go=lambda group: True) -> None:
        """Drain every group idle for `idle_seconds` (it holds no task, so it stops at once)."""
        for group in snapshot.groups:
            if (not group.draining and group.idle_since is not None and group.group_id not in decision.undrain
                    and snapshot.now - group.idle_since >= self.idle_seconds and can_go(group)):
                decision.drain.append(group.group_id)


def _capacity(groups: Iterable[GroupView], offers: Dict[str, ManagerOffer]) -> int:
    """Workers in service or on their way (pending groups count as their full size)."""
    total = 0
    for group in groups:
        if group.draining:
            continue
        offer = offers.get(group.manager_id)
        total += max(group.workers, offer.workers_per_group if offer is not None and group.pending else 0)
    return total


class NoScaling(ScalingPolicy):
    """Workers are started by hand; managers are never asked for groups."""

    name = "no"


class VanillaScaling(ScalingPolicy):
    """One pool: tasks per worker above the threshold start groups (managers in the order they
    registered), groups idle for `idle_seconds` are drained. Capabilities are not looked at. Groups
    still pending (a batch job in its queue) are cancelled when more capacity than the tasks need
    lasted `idle_seconds`: a job nobody needs should not wait for a node only to sit idle on it."""

    name = "vanilla"

    def __init__(self, tasks_per_worker: float = 1.0, idle_seconds: float = 10.0):
        super().__init__(tasks_per_worker, idle_seconds)
        self._surplus_since: Optional[float] = None

    def decide(self, snapshot):
        decision = ScalingDecision()
        offers = {manager.manager_id: manager for manager in snapshot.managers}
        capacity = snapshot.unmanaged_workers + _capacity(snapshot.groups, offers)
        missing = self._workers_wanted(snapshot.tasks) - capacity
        if missing >= 0:
            self._surplus_since = None
        elif self._surplus_since is None:
            self._surplus_since = snapshot.now
        if missing > 0:
            self._grow(snapshot, snapshot.managers, missing, decision)
            return decision
        spare = -missing
        if self._surplus_since is not None and snapshot.now - self._surplus_since >= self.idle_seconds:
            for group in reversed(snapshot.groups):  # the most recently asked for first
                size = offers[group.manager_id].workers_per_group if group.manager_id in offers else 0
                if group.pending and not group.draining and 0 < size <= spare:
                    decision.drain.append(group.group_id)
                    spare -= size

        def not_needed(group: GroupView) -> bool:  # what is left must still cover the tasks
            nonlocal spare
            if group.workers > spare:
                return False
            spare -= group.workers
            return True

        self._drain_idle(snapshot, decision, not_needed)
        return decision


class CapabilityScaling(ScalingPolicy):
    """Per set of required capabilities: the tasks that need it only start groups of managers whose
    workers offer all of it (the one offering the fewest other capabilities first, so special
    hardware is not spent on plain work). A group is drained once idle for `idle_seconds`."""

    name = "capability"
    by_capability = True

    def decide(self, snapshot):
        decision = ScalingDecision()
        offers = {manager.manager_id: manager for manager in snapshot.managers}
        # the most demanding requirements first: plain tasks may then use what they started
        for requirement in sorted(snapshot.demand, key=len, reverse=True):
            tasks = snapshot.demand[requirement]
            able = [manager for manager in snapshot.managers if manager.offers(requirement)]
            if not able:
                continue  # no manager can help; the scheduler fails such tasks after its no-worker grace
            able.sort(key=lambda manager: len(manager.capabilities))
            able_ids = {manager.manager_id for manager in able}
            groups = [group for group in snapshot.groups if group.manager_id in able_ids]
            started = sum(offers[manager_id].workers_per_group for manager_id in decision.start
                          if manager_id in able_ids)
            capacity = _capacity(groups, offers) + started + (snapshot.unmanaged_workers if not requirement else 0)
            missing = self._workers_wanted(tasks) - capacity
            if missing > 0:
                self._grow(snapshot, able, missing, decision)
        self._drain_idle(snapshot, decision)
        return decision


@dataclass(frozen=True)
class WaterfallRule:
    priority: int         # lower fills first
    manager_id: str
    max_workers: int      # this tier's most workers; -1: as many as its manager allows


class WaterfallScaling(ScalingPolicy):
    """Tiers of managers (on-premises first, then burst): growth fills the first tier up to its
    limit before the next one is asked; when there are more workers than tasks for `idle_seconds`,
    the surplus is drained from the last tier backwards (busy groups too: they finish what they
    hold, take nothing new, and stop). Managers without a rule are not used."""

    name = "waterfall_v1"

    def __init__(self, rules: Sequence[WaterfallRule], tasks_per_worker: float = 1.0, idle_seconds: float = 10.0):
        super().__init__(tasks_per_worker, idle_seconds)
        self.rules = sorted(rules, key=lambda rule: rule.priority)
        self._surplus_since: Optional[float] = None

    def decide(self, snapshot):
        decision = ScalingDecision()
        offers = {manager.manager_id: manager for manager in snapshot.managers}
        tiers = [offers[rule.manager_id] for rule in self.rules if rule.manager_id in offers]
        limits = {rule.manager_id: rule.max_workers for rule in self.rules if rule.max_workers >= 0}
        tiered = {manager.manager_id for manager in tiers}
        groups = [group for group in snapshot.groups if group.manager_id in tiered]
        capacity = snapshot.unmanaged_workers + _capacity(groups, offers)
        wanted = self._workers_wanted(snapshot.tasks)
        if wanted > capacity:
            self._surplus_since = None
            self._grow(snapshot, tiers, wanted - capacity, decision, limits)
            return decision
        if wanted == capacity:
            self._surplus_since = None
            return decision
        if self._surplus_since is None:
            self._surplus_since = snapshot.now
        if snapshot.now - self._surplus_since < self.idle_seconds:
            return decision
        surplus = capacity - wanted
        for manager in reversed(tiers):
            mine = [group for group in groups if group.manager_id == manager.manager_id and not group.draining]
            mine.sort(key=lambda group: (group.busy_workers, not group.pending))  # idle and pending ones first
            for group in mine:
                size = max(group.workers, manager.workers_per_group if group.pending else 0)
                if size <= surplus:
                    decision.drain.append(group.group_id)
                    surplus -= size
        return decision


SCALING_POLICIES = {policy.name: policy for policy in (NoScaling, VanillaScaling, CapabilityScaling)}


def parse_waterfall_rules(policy_content: str) -> List[WaterfallRule]:
    """The `PRIORITY,MANAGER_ID,MAX_WORKERS` items of a policy text (parts with '=' are other settings)."""
    rules = []
    for part in filter(None, (piece.strip() for piece in policy_content.split(";"))):
        if "=" in part:
            continue
        pieces = [piece.strip() for piece in part.split(",")]
        if len(pieces) != 3:
            raise ValueError(f"waterfall rule {part!r} is not PRIORITY,MANAGER_ID,MAX_WORKERS")
        try:
            rules.append(WaterfallRule(int(pieces[0]), pieces[1], int(pieces[2])))
        except ValueError:
            raise ValueError(f"waterfall rule {part!r}: PRIORITY and MAX_WORKERS must be integers") from None
    return rules


def make_scaling_policy(engine_type: str, scaling: str, policy_content: str = "", tasks_per_worker: float = 1.0,
                        idle_seconds: float = 10.0) -> ScalingPolicy:
    """The policy `--policy-engine-type` and the `scaling=` part of `--policy-content` name."""
    if engine_type == "waterfall_v1":
        rules = parse_waterfall_rules(policy_content)
        if not rules:
            raise ValueError("waterfall_v1 needs at least one rule PRIORITY,MANAGER_ID,MAX_WORKERS in "
                             '--policy-content, e.g. "1,wm-onprem,8; 2,wm-burst,32"')
        return WaterfallScaling(rules, tasks_per_worker, idle_seconds)
    try:
        return SCALING_POLICIES[scaling](tasks_per_worker, idle_seconds)
    except KeyError:
        raise ValueError(f"unknown scaling policy {scaling!r}; choose one of {sorted(SCALING_POLICIES)}") from None
