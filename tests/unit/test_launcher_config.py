"""The one-file launcher's reading of a TOML file (scaler_core.launcher.load): no process is started."""

import textwrap

import pytest

from scaler_core import config
from scaler_core.launcher import LaunchConfigError, load
from tests.upstream_samples import QUICKSTART

FIXED_MANAGER = """
[[worker_manager]]
type = "baremetal_native"
scheduler_address = "tcp://127.0.0.1:8516"
worker_manager_id = "{id}"
mode = "fixed"
max_task_concurrency = {n}
"""


def write(tmp_path, text, name="stack.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load_error(tmp_path, text) -> LaunchConfigError:
    path = write(tmp_path, text)
    with pytest.raises(LaunchConfigError) as caught:
        load(path)
    assert path in str(caught.value), "the message names the file"
    return caught.value


def test_quickstart_starts_storage_then_scheduler_then_a_dynamic_manager_wired_to_it(tmp_path):
    storage, scheduler, manager = load(write(tmp_path, QUICKSTART))
    assert [s.component for s in (storage, scheduler, manager)] == ["object_storage_server", "scheduler",
                                                                    "worker_manager"]
    assert storage.values["address"] == "tcp://127.0.0.1:8517"
    assert scheduler.values["address"] == "tcp://127.0.0.1:8516"
    assert scheduler.values["object_storage_address"] == "tcp://127.0.0.1:8517"
    assert manager.values["address"] == "tcp://127.0.0.1:8516"
    assert manager.values["worker_manager_id"] == "wm-native"
    assert manager.values["mode"] == "dynamic"  # upstream's default
    assert manager.values["max_task_concurrency"] >= 1
    # the manager registers with the scheduler over the engine's protocol: no webhook to wire
    assert scheduler.values["adapter_webhook_url"] == ""
    # every other option keeps the command's own default
    assert scheduler.values["allocate_policy"] == config.defaults("scheduler")["allocate_policy"]


def test_every_section_is_read_with_its_commands_keys(tmp_path):
    sections = load(write(tmp_path, """
        [scheduler]
        scheduler_address = "tcp://127.0.0.1:8516"
        allocate_policy = "capability"
        event_loop = "builtin"
        protected = false
        logging_level = "WARNING"

        [[worker_manager]]
        type = "baremetal_native"
        worker_manager_id = "gpu"
        mode = "fixed"
        max_task_concurrency = 2
        per_worker_capabilities = "gpu=2,linux"
        task_timeout_seconds = 600
        event_loop = "builtin"

        [cluster]
        scheduler_address = "tcp://127.0.0.1:8516"
        num_of_workers = 3
        event_loop = "builtin"

        [gui]
        monitor_address = "tcp://127.0.0.1:8518"
        gui_address = "127.0.0.1:50001"
    """))
    scheduler, manager, cluster, gui = sections
    assert scheduler.values["allocate_policy"] == "capability" and scheduler.values["protected"] is False
    assert scheduler.values["logging_level"] == "WARNING"
    assert scheduler.values["adapter_webhook_url"] == ""  # nothing dynamic to wire
    assert manager.values["address"] == "tcp://127.0.0.1:8516"  # defaults to the file's scheduler
    assert manager.values["per_worker_capabilities"] == "gpu=2,linux"
    assert manager.values["task_timeout_seconds"] == 600.0
    assert cluster.values["num_of_workers"] == 3
    assert gui.component == "webui" and gui.values["gui_address"] == "127.0.0.1:50001"
    assert gui.values["address"] == "tcp://127.0.0.1:8518"


def test_web_ui_defaults_to_the_schedulers_monitor_address(tmp_path):
    _, webui = load(write(tmp_path, """
        [scheduler]
        bind_address = "tcp://127.0.0.1:8516"
        [webui]
        web_port = 8090
    """))
    assert webui.values["address"] == "tcp://127.0.0.1:8518"
    assert webui.values["web_port"] == 8090


def test_two_managers_start_two_processes(tmp_path):
    text = "[scheduler]\nbind_address = \"tcp://127.0.0.1:8516\"\n" + FIXED_MANAGER.format(id="a", n=1) + \
        FIXED_MANAGER.format(id="b", n=2)
    _, first, second = load(write(tmp_path, text))
    assert (first.values["worker_manager_id"], second.values["worker_manager_id"]) == ("a", "b")
    assert (first.values["max_task_concurrency"], second.values["max_task_concurrency"]) == (1, 2)
    assert first.process_name != second.process_name
    assert first.title == "[[worker_manager]] #1 (a)" and second.title == "[[worker_manager]] #2 (b)"


@pytest.mark.parametrize("text, section, key", [
    ("[scheduler]\nbind_address = \"tcp://127.0.0.1:8516\"\nno_such_option = 1\n", "[scheduler]", "no_such_option"),
    ("[scheduler]\nbind_address = \"tcp://127.0.0.1:8516\"\nmax_task_retries = \"three\"\n", "[scheduler]",
     "max_task_retries"),
    ("[scheduler]\nbind_address = \"tcp://127.0.0.1:8516\"\nevent_loop = \"tokio\"\n", "[scheduler]", "event_loop"),
    ("[scheduler]\nobject_storage_address = \"tcp://127.0.0.1:8517\"\n", "[scheduler]", "bind_address"),
    ("[scheduler]\nbind_address = \"127.0.0.1:8516\"\n", "[scheduler]", "bind_address"),
    ("[object_storage_server]\nbind_address = 8517\n", "[object_storage_server]", "bind_address"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n"
     "worker_manager_id = \"w\"\nmax_workers = 2\n", "[[worker_manager]] #1 (w)", "max_workers"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n",
     "[[worker_manager]] #1", "worker_manager_id"),
    ("[[worker_manager]]\ntype = \"symphony\"\nscheduler_address = \"tcp://127.0.0.1:1\"\nworker_manager_id = \"w\"\n",
     "[[worker_manager]] #1 (w)", "type"),
    ("[[worker_manager]]\nscheduler_address = \"tcp://127.0.0.1:1\"\nworker_manager_id = \"w\"\n",
     "[[worker_manager]] #1 (w)", "type"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n"
     "worker_manager_id = \"w\"\nmode = \"elastic\"\n", "[[worker_manager]] #1 (w)", "mode"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n"
     "worker_manager_id = \"w\"\nmode = \"fixed\"\nmax_task_concurrency = 0\n", "[[worker_manager]] #1 (w)",
     "max_task_concurrency"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nworker_manager_id = \"w\"\n", "[[worker_manager]] #1 (w)",
     "scheduler_address"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n"
     "worker_manager_id = \"w\"\nper_worker_capabilities = \"gpu=lots\"\n", "[[worker_manager]] #1 (w)",
     "per_worker_capabilities"),
    ("[[worker_manager]]\ntype = \"baremetal_native\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n"
     "worker_manager_id = \"w\"\npreload = \"not a spec(\"\n", "[[worker_manager]] #1 (w)", "preload"),
    ("[gui]\ngui_port = 1\nmonitor_address = \"tcp://127.0.0.1:1\"\n", "[gui]", "gui_port"),
    ("[webui]\nweb_port = 8081\n", "[webui]", "monitor_address"),
])
def test_a_bad_key_names_its_section_and_key(tmp_path, text, section, key):
    error = load_error(tmp_path, text)
    assert section in str(error) and repr(key) in str(error), str(error)
    assert error.section == section


def test_an_unknown_section_is_named(tmp_path):
    error = load_error(tmp_path, "[schedular]\nbind_address = \"tcp://127.0.0.1:1\"\n")
    assert "[schedular]" in str(error) and "[scheduler]" in str(error)


def test_top_is_accepted_but_not_started(tmp_path):
    (scheduler,) = load(write(tmp_path, "[scheduler]\nbind_address = \"tcp://127.0.0.1:1\"\n[top]\ntimeout = 3\n"))
    assert scheduler.component == "scheduler"


@pytest.mark.parametrize("text, needle", [
    ("", "nothing to start"),
    ("[scheduler\n", "not valid TOML"),
    ("[webui]\nmonitor_address = \"tcp://127.0.0.1:1\"\n[gui]\nmonitor_address = \"tcp://127.0.0.1:1\"\n", "[gui]"),
])
def test_files_that_cannot_start(tmp_path, text, needle):
    assert needle in str(load_error(tmp_path, text))


def test_duplicate_manager_ids_are_refused(tmp_path):
    error = load_error(tmp_path, FIXED_MANAGER.format(id="same", n=1) + FIXED_MANAGER.format(id="same", n=1))
    assert error.key == "worker_manager_id" and "#2" in error.section


def test_several_dynamic_managers_and_a_slurm_manager_share_a_scheduler(tmp_path):
    dynamic = "[[worker_manager]]\ntype = \"baremetal_native\"\nworker_manager_id = \"{}\"\n"
    sections = load(write(tmp_path, "[scheduler]\nbind_address = \"tcp://127.0.0.1:8516\"\n" + dynamic.format("a") +
                          dynamic.format("b") + "[[worker_manager]]\ntype = \"slurm\"\nworker_manager_id = \"hpc\"\n"
                          "partition = \"debug\"\nwalltime = \"00:10:00\"\ncores_per_job = 4\n"))
    components = [section.component for section in sections]
    assert components == ["scheduler", "worker_manager", "worker_manager", "worker_manager_slurm"]
    slurm = sections[-1]
    assert (slurm.values["partition"], slurm.values["cores_per_job"]) == ("debug", 4)
    assert slurm.values["address"] == "tcp://127.0.0.1:8516"


def test_a_slurm_manager_needs_a_partition_and_refuses_baremetal_keys(tmp_path):
    slurm = ("[[worker_manager]]\ntype = \"slurm\"\nscheduler_address = \"tcp://127.0.0.1:1\"\n"
             "worker_manager_id = \"s\"\n")
    assert load_error(tmp_path, slurm).key == "partition"
    error = load_error(tmp_path, slurm + "partition = \"debug\"\nmode = \"fixed\"\n")
    assert "mode" in str(error) and error.section == "[[worker_manager]] #1 (s)"


def test_the_commands_read_upstream_address_keys_and_worker_manager_entries(tmp_path):
    path = write(tmp_path, QUICKSTART + FIXED_MANAGER.replace("baremetal_native", "other").format(id="x", n=1))
    assert config.parse("scheduler", ["-c", path])["address"] == "tcp://127.0.0.1:8516"
    assert config.parse("object_storage_server", ["-c", path])["address"] == "tcp://127.0.0.1:8517"
    values = config.parse("worker_manager", ["-c", path, "--mode", "fixed"], kind="baremetal_native")
    assert (values["address"], values["worker_manager_id"], values["mode"]) == ("tcp://127.0.0.1:8516", "wm-native",
                                                                               "fixed")
    # the command line wins over the file
    assert config.parse("scheduler", ["tcp://127.0.0.1:9", "-c", path])["address"] == "tcp://127.0.0.1:9"


def test_a_command_refuses_two_entries_of_its_type(tmp_path, capsys):
    path = write(tmp_path, FIXED_MANAGER.format(id="a", n=1) + FIXED_MANAGER.format(id="b", n=1))
    with pytest.raises(SystemExit):
        config.parse("worker_manager", ["-c", path], kind="baremetal_native")
    assert "2 [[worker_manager]] entries" in capsys.readouterr().err


@pytest.mark.parametrize("component", ["scheduler", "cluster", "worker_manager", "native_worker_adapter"])
def test_builtin_event_loop_is_accepted_where_workers_or_schedulers_start(component):
    options = {option.name: option for option in config.COMPONENTS[component]["options"]}
    if "event_loop" in options:
        assert "builtin" in options["event_loop"].choices
        assert config.parse(component, ["tcp://127.0.0.1:1", "--event-loop", "builtin"])["event_loop"] == "builtin"
    else:
        assert component == "native_worker_adapter"  # its HTTP service does not run asyncio
