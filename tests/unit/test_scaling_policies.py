"""The scaling policies, fed snapshots: grow, shrink, drain, thresholds, pending capacity."""

import pytest

from scaler_core.scheduler.scaling_policies import (
    CapabilityScaling, GroupView, ManagerOffer, NoScaling, ScalingSnapshot, VanillaScaling, WaterfallRule,
    WaterfallScaling, make_scaling_policy,
)

CPU = ManagerOffer("wm-cpu", workers_per_group=2, max_groups=4)
GPU = ManagerOffer("wm-gpu", workers_per_group=1, capabilities={"gpu": -1}, max_groups=2)
GPU_TASK = (("gpu", -1),)


def snapshot(demand=None, groups=(), managers=(CPU,), now=100.0, **extra):
    return ScalingSnapshot(now=now, managers=list(managers), groups=list(groups), demand=demand or {}, **extra)


def connected(group_id, manager="wm-cpu", workers=2, busy=0, idle_since=None, draining=False):
    return GroupView(group_id, manager, workers=workers, busy_workers=busy, pending=False, draining=draining,
                     idle_since=idle_since)


def pending(group_id, manager="wm-cpu"):
    return GroupView(group_id, manager, pending=True)


# --- vanilla --------------------------------------------------------------------------------------

def test_vanilla_grows_to_cover_the_tasks_per_worker_threshold_within_the_managers_limit():
    policy = VanillaScaling(tasks_per_worker=1)
    assert policy.decide(snapshot({(): 3})).start == ["wm-cpu", "wm-cpu"]        # 3 workers: 2 groups of 2
    assert policy.decide(snapshot({(): 100})).start == ["wm-cpu"] * 4            # max_groups
    assert VanillaScaling(tasks_per_worker=4).decide(snapshot({(): 8})).start == ["wm-cpu"]


def test_vanilla_counts_pending_groups_and_unmanaged_workers_as_capacity():
    policy = VanillaScaling(tasks_per_worker=1)
    assert not policy.decide(snapshot({(): 4}, [pending(b"a"), pending(b"b")]))
    assert policy.decide(snapshot({(): 6}, [pending(b"a")], unmanaged_workers=2)).start == ["wm-cpu"]
    assert not policy.decide(snapshot({(): 2}, unmanaged_workers=2))


def test_vanilla_does_not_grow_below_the_threshold_and_nothing_without_tasks():
    policy = VanillaScaling(tasks_per_worker=2)
    assert not policy.decide(snapshot({(): 4}, [connected(b"a", busy=2)]))   # 2 tasks per worker: at threshold
    assert policy.decide(snapshot({(): 5}, [connected(b"a", busy=2)])).start == ["wm-cpu"]
    assert not policy.decide(snapshot({}))


def test_vanilla_drains_groups_idle_long_enough_and_keeps_what_the_tasks_need():
    policy = VanillaScaling(idle_seconds=10)
    fresh = connected(b"fresh", idle_since=95.0)
    old = connected(b"old", idle_since=80.0)
    busy = connected(b"busy", busy=2)
    assert policy.decide(snapshot({(): 2}, [fresh, old, busy])).drain == [b"old"]
    assert policy.decide(snapshot({}, [fresh, old, busy])).drain == [b"old"]
    # an idle group still needed to cover the tasks (they are about to land on it) stays
    assert not policy.decide(snapshot({(): 4}, [old, busy])).drain


def test_vanilla_never_drains_pending_groups_and_takes_draining_groups_back_first():
    policy = VanillaScaling()
    assert not policy.decide(snapshot({}, [pending(b"p")])).drain
    decision = policy.decide(snapshot({(): 3}, [connected(b"d", draining=True, busy=1)]))
    assert decision.undrain == [b"d"] and decision.start == ["wm-cpu"]


def test_vanilla_cancels_pending_groups_once_a_surplus_lasted():
    policy = VanillaScaling(idle_seconds=10)
    groups = [connected(b"busy", busy=2), pending(b"p1"), pending(b"p2")]
    assert not policy.decide(snapshot({(): 4}, groups, now=100.0))       # all needed
    assert not policy.decide(snapshot({(): 2}, groups, now=101.0))       # surplus starts
    assert not policy.decide(snapshot({(): 2}, groups, now=105.0))
    assert policy.decide(snapshot({(): 2}, groups, now=111.5)).drain == [b"p2", b"p1"]
    policy = VanillaScaling(idle_seconds=10)
    policy.decide(snapshot({(): 2}, groups, now=100.0))
    policy.decide(snapshot({(): 6}, groups, now=105.0))                  # needed again: the clock restarts
    assert policy.decide(snapshot({(): 4}, groups, now=111.0)).drain == []


def test_paused_managers_are_not_grown():
    assert not VanillaScaling().decide(snapshot({(): 5}, paused=frozenset({"wm-cpu"})))


def test_no_scaling_never_acts():
    assert not NoScaling().decide(snapshot({(): 50}, [connected(b"old", idle_since=0.0)]))


# --- capability -------------------------------------------------------------------------------

def test_capability_starts_only_groups_offering_what_the_tasks_need():
    policy = CapabilityScaling()
    decision = policy.decide(snapshot({GPU_TASK: 5}, managers=(CPU, GPU)))
    assert decision.start == ["wm-gpu", "wm-gpu"]  # the GPU manager's limit; the CPU one cannot help
    assert policy.decide(snapshot({(): 2}, managers=(GPU, CPU))).start == ["wm-cpu"]  # plain work: plain machines
    assert not policy.decide(snapshot({(("fpga", -1),): 3}, managers=(CPU, GPU)))


def test_capability_counts_capacity_per_requirement():
    policy = CapabilityScaling()
    cpu_groups = [connected(b"c1", busy=2), connected(b"c2", busy=2)]
    # plenty of CPU workers do not satisfy GPU tasks
    assert policy.decide(snapshot({GPU_TASK: 1, (): 4}, cpu_groups, managers=(CPU, GPU))).start == ["wm-gpu"]
    # a pending GPU group covers one GPU task
    assert not policy.decide(snapshot({GPU_TASK: 1}, [pending(b"g", "wm-gpu")], managers=(CPU, GPU)))
    # quantities: a manager offering gpu=1 cannot run a task that needs gpu=2
    small = ManagerOffer("wm-small", 1, {"gpu": 1})
    assert not policy.decide(snapshot({(("gpu", 2),): 1}, managers=(small,)))


def test_capability_drains_idle_groups():
    policy = CapabilityScaling(idle_seconds=5)
    groups = [connected(b"g", "wm-gpu", workers=1, idle_since=90.0), connected(b"c", busy=1)]
    assert policy.decide(snapshot({(): 1}, groups, managers=(CPU, GPU))).drain == [b"g"]


# --- waterfall ------------------------------------------------------------------------------------

ONPREM = ManagerOffer("wm-onprem", 1)
BURST = ManagerOffer("wm-burst", 1)
RULES = [WaterfallRule(2, "wm-burst", 10), WaterfallRule(1, "wm-onprem", 2)]


def test_waterfall_fills_the_first_tier_before_the_second():
    policy = WaterfallScaling(RULES)
    assert policy.decide(snapshot({(): 2}, managers=(BURST, ONPREM))).start == ["wm-onprem", "wm-onprem"]
    assert policy.decide(snapshot({(): 5}, managers=(BURST, ONPREM))).start == ["wm-onprem"] * 2 + ["wm-burst"] * 3
    full = [connected(b"o1", "wm-onprem", 1, 1), pending(b"o2", "wm-onprem")]
    assert policy.decide(snapshot({(): 3}, full, managers=(BURST, ONPREM))).start == ["wm-burst"]


def test_waterfall_skips_a_paused_tier_and_ignores_managers_without_a_rule():
    policy = WaterfallScaling(RULES)
    decision = policy.decide(snapshot({(): 2}, managers=(ONPREM, BURST, CPU), paused=frozenset({"wm-onprem"})))
    assert decision.start == ["wm-burst", "wm-burst"]


def test_waterfall_drains_the_last_tier_first_after_the_surplus_lasted():
    policy = WaterfallScaling(RULES, idle_seconds=10)
    groups = [connected(b"o1", "wm-onprem", 1, 1), connected(b"o2", "wm-onprem", 1, 0, idle_since=50.0),
              connected(b"b1", "wm-burst", 1, 1), connected(b"b2", "wm-burst", 1, 0, idle_since=50.0)]
    assert not policy.decide(snapshot({(): 2}, groups, managers=(ONPREM, BURST), now=100.0))  # surplus starts
    decision = policy.decide(snapshot({(): 2}, groups, managers=(ONPREM, BURST), now=111.0))
    assert decision.drain == [b"b2", b"b1"]  # the burst tier, idle group first, busy one drains too
    # a surplus that ends resets the clock
    policy = WaterfallScaling(RULES, idle_seconds=10)
    policy.decide(snapshot({(): 2}, groups, managers=(ONPREM, BURST), now=100.0))
    policy.decide(snapshot({(): 4}, groups, managers=(ONPREM, BURST), now=105.0))
    assert not policy.decide(snapshot({(): 2}, groups, managers=(ONPREM, BURST), now=111.0))


def test_make_scaling_policy_by_upstream_names():
    assert isinstance(make_scaling_policy("simple", "vanilla"), VanillaScaling)
    assert isinstance(make_scaling_policy("simple", "capability"), CapabilityScaling)
    assert isinstance(make_scaling_policy("simple", "no"), NoScaling)
    waterfall = make_scaling_policy("waterfall_v1", "vanilla", "allocate=even_load; 2,b,4; 1,a,-1")
    assert [rule.manager_id for rule in waterfall.rules] == ["a", "b"]
    with pytest.raises(ValueError, match="rule"):
        make_scaling_policy("waterfall_v1", "vanilla", "scaling=vanilla")
    with pytest.raises(ValueError, match="tasks_per_worker"):
        VanillaScaling(tasks_per_worker=0)
