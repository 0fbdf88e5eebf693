"""--preload: code each worker runs once before its first task."""

import pytest

from scaler_core import Client, SchedulerClusterCombo
from scaler_core.worker.preload import PreloadError, parse_preload, run_preload

from tests import helpers_tasks as tasks
from tests.conftest import engine_children, wait_until


def test_specs_parse_into_module_function_and_literal_arguments():
    assert parse_preload("pkg.mod:setup") == ("pkg.mod", "setup", (), {})
    assert parse_preload("pkg.mod:setup('a', 2, flag=True)") == ("pkg.mod", "setup", ("a", 2), {"flag": True})
    assert parse_preload("pkg:Class.method([1, 2])") == ("pkg", "Class.method", ([1, 2],), {})


@pytest.mark.parametrize("spec, message", [
    ("module_without_colon", "expected 'package.module:function"),
    ("pkg:setup(", "preload"),
    ("pkg:setup(open('x'))", "literals"),
    ("pkg:1 + 2", "function call"),
])
def test_bad_specs_name_what_is_wrong(spec, message):
    with pytest.raises(PreloadError, match=message):
        parse_preload(spec)


def test_a_missing_function_or_a_raising_one_is_a_preload_error():
    with pytest.raises(PreloadError, match="nope"):
        run_preload("tests.helpers_tasks:nope()")
    with pytest.raises(PreloadError, match="raised CustomError"):
        run_preload("tests.helpers_tasks:fail('x')")


def test_workers_run_the_preload_before_their_first_task():
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING",
                               preload="tests.helpers_tasks:set_preloaded('from the preload')") as combo:
        with Client(combo.address, timeout_seconds=30) as client:
            assert set(client.map(tasks.preloaded, range(8))) == {"from the preload"}


def test_a_failing_preload_stops_its_worker_for_good():
    with SchedulerClusterCombo(n_workers=1, logging_level="CRITICAL", preload="tests.helpers_tasks:fail('no')") as combo:
        def workers():
            return [child for child in engine_children() if "worker-" in " ".join(child.cmdline())]

        wait_until(lambda: not workers(), 20, message="the worker to exit")
        with pytest.raises(TimeoutError, match="0 of 1 workers"):
            combo.wait_for_workers(timeout_seconds=2)
        assert not workers(), "not restarted"
