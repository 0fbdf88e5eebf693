"""Placement by locality (policies.choose_near, choose_for_inputs, choose_beside) on plain worker records."""

from scaler_core import protocol
from scaler_core.scheduler.policies import CapabilityPolicy, EvenLoadPolicy, choose_beside, choose_for_inputs, choose_near
from scaler_core.scheduler.records import WorkerRecord


def worker(name, cluster, running=0):
    record = WorkerRecord(name.encode(), protocol.WorkerHello(worker_id=name.encode(), cluster_id=cluster.encode()), 0.0)
    record.limit = 4
    for index in range(running):
        record.assigned[b"%s-%d" % (name.encode(), index)] = None
    return record


def place(holder, *others):
    return choose_near(EvenLoadPolicy(), None, holder, (holder, *others)).worker_id.decode()


def test_the_holder_wins_ties_and_loses_to_a_less_loaded_worker():
    assert place(worker("holder", "A"), worker("mate", "A"), worker("far", "B")) == "holder"
    assert place(worker("holder", "A", running=2), worker("mate", "A", running=2), worker("far", "B", 2)) == "holder"
    assert place(worker("holder", "A", running=1), worker("far", "B")) == "far"


def test_a_worker_of_the_holders_host_comes_before_one_on_another_host():
    # the holder is busier; its cluster-mate is as idle as the far worker: the input is read in place
    assert place(worker("holder", "A", running=3), worker("far", "B"), worker("mate", "A")) == "mate"
    # the far worker is less loaded than anyone on the holder's host: the bytes move
    assert place(worker("holder", "A", running=3), worker("far", "B"), worker("mate", "A", running=1)) == "far"


def test_a_full_holder_is_skipped():
    assert place(worker("holder", "A", running=4), worker("far", "B", running=3)) == "far"
    assert choose_near(EvenLoadPolicy(), None, worker("holder", "A", running=4), ()) is None


# --- placement by bytes (policies.choose_for_inputs) ---------------------------------------------

MB = 10**6


def place_by_bytes(holdings, *workers):
    by_id = {w.worker_id: w for w in workers}
    chosen = choose_for_inputs(EvenLoadPolicy(), None, {k.encode(): v for k, v in holdings.items()}, by_id,
                               list(workers))
    return chosen.worker_id.decode() if chosen is not None else None


def timed(record, mean_duration):
    record.mean_duration = mean_duration
    return record


def test_a_task_waits_a_little_behind_the_worker_holding_its_large_input_in_memory():
    # moving 64 MB held in memory costs a write-out (~45 ms); a short queue costs less
    holder = timed(worker("holder", "A", running=3), 0.01)
    assert place_by_bytes({"holder": [64 * MB, 0]}, holder, worker("idle", "A")) == "holder"


def test_a_long_queue_behind_the_holder_costs_more_than_moving_the_bytes():
    holder = timed(worker("holder", "A", running=3), 1.0)
    assert place_by_bytes({"holder": [64 * MB, 0]}, holder, worker("idle", "A")) == "idle"


def test_a_holder_may_queue_past_its_pipeline_but_not_without_end():
    holder = timed(worker("holder", "A", running=8), 0.001)  # full (limit 4): still a candidate up to 12
    busy = timed(worker("busy", "A", running=4), 0.001)
    assert place_by_bytes({"holder": [64 * MB, 0]}, holder, busy) == "holder"
    swamped = timed(worker("holder", "A", running=12), 0.001)
    assert place_by_bytes({"holder": [64 * MB, 0]}, swamped, busy) is None, "wait in the scheduler's queue"


def test_the_worker_holding_most_of_the_inputs_in_memory_wins():
    first, second = timed(worker("first", "A", running=1), 0.01), timed(worker("second", "A", running=1), 0.01)
    holdings = {"first": [16 * MB, 0], "second": [48 * MB, 0]}
    assert place_by_bytes(holdings, first, second) == "second"


def test_without_inputs_held_in_memory_it_is_placement_near_the_bytes():
    holder, mate = worker("holder", "A", running=3), worker("mate", "A")
    assert place_by_bytes({"holder": [0, 64 * MB]}, holder, mate, worker("far", "B")) == "mate"


def test_a_holder_that_left_leaves_the_choice_to_the_policy():
    assert place_by_bytes({"gone": [64 * MB, 0]}, worker("idle", "A")) == "idle"


def test_paused_or_closing_holders_are_not_candidates():
    holder = timed(worker("holder", "A", running=1), 0.001)
    holder.paused = True
    assert place_by_bytes({"holder": [64 * MB, 0]}, holder, worker("idle", "A")) == "idle"


# --- roots beside their siblings (policies.choose_beside) -----------------------------------------

def place_beside(sibling, *others, policy=None):
    chosen = choose_beside(policy or EvenLoadPolicy(), None, sibling, [w for w in (sibling, *others) if w])
    return chosen.worker_id.decode() if chosen is not None else None


def test_a_root_goes_beside_its_sibling_up_to_one_past_its_pipeline():
    assert place_beside(worker("sibling", "A", running=3), worker("idle", "A")) == "sibling"
    assert place_beside(worker("sibling", "A", running=4), worker("idle", "A")) == "sibling"  # limit 4: one past
    assert place_beside(worker("sibling", "A", running=5), worker("idle", "A")) == "idle"


def test_without_a_usable_sibling_the_least_loaded_worker_takes_the_root():
    assert place_beside(None, worker("idle", "A"), worker("busy", "A", running=2)) == "idle"
    paused = worker("sibling", "A")
    paused.paused = True
    assert place_beside(paused, worker("idle", "A", running=1)) == "idle"
    closing = worker("sibling", "A")
    closing.closing = True
    assert place_beside(closing, worker("idle", "A", running=1)) == "idle"


class NoCapabilities:
    @staticmethod
    def required_capabilities():
        return {}


def test_capability_placement_ignores_siblings():
    # the sibling may lack what the root needs: the capability policy alone decides
    busy_sibling = worker("sibling", "A", running=1)
    chosen = choose_beside(CapabilityPolicy(), NoCapabilities(), busy_sibling, [busy_sibling, worker("other", "A")])
    assert chosen.worker_id == b"other"
