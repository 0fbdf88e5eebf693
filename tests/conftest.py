import time

import psutil
import pytest

from scaler_core import Client, SchedulerClusterCombo


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Poll `predicate` until it is true or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def engine_children():
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "scaler_core.child_entry" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # gone or a zombie meanwhile
            pass
    return found


def engine_processes(combo, name):
    """The combo's processes (children and grandchildren) whose command line names `name`."""
    found = []
    for child in combo.processes():
        try:
            for process in [psutil.Process(child.pid)] + psutil.Process(child.pid).children(recursive=True):
                if name in " ".join(process.cmdline()):
                    found.append(process)
        except psutil.Error:
            pass
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    yield
    leftovers = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leftovers = engine_children()
        if not leftovers:
            break
        time.sleep(0.1)
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"


@pytest.fixture(scope="module")
def combo():
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster:
        yield cluster


@pytest.fixture
def client(combo):
    with Client(combo.address, timeout_seconds=30) as connected:
        yield connected


def monitor_status_when(combo, shows, message):
    """(status, its dict) of the first monitor status for which `shows(dict)` is true."""
    from scaler_core.monitor.stream import StatusSubscriber, status_to_dict

    def seen(subscriber):
        status = subscriber.wait_for_status(1.0)
        shown = status_to_dict(status) if status is not None else None
        return (status, shown) if shown is not None and shows(shown) else None

    with StatusSubscriber(combo.monitor_address) as subscriber:
        return wait_until(lambda: seen(subscriber), timeout=30, message=message)
