"""``scaler_top MONITOR_ADDRESS``: a top-like terminal view of a scheduler's monitor stream.

Rendering is a pure function of one status (`render`), so it is tested without a terminal; the
curses loop only receives statuses, reads keys and paints the lines. When standard output is not a
terminal (a pipe, a log, CI), one frame is printed and the program exits.
"""

from __future__ import annotations

import curses
import logging
import shutil
import signal
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from scaler_core import config
from scaler_core.logging_setup import setup_logging
from scaler_core.monitor.stream import StatusSubscriber, format_bytes, free_slots, manager_rows, shorten, worker_name

WORKER_NAME_WIDTH = 24
DEFAULT_SORT_KEY = "c"
QUIT_KEYS = (ord("Q"), 27)  # Q and Esc; lowercase q sorts by queued, as in the reference's shortcuts
SECTION_SEPARATOR = " | "

# shortcut -> (column, sort value); text columns sort ascending, numbers largest first
SORT_COLUMNS: Dict[str, Tuple[str, Callable[[Any], Any]]] = {
    "n": ("worker", worker_name),
    "c": ("cpu", lambda worker: worker.cpu_percent),
    "m": ("rss", lambda worker: worker.rss_bytes),
    "f": ("free", free_slots),
    "w": ("running", lambda worker: worker.running),
    "q": ("queued", lambda worker: worker.queued),
}
SHORTCUTS_LINE = "Shortcuts: worker[n] cpu[c] rss[m] free[f] running[w] queued[q] | quit[Q]"

# worker table: (header, width, cell); the worker column's width depends on the ids shown
WORKER_COLUMNS: List[Tuple[str, int, Callable[[Any], str]]] = [
    ("pid", 7, lambda worker: str(worker.pid)),
    ("cpu", 6, lambda worker: f"{worker.cpu_percent:.1f}%"),
    ("rss", 7, lambda worker: format_bytes(worker.rss_bytes)),
    ("limit", 7, lambda worker: format_bytes(worker.memory_limit_bytes) if worker.memory_limit_bytes else "-"),
    ("held", 7, lambda worker: format_bytes(worker.held_bytes)),
    ("free", 6, lambda worker: "paused" if worker.paused else str(free_slots(worker))),
    ("sent", 9, lambda worker: f"{worker.sent:,}"),
    ("queued", 7, lambda worker: f"{worker.queued:,}"),
    ("running", 8, lambda worker: f"{worker.running:,}"),
    ("blocked", 8, lambda worker: f"{worker.blocked:,}"),
]


def _section(title: str, rows: Sequence[Tuple[str, str]]) -> List[str]:
    """A titled block of right-aligned `label value` rows, all lines of one width."""
    label_width = max((len(label) for label, _ in rows), default=0)
    value_width = max((len(value) for _, value in rows), default=0)
    lines = [f"{label:>{label_width}} {value:>{value_width}}" for label, value in rows]
    width = max([len(title)] + [len(line) for line in lines])
    return [title.ljust(width)] + [line.rjust(width) for line in lines]


def _count_rows(counts: Sequence[Any]) -> List[Tuple[str, str]]:
    return [(entry.name, f"{entry.count:,}") for entry in counts]


def _sections(status: Any) -> List[List[str]]:
    return [
        _section("scheduler", [("cpu", f"{status.cpu_percent:.1f}%"), ("rss", format_bytes(status.rss_bytes)),
                               ("clients", str(status.clients))]),
        _section("task_manager", [(state, f"{getattr(status, state):,}")
                                  for state in ("pending", "running", "succeeded", "failed", "cancelled")]),
        _section("object_memory", [(store.hostname or "?", f"{format_bytes(store.memory_bytes)}/"
                                    f"{format_bytes(store.memory_limit_bytes)} +{format_bytes(store.disk_bytes)} disk")
                                   for store in status.host_stores] or [("none", "-")]),
        _section("scheduler_sent", _count_rows(status.sent)),
        _section("scheduler_received", _count_rows(status.received)),
    ] + [_section(f"manager {shorten(manager.manager_id.decode(errors='replace'), WORKER_NAME_WIDTH)}",
                  manager_rows(manager)) for manager in getattr(status, "managers", ())]


def _place_side_by_side(sections: List[List[str]], width: int) -> List[str]:
    """Put as many sections next to each other as fit in `width`; the rest go on following rows."""
    rows: List[List[List[str]]] = [[]]
    used = 0
    for section in sections:
        section_width = len(section[0])
        if rows[-1] and used + len(SECTION_SEPARATOR) + section_width > width:
            rows.append([])
            used = 0
        used += (len(SECTION_SEPARATOR) if rows[-1] else 0) + section_width
        rows[-1].append(section)
    lines: List[str] = []
    for row in rows:
        height = max(len(section) for section in row)
        for index in range(height):
            cells = [section[index] if index < len(section) else " " * len(section[0]) for section in row]
            lines.append(SECTION_SEPARATOR.join(cells).rstrip())
    return lines


def _sorted_workers(workers: Sequence[Any], sort_key: str) -> List[Any]:
    _, value = SORT_COLUMNS.get(sort_key, SORT_COLUMNS[DEFAULT_SORT_KEY])
    by_name = sorted(workers, key=worker_name)  # ties keep a stable, readable order
    return sorted(by_name, key=value, reverse=sort_key != "n")


def _worker_table(workers: Sequence[Any], sort_key: str) -> List[str]:
    sort_column = SORT_COLUMNS.get(sort_key, SORT_COLUMNS[DEFAULT_SORT_KEY])[0]

    def header(name: str) -> str:
        return ("*" + name) if name == sort_column else name

    names = [shorten(worker_name(worker), WORKER_NAME_WIDTH) for worker in workers]
    name_width = max([len(header("worker"))] + [len(name) for name in names])
    lines = [" ".join([header("worker").rjust(name_width)]
                      + [header(title).rjust(max(width, len(header(title)))) for title, width, _ in WORKER_COLUMNS])]
    for worker in _sorted_workers(workers, sort_key):
        cells = [shorten(worker_name(worker), WORKER_NAME_WIDTH).rjust(name_width)]
        cells += [cell(worker).rjust(max(width, len(header(title)))) for title, width, cell in WORKER_COLUMNS]
        lines.append(" ".join(cells))
    return lines


def render(status: Any, sort_key: str = DEFAULT_SORT_KEY, width: int = 120) -> List[str]:
    """The lines of one frame for `status`, none longer than `width`."""
    width = max(20, width)
    top = _place_side_by_side(_sections(status), width)
    workers = list(status.workers)
    table = _worker_table(workers, sort_key)
    rule = "-" * min(width, max(len(line) for line in top + table))
    lines = top + [rule, SHORTCUTS_LINE, "", f"Total {len(workers)} worker(s)"] + table
    return [line[:width] for line in lines]


def title_line(address: str, status: Optional[Any], seconds_since_status: float, timeout: float) -> str:
    if status is None:
        return f"scaler_top {address}: waiting for the scheduler's status ({seconds_since_status:.0f}s)"
    updated = time.strftime("%H:%M:%S", time.localtime(status.timestamp))
    if seconds_since_status > timeout:
        return f"scaler_top {address}: no status for {seconds_since_status:.0f}s (last at {updated})"
    return f"scaler_top {address}: updated {updated}"


def _paint(screen: Any, lines: List[str]) -> None:
    height, width = screen.getmaxyx()
    if len(lines) > height:
        lines = lines[:height - 1] + [f"... {len(lines) - height + 1} more line(s); enlarge the terminal"]
    screen.erase()
    for row, line in enumerate(lines):
        # the bottom-right cell cannot be written without curses raising, so stop one short
        screen.addnstr(row, 0, line, max(0, width - 1), curses.A_REVERSE if row == 0 else curses.A_NORMAL)
    screen.refresh()


def _run_view(screen: Any, subscriber: StatusSubscriber, timeout: float) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        pass  # some terminals cannot hide the cursor
    screen.timeout(0)
    sort_key = DEFAULT_SORT_KEY
    status = None
    started = received_at = time.monotonic()
    painted_at = 0.0
    while True:
        changed = False
        newest = subscriber.receive_latest(0.1)
        if newest is not None:
            status, received_at, changed = newest, time.monotonic(), True
        key = screen.getch()
        while key != -1:
            if key in QUIT_KEYS:
                return
            if 0 <= key < 256 and chr(key) in SORT_COLUMNS:
                sort_key, changed = chr(key), True
            elif key == curses.KEY_RESIZE:
                changed = True
            key = screen.getch()
        now = time.monotonic()
        # without news, repaint once a second so the staleness notice stays current
        if changed or now - painted_at >= 1.0:
            width = screen.getmaxyx()[1] - 1
            age = now - (received_at if status is not None else started)
            lines = [title_line(subscriber.monitor_address, status, age, timeout)]
            if status is not None:
                lines += render(status, sort_key, width)
            _paint(screen, lines)
            painted_at = now


def _print_one_frame(subscriber: StatusSubscriber, timeout: float) -> int:
    status = subscriber.wait_for_status(timeout)
    if status is None:
        print(f"scaler_top: no status from {subscriber.monitor_address} within {timeout}s", file=sys.stderr)
        return 1
    width = shutil.get_terminal_size((120, 40)).columns
    print("\n".join(render(status, DEFAULT_SORT_KEY, width)))
    return 0


def _setup_logging(settings: Dict[str, Any], interactive: bool) -> None:
    # Log lines written to the terminal would tear through the curses screen or the printed frame.
    console = {"/dev/stdout", "-", "/dev/stderr"}
    paths = list(settings["logging_paths"])
    if interactive:
        paths = [path for path in paths if path not in console]
    else:
        paths = ["/dev/stderr" if path in console else path for path in paths]
    setup_logging(settings["logging_level"], paths)
    if not paths:
        logging.getLogger().addHandler(logging.NullHandler())


def main(argv: Optional[Sequence[str]] = None) -> None:
    settings = config.parse("top", argv, prog="scaler_top")
    interactive = sys.stdout.isatty() and sys.stdin.isatty()
    _setup_logging(settings, interactive)
    try:
        subscriber = StatusSubscriber(settings["address"])
    except ValueError as error:
        sys.exit(f"scaler_top: {error}")
    with subscriber:
        if not interactive:
            sys.exit(_print_one_frame(subscriber, float(settings["timeout"])))
        # Ctrl-C must quit even when SIGINT was ignored on the way here: a shell without job control
        # starts background commands that way, and Python then raises no KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            curses.wrapper(_run_view, subscriber, float(settings["timeout"]))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
