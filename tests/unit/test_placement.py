"""Placement by locality (policies.choose_near) on plain worker records."""

from scaler_core import protocol
from scaler_core.scheduler.policies import EvenLoadPolicy, choose_near
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
