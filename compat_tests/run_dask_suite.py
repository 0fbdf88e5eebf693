"""Part 2 runner: a selection of Dask's installed tests, once with ``scaler_get``
forced as the default scheduler and once with ``dask.threaded.get``.

    python -m compat_tests.run_dask_suite                 # both, prints counts
    python -m compat_tests.run_dask_suite --get scaler    # one of them
    python -m compat_tests.run_dask_suite -- -k groupby   # extra pytest args

The Scaler run gets a 2-worker cluster started in its own process session
(outside the pytest process tree, see shared_cluster.py) through
SCALER_ADDRESS. Exit status is 0 when scaler_get fails no test that
dask.threaded.get passes, other than the documented ones (KNOWN_FAILURES).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

import dask

from compat_tests.shared_cluster import REPOSITORY_ROOT, start_shared_cluster, stop_shared_cluster

DASK_DIRECTORY = os.path.dirname(dask.__file__)

# Modules that compute through the default scheduler (or through assert_eq's
# "sync", routed by the plugin) and finish in a few minutes on 2 cores.
SELECTION = [
    "tests/test_base.py",
    "tests/test_delayed.py",
    "tests/test_graph_manipulation.py",
    "array/tests/test_rechunk.py",
    "dataframe/tests/test_shuffle.py",
    "bag/tests/test_bag.py",
]

# Added by --extended: 627 more array tests, about 4 more minutes per get.
EXTENDED_SELECTION = SELECTION + ["array/tests/test_reductions.py"]

# Tests that start their own distributed cluster, or that need a cluster of
# their own, are out of scope for a get (they test distributed itself).
DESELECTED_KEYWORDS = "not distributed and not gen_cluster"

# Failures that are expected with any out-of-process get, with the reason;
# see compat_tests/README.md.
_MUTATES_CALLER_STATE = "the task mutates an object of the test process (a counter or closure); in a worker it changes a copy"
_IDENTITY = "compares results by identity; values come back as copies from worker processes"
_WARNING_AS_ERROR = ("expects a RuntimeWarning inside a task to surface as an exception in the caller; the engine "
                     "re-emits task warnings as warnings (the caller's filters apply then), not as the task's failure")
_UNPICKLABLE = "a task's input or result is a generator, which cannot cross the process boundary"
_CONFIG = ("the task's argument reads dask.config while it is unpickled on the worker, before the caller's "
           "config (forwarded with the task's function) is applied")
KNOWN_FAILURES: dict[str, str] = {
    "tests.test_delayed::test_traverse_false": _IDENTITY,
    "bag.tests.test_bag::test_bag_with_single_callable": _IDENTITY + " (a lambda)",
    "bag.tests.test_bag::test_repartition_partition_size_complex_dtypes": _IDENTITY
    + " (list == list of numpy arrays only works when the arrays are the same objects)",
    "bag.tests.test_bag::test_to_delayed_optimize_graph": _MUTATES_CALLER_STATE,
    "bag.tests.test_bag::test_from_delayed_iterator": _UNPICKLABLE,
    "bag.tests.test_bag::test_reductions_are_lazy": _UNPICKLABLE,
    **{f"tests.test_graph_manipulation::{name}": _MUTATES_CALLER_STATE for name in (
        "test_checkpoint[False]", "test_checkpoint[True]", "test_checkpoint_collections",
        "test_wait_on_one[False]", "test_wait_on_one[True]", "test_wait_on_many[False]",
        "test_wait_on_many[True]", "test_bind[False]", "test_bind[True]")},
    "dataframe.tests.test_shuffle::test_disk_shuffle_with_unknown_compression": _CONFIG,
    "array.tests.test_reductions::test_nanquantile_all_nan": _WARNING_AS_ERROR,
}

PER_TEST_TIMEOUT_SECONDS = 60


def run_selection(get_name: str, modules: list[str], extra_arguments: list[str], report_path: str) -> float:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [REPOSITORY_ROOT, environment.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "pytest", *[os.path.join(DASK_DIRECTORY, module) for module in modules],
        "-p", "compat_tests.dask_suite_plugin", f"--dask-get={get_name}", "--route-sync",
        "-c", os.path.join(REPOSITORY_ROOT, "compat_tests", "dask_suite.ini"), "--rootdir", DASK_DIRECTORY,
        "-p", "no:cacheprovider", "-q", "--no-header", "-rN", f"--timeout={PER_TEST_TIMEOUT_SECONDS}",
        "-k", DESELECTED_KEYWORDS, f"--junitxml={report_path}", *extra_arguments,
    ]
    cluster_process = None
    if get_name == "scaler":
        cluster_process, environment["SCALER_ADDRESS"] = start_shared_cluster(n_workers=2)
    started = time.monotonic()
    try:
        subprocess.run(command, env=environment, cwd=tempfile.gettempdir(), check=False)
    finally:
        if cluster_process is not None:
            stop_shared_cluster(cluster_process)
    return time.monotonic() - started


def read_report(report_path: str) -> dict[str, str]:
    """{test id: outcome} with outcome in passed / failed / error / skipped."""
    outcomes = {}
    for case in ElementTree.parse(report_path).iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
        outcomes[test_id] = outcome
    return outcomes


def count(outcomes: dict[str, str]) -> dict[str, int]:
    totals = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for outcome in outcomes.values():
        totals[outcome] += 1
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--get", choices=("scaler", "threaded", "both"), default="both")
    parser.add_argument("--modules", nargs="*", default=None, help="paths relative to the dask package")
    parser.add_argument("--extended", action="store_true", help="also run array/tests/test_reductions.py")
    parser.add_argument("--reports", default=tempfile.mkdtemp(prefix="dask-suite-"), help="junit xml directory")
    parser.add_argument("pytest_arguments", nargs="*", help="extra pytest arguments (after --)")
    arguments = parser.parse_args()
    modules = arguments.modules or (EXTENDED_SELECTION if arguments.extended else SELECTION)
    names = ["scaler", "threaded"] if arguments.get == "both" else [arguments.get]
    results = {}
    for name in names:
        report_path = os.path.join(arguments.reports, f"{name}.xml")
        seconds = run_selection(name, modules, arguments.pytest_arguments, report_path)
        results[name] = read_report(report_path)
        print(f"\n{name}: {count(results[name])} in {seconds:.0f} s  (report: {report_path})", flush=True)
    print("\n== summary ==")
    for name in names:
        print(f"{name:>9}: {count(results[name])}")
    if "scaler" not in results:
        return 0
    baseline = results.get("threaded", {})
    unexpected = sorted(test_id for test_id, outcome in results["scaler"].items()
                        if outcome in ("failed", "error") and baseline.get(test_id, "passed") == "passed"
                        and test_id not in KNOWN_FAILURES)
    known = sorted(test_id for test_id, outcome in results["scaler"].items()
                   if outcome in ("failed", "error") and test_id in KNOWN_FAILURES)
    print(f"scaler-only failures, documented: {len(known)}")
    for test_id in known:
        print(f"  {test_id}: {KNOWN_FAILURES[test_id]}")
    print(f"scaler-only failures, undocumented: {len(unexpected)}")
    for test_id in unexpected:
        print(f"  {test_id}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
