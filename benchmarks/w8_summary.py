"""W8 (issue 15) summary of a results file: time and peak memory per case for ours / distributed /
dask.threaded, the ratio ours/distributed time, and the issue-15 verdicts (ours <= 0.67x distributed's
time with a peak no higher than distributed's; within 1.5x of dask.threaded's time is the aim).

    python -m benchmarks.w8_summary                       # benchmarks/results/latest.json
    python -m benchmarks.w8_summary benchmarks/results/20261207-050000.json ...   # later files win
"""

import json
import pathlib
import statistics
import sys

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
SYSTEMS = ["ours", "distributed", "dask-threaded"]
MEMORY_KEY = "peak_footprint_mb"


def _load(paths):
    """{(case, system): records of the latest file that has that case and system}."""
    by_key = {}
    for order, path in enumerate(paths):
        for record in json.loads(pathlib.Path(path).read_text())["records"]:
            if record["case_id"].startswith("W8."):
                by_key.setdefault((record["case_id"], record["system"]), {}).setdefault(order, []).append(record)
    return {key: by_file[max(by_file)] for key, by_file in by_key.items()}


def _median(records, key):
    values = [r["metrics"][key] for r in records if r["status"] == "OK" and isinstance(r["metrics"].get(key), (int, float))]
    return statistics.median(values) if values else None


def _cell(records, key):
    if not records:
        return "-", None
    value = _median(records, key)
    if value is None:
        return records[0]["status"], None
    text = f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    return text, value


def render(paths):
    runs = _load(paths)
    cases = list(dict.fromkeys(case for case, _ in runs))
    header = ["case"] + [f"{s} s" for s in SYSTEMS] + [f"{s} peak MB" for s in SYSTEMS] + [
        "ours/dist time", "ours/threaded time", "issue 15"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    notes = []
    for case in cases:
        times, peaks, time_cells, peak_cells = {}, {}, [], []
        for system in SYSTEMS:
            records = runs.get((case, system), [])
            text, times[system] = _cell(records, "seconds")
            time_cells.append(text)
            text, peaks[system] = _cell(records, MEMORY_KEY)
            peak_cells.append(text)
            for record in records:
                if record["status"] != "OK":
                    notes.append(f"- {case} / {system}: {record['status']} {str(record.get('reason', ''))[:300]}")
        ours, dist, threaded = times["ours"], times["distributed"], times["dask-threaded"]
        ratio = f"{ours / dist:.2f}x" if ours and dist else "-"
        ratio_threaded = f"{ours / threaded:.2f}x" if ours and threaded else "-"
        if ours and dist and peaks["ours"] and peaks["distributed"]:
            met = ours <= 0.67 * dist and peaks["ours"] <= peaks["distributed"]
            verdict = "met" if met else "MISSED"
        else:
            verdict = "not measured"
        lines.append("| " + " | ".join([case] + time_cells + peak_cells + [ratio, ratio_threaded, verdict]) + " |")
    text = "\n".join(lines)
    text += ("\n\npeak MB = peak memory of the whole process tree: summed RSS without shared-memory mappings plus "
             "the /dev/shm files the run created (benchmarks/tree_memory.py). issue 15 = ours <= 0.67x "
             "distributed's time and peak <= distributed's.")
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


def main(argv=None):
    paths = (argv if argv is not None else sys.argv[1:]) or [str(RESULTS_DIR / "latest.json")]
    print(render(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
