"""Launch a single run in its own session with a hard timeout and clean up every process it started."""

import os
import signal
import subprocess
import time

import psutil

POLL_SECONDS = 0.2
EXIT_AFTER_RESULT_GRACE_SECONDS = 25


class RunOutcome:
    def __init__(self, return_code, timed_out, hung_after_result, seconds, leftovers_killed, foreign_load):
        self.return_code = return_code
        self.timed_out = timed_out
        self.hung_after_result = hung_after_result
        self.seconds = seconds
        self.leftovers_killed = leftovers_killed
        # Average number of CPUs kept busy by processes outside this run (other users of the machine).
        self.foreign_load = foreign_load


def _machine_busy_seconds():
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _process_cpu_seconds(process):
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _kill_tracked(tracked, run_group):
    """Kill processes we saw as descendants of the run, identified by (pid, create_time), that left the
    run's process group (so killpg missed them). Returns how many there were."""
    killed = 0
    for pid, create_time in tracked.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() != create_time or process.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(pid) == run_group:
                process.kill()
                continue
            process.kill()
            killed += 1
        except (psutil.Error, ProcessLookupError):
            continue
    return killed


def run_with_timeout(command, timeout_seconds, log_path, result_file, env=None, cwd=None):
    start = time.monotonic()
    busy_before = _machine_busy_seconds()
    with open(log_path, "wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                 start_new_session=True)
    tracked = {}
    cpu_seen = {}  # pid -> last CPU seconds observed, for the processes of this run
    timed_out = hung_after_result = False
    result_seen_at = None
    while child.poll() is None:
        try:
            root = psutil.Process(child.pid)
            cpu_seen[child.pid] = _process_cpu_seconds(root)
            for process in root.children(recursive=True):
                tracked.setdefault(process.pid, process.create_time())
                try:
                    cpu_seen[process.pid] = _process_cpu_seconds(process)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        now = time.monotonic()
        if result_seen_at is None and os.path.exists(result_file):
            result_seen_at = now
        if result_seen_at is not None and now - result_seen_at > EXIT_AFTER_RESULT_GRACE_SECONDS:
            hung_after_result = True
            break
        if now - start > timeout_seconds:
            timed_out = True
            break
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - start
    foreign_busy = _machine_busy_seconds() - busy_before - sum(cpu_seen.values())
    foreign_load = max(0.0, foreign_busy / seconds) if seconds > 0 else 0.0
    try:
        os.killpg(child.pid, signal.SIGKILL)  # the session/group started for this run only
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()
    leftovers = _kill_tracked(tracked, child.pid)
    return RunOutcome(child.returncode, timed_out, hung_after_result, seconds, leftovers, round(foreign_load, 2))
