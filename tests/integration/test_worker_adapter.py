"""Dynamic workers: the scaling policy alone, then scheduler + native worker adapter for real."""

import json
import urllib.request

from scaler_core import Client
from scaler_core.scheduler.scaling import GroupLoad, ScalingPolicy
from scaler_core.transport import free_tcp_port

from tests import helpers_tasks as tasks
from tests.conftest import wait_until
from tests.integration.test_cli import processes  # noqa: F401  (fixture)
from tests.ports import port_block


def test_policy_asks_for_workers_while_tasks_queue_and_waits_for_them():
    policy = ScalingPolicy(start_cooldown_seconds=3, idle_seconds=10)
    assert policy.decide(0, queued_tasks=5, loads={}) == [("start", None)]
    assert policy.decide(1, queued_tasks=5, loads={}) == [], "one request at a time"
    policy.on_started("K|a", 1)
    assert policy.decide(2, queued_tasks=5, loads={}) == [], "cooldown: its workers are still connecting"
    assert policy.decide(3.5, queued_tasks=5, loads={"K|a": GroupLoad(1, 1)}) == [("start", None)]
    policy.on_start_failed()
    assert policy.decide(4, queued_tasks=0, loads={"K|a": GroupLoad(1, 1)}) == []


def test_policy_releases_idle_groups_only():
    policy = ScalingPolicy(start_cooldown_seconds=0, idle_seconds=10)
    policy.on_started("K|a", 0)
    policy.on_started("K|b", 0)
    loads = {"K|a": GroupLoad(1, 0), "K|b": GroupLoad(1, 1)}
    assert policy.decide(5, 0, loads) == []
    assert policy.decide(11, 0, loads) == [("stop", "K|a")]
    assert policy.decide(30, 0, {"K|b": GroupLoad(1, 1)}) == []


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_scheduler_grows_and_shrinks_through_the_native_adapter(processes):  # noqa: F811
    address = f"tcp://127.0.0.1:{port_block()}"
    adapter_port = free_tcp_port()
    adapter_url = f"http://127.0.0.1:{adapter_port}"
    processes.start("scaler_worker_adapter_native", address, "--host", "127.0.0.1", "--port", str(adapter_port),
                    "--max-worker-groups", "3")
    processes.start("scaler_scheduler", address, "--adapter-webhook-url", adapter_url,
                    "--adapter-idle-seconds", "2")
    wait_until(lambda: _reachable(adapter_url), timeout=30, message="the adapter's HTTP service")
    assert post(adapter_url, {"action": "nonsense"})[0] == 400
    assert post(adapter_url, {"action": "shutdown_worker_group", "worker_group_id": "nope"})[0] == 404
    with Client(address) as client:
        futures = [client.submit(tasks.sleep_and_return, 1.0, n) for n in range(12)]
        assert [f.result(timeout=120) for f in futures] == list(range(12))
        groups = post(adapter_url, {"action": "get_worker_adapter_info"})[1]
    assert groups["max_worker_groups"] == 3
    # idle groups are released again
    wait_until(lambda: post(adapter_url, {"action": "get_worker_adapter_info"})[1]["worker_groups"] == [],
               timeout=60, message="idle worker groups to be released")


def _reachable(url):
    try:
        return post(url, {"action": "get_worker_adapter_info"})[0] == 200
    except OSError:
        return False
