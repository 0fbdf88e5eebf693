"""slurm groups: each worker group is one batch job running `scaler_cluster`, which connects back.

`sbatch` submits a group, `scancel` stops it, and `squeue` (every `poll_interval_seconds`, one call
for all jobs) tells which ended and why: our own scancel, the time limit, pre-emption, a node
failure. A job still pending for a reason Slurm will not get over (a time limit above the
partition's, an unknown account, ...) is cancelled and reported as a failed start with that reason;
so is an sbatch that fails (its error message is the reason).

Slurm signals the job's processes with SIGTERM and kills them `KillWait` seconds later: the cluster
stops its workers and each worker hands its tasks back first (worker/cluster.py).

The functions at the top build commands and read squeue's output without running anything; the
`SlurmGroups` class runs them.
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from scaler_core.worker_manager.backend import GroupBackend, GroupEnded, GroupStartError

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT_SECONDS = 30
# squeue states of a job that will still run, that runs, and that ended (COMPLETING: its processes
# are being killed, so its workers are gone already)
PENDING_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}
RUNNING_STATES = {"RUNNING"}
# pending reasons Slurm does not get over by waiting
HOPELESS_REASONS = {
    "PartitionTimeLimit", "PartitionNodeLimit", "PartitionConfig", "PartitionDown", "PartitionInactive",
    "BadConstraints", "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
    "DependencyNeverSatisfied", "JobHeldAdmin", "ReqNodeNotAvail, UnavailableNodes", "Reservation",
}


@dataclass(frozen=True)
class SlurmJobSpec:
    partition: str
    account: str = ""
    walltime: str = ""
    cores_per_job: int = 1
    memory_per_job: str = ""
    job_extra: str = ""
    log_dir: str = ""


def sbatch_command(spec: SlurmJobSpec, job_name: str) -> List[str]:
    """sbatch with the job's resources; the script comes on stdin."""
    command = ["sbatch", "--parsable", f"--job-name={job_name}", f"--partition={spec.partition}", "--ntasks=1",
               f"--cpus-per-task={spec.cores_per_job}"]
    if spec.account:
        command.append(f"--account={spec.account}")
    if spec.walltime:
        command.append(f"--time={spec.walltime}")
    if spec.memory_per_job:
        command.append(f"--mem={spec.memory_per_job}")
    if spec.log_dir:
        command.append(f"--output={os.path.join(spec.log_dir, job_name + '-%j.out')}")
    return command + shlex.split(spec.job_extra)


def job_script(cluster_command: Sequence[str]) -> str:
    # exec: the cluster is the job's main process and gets Slurm's signals itself
    return "#!/bin/sh\nexec " + " ".join(shlex.quote(part) for part in cluster_command) + "\n"


def parse_sbatch_output(output: str) -> str:
    """The job id of `sbatch --parsable` ("12345" or "12345;cluster")."""
    job_id = output.strip().splitlines()[-1].split(";")[0].strip() if output.strip() else ""
    if not job_id.isdigit():
        raise GroupStartError(f"sbatch printed no job id: {output.strip()!r}")
    return job_id


SQUEUE_FORMAT = "%i|%T|%r"


def parse_squeue(output: str) -> Dict[str, tuple]:
    """job id -> (state, reason) from `squeue -h -o '%i|%T|%r'`."""
    jobs = {}
    for line in output.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3:
            jobs[parts[0]] = (parts[1], parts[2])
    return jobs


def describe(state: str, reason: str) -> str:
    return state if reason in ("", "None") else f"{state} ({reason})"


@dataclass
class SlurmJob:
    group_id: bytes
    job_id: str
    cancel_reason: Optional[str] = None  # set when we cancelled it


class SlurmGroups(GroupBackend):
    kind = "slurm"

    def __init__(self, spec: SlurmJobSpec, cluster_command: Sequence[str], max_groups: int,
                 capabilities: Dict[str, int], job_name_prefix: str = "scaler"):
        super().__init__(max(1, spec.cores_per_job), dict(capabilities), max_groups)
        self.spec = spec
        self.cluster_command = list(cluster_command)  # scaler_cluster and its options, without the group id
        self.job_name_prefix = job_name_prefix
        self.jobs: Dict[bytes, SlurmJob] = {}
        if spec.log_dir:
            os.makedirs(spec.log_dir, exist_ok=True)

    # --- GroupBackend -------------------------------------------------------------------------

    def start_group(self, group_id: bytes) -> str:
        group = group_id.decode()
        command = sbatch_command(self.spec, f"{self.job_name_prefix}-{group}")
        script = job_script(self.cluster_command + ["--worker-group-id", group])
        try:
            finished = subprocess.run(command, input=script, capture_output=True, text=True,
                                      timeout=COMMAND_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise GroupStartError(f"sbatch could not run: {error}") from None
        if finished.returncode != 0:
            raise GroupStartError((finished.stderr or finished.stdout).strip() or f"sbatch exit code "
                                                                                   f"{finished.returncode}")
        job_id = parse_sbatch_output(finished.stdout)
        self.jobs[group_id] = SlurmJob(group_id, job_id)
        return f"Slurm job {job_id}"

    def stop_group(self, group_id: bytes) -> None:
        job = self.jobs.get(group_id)
        if job is not None and job.cancel_reason is None:
            job.cancel_reason = "cancelled on the scheduler's request"
            self._scancel([job.job_id])

    def poll(self) -> List[GroupEnded]:
        if not self.jobs:
            return []
        try:
            finished = subprocess.run(["squeue", "-h", "--states=all", "-u", getpass.getuser(), "-o", SQUEUE_FORMAT],
                                      capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as error:
            logger.warning("slurm: squeue could not run (%s); asking again later", error)
            return []
        if finished.returncode != 0:
            logger.warning("slurm: squeue failed: %s", finished.stderr.strip())
            return []
        return self.on_squeue(parse_squeue(finished.stdout))

    def on_squeue(self, states: Dict[str, tuple]) -> List[GroupEnded]:
        """What squeue's answer means for our jobs (no I/O but the scancel of hopeless ones)."""
        ended = []
        for group_id, job in list(self.jobs.items()):
            state, reason = states.get(job.job_id, ("GONE", "no longer known to Slurm"))
            if state in RUNNING_STATES:
                continue
            if state in PENDING_STATES:
                if reason in HOPELESS_REASONS and job.cancel_reason is None:
                    job.cancel_reason = f"Slurm will not start it: {describe(state, reason)}"
                    self._scancel([job.job_id])
                continue
            del self.jobs[group_id]
            hopeless = job.cancel_reason is not None and job.cancel_reason.startswith("Slurm will not")
            words = job.cancel_reason or f"Slurm job {job.job_id} ended: {describe(state, reason)}"
            # a job that ended before its workers connected is a failed start to the scheduler as well
            ended.append(GroupEnded(group_id, words, ever_ran=not hopeless))
        return ended

    def group_ids(self) -> List[bytes]:
        return list(self.jobs)

    def stop_all(self) -> None:
        if self.jobs:
            self._scancel([job.job_id for job in self.jobs.values()])
            self.jobs.clear()

    def _scancel(self, job_ids: List[str]) -> None:
        try:
            finished = subprocess.run(["scancel", *job_ids], capture_output=True, text=True,
                                      timeout=COMMAND_TIMEOUT_SECONDS)
            if finished.returncode != 0:
                logger.warning("slurm: scancel %s failed: %s", " ".join(job_ids), finished.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as error:
            logger.warning("slurm: scancel could not run: %s", error)


def default_log_dir(manager_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"scaler-slurm-{manager_id}")


def cluster_command(scheduler_address: str, worker_options: Sequence[str]) -> List[str]:
    """`scaler_cluster` of this installation (next to this Python) with the workers' options."""
    script = os.path.join(os.path.dirname(sys.executable), "scaler_cluster")
    command = [script] if os.path.exists(script) else [sys.executable, "-c",
                                                       "from scaler_core.cli import cluster_main; cluster_main()"]
    return command + [scheduler_address, *worker_options]
