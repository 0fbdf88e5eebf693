"""Each default is written once, in scaler_core.settings: every other place that shows or applies
one (flags, TOML keys, help, SchedulerClusterCombo's and Client's keywords) must agree with it."""

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest

from scaler_core import Client, SchedulerClusterCombo, config, settings
from scaler_core.settings import (
    ClientSettings, LoggingSettings, SchedulerSettings, SettingsError, WorkerSettings, combo_default, field_default,
    settings_from,
)

ADDRESS = "tcp://127.0.0.1:1"
COMPONENT_CLASSES = sorted({(name, cls) for name, spec in config.COMPONENTS.items() for cls in spec["classes"]},
                           key=lambda pair: (pair[0], pair[1].__name__))
# Combo keywords that are not settings: where it listens, how many workers, and the keys object.
COMBO_OWN_KEYWORDS = {"self", "address", "n_workers", "security"}
COMBO_CLASSES = (SchedulerSettings, WorkerSettings, LoggingSettings)


def option_fields(cls):
    return [field for field in dataclasses.fields(cls) if field.metadata.get("option")]


def key_of(field):
    return field.metadata["key"] or field.name


def as_toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, list)):
        return json.dumps(value)  # a JSON string or array of strings is valid TOML
    return repr(value)


def test_importing_settings_loads_neither_sockets_nor_psutil():
    loaded = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, sys, scaler_core.settings; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert not [name for name in loaded if name.split(".")[0] in ("zmq", "psutil")]


@pytest.mark.parametrize("component, cls", COMPONENT_CLASSES, ids=lambda item: getattr(item, "__name__", item))
def test_cli_and_toml_defaults_are_the_dataclass_defaults(component, cls, tmp_path):
    parser = config.build_parser(component)
    helps = {flag: action.help for action in parser._actions for flag in action.option_strings}
    from_cli = config.parse(component, [ADDRESS])
    section = config.COMPONENTS[component]["section"]
    toml = tmp_path / "defaults.toml"
    toml.write_text(f"[{section}]\n" + "".join(f"{key_of(field)} = {as_toml(from_cli[key_of(field)])}\n"
                                                for field in option_fields(cls)))
    from_toml = config.parse(component, [ADDRESS, "-c", str(toml)])
    for field in option_fields(cls):
        key, default = key_of(field), field_default(field)
        flag = "--" + key.replace("_", "-")
        assert flag in helps, f"{component}: no flag for {key}"
        assert field.metadata["short"] is None or helps[field.metadata["short"]] == helps[flag]
        assert helps[flag].startswith(field.metadata["help"]) and f"TOML key {key};" in helps[flag]
        assert from_toml[key] == from_cli[key], f"{component}: TOML key {key} does not round-trip"
        if field.metadata["parse"] is not None:
            assert field.metadata["parse"](from_cli[key]) == default, f"{component}: --{key} default"
        else:
            assert from_cli[key] == (list(default) if isinstance(default, tuple) else default), \
                f"{component}: --{key} default differs from {cls.__name__}.{field.name}"
    built = settings_from(cls, from_toml)
    for field in option_fields(cls):
        assert getattr(built, field.name) == field_default(field), f"{cls.__name__}.{field.name} from parsed values"


@pytest.mark.parametrize("cls", sorted({cls for _, cls in COMPONENT_CLASSES} | {ClientSettings},
                                       key=lambda cls: cls.__name__), ids=lambda cls: cls.__name__)
def test_defaults_have_the_annotated_type_and_a_help_text(cls):
    for field in dataclasses.fields(cls):
        assert field.metadata.get("help"), f"{cls.__name__}.{field.name} has no help text"
        if field.metadata.get("option") and field.metadata["parse"] is None:
            default = field_default(field)
            annotation = str(field.type)
            if annotation in ("int", "float", "str", "bool"):
                # an int default on a float field would make its flag refuse "1.5"
                assert type(default).__name__ == annotation, f"{cls.__name__}.{field.name} = {default!r}"


def test_every_component_option_key_is_unique_and_known_to_toml():
    for component, spec in config.COMPONENTS.items():
        names = [option.name for option in spec["options"]]
        assert len(names) == len(set(names)), component
        assert names == [key_of(field) for cls in spec["classes"] for field in option_fields(cls)]


def test_combo_keywords_default_to_the_settings():
    parameters = inspect.signature(SchedulerClusterCombo.__init__).parameters
    keys = {cls: {key_of(field) for field in option_fields(cls)} for cls in COMBO_CLASSES}
    for name, parameter in parameters.items():
        if name in COMBO_OWN_KEYWORDS:
            continue
        owners = [cls for cls in COMBO_CLASSES if name in keys[cls]]
        assert owners, f"combo keyword {name} is no option of {[cls.__name__ for cls in COMBO_CLASSES]}"
        for cls in owners:
            assert parameter.default == combo_default(cls, name), f"combo's {name} vs {cls.__name__}"
    assert parameters["logging_level"].default == "WARNING", "an embedded cluster is quiet by default"


def test_combo_settings_are_built_from_its_keywords():
    keywords = {name: parameter.default for name, parameter in
                inspect.signature(SchedulerClusterCombo.__init__).parameters.items()}
    assert settings_from(SchedulerSettings, keywords) == SchedulerSettings()
    worker = settings_from(WorkerSettings, dict(keywords, worker_memory_limit_bytes=5, per_worker_capabilities="gpu"))
    assert worker.memory_limit_bytes == 5 and worker.capabilities == {"gpu": -1}
    assert settings_from(WorkerSettings, {"per_worker_capabilities": {"cpu": 2}}).capabilities == {"cpu": 2}
    with pytest.raises(SettingsError, match="per_worker_capabilities"):
        settings_from(WorkerSettings, {"per_worker_capabilities": "cpu=many"})


def test_client_keywords_default_to_client_settings():
    parameters = inspect.signature(Client.__init__).parameters
    for field in dataclasses.fields(ClientSettings):
        assert parameters[field.name].default == field_default(field), f"Client's {field.name}"


def test_settings_keep_their_old_homes_and_constructors():
    from scaler_core.scheduler.state import SchedulerSettings as from_state
    from scaler_core.security import CurveKeys
    from scaler_core.worker.process import WorkerSettings as from_process

    assert from_state is settings.SchedulerSettings and from_process is settings.WorkerSettings
    worker = WorkerSettings(2.0, 5.0, 1.0, 10, 20, None, CurveKeys(), "pkg.mod:fn()")
    assert (worker.heartbeat_interval_seconds, worker.object_cache_bytes, worker.capabilities,
            worker.preload) == (2.0, 20, {}, "pkg.mod:fn()")
    assert WorkerSettings().keys == CurveKeys()


def test_renamed_and_parsed_options_reach_their_fields(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text('[cluster]\nworker_memory_limit_bytes = 1000\nper_worker_capabilities = "gpu,cpu=8"\n')
    values = config.parse("cluster", [ADDRESS, "-c", str(path), "--preload", "pkg.mod:setup()"])
    worker = settings_from(WorkerSettings, values)
    assert worker.memory_limit_bytes == 1000 and worker.capabilities == {"gpu": -1, "cpu": 8}
    assert worker.preload == "pkg.mod:setup()"
    scheduler = settings_from(SchedulerSettings, config.parse("scheduler", [ADDRESS, "--no-protected", "-wt", "3"]))
    assert scheduler.protected is False and scheduler.worker_timeout_seconds == 3.0
    logging_settings = settings_from(LoggingSettings, config.parse("scheduler", [ADDRESS, "-lp", "a", "b"]))
    assert logging_settings.logging_paths == ("a", "b")


def test_upstream_policy_content_sets_the_allocate_policy_or_names_what_is_missing():
    from scaler_core.settings import SchedulerSettings, SettingsError, allocate_policy_of

    assert allocate_policy_of("allocate=even_load; scaling=no", "capability") == "even"
    assert allocate_policy_of(" allocate = capability ;", "even") == "capability"
    assert allocate_policy_of("scaling=no", "capability") == "capability"
    assert SchedulerSettings(policy_content="allocate=capability; scaling=no").allocate_policy == "capability"
    for text, named in [("allocate=round_robin", "round_robin"), ("placement=x", "placement"),
                        ("allocate", "NAME=VALUE")]:
        with pytest.raises(SettingsError, match=named) as caught:
            allocate_policy_of(text, "even")
        assert caught.value.key == "policy_content"


def test_policy_content_names_the_scaling_policy_and_waterfall_tiers():
    from scaler_core.settings import SchedulerSettings, SettingsError, scaling_policy_of

    assert scaling_policy_of("") == "vanilla"
    assert scaling_policy_of("allocate=capability; scaling=capability") == "capability"
    assert scaling_policy_of("scaling=no") == "no"
    with pytest.raises(SettingsError, match="autoscale"):
        SchedulerSettings(policy_content="scaling=autoscale")
    SchedulerSettings(policy_engine_type="waterfall_v1", policy_content="1,wm-a,4; 2,wm-b,8")
    for text in ["", "allocate=even_load", "1,wm-a,many"]:
        with pytest.raises(SettingsError) as caught:
            SchedulerSettings(policy_engine_type="waterfall_v1", policy_content=text)
        assert caught.value.key == "policy_content"


def test_a_worker_memory_limit_is_by_default_its_share_of_the_machine():
    from scaler_core.memory import machine_memory_bytes

    total = machine_memory_bytes()
    assert WorkerSettings().memory_limit_bytes == settings.AUTO_MEMORY_LIMIT
    assert WorkerSettings().with_memory_limit_for(4).memory_limit_bytes == total // 4
    assert WorkerSettings().with_memory_limit_for(2, reserved_bytes=total // 4).memory_limit_bytes == \
        (total - total // 4) // 2  # what the host store's objects leave
    assert WorkerSettings().with_memory_limit_for(1, reserved_bytes=total).memory_limit_bytes == total - total // 2
    assert WorkerSettings(memory_limit_bytes=0).with_memory_limit_for(4).memory_limit_bytes == 0  # no limit
    assert WorkerSettings(memory_limit_bytes=123 * 2**20).with_memory_limit_for(4).memory_limit_bytes == 123 * 2**20
    with pytest.raises(SettingsError, match="worker_memory_limit_bytes"):
        WorkerSettings(memory_limit_bytes=-2)


def test_an_automatic_held_budget_is_a_share_of_half_the_object_memory_limit():
    assert WorkerSettings().held_result_bytes == 0  # opt-in
    auto = WorkerSettings(held_result_bytes=settings.AUTO_HELD_BYTES)
    assert auto.with_held_budget_for(2, 4 * 2**30).held_result_bytes == 2**30
    assert auto.with_held_budget_for(2, 0).held_result_bytes == 0  # no host store: nothing to hold for
    assert WorkerSettings(held_result_bytes=5).with_held_budget_for(2, 4 * 2**30).held_result_bytes == 5
    with pytest.raises(SettingsError, match="held_result_bytes"):
        WorkerSettings(held_result_bytes=-2)


def test_a_workers_own_memory_leaves_out_the_shared_objects_it_maps():
    from types import SimpleNamespace

    from scaler_core.memory import private_memory_bytes

    process = SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=900, shared=700))
    assert private_memory_bytes(process) == 200


def test_cgroup_memory_limits_of_a_process_and_its_ancestors(tmp_path):
    from scaler_core.memory import cgroup_memory_limits, machine_memory_bytes

    def limit_file(relative, text):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    # cgroup v2: a Slurm job's step inside its job, which has the tighter limit; the root says "max"
    limit_file("memory.max", "max")
    limit_file("job_7/memory.max", str(3 * 2**30))
    limit_file("job_7/step_0/memory.max", "max")
    assert list(cgroup_memory_limits("0::/job_7/step_0\n", str(tmp_path))) == [3 * 2**30]
    # cgroup v1: the memory controller's own hierarchy; "no limit" is a huge number
    limit_file("memory/memory.limit_in_bytes", "9223372036854771712")
    limit_file("memory/box/memory.limit_in_bytes", str(2**30))
    membership = "4:memory:/box\n3:cpuset:/\n"
    assert list(cgroup_memory_limits(membership, str(tmp_path))) == [2**30]
    assert list(cgroup_memory_limits("0::/\n", str(tmp_path / "nowhere"))) == []
    assert 0 < machine_memory_bytes()
