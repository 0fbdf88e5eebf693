"""The slurm backend's commands and its reading of squeue, without running Slurm."""

import pytest

from scaler_core.worker_manager.backend import GroupStartError
from scaler_core.worker_manager.slurm import (
    SlurmGroups, SlurmJob, SlurmJobSpec, job_script, parse_sbatch_output, parse_squeue, sbatch_command,
)


def test_sbatch_asks_for_what_the_settings_say():
    spec = SlurmJobSpec("gpu", account="risk", walltime="01:00:00", cores_per_job=4, memory_per_job="8G",
                        job_extra="--qos=low --constraint 'avx2&intel'", log_dir="/logs")
    command = sbatch_command(spec, "scaler-g1")
    assert command[:2] == ["sbatch", "--parsable"]
    for part in ("--partition=gpu", "--account=risk", "--time=01:00:00", "--cpus-per-task=4", "--mem=8G",
                 "--output=/logs/scaler-g1-%j.out", "--qos=low", "avx2&intel"):
        assert part in command
    assert "--account=" not in " ".join(sbatch_command(SlurmJobSpec("p"), "j"))
    assert job_script(["/venv/bin/scaler_cluster", "tcp://h:1", "--x", "a b"]) == \
        "#!/bin/sh\nexec /venv/bin/scaler_cluster tcp://h:1 --x 'a b'\n"


def test_sbatch_output_and_squeue_are_read():
    assert parse_sbatch_output("42\n") == "42" and parse_sbatch_output("43;cluster\n") == "43"
    with pytest.raises(GroupStartError):
        parse_sbatch_output("")
    assert parse_squeue("1|RUNNING|None\n2|PENDING|Resources\nnoise\n") == {"1": ("RUNNING", "None"),
                                                                             "2": ("PENDING", "Resources")}


def test_ended_jobs_are_reported_with_slurms_reason_and_hopeless_ones_as_failed(monkeypatch):
    groups = SlurmGroups(SlurmJobSpec("p"), ["scaler_cluster"], max_groups=-1, capabilities={})
    cancelled = []
    monkeypatch.setattr(groups, "_scancel", cancelled.extend)
    for n, group in enumerate([b"run", b"wait", b"timeout", b"gone", b"hopeless"]):
        groups.jobs[group] = SlurmJob(group, str(n))
    ended = groups.on_squeue({"0": ("RUNNING", "None"), "1": ("PENDING", "Resources"),
                              "2": ("TIMEOUT", "TimeLimit"), "4": ("PENDING", "PartitionTimeLimit")})
    assert [(e.group_id, e.ever_ran) for e in ended] == [(b"timeout", True), (b"gone", True)]
    assert "TIMEOUT (TimeLimit)" in ended[0].reason and "no longer known" in ended[1].reason
    assert cancelled == ["4"]
    (failed,) = groups.on_squeue({"0": ("RUNNING", "None"), "1": ("PENDING", "Resources"),
                                  "4": ("CANCELLED", "None")})
    assert failed.group_id == b"hopeless" and not failed.ever_ran and "PartitionTimeLimit" in failed.reason
    groups.stop_group(b"run")
    (stopped,) = groups.on_squeue({"0": ("CANCELLED", "None"), "1": ("PENDING", "Resources")})
    assert stopped.reason == "cancelled on the scheduler's request" and cancelled == ["4", "0"]
