"""scaler_core.compat.ray against real embedded clusters: Ray code with only its import changed."""

import os
import time

import numpy as np
import pytest

import scaler_core.compat.ray as ray
from scaler_core import SchedulerClusterCombo
from tests.conftest import engine_children, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    yield
    ray.shutdown()


@pytest.fixture
def up():
    # the lifecycle tests stop the runtime; every other test finds one running
    ray.init(num_cpus=2, ignore_reinit_error=True)


class Boom(Exception):
    def __init__(self, message, code):
        super().__init__(message, code)
        self.code = code


@ray.remote
def add(a, b=0):
    return a + b


@ray.remote
def slow(value, seconds):
    time.sleep(seconds)
    return value


@ray.remote
def fail(code):
    raise Boom("it broke", code)


@ray.remote(num_returns=2, num_cpus=1)
def split(x):
    return x, x * 2


@ray.remote
def describe(top, nested):
    # runs in a worker: top-level refs arrive as values, nested ones as refs ray.get can read
    return type(top).__name__, type(nested[0]).__name__, ray.get(nested[0]), ray.get(nested[1]["k"])


@ray.remote
def total(array):
    return float(array.sum())


class OnlyInWorkers:
    """Unpickling it in the test process fails: proves a value stayed on the cluster."""

    def __init__(self, driver_pid):
        self.driver_pid = driver_pid

    def __setstate__(self, state):
        if os.getpid() == state["driver_pid"]:
            raise RuntimeError("this value came back to the caller")
        self.__dict__.update(state)


@ray.remote(num_returns=2)
def make_poison(driver_pid):
    return OnlyInWorkers(driver_pid), OnlyInWorkers(driver_pid)


@ray.remote
def poison_pid(value, other):
    return value.driver_pid + other.driver_pid


@ray.remote
def fan_out(n):
    # inside a worker, ray talks to the worker's own scheduler
    return ray.get([add.remote(i, 1) for i in range(n)])


@ray.remote
def bump(counter, times):
    return ray.get([counter.inc.remote() for _ in range(times)])


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
        self.seen = []

    def inc(self, by=1):
        self.value += by
        self.seen.append(self.value)
        return self.value

    def history(self):
        return list(self.seen)

    @ray.method(num_returns=2)
    def pair(self):
        return self.value, -self.value

    def explode(self):
        raise Boom("actor method failed", 7)


@ray.remote
class BrokenAtBirth:
    def __init__(self):
        raise Boom("constructor failed", 3)

    def ping(self):
        return "pong"


def test_remote_function_get_one_and_list(up):
    ref = add.remote(1, b=2)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 3
    assert ray.get([add.remote(i, i) for i in range(10)]) == [2 * i for i in range(10)]
    with pytest.raises(TypeError, match="remote"):
        add(1, 2)
    with pytest.raises(TypeError):
        add.remote(1, 2, 3)  # checked against the signature before anything is sent


def test_num_returns_decorator_and_options(up):
    first, second = split.remote(21)
    assert ray.get([first, second]) == [21, 42]
    refs = add.options(num_returns=1, num_cpus=2, max_retries=0).remote(1, 1)
    assert ray.get(refs) == 2
    three = slow.options(num_returns=3).remote((1, 2, 3), 0)
    assert ray.get(three) == [1, 2, 3]
    assert add.options(num_returns=0).remote(1) is None
    wrong = split.options(num_returns=3).remote(1)
    with pytest.raises(ValueError, match="returned 2 values but num_returns=3"):
        ray.get(wrong[0])


def test_unsupported_options_are_named():
    with pytest.raises(ValueError, match="placement_group_x"):
        ray.remote(placement_group_x=1)(lambda: None)
    with pytest.raises(ValueError, match="runtime_env"):
        add.options(runtime_env={"pip": ["x"]})
    with pytest.raises(ValueError, match="dynamic"):
        add.options(num_returns="dynamic")
    with pytest.raises(ValueError, match="max_restarts"):
        Counter.options(max_restarts=2)
    with pytest.raises(ValueError, match="named actors"):
        Counter.options(name="counter")
    with pytest.raises(ValueError, match="detached"):
        Counter.options(lifetime="detached")
    with pytest.raises(ValueError, match="one call at a time"):
        Counter.options(max_concurrency=4)
    with pytest.raises(ValueError, match="named actors"):
        ray.get_actor("counter")

    class AsyncActor:
        async def run(self):
            return 1

    with pytest.raises(TypeError, match="async actors"):
        ray.remote(AsyncActor)


def test_get_timeout_raises_get_timeout_error(up):
    ref = slow.remote("late", 5)
    started = time.monotonic()
    with pytest.raises(ray.exceptions.GetTimeoutError) as caught:
        ray.get(ref, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 3
    with pytest.raises(TimeoutError):
        ray.get([add.remote(1), ref], timeout=0.2)
    ray.cancel(ref)


def test_task_error_keeps_its_type(up):
    ref = fail.remote(42)
    with pytest.raises(Boom) as caught:
        ray.get(ref)
    assert caught.value.code == 42 and "it broke" in str(caught.value)
    assert isinstance(caught.value, ray.exceptions.RayTaskError)
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get([add.remote(1), ref])
    # a builtin type too, and the runtime stays usable
    with pytest.raises(ZeroDivisionError):
        ray.get(ray.remote(lambda: 1 / 0).remote())
    assert ray.get(add.remote(1, 1)) == 2


def test_put_reaches_tasks_as_its_value(up):
    array = np.arange(1_000_000, dtype=np.float64)  # stored once in the object storage
    ref = ray.put(array)
    assert ray.get(ref) is array
    assert ray.get([total.remote(ref), total.remote(ref)]) == [float(array.sum())] * 2
    with pytest.raises(TypeError):
        ray.put(ref)


def test_wait_slow_and_fast(up):
    slow_ref = slow.remote("slow", 2)
    fast_ref = slow.remote("fast", 0)
    ready, not_ready = ray.wait([slow_ref, fast_ref], num_returns=1)
    assert ready == [fast_ref] and not_ready == [slow_ref]
    ready, not_ready = ray.wait([slow_ref, fast_ref], num_returns=2, timeout=0)
    assert ready == [fast_ref] and not_ready == [slow_ref]
    started = time.monotonic()
    ready, not_ready = ray.wait([slow_ref, fast_ref], num_returns=2, timeout=0.2)
    assert time.monotonic() - started < 1.5 and not_ready == [slow_ref]
    # everything ready: the input's order, not completion order
    ready, not_ready = ray.wait([slow_ref, fast_ref], num_returns=2)
    assert ready == [slow_ref, fast_ref] and not_ready == []
    ready, not_ready = ray.wait([fast_ref, slow_ref], num_returns=1)
    assert ready == [fast_ref] and not_ready == [slow_ref]
    with pytest.raises(ValueError):
        ray.wait([fast_ref, fast_ref])
    with pytest.raises(ValueError):
        ray.wait([fast_ref], num_returns=2)


def test_refs_as_arguments_top_level_resolved_nested_kept(up):
    first, second = split.remote(5)
    assert ray.get(add.remote(first, second)) == 15
    assert ray.get(add.remote(first, b=second)) == 15
    put_ref = ray.put("stored")
    answer = ray.get(describe.remote(first, [second, {"k": put_ref}]))
    assert answer == ("int", "ObjectRef", 10, "stored")
    # a dependency still running: .remote() returns at once, the call goes once it is ready
    started = time.monotonic()
    dependent = add.remote(slow.remote(40, 1), 2)
    assert time.monotonic() - started < 0.5
    assert ray.get(dependent, timeout=30) == 42
    # a failed dependency fails its dependents with its error
    with pytest.raises(Boom):
        ray.get(add.remote(fail.remote(1), 1))


def test_top_level_task_refs_stay_on_the_cluster(up):
    first, second = make_poison.remote(os.getpid())
    assert ray.get(poison_pid.remote(first, other=second), timeout=60) == 2 * os.getpid()


def test_cancel(up):
    ref = slow.remote("never", 30)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=20)
    # cancelled before its dependency was ready: never submitted
    gate = slow.remote(1, 1)
    queued = add.remote(gate, 1)
    ray.cancel(queued)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(queued, timeout=20)
    finished = add.remote(1)
    ray.get(finished)
    ray.cancel(finished)  # done: nothing to cancel
    assert ray.get(finished) == 1


def test_actor_calls_run_in_order_in_one_process(up):
    counter = Counter.remote(100)
    refs = [counter.inc.remote() for _ in range(30)]
    assert ray.get(refs, timeout=60) == list(range(101, 131))
    # a call waiting for a dependency holds back the calls after it
    gated = counter.inc.remote(slow.remote(1000, 1))
    after = counter.inc.remote(1)
    assert ray.get([gated, after], timeout=60) == [1130, 1131]
    assert ray.get(counter.history.remote())[-2:] == [1130, 1131]
    value, negative = counter.pair.remote()
    assert ray.get([value, negative]) == [1131, -1131]
    assert ray.get(counter.inc.options(num_returns=1).remote(0)) == 1131
    # an actor ref as a plain task's argument
    assert ray.get(add.remote(counter.inc.remote(), 1)) == 1133
    ray.kill(counter)


def test_nested_tasks_and_actor_handles_inside_tasks(up):
    assert ray.get(fan_out.remote(4), timeout=60) == [1, 2, 3, 4]
    counter = Counter.remote()
    assert ray.get(counter.inc.remote()) == 1
    assert ray.get(bump.remote(counter, 3), timeout=60) == [2, 3, 4]
    assert ray.get(counter.inc.remote()) == 5
    ray.kill(counter)


def test_actor_method_error_keeps_the_actor(up):
    counter = Counter.remote()
    with pytest.raises(Boom) as caught:
        ray.get(counter.explode.remote())
    assert caught.value.code == 7
    assert ray.get(counter.inc.remote()) == 1
    with pytest.raises(AttributeError):
        counter.missing
    with pytest.raises(TypeError):
        counter.inc.remote(1, 2, 3)
    ray.kill(counter)


def test_kill_then_call_raises_clear_error(up):
    counter = Counter.remote()
    assert ray.get(counter.inc.remote()) == 1
    pending = counter.inc.remote()
    ray.kill(counter)
    try:
        assert ray.get(pending, timeout=20) == 2  # it may have finished before the kill
    except ray.exceptions.ActorDiedError:
        pass
    with pytest.raises(ray.exceptions.ActorDiedError, match="killed"):
        ray.get(counter.inc.remote(), timeout=20)


def test_actor_constructor_error(up):
    broken = BrokenAtBirth.remote()
    with pytest.raises(ray.exceptions.RayActorError, match="constructor raised"):
        ray.get(broken.ping.remote(), timeout=60)
    ray.kill(broken)


def test_actor_on_an_external_cluster_is_left_running():
    ray.shutdown()
    with SchedulerClusterCombo(n_workers=1, allocate_policy="capability", logging_level="WARNING") as cluster:
        context = ray.init(address=cluster.address)
        assert context.address_info["address"] == cluster.address
        counter = Counter.remote(1)
        assert ray.get([counter.inc.remote(), add.remote(2, 2)], timeout=60) == [2, 4]
        ray.shutdown()
        assert not ray.is_initialized()
        assert len(cluster.processes()) == 3  # the cluster is not ours to stop
        wait_until(lambda: len(engine_children()) == 3 + 1, timeout=15,  # + its worker; the actor's is gone
                   message="the actor's process to exit")


def test_init_starts_and_shutdown_stops_a_local_cluster():
    ray.shutdown()
    wait_until(lambda: not engine_children(), timeout=15, message="earlier clusters to exit")
    assert not ray.is_initialized()
    ray.init(num_cpus=2)
    assert ray.is_initialized()
    with pytest.raises(RuntimeError, match="already"):
        ray.init()
    counter = Counter.remote()
    assert ray.get([counter.inc.remote(), add.remote(1, 1)], timeout=60) == [1, 2]
    assert engine_children()
    ray.shutdown()
    assert not ray.is_initialized()
    wait_until(lambda: not engine_children(), timeout=15, message="the local cluster and actor to exit")


def test_first_remote_call_starts_a_cluster_as_ray_does():
    ray.shutdown()
    assert ray.get(add.remote(3, 4), timeout=60) == 7
    assert ray.is_initialized()
    ray.shutdown()
    wait_until(lambda: not engine_children(), timeout=15, message="the local cluster to exit")


def test_init_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="ray://"):
        ray.init("ray://head:10001")
    with pytest.raises(ValueError, match="local_mode"):
        ray.init(local_mode=True)
    assert not ray.is_initialized()


def test_patch_ray_makes_import_ray_this_module(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delitem(sys.modules, "ray.exceptions", raising=False)
    ray.patch_ray()
    import ray as patched
    from ray.exceptions import GetTimeoutError

    assert patched is ray and GetTimeoutError is ray.exceptions.GetTimeoutError


def test_util_yields_in_completion_order(up):
    refs = [slow.remote("late", 1.5), slow.remote("early", 0.0)]
    assert [ray.get(ref) for ref in ray.util.as_completed(refs)] == ["early", "late"]
    with pytest.raises(ray.GetTimeoutError):
        list(ray.util.as_completed([slow.remote("never in time", 5)], timeout=0.2))
    assert sorted(ray.util.map_unordered(add, [1, 2, 3])) == [1, 2, 3]
    with pytest.raises(TypeError, match="num_returns=1"):
        list(ray.util.map_unordered(split, [1]))


def test_scaler_init_starts_a_configured_cluster_once():
    ray.shutdown()
    ray.scaler_init(n_workers=1, task_timeout_seconds=30)
    try:
        assert ray.is_initialized() and ray.get(add.remote(2, 3)) == 5
        with pytest.raises(RuntimeError, match="already"):
            ray.scaler_init()
    finally:
        ray.shutdown()
    with pytest.raises(ValueError, match="only apply without an address"):
        ray.scaler_init("tcp://127.0.0.1:1", n_workers=2, task_timeout_seconds=1)
    assert not ray.is_initialized()


# --- the patterns of Ray's core walkthrough, written again for this layer ---------------------------


@ray.remote
def cube(x):
    return x ** 3


@ray.remote
def total(matrix):
    return float(np.sum(matrix))


@ray.remote
def leaf():
    return 1


@ray.remote
def refs_of_leaves():
    return [leaf.remote() for _ in range(3)]  # refs made inside a task come back as refs


@ray.remote
def sum_of_leaves():
    return sum(ray.get([leaf.remote() for _ in range(3)]))


@ray.remote
def distributed_sort(values):
    if len(values) <= 64:
        return sorted(values)
    pivot, rest = values[0], values[1:]
    lower = distributed_sort.remote([v for v in rest if v <= pivot])
    upper = distributed_sort.remote([v for v in rest if v > pivot])
    return ray.get(lower) + [pivot] + ray.get(upper)


@ray.remote
class Accumulator:
    def __init__(self, start):
        self.value = start

    def add(self, amount):
        self.value += amount
        return self.value


def test_walkthrough_patterns(up):
    assert ray.get([cube.remote(i) for i in range(5)]) == [0, 1, 8, 27, 64]
    matrix = np.ones((300, 300))
    assert ray.get(total.remote(matrix)) == 90000.0                 # a literal argument
    assert ray.get(total.remote(ray.put(matrix))) == 90000.0        # an object put once
    assert ray.get(ray.get(refs_of_leaves.remote())) == [1, 1, 1]
    assert ray.get(sum_of_leaves.remote()) == 3
    values = [int(v) for v in np.random.default_rng(7).integers(0, 10_000, 2000)]
    assert ray.get(distributed_sort.remote(values)) == sorted(values)
    accumulator = Accumulator.remote(10)
    assert ray.get([accumulator.add.remote(n) for n in (1, 2, 3)]) == [11, 13, 16]
    ray.kill(accumulator)
