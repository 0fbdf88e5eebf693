"""The command-line tools and the reference README's samples, run the way a user runs them."""

import os
import signal
import subprocess
import sys

import pytest

from scaler_core import Client, config
from scaler_core.transport import free_tcp_port
from tests.ports import port_block


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
README_SAMPLES = [
    ("readme_opening.py", ["4.0", "661.4629471031477", "[11, 22, 33]", "[11, 22, 33]"]),
    ("readme_submit.py", ["16"]),
    ("readme_graph.py", ["{'e': 1}"]),
    ("readme_nested.py", ["21"]),
]


class Processes:
    def __init__(self):
        self.started = []

    def start(self, *command):
        process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        self.started.append(process)
        return process

    def stop(self):
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture
def processes():
    started = Processes()
    yield started
    started.stop()


def run_sample(name, address):
    completed = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), address], capture_output=True,
                               text=True, timeout=120, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.split("\n")[:-1]


@pytest.mark.parametrize("sample, expected", README_SAMPLES)
def test_readme_samples_against_a_combo(combo, sample, expected):
    assert run_sample(sample, combo.address) == expected


def test_three_clis_started_by_hand(processes):
    port = port_block()
    address = f"tcp://127.0.0.1:{port}"
    storage = f"tcp://127.0.0.1:{free_tcp_port()}"
    processes.start("scaler_object_storage_server", storage)
    processes.start("scaler_scheduler", address, "--object-storage-address", storage)
    processes.start("scaler_cluster", "-n", "2", address)
    for sample, expected in README_SAMPLES:
        assert run_sample(sample, address) == expected


def test_scheduler_alone_starts_its_own_object_storage(processes):
    port = port_block()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = processes.start("scaler_scheduler", address)
    processes.start("scaler_cluster", "-n", "1", address)
    assert run_sample("readme_submit.py", address) == ["16"]
    scheduler.send_signal(signal.SIGTERM)
    scheduler.wait(15)
    output = scheduler.stdout.read()
    assert f"listen to scheduler address {address}" in output
    assert f"tcp://127.0.0.1:{port + 1}" in output and f"tcp://127.0.0.1:{port + 2}" in output


def test_cluster_exits_when_its_scheduler_is_gone(processes):
    address = f"tcp://127.0.0.1:{port_block()}"
    scheduler = processes.start("scaler_scheduler", address)
    cluster = processes.start("scaler_cluster", "-n", "1", "--death-timeout-seconds", "2", address)
    with Client(address) as client:
        assert client.submit(abs, -3).result(timeout=30) == 3
    scheduler.send_signal(signal.SIGKILL)
    assert cluster.wait(30) == 0


def test_help_lists_every_key():
    for component, command in (("scheduler", ["scaler_scheduler"]), ("cluster", ["scaler_cluster"]),
                               ("object_storage_server", ["scaler_object_storage_server"]),
                               ("native_worker_adapter", ["scaler_worker_adapter_native"]),
                               ("worker_manager", ["scaler_worker_manager", "baremetal_native"]),
                               ("worker_manager_slurm", ["scaler_worker_manager", "slurm"])):
        text = subprocess.run(command + ["-h"], capture_output=True, text=True, timeout=30).stdout
        for option in config.COMPONENTS[component]["options"]:
            assert option.name in text, f"{' '.join(command)} -h does not mention {option.name}"


def test_worker_manager_and_launcher_help_say_what_they_start():
    manager = subprocess.run(["scaler_worker_manager", "baremetal_native", "-h"], capture_output=True, text=True,
                             timeout=30).stdout
    # dynamic mode registers with the scheduler: -h must say so, and which scheduler flags drive it
    assert "--policy-content" in manager and "--workers-per-group" in manager
    slurm = " ".join(subprocess.run(["scaler_worker_manager", "slurm", "-h"], capture_output=True, text=True,
                                    timeout=30).stdout.split())
    assert "sbatch" in slurm and "--partition" in slurm and "--walltime" in slurm
    launcher = " ".join(subprocess.run(["scaler", "-h"], capture_output=True, text=True, timeout=30).stdout.split())
    for section in ("[object_storage_server]", "[scheduler]", "[[worker_manager]]", "[gui]", "[webui]"):
        assert section in launcher


def write(path, text):
    path.write_text(text)
    return str(path)


def test_config_precedence_cli_over_toml_over_defaults(tmp_path):
    path = write(tmp_path / "c.toml", '[cluster]\nnum_of_workers = 8\nper_worker_capabilities = "linux,cpu=8"\n'
                                      'task_timeout_seconds = 600\n')
    settings = config.parse("cluster", ["tcp://127.0.0.1:1", "--config", path, "--num-of-workers", "12"])
    assert settings["num_of_workers"] == 12
    assert settings["task_timeout_seconds"] == 600.0
    assert settings["per_worker_capabilities"] == "linux,cpu=8"
    assert settings["death_timeout_seconds"] == 30.0


def test_config_errors_name_the_key_and_file(tmp_path, capsys):
    bad_key = write(tmp_path / "bad_key.toml", "[cluster]\nnum_of_wrkers = 3\n")
    with pytest.raises(SystemExit):
        config.parse("cluster", ["tcp://127.0.0.1:1", "-c", bad_key])
    err = capsys.readouterr().err
    assert "num_of_wrkers" in err and "bad_key.toml" in err
    bad_type = write(tmp_path / "bad_type.toml", '[cluster]\nnum_of_workers = "many"\n')
    with pytest.raises(SystemExit):
        config.parse("cluster", ["tcp://127.0.0.1:1", "-c", bad_type])
    err = capsys.readouterr().err
    assert "num_of_workers" in err and "bad_type.toml" in err


def test_reference_example_config_is_accepted(tmp_path):
    path = write(tmp_path / "example_config.toml", """
[scheduler]
object_storage_address = "tcp://127.0.0.1:6379"
monitor_address = "tcp://127.0.0.1:6380"
allocate_policy = "even"
logging_level = "INFO"
logging_paths = ["/dev/stdout", "/var/log/scaler/scheduler.log"]

[cluster]
num_of_workers = 8
per_worker_capabilities = "linux,cpu=8"
task_timeout_seconds = 600

[object_storage_server]

[webui]
web_port = 8081
""")
    scheduler = config.parse("scheduler", ["tcp://127.0.0.1:6378", "--config", path])
    assert scheduler["object_storage_address"] == "tcp://127.0.0.1:6379"
    assert scheduler["logging_paths"] == ["/dev/stdout", "/var/log/scaler/scheduler.log"]
    assert config.parse("cluster", ["tcp://127.0.0.1:6378", "-c", path])["num_of_workers"] == 8
    config.parse("object_storage_server", ["tcp://127.0.0.1:6379", "-c", path])


def test_capabilities_parsing():
    assert config.parse_capabilities("gpu,linux,cpu=8") == {"gpu": -1, "linux": -1, "cpu": 8}
    with pytest.raises(ValueError, match="cpu"):
        config.parse_capabilities("cpu=eight")
