"""Which parts load which: the scheduler's decisions need neither sockets nor the client."""

import json
import subprocess
import sys

import pytest

IMPORT_AND_LIST = "import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"


def modules_loaded_by(module):
    finished = subprocess.run([sys.executable, "-c", IMPORT_AND_LIST.format(module=module)], capture_output=True,
                              text=True, timeout=60, check=True)
    return set(json.loads(finished.stdout))


@pytest.mark.parametrize("module", ["scaler_core.scheduler.state", "scaler_core.protocol", "scaler_core.references",
                                    "scaler_core.serialization", "scaler_core.task_context"])
def test_decisions_and_shared_types_load_no_sockets_and_no_client(module):
    loaded = modules_loaded_by(module)
    unwanted = {"zmq", "psutil", "scaler_core.client", "scaler_core.worker", "scaler_core.combo"}
    assert not {name for name in loaded if name.split(".")[0] in unwanted or
                any(name == prefix or name.startswith(prefix + ".") for prefix in unwanted)}


def test_public_names_still_come_from_the_package():
    import scaler_core

    assert scaler_core.Client.__module__ == "scaler_core.client.client"
    assert {"Client", "SchedulerClusterCombo", "KeyRef"} <= set(dir(scaler_core))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        scaler_core.Nope
