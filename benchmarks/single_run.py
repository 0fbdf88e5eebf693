"""One measurement in its own process: start one system, run one workload, write a JSON result file.

    python -m benchmarks.single_run --system ours --workload benchmarks.workloads.w1_tiny_tasks:run_map_throughput \
        --params '{"n_tasks": 1000}' --workers 2 --result-file /tmp/result.json

Statuses: OK, N/A (the system has no such operation), UNAVAILABLE (cannot import/start), FAILED (error).
TIMEOUT is decided by the parent. After the result is written the system is stopped; a stop that hangs is
recorded as shutdown_hang and the process exits anyway. A workload that leaves long tasks running
returns `_abandon_cluster` and the parent kills the process tree instead of a stop.

A workload module may define `prepare(**params) -> params`, run before the system starts (calibration)."""

import argparse
import importlib
import json
import os
import threading
import time
import traceback

SHUTDOWN_GRACE_SECONDS = 15


def _write_json(path, payload):
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, default=str)
    os.replace(temporary, path)


def _load_callable(spec):
    module_name, function_name = spec.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _stop_with_deadline(system, result, result_file):
    outcome = {}

    def stop():
        try:
            system.stop()
            outcome["ok"] = True
        except Exception as error:  # noqa: BLE001
            outcome["error"] = repr(error)

    start = time.perf_counter()
    thread = threading.Thread(target=stop, daemon=True)
    thread.start()
    thread.join(SHUTDOWN_GRACE_SECONDS)
    result["stop_seconds"] = round(time.perf_counter() - start, 3)
    if thread.is_alive():
        result["shutdown_hang"] = True
    elif "error" in outcome:
        result["shutdown_error"] = outcome["error"]
    _write_json(result_file, result)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True)
    parser.add_argument("--workload", required=True, help="module:function")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--result-file", required=True)
    args = parser.parse_args()

    from benchmarks.systems import load_system_class
    from benchmarks.systems.base import NotSupported, SystemUnavailable

    result = {"system": args.system, "status": "FAILED", "pid": os.getpid()}
    system = started = None
    abandon = False
    try:
        workload = _load_callable(args.workload)
        params = json.loads(args.params)
        prepare = getattr(importlib.import_module(workload.__module__), "prepare", None)
        if prepare is not None:  # measurements that need an idle machine, before the system starts
            params = prepare(**params)
        system = load_system_class(args.system)(args.workers)
        start = time.perf_counter()
        system.start()
        started = True
        result["startup_seconds"] = round(time.perf_counter() - start, 3)
        metrics = workload(system, **params)
        abandon = metrics.pop("_abandon_cluster", False)
        result["metrics"] = {k: v for k, v in metrics.items() if not k.startswith("_")}
        result["status"] = "OK"
    except NotSupported as error:
        result.update(status="N/A", reason=str(error))
    except SystemUnavailable as error:
        result.update(status="UNAVAILABLE", reason=str(error))
    except BaseException as error:  # noqa: BLE001 - every failure is a reportable outcome
        result.update(status="FAILED", reason=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc()[-4000:])
    _write_json(args.result_file, result)
    if started and not abandon:
        _stop_with_deadline(system, result, args.result_file)
    os._exit(0)


if __name__ == "__main__":
    main()
