"""`scaler FILE.toml` and `scaler_worker_manager baremetal_native`, run the way a user runs them.

Every process starts in a session of its own; each test ends by checking that the launcher and all
its descendants are gone, and the fixture SIGKILLs the process group of whatever is left."""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import psutil
import pytest

from scaler_core import Client
from scaler_core.transport import free_tcp_port
from tests.ports import port_block
from tests.upstream_samples import QUICKSTART

STARTUP_SECONDS = 60
STOP_SECONDS = 30

def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Started:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.processes = []

    def start(self, *command, name="process"):
        log = open(self.tmp_path / f"{name}-{len(self.processes)}.log", "w+")
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True, cwd=self.tmp_path)
        process.log = log
        self.processes.append(process)
        return process

    def cleanup(self):
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
            process.log.close()


@pytest.fixture
def started(tmp_path):
    processes = Started(tmp_path)
    yield processes
    processes.cleanup()


def output(process):
    process.log.flush()
    process.log.seek(0)
    return process.log.read()


def descendants(process):
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_for(condition, what, timeout=STARTUP_SECONDS, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited (code {process.returncode}) while waiting for {what}:\n{output(process)}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{output(process)}" if process is not None else ""))


def stop_and_check_all_gone(process, signum=signal.SIGTERM, ports=()):
    family = descendants(process)
    assert family, "the launcher started no process"
    process.send_signal(signum)
    try:
        code = process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_SECONDS}s after {signum.name}:\n{output(process)}")
    _, alive = psutil.wait_procs(family, timeout=STOP_SECONDS)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    wait_for(lambda: not any(listening(port) for port in ports), "ports to close", timeout=STOP_SECONDS)
    return code


def names(processes):
    found = []
    for process in processes:
        try:
            found.append(process.cmdline()[-1])
        except psutil.NoSuchProcess:
            pass
    return found


def test_readme_quickstart_file_runs_tasks_and_sigterm_stops_everything(started, tmp_path):
    port = port_block(3)
    storage = free_tcp_port()
    path = tmp_path / "config.toml"
    path.write_text(QUICKSTART.replace("8516", str(port)).replace("8517", str(storage)))
    scaler = started.start("scaler", "config.toml", name="scaler")
    with Client(address=f"tcp://127.0.0.1:{port}", timeout_seconds=STARTUP_SECONDS) as client:
        # builtins only: the workers run in the launcher's directory, where this test module does not import
        assert client.submit(pow, 4, 2).result(timeout=STARTUP_SECONDS) == 16
        assert client.map(pow, range(20), [2] * 20) == [value * value for value in range(20)]
    running = names(descendants(scaler))
    # the dynamic manager started a worker group (a cluster and its worker) when the tasks queued
    assert {"object_storage_server", "scheduler", "worker-manager-wm-native", "cluster"} <= set(running), running
    assert stop_and_check_all_gone(scaler, ports=(port, storage, port + 2)) == 0
    log = output(scaler)
    assert "started [[worker_manager]] #1 (wm-native)" in log and "SIGTERM received" in log


def test_a_bad_key_stops_the_launcher_naming_section_and_key(started, tmp_path):
    port = port_block(3)
    path = tmp_path / "bad.toml"
    path.write_text(QUICKSTART.replace("8516", str(port)).replace("8517", str(port + 1)) +
                    "max_task_concurency = 2\n")
    scaler = started.start("scaler", str(path), name="scaler")
    assert scaler.wait(STARTUP_SECONDS) != 0
    text = output(scaler)
    assert "[[worker_manager]] #1 (wm-native)" in text and "'max_task_concurency'" in text, text
    assert str(path) in text
    assert "started" not in text  # checked before anything starts
    assert not listening(port)


def test_two_managers_and_the_gui_start_and_sigint_stops_them_all(started, tmp_path):
    port = port_block(3)
    web = free_tcp_port()
    manager = """
[[worker_manager]]
type = "baremetal_native"
scheduler_address = "tcp://127.0.0.1:{port}"
worker_manager_id = "{id}"
mode = "fixed"
max_task_concurrency = 1
per_worker_capabilities = "{id}"
"""
    path = tmp_path / "two.toml"
    path.write_text(f"""
[scheduler]
bind_address = "tcp://127.0.0.1:{port}"
allocate_policy = "capability"
event_loop = "builtin"

[gui]
monitor_address = "tcp://127.0.0.1:{port + 2}"
gui_address = "127.0.0.1:{web}"
""" + manager.format(port=port, id="left") + manager.format(port=port, id="right"))
    scaler = started.start("scaler", str(path), name="scaler")
    with Client(address=f"tcp://127.0.0.1:{port}", timeout_seconds=STARTUP_SECONDS) as client:
        # each task needs the capability only one manager's worker has: both managers must be serving
        for side in ("left", "right"):
            future = client.submit_verbose(pow, args=(3, 2), kwargs={}, capabilities={side: -1})
            assert future.result(timeout=STARTUP_SECONDS) == 9
    wait_for(lambda: listening(web), "the web UI", process=scaler)
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10) as page:
        assert page.status == 200
    running = names(descendants(scaler))
    assert {"worker-manager-left", "worker-manager-right", "gui", "scheduler"} <= set(running), running
    assert running.count("worker-1") == 2, running
    # Ctrl-C reaches the whole foreground group; here only the launcher gets it and must pass it on
    assert stop_and_check_all_gone(scaler, signal.SIGINT, ports=(port, port + 1, port + 2, web)) == 0


def test_a_section_that_dies_stops_the_others(started, tmp_path):
    port = port_block(3)
    path = tmp_path / "stack.toml"
    path.write_text(f"""
[scheduler]
bind_address = "tcp://127.0.0.1:{port}"

[[worker_manager]]
type = "baremetal_native"
worker_manager_id = "fixed"
mode = "fixed"
max_task_concurrency = 1
""")
    scaler = started.start("scaler", str(path), name="scaler")
    wait_for(lambda: "scheduler" in names(descendants(scaler)) and listening(port), "the scheduler", process=scaler)
    family = descendants(scaler)
    scheduler = next(p for p in family if names([p]) == ["scheduler"])
    scheduler.kill()
    assert scaler.wait(STOP_SECONDS) != 0
    _, alive = psutil.wait_procs(family, timeout=STOP_SECONDS)
    assert not alive
    assert "[scheduler] exited" in output(scaler)


def test_worker_manager_fixed_mode_serves_tasks(started):
    port = port_block(3)
    address = f"tcp://127.0.0.1:{port}"
    scheduler = started.start("scaler_scheduler", address, name="scheduler")
    manager = started.start("scaler_worker_manager", "baremetal_native", address, "--worker-manager-id", "wm-fixed",
                            "--mode", "fixed", "--max-task-concurrency", "2", "--event-loop", "builtin",
                            name="manager")
    with Client(address=address, timeout_seconds=STARTUP_SECONDS) as client:
        assert client.map(pow, range(10), [2] * 10) == [value * value for value in range(10)]
    wait_for(lambda: names(descendants(manager)).count("worker-1") + names(descendants(manager)).count("worker-2")
             == 2, "two workers", process=manager)
    assert stop_and_check_all_gone(manager) == 0
    assert stop_and_check_all_gone(scheduler, ports=(port, port + 1, port + 2)) == 0
    assert "ClusterProcess: starting 2 workers" in output(manager)


def test_worker_manager_dynamic_mode_registers_and_the_scaling_policy_grows_then_drains_it(started):
    port = port_block(3)
    address = f"tcp://127.0.0.1:{port}"
    scheduler = started.start("scaler_scheduler", address, "--scaling-idle-seconds", "1", name="scheduler")
    manager = started.start("scaler_worker_manager", "baremetal_native", address, "--worker-manager-id", "wm-dyn",
                            "--max-task-concurrency", "2", name="manager")
    with Client(address=address, timeout_seconds=STARTUP_SECONDS) as client:
        assert client.map(pow, range(6), [2] * 6) == [value * value for value in range(6)]
    # idle groups are drained and stopped: the manager's clusters go away
    wait_for(lambda: "cluster" not in names(descendants(manager)), "the idle groups to stop", process=manager)
    manager.send_signal(signal.SIGTERM)
    assert manager.wait(STOP_SECONDS) == 0
    assert stop_and_check_all_gone(scheduler) == 0
    log = output(scheduler)
    assert "worker manager wm-dyn (baremetal_native) registered" in log and "(drained)" in log


def test_worker_manager_refuses_an_unknown_type():
    completed = subprocess.run(["scaler_worker_manager", "symphony", "tcp://127.0.0.1:1", "--worker-manager-id", "x"],
                               capture_output=True, text=True, timeout=30)
    assert completed.returncode != 0 and "'symphony'" in completed.stderr and "baremetal_native" in completed.stderr


def test_launcher_check_prints_the_plan(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(QUICKSTART)
    completed = subprocess.run(["scaler", "--check", str(path)], capture_output=True, text=True, timeout=30)
    assert completed.returncode == 0, completed.stderr
    assert "[scheduler]: scheduler at tcp://127.0.0.1:8516" in completed.stdout
    assert "[[worker_manager]] #1 (wm-native): worker_manager at tcp://127.0.0.1:8516, baremetal_native, dynamic" \
        in completed.stdout
