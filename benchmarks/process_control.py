"""Launch a single run in its own session with a hard timeout and clean up every process it started."""

import os
import signal
import subprocess
import time

import psutil

POLL_SECONDS = 0.2
EXIT_AFTER_RESULT_GRACE_SECONDS = 25


class RunOutcome:
    def __init__(self, return_code, timed_out, hung_after_result, seconds, leftovers_killed):
        self.return_code = return_code
        self.timed_out = timed_out
        self.hung_after_result = hung_after_result
        self.seconds = seconds
        self.leftovers_killed = leftovers_killed


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
    with open(log_path, "wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                 start_new_session=True)
    tracked = {}
    timed_out = hung_after_result = False
    result_seen_at = None
    while child.poll() is None:
        try:
            for process in psutil.Process(child.pid).children(recursive=True):
                tracked.setdefault(process.pid, process.create_time())
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
    try:
        os.killpg(child.pid, signal.SIGKILL)  # the session/group started for this run only
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()
    leftovers = _kill_tracked(tracked, child.pid)
    return RunOutcome(child.returncode, timed_out, hung_after_result, seconds, leftovers)
