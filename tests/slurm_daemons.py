"""A real one-node Slurm for the tests: munge, slurmctld and slurmd in a directory of their own.

Follows ../shared/reference/slurm-single-node.md: the configuration lives in the test's directory,
`SLURM_CONF` points every Slurm command there, the daemons listen on free ports and are stopped (and
their jobs cancelled) at the end. Nothing is installed here: `.ci/run` installs the packages. When the
daemons are missing or cannot run, `SlurmUnavailable` says why (the tests skip with that reason).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from scaler_core.transport import free_tcp_port

START_SECONDS = 30


class SlurmUnavailable(Exception):
    pass


SLURM_CONF = """\
ClusterName=scalertest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=30, **kwargs)


def _munge_works() -> bool:
    try:
        credential = _run(["munge", "-n"])
        return credential.returncode == 0 and _run(["unmunge"], input=credential.stdout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class SlurmDaemons:
    def __init__(self, directory: Path, cpus: int):
        self.directory = directory
        self.cpus = cpus
        self.conf = directory / "slurm.conf"
        self.env = {}
        self._started_munge = False

    def start(self) -> "SlurmDaemons":
        for program in ("munged", "slurmctld", "slurmd", "sbatch"):
            if shutil.which(program) is None and not os.path.exists(f"/usr/sbin/{program}"):
                raise SlurmUnavailable(f"{program} is not installed (.ci/run installs slurmctld, slurmd, "
                                       "slurm-client and munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the Slurm daemons of this test run as root, and the tests do not")
        self._start_munge()
        for sub in ("state", "spool", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        memory = max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2048)
        self.conf.write_text(SLURM_CONF.format(d=self.directory, ctld_port=free_tcp_port(),
                                               slurmd_port=free_tcp_port(), cpus=self.cpus, memory=memory))
        self.env = {"SLURM_CONF": str(self.conf)}
        environment = dict(os.environ, **self.env)
        for command in (["slurmctld", "-i"], ["slurmd", "-N", "localhost"]):
            finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30)
            if finished.returncode != 0:
                self.stop()
                raise SlurmUnavailable(f"{command[0]} did not start: {finished.stderr.strip()} {self.logs()}")
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=environment, capture_output=True, text=True,
                                   timeout=30).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.2)
        self.stop()
        raise SlurmUnavailable(f"the Slurm node did not become idle within {START_SECONDS}s: {self.logs()}")

    def _start_munge(self) -> None:
        if _munge_works():
            return  # a munged of the machine is running: share it
        subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], check=False)
        started = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], capture_output=True, text=True,
                                 timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _munge_works():
                self._started_munge = True
                return
            time.sleep(0.1)
        raise SlurmUnavailable(f"munged did not start: {started.stderr.strip()}")

    def command(self, *arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(arguments), env=dict(os.environ, **self.env), capture_output=True, text=True,
                              timeout=30)

    def jobs(self) -> dict:
        """job id -> (name, state) of the jobs squeue still shows, ended ones included."""
        output = self.command("squeue", "-h", "--states=all", "-o", "%i|%j|%T").stdout
        return {line.split("|")[0]: tuple(line.split("|")[1:]) for line in output.splitlines() if line.count("|") == 2}

    def live_jobs(self) -> dict:
        ended = ("COMPLETED", "CANCELLED", "TIMEOUT", "FAILED", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "DEADLINE",
                 "BOOT_FAIL")
        return {job: info for job, info in self.jobs().items() if info[1] not in ended}

    def logs(self) -> str:
        texts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.directory / "log" / name
            if path.exists():
                texts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(texts)

    def cancel_all(self) -> None:
        jobs = list(self.live_jobs())
        if jobs:
            self.command("scancel", *jobs)

    def stop(self) -> None:
        if self.env:
            self.cancel_all()
        for name in ("slurmd.pid", "slurmctld.pid"):
            path = self.directory / name
            try:
                pid = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self._started_munge:
            try:
                os.kill(int(Path("/run/munge/munged.pid").read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead (PID 1 reaps late)
    except OSError:
        return False
