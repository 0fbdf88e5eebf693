"""Aggregate single runs into medians with min-max, render markdown tables, ratios and the issue-4 targets."""

import statistics

from benchmarks.catalog import SYSTEM_ORDER, size_label

NOISY_FOREIGN_LOAD = 0.3  # CPUs busy outside the run; cells above are marked "~"
RATIO_REFERENCE_PREFERENCE = ["ours", "ours-executor", "ppe", "dask-threaded", "distributed", "upstream"]


def format_number(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def aggregate(case, system, runs):
    """Summary of the runs of one system on one case."""
    ok_runs = [run for run in runs if run["status"] == "OK"]
    summary = {"n_runs": len(runs), "n_ok": len(ok_runs), "params": runs[0].get("params") if runs else None,
               "oddities": sorted({odd for run in runs for odd in run.get("oddities", [])}),
               "reasons": sorted({run.get("reason", "") for run in runs if run["status"] != "OK"} - {""}),
               "max_foreign_load": max((run.get("foreign_load") or 0 for run in runs), default=0)}
    if ok_runs:
        summary["status"] = "OK"
        metrics = {}
        for key in ok_runs[0].get("metrics", {}):
            values = [run["metrics"].get(key) for run in ok_runs]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                metrics[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        summary["metrics"] = metrics
    elif runs:
        statuses = [run["status"] for run in runs]
        summary["status"] = max(set(statuses), key=statuses.count)
    else:
        summary["status"] = "NOT RUN"
    return summary


def metric_median(summary, key):
    if not summary or summary.get("status") != "OK":
        return None
    entry = summary["metrics"].get(key)
    return entry["median"] if entry else None


def _cell(case, summary, key):
    if summary is None:
        return "N/A"
    if summary["status"] != "OK":
        return summary["status"]
    entry = summary["metrics"].get(key)
    if entry is None:
        return "-"
    text = format_number(entry["median"])
    if summary["n_ok"] > 1 and entry["min"] != entry["max"]:
        text += f" [{format_number(entry['min'])}-{format_number(entry['max'])}]"
    if case.size_param and summary["params"] and summary["params"].get(case.size_param) != case.params[case.size_param]:
        text += f" @{size_label(summary['params'][case.size_param])}"
    if summary["n_ok"] < summary["n_runs"]:
        text += f" ({summary['n_ok']}/{summary['n_runs']} ok)"
    if summary["oddities"]:
        text += " !" + ",".join(summary["oddities"])
    if summary.get("max_foreign_load", 0) >= NOISY_FOREIGN_LOAD:
        text += " ~"
    return text


def render_case_table(case, summaries):
    columns = [s for s in SYSTEM_ORDER if s in case.systems or s in case.not_applicable]
    lines = [f"**{case.case_id}** - {case.title}", "",
             "| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, label, better in case.metrics:
        hint = {"higher": " (higher better)", "lower": " (lower better)"}.get(better, "")
        row = [_cell(case, summaries.get(system), key) for system in columns]
        lines.append(f"| {label}{hint} | " + " | ".join(row) + " |")
    key, label, _ = case.metrics[0]
    reference = next((s for s in RATIO_REFERENCE_PREFERENCE
                      if s in columns and metric_median(summaries.get(s), key)), None)
    if reference:
        base = metric_median(summaries[reference], key)
        ratios = []
        for system in columns:
            value = metric_median(summaries.get(system), key)
            ratios.append(f"{value / base:.3g}x" if value is not None and base else "-")
        lines.append(f"| {label} / {reference} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def render_failures(cases, summaries_by_case):
    lines = []
    for case in cases:
        for system, summary in summaries_by_case[case.case_id].items():
            if summary and (summary["status"] not in ("OK", "N/A", "NOT RUN") or summary["oddities"]):
                reason = "; ".join(summary["reasons"])[:300] or ", ".join(summary["oddities"])
                lines.append(f"- {case.case_id} / {system}: {summary['status']} {reason}")
    return "\n".join(lines)


# --- issue 4 targets -------------------------------------------------------------------------------

def _largest_case(cases, prefix):
    matching = [case for case in cases if case.case_id.startswith(prefix)]
    return matching[-1] if matching else None


def _value(cases, summaries_by_case, prefix, system, key):
    case = _largest_case(cases, prefix)
    if case is None:
        return None, None
    return metric_median(summaries_by_case[case.case_id].get(system), key), case.case_id


def evaluate_targets(cases, summaries_by_case, subject="ours"):
    """Rows of (target, measured, verdict) for the subject system against the baselines of the same run."""
    rows = []

    def ratio_row(target, prefix_a, key_a, prefix_b, system_b, key_b, limit, at_least, divide_b=1.0):
        a, case_a = _value(cases, summaries_by_case, prefix_a, subject, key_a)
        b, case_b = _value(cases, summaries_by_case, prefix_b, system_b, key_b)
        if case_a is None or case_b is None:
            return  # workload not part of this run
        if a is None or b is None:
            missing = subject if a is None else system_b
            rows.append((target, f"no data ({missing} on {case_a if a is None else case_b})", "not measured"))
            return
        ratio = a / (b * divide_b) if b else float("inf")
        met = ratio >= limit if at_least else ratio <= limit
        rows.append((target, f"{ratio:.3g}x ({case_a}: {format_number(a)} vs {format_number(b)})",
                     "met" if met else "MISSED"))

    def absolute_row(target, prefix, key, limit, at_least):
        value, case_id = _value(cases, summaries_by_case, prefix, subject, key)
        if case_id is None:
            return
        if value is None:
            rows.append((target, f"no data ({case_id})", "not measured"))
            return
        met = value >= limit if at_least else value <= limit
        rows.append((target, f"{format_number(value)} ({case_id})", "met" if met else "MISSED"))

    ratio_row("W1 tasks/s >= 2x ppe", "W1.", "tasks_per_s", "W1.", "ppe", "tasks_per_s", 2, True)
    ratio_row("W1 tasks/s >= 50x distributed", "W1.", "tasks_per_s", "W1.", "distributed", "tasks_per_s", 50, True)
    ratio_row("W2 p50 <= 3x pyzmq broker ping-pong", "W2.", "p50_ms", "W2.", "pyzmq-floor", "p50_ms", 3, False)
    ratio_row("W2 p50 <= 1/20 distributed", "W2.", "p50_ms", "W2.", "distributed", "p50_ms", 0.05, False)
    for case in cases:
        if case.workload == "W3":
            ratio_row(f"{case.case_id} >= 10x distributed (time ratio dist/ours)", case.case_id, "tasks_per_s",
                      case.case_id, "distributed", "tasks_per_s", 10, True)
            ratio_row(f"{case.case_id} time <= 2x dask-threaded", case.case_id, "seconds",
                      case.case_id, "dask-threaded", "seconds", 2, False)
    largest_w4 = _largest_case(cases, "W4.map")
    if largest_w4:
        n = size_label(largest_w4.params["n_nodes"])
        for shape in ("chain", "tree", "random"):
            prefix = f"W4.{shape}-{n}"
            absolute_row(f"W4 {shape} {n} scheduler peak RSS <= 1536 MB", prefix, "scheduler_peak_rss_mb", 1536, False)
            ratio_row(f"W4 {shape} {n} time <= 2x map of {n}", prefix, "seconds", f"W4.map-{n}", subject,
                      "seconds", 2, False)
    ratio_row("W5 array in+out >= 50% of raw pyzmq", "W5.array", "mb_per_s", "W5.array", "pyzmq-floor", "mb_per_s",
              0.5, True)
    ratio_row("W5 send_object >= 50% of raw pyzmq", "W5.send", "mb_per_s", "W5.send", "pyzmq-floor", "mb_per_s",
              0.5, True)
    absolute_row("W5 array peak RSS per process <= 3x payload", "W5.array", "max_peak_over_payload", 3, False)
    absolute_row("W5 send_object peak RSS per process <= 3x payload", "W5.send", "max_peak_over_payload", 3, False)
    absolute_row("W6 efficiency >= 0.95", "W6.", "efficiency", 0.95, True)
    absolute_row("W7 idle worker RSS <= 60 MB", "W7.idle", "idle_worker_rss_mb", 60, False)
    absolute_row("W7 scheduler <= 1 KB per queued task", "W7.queued", "bytes_per_queued_task", 1024, False)
    return rows


def render_targets(rows, subject="ours"):
    lines = [f"| target ({subject}) | measured | verdict |", "|---|---|---|"]
    lines += [f"| {target} | {measured} | {verdict} |" for target, measured, verdict in rows]
    return "\n".join(lines)


def render_report(cases, summaries_by_case, header):
    parts = [header, ""]
    current = None
    for case in cases:
        if case.workload != current:
            current = case.workload
            parts.append(f"### {current}\n")
        parts.append(render_case_table(case, summaries_by_case[case.case_id]))
        parts.append("")
    parts.append("### Targets (issue 4)\n")
    parts.append(render_targets(evaluate_targets(cases, summaries_by_case)))
    failures = render_failures(cases, summaries_by_case)
    if failures:
        parts += ["", "### Failures, timeouts and oddities\n", failures]
    return "\n".join(parts) + "\n"
