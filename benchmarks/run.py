"""Run every benchmark case on every system, interleaved, and report medians, ratios and targets.

    python -m benchmarks.run                 # full sizes, 3 repetitions
    python -m benchmarks.run --quick         # small sizes, 1 repetition (smoke, ~3 minutes)
    python -m benchmarks.run --only W1,W2 --systems ours,ppe --repeat 5
"""

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

if __package__ in (None, ""):  # allow `python benchmarks/run.py`
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import report  # noqa: E402
from benchmarks.catalog import OPT_IN_SYSTEMS, SYSTEM_ORDER, build_cases  # noqa: E402
from benchmarks.process_control import run_with_timeout  # noqa: E402
from benchmarks.systems import SYSTEM_INTERPRETERS  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
README = REPO_ROOT / "benchmarks" / "README.md"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
DEFAULT_UPSTREAM_PYTHON = "/work/.venv-upstream/bin/python"

AVAILABILITY_PROBES = {
    "ours": "from scaler_core import Client, SchedulerClusterCombo",
    "ours-executor": "from scaler_dask import ScalerExecutor",
    "upstream": "from scaler import Client, SchedulerClusterCombo",
}


def subprocess_environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def probe_import(python, statement, timeout=90):
    """None when `statement` runs in `python`, else the reason it does not."""
    try:
        completed = subprocess.run([python, "-c", statement], capture_output=True, text=True, timeout=timeout,
                                   env=subprocess_environment(), cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    if completed.returncode == 0:
        return None
    return (completed.stderr.strip().splitlines() or ["exit code %d" % completed.returncode])[-1]


def resolve_upstream_python(requested):
    """The interpreter for the reference package: --upstream-python, else the default venv, else this one."""
    candidates = [requested] if requested else [DEFAULT_UPSTREAM_PYTHON, sys.executable]
    for candidate in candidates:
        if candidate and os.path.exists(candidate) and probe_import(candidate, AVAILABILITY_PROBES["upstream"]) is None:
            return candidate, None
    return None, f"`import scaler` failed in {', '.join(c for c in candidates if c)}"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition unless --repeat")
    parser.add_argument("--only", default="", help="workloads or case ids, comma separated: W1,W4.chain,...")
    parser.add_argument("--systems", default="", help="subset of: " + ",".join(SYSTEM_ORDER))
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for every system")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per single run (default 120, quick 60)")
    parser.add_argument("--upstream-python", default=None, help="python with opengris-scaler installed")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each run wait up to this many seconds for the machine to go idle "
                             "(default 0 with --quick, else 30)")
    parser.add_argument("--update-readme", action="store_true", help="replace the results section of README.md")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--render", nargs="+", metavar="JSON",
                        help="no runs: merge the records of earlier result files and print/write the report")
    return parser.parse_args(argv)


def select_cases(cases, only):
    if not only:
        return cases
    wanted = [token.strip() for token in only.split(",") if token.strip()]
    return [case for case in cases if any(case.case_id == w or case.case_id.startswith(w + ".")
                                          or case.case_id.startswith(w) for w in wanted)]


def wait_for_quiet_machine(max_seconds, busy_percent_limit=15.0):
    """Other sessions may share the machine: wait (bounded) until total CPU use drops below the limit."""
    import psutil
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        if psutil.cpu_percent(interval=0.5) < busy_percent_limit:
            return


def run_one(case, system, repetition, args, python, log_dir):
    if args.quiet_wait:
        wait_for_quiet_machine(args.quiet_wait)
    params = case.params_for(system)
    stem = f"{case.case_id}__{system}__{repetition}".replace("/", "_")
    result_file = log_dir / f"{stem}.json"
    command = [python, "-m", "benchmarks.single_run", "--system", system, "--workload", case.function,
               "--params", json.dumps(params), "--workers", str(args.workers), "--result-file", str(result_file)]
    timeout = args.timeout * case.timeout_factor
    outcome = run_with_timeout(command, timeout, log_dir / f"{stem}.log", str(result_file),
                               env=subprocess_environment(), cwd=REPO_ROOT)
    record = {"case_id": case.case_id, "system": system, "repetition": repetition, "params": params,
              "wall_seconds": round(outcome.seconds, 2), "foreign_load": outcome.foreign_load, "oddities": []}
    if result_file.exists():
        record.update(json.loads(result_file.read_text()))
    elif outcome.timed_out:
        record.update(status="TIMEOUT", reason=f"no result within {timeout:.0f} s")
    else:
        tail = (log_dir / f"{stem}.log").read_text(errors="replace")[-600:]
        record.update(status="FAILED", reason=f"exit code {outcome.return_code} without result: {tail}")
    if record.get("shutdown_hang") or outcome.hung_after_result or (outcome.timed_out and result_file.exists()):
        record["oddities"].append("shutdown_hang")
    if record.get("shutdown_error"):
        record["oddities"].append("shutdown_error")
    if outcome.leftovers_killed:
        record["oddities"].append(f"{outcome.leftovers_killed}_escaped_processes")
    return record


def describe(record):
    load = f" [other load {record['foreign_load']:.1f} CPU]" if record.get("foreign_load", 0) >= 0.2 else ""
    return _describe_status(record) + load


def _describe_status(record):
    if record["status"] != "OK":
        return f"{record['status']}: {str(record.get('reason', ''))[:160]}"
    metrics = record["metrics"]
    shown = ", ".join(f"{k}={report.format_number(v)}" for k, v in list(metrics.items())[:4]
                      if isinstance(v, (int, float)))
    return f"OK {shown}"


def main(argv=None):
    args = parse_arguments(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.timeout = args.timeout or (60.0 if args.quick else 120.0)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    cases = select_cases(build_cases(args.quick), args.only)
    if args.list:
        for case in cases:
            print(f"{case.case_id:24} {case.title:50} systems={','.join(case.systems)}")
        return 0
    systems_filter = set(filter(None, args.systems.split(","))) or set(SYSTEM_ORDER) - OPT_IN_SYSTEMS

    upstream_python, upstream_problem = resolve_upstream_python(args.upstream_python)
    unavailable = {}
    if upstream_problem:
        unavailable["upstream"] = upstream_problem
    for system in ("ours", "ours-executor"):
        problem = probe_import(sys.executable, AVAILABILITY_PROBES[system])
        if problem:
            unavailable[system] = problem
    for system, problem in unavailable.items():
        print(f"[harness] {system}: UNAVAILABLE ({problem})", flush=True)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.render:
        return render_saved(args, stamp, systems_filter)
    log_dir = RESULTS_DIR / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for case in cases:
        systems = [s for s in SYSTEM_ORDER if s in case.systems and s in systems_filter]
        for repetition in range(1, args.repeat + 1):
            for system in systems:  # interleaved: A, B, C, A, B, C, ...
                if system in unavailable:
                    record = {"case_id": case.case_id, "system": system, "repetition": repetition,
                              "params": case.params_for(system), "status": "UNAVAILABLE",
                              "reason": unavailable[system], "oddities": []}
                else:
                    python = upstream_python if SYSTEM_INTERPRETERS[system] == "upstream" else sys.executable
                    record = run_one(case, system, repetition, args, python, log_dir)
                records.append(record)
                print(f"[{case.case_id} #{repetition}] {system:15} {describe(record)}", flush=True)

    finish(args, stamp, cases, records, systems_filter, upstream_python, unavailable, log_dir)
    return 0


def render_saved(args, stamp, systems_filter):
    """Re-render a report from earlier result files; later files win for the same case and system."""
    records, upstream_python, unavailable = {}, None, {}
    for order, path in enumerate(args.render):
        payload = json.loads(pathlib.Path(path).read_text())
        upstream_python = payload.get("upstream_python") or upstream_python
        unavailable.update(payload.get("unavailable", {}))
        for record in payload["records"]:
            records.setdefault((record["case_id"], record["system"]), {})[(order, record["repetition"])] = record
    merged = []
    for runs in records.values():
        latest_file = max(key[0] for key in runs)
        merged += [record for key, record in runs.items() if key[0] == latest_file]
    wanted = {record["case_id"] for record in merged}
    # quick sizes before full ones, so the targets look at the largest size measured
    cases = list({case.case_id: case for case in build_cases(quick=True) + build_cases(quick=False)
                  if case.case_id in wanted}.values())
    cases.sort(key=lambda case: case.workload)
    args.repeat = max(record["repetition"] for record in merged)
    args.merged_from = [pathlib.Path(path).name for path in args.render]
    finish(args, stamp, cases, merged, systems_filter, upstream_python, unavailable)
    return 0


def finish(args, stamp, cases, records, systems_filter, upstream_python, unavailable, log_dir=None):
    summaries = {}
    for case in cases:
        summaries[case.case_id] = {}
        for system in case.systems + case.not_applicable:
            if system not in systems_filter:
                continue
            runs = [r for r in records if r["case_id"] == case.case_id and r["system"] == system]
            applicable = system in case.systems
            summaries[case.case_id][system] = report.aggregate(case, system, runs) if applicable else None
    origin = (f"Merged from {', '.join(args.merged_from)}: up to" if getattr(args, "merged_from", None)
              else f"Run {stamp}: {'quick' if args.quick else 'full'} sizes,")
    header = (f"{origin} {args.repeat} repetition(s), "
              f"{args.workers} workers, {os.cpu_count()} CPUs, timeout {args.timeout:.0f} s per run. "
              f"Cells: median [min-max]; @n = ran at a capped size; N/A = no such operation; "
              f"~ = other processes on the machine kept >= {report.NOISY_FOREIGN_LOAD} CPU busy during a run.")
    text = report.render_report(cases, summaries, header)
    print("\n" + text)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"stamp": stamp, "arguments": vars(args), "upstream_python": upstream_python,
               "unavailable": unavailable, "records": records, "summaries": summaries,
               "targets": report.evaluate_targets(cases, summaries)}
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS_DIR / name).write_text(json.dumps(payload, indent=1, default=str))
    (RESULTS_DIR / "latest.md").write_text(text)
    print(f"[harness] wrote {RESULTS_DIR / (stamp + '.json')} and latest.md" + (f"; logs in {log_dir}" if log_dir else ""))
    if args.update_readme:
        update_readme(text)


def update_readme(text):
    content = README.read_text()
    if README_START not in content or README_END not in content:
        print("[harness] README has no results markers; not updated")
        return
    before, rest = content.split(README_START, 1)
    _, after = rest.split(README_END, 1)
    README.write_text(f"{before}{README_START}\n{text}{README_END}{after}")
    print(f"[harness] updated {README}")


if __name__ == "__main__":
    sys.exit(main())
