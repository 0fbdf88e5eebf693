"""The slurm worker manager against a real one-node Slurm (tests/slurm_daemons.py).

Skipped, with the reason, where the Slurm daemons are not installed or cannot run; .ci/run installs
them. Time limits: Slurm checks them every 30 s and counts in minutes, so the walltime test runs
about 100 s; the others a few seconds each.
"""

import os
import re
import signal
import subprocess
import time

import pytest

from scaler_core import Client
from tests import helpers_tasks as tasks
from tests.conftest import wait_until
from tests.ports import port_block
from tests.slurm_daemons import SlurmDaemons, SlurmUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    daemons = SlurmDaemons(tmp_path_factory.mktemp("slurm"), cpus=max(2, os.cpu_count() or 2))
    try:
        daemons.start()
    except SlurmUnavailable as reason:
        pytest.skip(f"no Slurm here: {reason}")
    yield daemons
    daemons.stop()


class Stack:
    """A scheduler and worker managers started as a user would, logging to files; stopped at the end,
    and every Slurm job of theirs gone."""

    def __init__(self, slurm, directory):
        self.slurm = slurm
        self.directory = directory
        self.processes = {}
        self.address = f"tcp://127.0.0.1:{port_block()}"
        # the jobs' workers import this repository's test functions by reference
        self.env = dict(os.environ, PYTHONPATH=ROOT, **slurm.env)

    def start(self, name, *command):
        log = open(self.directory / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                                env=self.env, start_new_session=True)
        log.close()

    def scheduler(self, *options):
        self.start("scheduler", "scaler_scheduler", self.address, "--scaling-idle-seconds", "2",
                   "--max-task-retries", "1", *options)

    def manager(self, manager_id, *options):
        self.start(manager_id, "scaler_worker_manager", "slurm", self.address, "--worker-manager-id", manager_id,
                   "--partition", "debug", "--poll-interval-seconds", "1", "--job-log-dir",
                   str(self.directory / "jobs"), "--max-task-concurrency", "2", *options)

    def log(self, name):
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def jobs_of(self, manager_id):
        prefix = f"scaler-{manager_id}."
        return {job: state for job, (name, state) in self.slurm.jobs().items() if name.startswith(prefix)}

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.slurm.cancel_all()
        wait_until(lambda: not self.slurm.live_jobs(), timeout=30, interval=0.2, message="every Slurm job to end")


@pytest.fixture
def stack(slurm, tmp_path):
    started = Stack(slurm, tmp_path)
    yield started
    started.stop()


def test_a_burst_grows_through_sbatch_jobs_survives_their_walltime_and_idle_jobs_are_cancelled(stack):
    stack.scheduler()
    stack.manager("wm-hpc", "--walltime", "00:01:00")
    values = list(range(24))
    with Client(stack.address, timeout_seconds=60) as client:
        started = time.monotonic()
        futures = [client.submit(tasks.sleep_and_return, 8.0, value) for value in values]
        # the burst starts one job per core the node has (the manager's limit is 2 workers)
        wait_until(lambda: len(stack.jobs_of("wm-hpc")) == 2, timeout=30, interval=0.2, message="two sbatch jobs")
        # 24 tasks of 8 s on 2 workers outlast the jobs' 1-minute time limit: Slurm ends them mid-task
        # (TIMEOUT), the workers hand their tasks back, and new jobs finish the work. With
        # --max-task-retries 1, a retry counted for a task that was running would fail it.
        assert [future.result(timeout=240) for future in futures] == values
        elapsed = time.monotonic() - started
    first_jobs = sorted(stack.jobs_of("wm-hpc"), key=int)[:2]
    states = stack.jobs_of("wm-hpc")
    assert [states[job] for job in first_jobs] == ["TIMEOUT", "TIMEOUT"], (states, elapsed)
    assert len(states) >= 3, states  # replacements
    scheduler_log = stack.log("scheduler")
    # noticed while Slurm still kills the job (COMPLETING) or once it has (TIMEOUT)
    assert re.search(r"ended \(Slurm job \d+ ended: (TIMEOUT|COMPLETING \(TimeLimit\))", scheduler_log), scheduler_log
    # idle jobs are cancelled once the scaling idle time passes
    wait_until(lambda: not {job for job, state in stack.jobs_of("wm-hpc").items()
                            if state in ("PENDING", "RUNNING", "COMPLETING")},
               timeout=30, interval=0.5, message="the idle jobs to be cancelled")
    assert "CANCELLED" in stack.jobs_of("wm-hpc").values()
    assert "(drained)" in stack.log("scheduler")


def test_capability_scaling_starts_only_jobs_that_offer_the_capability(stack):
    stack.scheduler("--policy-content", "allocate=capability; scaling=capability")
    stack.manager("wm-cpu")
    stack.manager("wm-gpu", "--per-worker-capabilities", "gpu")
    wait_until(lambda: stack.log("scheduler").count("registered") == 2, timeout=30, message="both managers")
    with Client(stack.address, timeout_seconds=60) as client:
        futures = [client.submit_verbose(tasks.sleep_and_return, args=(0.5, n), kwargs={}, capabilities={"gpu": -1})
                   for n in range(3)]
        assert [future.result(timeout=90) for future in futures] == [0, 1, 2]
    assert stack.jobs_of("wm-gpu") and not stack.jobs_of("wm-cpu")


def test_waterfall_uses_the_first_tier_before_the_second(stack):
    stack.scheduler("--policy-engine-type", "waterfall_v1", "--policy-content", "1,wm-first,1; 2,wm-second,1")
    stack.manager("wm-second")
    stack.manager("wm-first")
    wait_until(lambda: stack.log("scheduler").count("registered") == 2, timeout=30, message="both managers")
    with Client(stack.address, timeout_seconds=60) as client:
        assert client.submit(tasks.sleep_and_return, 0.1, "one").result(timeout=60) == "one"
        assert stack.jobs_of("wm-first") and not stack.jobs_of("wm-second")
        futures = [client.submit(tasks.sleep_and_return, 3.0, n) for n in range(4)]  # more than tier 1 holds
        wait_until(lambda: stack.jobs_of("wm-second"), timeout=30, interval=0.2, message="the second tier's job")
        assert [future.result(timeout=90) for future in futures] == list(range(4))
    assert len(stack.jobs_of("wm-first")) == 1


def test_a_job_slurm_refuses_is_reported_with_its_reason_launched_from_one_file(stack):
    config = stack.directory / "hpc.toml"
    config.write_text(f"""
        [scheduler]
        bind_address = "{stack.address}"

        [[worker_manager]]
        type = "slurm"
        worker_manager_id = "wm-bad"
        partition = "no-such-partition"
        max_task_concurrency = 1
    """.replace("\n        ", "\n"))
    stack.start("scaler", "scaler", str(config))
    with Client(stack.address, timeout_seconds=60) as client:
        client.submit(abs, -1)  # only to make the policy ask for a group
        wait_until(lambda: re.search(r"could not start group wm-bad\.\S+: .*invalid partition", stack.log("scaler")),
                   timeout=30, interval=0.2, message="the scheduler to log Slurm's reason")
