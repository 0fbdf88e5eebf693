"""Multi-host: the scheduler and two clusters on separate network stacks, one link cut mid-run.

Layout (all names unique per run, everything created inside the namespaces, nothing in the host's):

    sch-<id>: lo 127.0.0.1 + 10.77.0.1/32 (scheduler, its object storage and the client bind/connect here)
              va 10.77.1.1/24 ---- veth ---- ca-<id>: eth0 10.77.1.2/24, default via 10.77.1.1 (cluster A)
              vb 10.77.2.1/24 ---- veth ---- cb-<id>: eth0 10.77.2.2/24, default via 10.77.2.1 (cluster B)

A client inside sch-<id> submits tasks that report which cluster ran them. Once cluster A has
delivered work and has a task freshly started, ``va`` is set down: A's workers can no longer talk to
the scheduler (no RST, no FIN: packets just vanish, as when a host's cable is pulled), so the
scheduler must notice through its worker timeout and re-run A's tasks on B.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

REPO_ROOT = str(Path(__file__).resolve().parents[2])
SCHEDULER_IP = "10.77.0.1"
SCHEDULER_ADDRESS = f"tcp://{SCHEDULER_IP}:23456"  # fresh namespace: no port can be taken
MONITOR_ADDRESS = f"tcp://{SCHEDULER_IP}:23458"  # the scheduler's default: port + 2
WORKER_TIMEOUT_SECONDS = 3.0
N_TASKS = 40
TASK_SECONDS = 0.5
RUN_BOUND_SECONDS = 90.0
PERMISSION_ERRORS = ("Operation not permitted", "Permission denied")

# Runs inside the scheduler's namespace. Prints one JSON object per line on stdout:
# {"event": "ready"} once both clusters ran a warm-up task, {"event": "submitted", "at": t},
# {"event": "result", ...} per finished task (with the client's receive time), {"event": "done"}, and
# {"event": "workers", "at": t, "ids": [...]} whenever the scheduler's monitor stream shows a new worker set.
CLIENT_SCRIPT = textwrap.dedent("""
    import concurrent.futures, json, os, sys, threading, time
    from scaler_core import Client
    from scaler_core.monitor.stream import StatusSubscriber

    address, monitor_address, start_log = sys.argv[1], sys.argv[2], sys.argv[3]
    n_tasks, task_seconds, bound = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    emit_lock = threading.Lock()
    stopping = threading.Event()

    def emit(**fields):
        with emit_lock:
            sys.stdout.write(json.dumps(fields) + "\\n")
            sys.stdout.flush()

    def watch_workers():
        # the scheduler's view of its workers, from its monitor stream (a snapshot every tick)
        known = None
        with StatusSubscriber(monitor_address) as subscriber:
            while not stopping.is_set():
                status = subscriber.receive_latest(0.1)
                if status is None:
                    continue
                ids = sorted(w.worker_id.decode(errors="replace") for w in status.workers)
                if ids != known:
                    known = ids
                    emit(event="workers", at=time.monotonic(), ids=ids)

    threading.Thread(target=watch_workers, daemon=True).start()

    def where(_):
        import os
        return os.environ.get("CLUSTER_NAME")

    def work(index, log_path, seconds):
        import os, time
        cluster = os.environ.get("CLUSTER_NAME")
        started = time.monotonic()
        # one O_APPEND write per line: lines from workers in both namespaces never interleave
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, ("%d %s %d %.6f\\n" % (index, cluster, os.getpid(), started)).encode())
        finally:
            os.close(fd)
        time.sleep(seconds)
        return {"index": index, "cluster": cluster, "pid": os.getpid(), "started": started,
                "ended": time.monotonic()}

    with Client(address, timeout_seconds=30) as client:
        # count results as they arrive from the scheduler, before the future dedups them
        deliveries = {}
        deliver = client._connection.state._on_result

        def counting(result):
            deliveries[result.task_id] = deliveries.get(result.task_id, 0) + 1
            return deliver(result)

        client._connection.state._on_result = counting
        # warm-up: both clusters must have workers connected before the measured run
        deadline = time.monotonic() + 60
        seen = set()
        while not {"A", "B"} <= seen:
            if time.monotonic() > deadline:
                emit(event="error", message="clusters seen after 60s: %s" % sorted(seen))
                sys.exit(2)
            seen.update(client.map(where, range(8)))
        emit(event="ready")
        submitted = time.monotonic()
        futures = {client.submit(work, index, start_log, task_seconds): index for index in range(n_tasks)}
        emit(event="submitted", at=submitted)
        try:
            for future in concurrent.futures.as_completed(futures, timeout=bound):
                received = time.monotonic()
                try:
                    value = future.result()
                except Exception as error:
                    emit(event="failed", index=futures[future], error=repr(error), received=received)
                    continue
                emit(event="result", received=received, **value)
        except concurrent.futures.TimeoutError:
            emit(event="error", message="not all results within %gs" % bound)
            sys.exit(3)
        emit(event="done", at=time.monotonic(), most_deliveries=max(deliveries.values()))
        stopping.set()
""")


def _run(*command, check=True):
    completed = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    if check and completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}): {completed.stderr.strip()}")
    return completed


def _skip_if_not_permitted(error: RuntimeError, what: str):
    if any(text in str(error) for text in PERMISSION_ERRORS):
        pytest.skip(f"cannot create {what} here: {error}")
    raise error


class Namespaces:
    """Three network namespaces joined by veth pairs; removed (with their links) by `delete()`."""

    def __init__(self):
        suffix = os.urandom(3).hex()
        self.scheduler = f"sch-{suffix}"
        self.cluster_a = f"ca-{suffix}"
        self.cluster_b = f"cb-{suffix}"
        self.created = []

    def create(self):
        for name in (self.scheduler, self.cluster_a, self.cluster_b):
            try:
                _run("ip", "netns", "add", name)
            except RuntimeError as error:
                _run("ip", "netns", "del", name, check=False)  # in case it got half made
                _skip_if_not_permitted(error, "network namespaces")
            self.created.append(name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", self.scheduler, "addr", "add", f"{SCHEDULER_IP}/32", "dev", "lo")
        for peer, link, subnet in ((self.cluster_a, "va", "10.77.1"), (self.cluster_b, "vb", "10.77.2")):
            try:
                _run("ip", "-n", self.scheduler, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                     "netns", peer)
            except RuntimeError as error:
                _skip_if_not_permitted(error, "veth pairs")
            _run("ip", "-n", self.scheduler, "addr", "add", f"{subnet}.1/24", "dev", link)
            _run("ip", "-n", self.scheduler, "link", "set", link, "up")
            _run("ip", "-n", peer, "addr", "add", f"{subnet}.2/24", "dev", "eth0")
            _run("ip", "-n", peer, "link", "set", "eth0", "up")
            _run("ip", "-n", peer, "route", "add", "default", "via", f"{subnet}.1")

    def cut_cluster_a(self):
        _run("ip", "-n", self.scheduler, "link", "set", "va", "down")

    def delete(self):
        for name in reversed(self.created):
            _run("ip", "netns", "del", name, check=False)
        self.created.clear()


def _namespace_skip_reason():
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces (ip netns) needs root"
    if shutil.which("ip") is None:
        return "the iproute2 'ip' command is not installed"
    return None


class InNamespace:
    """A process started with `ip netns exec`, in its own session so the whole tree can be killed."""

    def __init__(self, namespace, argv, log_path, env_extra=None, capture_stdout=False):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        env.update(env_extra or {})
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", namespace] + argv, env=env, cwd=REPO_ROOT, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if capture_stdout else self._log, stderr=self._log)

    def log_tail(self, lines=40):
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self):
        """SIGKILL the whole process group (the tool, its workers or object storage) and reap it."""
        try:
            tree = [psutil.Process(self.process.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for process in tree:  # anything that left the group on its own
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=10)
        psutil.wait_procs(tree, timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class LineReader:
    """Collects the client's JSON lines from a pipe on a thread, so the test can poll them."""

    def __init__(self, pipe):
        self.events = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe):
        for line in iter(pipe.readline, b""):
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line.decode(errors="replace")}
            with self._lock:
                self.events.append(event)

    def snapshot(self, kind=None):
        with self._lock:
            return [event for event in self.events if kind is None or event["event"] == kind]


def read_start_log(path):
    """[(index, cluster, pid, started)] for every task start recorded by a worker (re-runs included)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    starts = []
    for line in text.splitlines():
        index, cluster, pid, started = line.split()
        starts.append((int(index), cluster, int(pid), float(started)))
    return starts


def poll(predicate, timeout, message, diagnostics=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}\n{diagnostics()}")


@pytest.mark.timeout(180)
def test_cut_link_to_one_cluster_its_tasks_finish_on_the_other(tmp_path):
    reason = _namespace_skip_reason()
    if reason:
        pytest.skip(reason)
    namespaces = Namespaces()
    processes = {}
    start_log = tmp_path / "starts.log"

    def diagnostics():
        parts = []
        for name, process in processes.items():
            parts.append(f"--- {name} (exit {process.process.poll()}) log tail ---\n{process.log_tail()}")
        return "\n".join(parts)

    try:
        namespaces.create()
        python = sys.executable
        processes["scheduler"] = InNamespace(
            namespaces.scheduler,
            [python, "-c", "from scaler_core.cli import scheduler_main; scheduler_main()", SCHEDULER_ADDRESS,
             "--worker-timeout-seconds", str(WORKER_TIMEOUT_SECONDS), "--logging-level", "INFO"],
            tmp_path / "scheduler.log")
        for name, namespace in (("A", namespaces.cluster_a), ("B", namespaces.cluster_b)):
            processes[f"cluster {name}"] = InNamespace(
                namespace,
                [python, "-c", "from scaler_core.cli import cluster_main; cluster_main()", "-n", "2",
                 SCHEDULER_ADDRESS, "--heartbeat-interval-seconds", "0.5", "--death-timeout-seconds", "120",
                 "--logging-level", "INFO"],
                tmp_path / f"cluster_{name}.log", env_extra={"CLUSTER_NAME": name})
        client = processes["client"] = InNamespace(
            namespaces.scheduler,
            [python, "-c", CLIENT_SCRIPT, SCHEDULER_ADDRESS, MONITOR_ADDRESS, str(start_log), str(N_TASKS),
             str(TASK_SECONDS), str(RUN_BOUND_SECONDS)],
            tmp_path / "client.log", capture_stdout=True)
        reader = LineReader(client.process.stdout)

        def client_failed():
            problems = reader.snapshot("error") + reader.snapshot("failed") + reader.snapshot("garbage")
            assert not problems, f"client reported {problems}\n{diagnostics()}"
            exited = client.process.poll()
            assert exited is None or reader.snapshot("done"), f"client exited with {exited}\n{diagnostics()}"

        def ready():
            client_failed()
            return reader.snapshot("submitted")

        poll(ready, 90, "the client to see both clusters and submit", diagnostics)

        # Cut while cluster A is doing useful work: it has delivered at least one result and a task
        # it started less than 0.25 s ago (so at least half its run still ahead) has no result yet.
        def a_is_mid_task():
            client_failed()
            results = reader.snapshot("result")
            if not any(result["cluster"] == "A" for result in results):
                return None
            finished = {result["index"] for result in results}
            now = time.monotonic()
            fresh = [start for start in read_start_log(start_log)
                     if start[1] == "A" and start[0] not in finished and now - start[3] < TASK_SECONDS / 2]
            return fresh

        running_on_a = poll(a_is_mid_task, 60, "cluster A to be running a task", diagnostics)
        namespaces.cut_cluster_a()
        cut_at = time.monotonic()

        def done():
            client_failed()
            return reader.snapshot("done")

        poll(done, RUN_BOUND_SECONDS + 30, f"all {N_TASKS} results", diagnostics)
        submitted_at = reader.snapshot("submitted")[0]["at"]
        done_at = reader.snapshot("done")[0]["at"]
        results = {result["index"]: result for result in reader.snapshot("result")}
        starts = read_start_log(start_log)

        # every task came back exactly once, within the bound
        assert sorted(results) == list(range(N_TASKS)), f"missing: {set(range(N_TASKS)) - set(results)}"
        assert len(reader.snapshot("result")) == N_TASKS
        assert reader.snapshot("done")[0]["most_deliveries"] == 1, "the scheduler delivered a result twice"
        assert done_at - submitted_at < RUN_BOUND_SECONDS

        # the cut mattered: A delivered work before it, and work it had started finished on B
        assert any(result["cluster"] == "A" and result["received"] < cut_at for result in results.values())
        re_run = sorted(index for index, result in results.items() if result["cluster"] == "B"
                        and any(start[0] == index and start[1] == "A" for start in starts))
        assert re_run, (f"no task started on A finished on B (A was running {running_on_a} at the cut)\n"
                        f"{diagnostics()}")

        # nothing A computed after the cut reached anyone, and every result that arrived after the
        # cut (beyond what was already inside the scheduler) came from B
        for result in results.values():
            if result["cluster"] == "A":
                assert result["ended"] < cut_at, f"result computed on A after the cut was delivered: {result}"
            if result["received"] > cut_at + 1.0:
                assert result["cluster"] == "B", f"late result from the cut-off cluster: {result}"

        # The scheduler notices A's silent workers through its worker timeout (a cut link sends no RST
        # or FIN); its monitor stream says when it dropped them (snapshots every 0.5 s).
        a_marker = f"|{processes['cluster A'].process.pid}|"  # worker ids are W|host|cluster pid|n|rand
        dropped = [event["at"] for event in reader.snapshot("workers")
                   if event["at"] > cut_at and not any(a_marker in worker for worker in event["ids"])]
        assert dropped, f"the scheduler never dropped cluster A's workers\n{diagnostics()}"
        detected = dropped[0] - cut_at
        assert detected < WORKER_TIMEOUT_SECONDS + 3, (
            f"A's workers were dropped {detected:.1f}s after the cut (worker timeout {WORKER_TIMEOUT_SECONDS:g}s)")
        rerun_started = min(start[3] for start in starts if start[0] in re_run and start[1] == "B") - cut_at
        print(f"\nmultihost: cut at +{cut_at - submitted_at:.2f}s; A's workers dropped {detected:.2f}s after the "
              f"cut (worker timeout {WORKER_TIMEOUT_SECONDS:g}s); {len(re_run)} tasks started on A finished on B, "
              f"the first re-run starting {rerun_started:.2f}s after the cut; "
              f"all {N_TASKS} results at +{done_at - submitted_at:.2f}s; "
              f"{sum(r['cluster'] == 'A' for r in results.values())} results from A, "
              f"{sum(r['cluster'] == 'B' for r in results.values())} from B")
    finally:
        for name in ("client", "cluster A", "cluster B", "scheduler"):
            if name in processes:
                processes[name].kill()
        namespaces.delete()
