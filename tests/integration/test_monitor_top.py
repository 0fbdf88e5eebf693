"""scaler_top: `render` on hand-made statuses, and the real program in a pseudo-terminal."""

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pyte
import pytest

from scaler_core import Client, protocol
from scaler_core.monitor.stream import free_slots, shorten
from scaler_core.monitor.top import render, title_line
from tests.conftest import wait_until


def make_worker(name, cpu=0.0, rss=10 << 20, running=0, queued=0, sent=0, blocked=0, free=1):
    return protocol.WorkerStatus(worker_id=name.encode(), hostname="host", pid=1234, cpu_percent=cpu,
                                 rss_bytes=rss, running=running, queued=queued, sent=sent, blocked=blocked,
                                 free=free)


def make_status(workers=(), managers=(), **counts):
    fields = dict(timestamp=time.time(), cpu_percent=12.5, rss_bytes=40 << 20, pending=3, running=2,
                  succeeded=1234567, failed=4, cancelled=5, clients=1)
    fields.update(counts)
    return protocol.MonitorStatus(
        workers=list(workers), managers=list(managers),
        sent=[protocol.MessageCount(name="TaskBatch", count=200000), protocol.MessageCount(name="Welcome", count=3)],
        received=[protocol.MessageCount(name="Heartbeat", count=183109)], **fields)


def worker_rows(lines):
    return [line for line in lines if line.lstrip().startswith("W|")]


# --- render ---------------------------------------------------------------------------------------


def test_render_shows_scheduler_tasks_and_messages():
    text = "\n".join(render(make_status(), "c", 140))
    assert re.search(r"cpu\s+12\.5%", text) and re.search(r"rss\s+40\.0m", text)
    for state, value in [("pending", "3"), ("running", "2"), ("succeeded", "1,234,567"), ("failed", "4"),
                         ("cancelled", "5")]:
        assert re.search(rf"\b{state}\s+{value}\b", text), state
    assert re.search(r"TaskBatch\s+200,000", text) and re.search(r"Heartbeat\s+183,109", text)
    assert "scheduler_sent" in text and "scheduler_received" in text and "Total 0 worker(s)" in text


def test_render_shows_each_worker_manager_and_its_pending_capacity():
    groups = [protocol.WorkerGroupStatus(group_id=b"g1", state="running", workers=4, busy_workers=3),
              protocol.WorkerGroupStatus(group_id=b"g2", state="pending"),
              protocol.WorkerGroupStatus(group_id=b"g3", state="draining", workers=4)]
    manager = protocol.WorkerManagerStatus(manager_id=b"wm-hpc", kind="slurm", workers_per_group=4, max_groups=8,
                                           groups=groups)
    text = "\n".join(render(make_status(managers=[manager]), "c", 200))
    assert "manager wm-hpc" in text and re.search(r"kind\s+slurm", text)
    assert re.search(r"groups\s+3 of 8", text) and re.search(r"pending\s+1 \(4 workers\)", text)
    assert re.search(r"draining\s+1", text) and re.search(r"workers\s+8 \(3 busy\)", text)


def test_render_worker_table_sorting_and_marker():
    workers = [make_worker("W|a|1|1|aaaa", cpu=5.0, rss=30 << 20, queued=1, running=1, free=1),
               make_worker("W|b|1|2|bbbb", cpu=50.0, rss=10 << 20, free=2),
               make_worker("W|c|1|3|cccc", cpu=20.0, rss=90 << 20, queued=7, running=1, free=0)]
    status = make_status(workers)
    expected_order = {"c": "bca", "m": "cab", "n": "abc", "q": "cab", "f": "bac"}
    for key, order in expected_order.items():
        lines = render(status, key, 140)
        names = [row.split()[0][2] for row in worker_rows(lines)]
        assert "".join(names) == order, key
    header = next(line for line in render(status, "m", 140) if "worker" in line and "pid" in line)
    assert "*rss" in header and header.count("*") == 1
    header = next(line for line in render(status, "w", 140) if "worker" in line and "pid" in line)
    assert "*running" in header


def test_render_shows_each_workers_memory_limit():
    limited, unlimited = make_worker("W|a|1|1|aaaa"), make_worker("W|b|1|2|bbbb")
    limited.memory_limit_bytes = 9 << 30
    lines = render(make_status([limited, unlimited]), "n", 140)
    header = next(line for line in lines if "worker" in line and "pid" in line).split()
    column = header.index("limit")
    assert [row.split()[column] for row in worker_rows(lines)] == ["9.0g", "-"]


def test_render_respects_width_and_stacks_sections():
    status = make_status([make_worker("W|" + "very-long-hostname-" * 3 + "|42|7|0123abcd")])
    wide = render(status, "c", 200)
    narrow = render(status, "c", 50)
    assert all(len(line) <= 50 for line in narrow)
    assert len(narrow) > len(wide)  # sections that do not fit side by side go below each other
    row = worker_rows(wide)[0]
    assert "+" in row.split()[0] and row.split()[0].endswith("0123abcd")


def test_free_slots_and_shorten():
    assert free_slots(make_worker("w", free=7)) == 7  # the scheduler's own figure
    assert shorten("abcdefghij", 20) == "abcdefghij"
    assert len(shorten("abcdefghijklmnopqrstuvwxyz", 9)) == 9


def test_title_line_tells_when_the_stream_is_silent():
    status = make_status()
    assert "waiting" in title_line("tcp://x:1", None, 2.0, 5)
    assert "updated" in title_line("tcp://x:1", status, 1.0, 5)
    assert "no status for 9s" in title_line("tcp://x:1", status, 9.0, 5)


# --- in a pseudo-terminal --------------------------------------------------------------------------


class TopInTerminal:
    """scaler_top running in a pseudo-terminal of a known size, its output replayed by pyte."""

    def __init__(self, monitor_address, rows=45, columns=150, sigint_ignored=False):
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scaler_core.monitor.top", monitor_address],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=self._take_terminal_ignoring_sigint if sigint_ignored else self._take_terminal,
            env=dict(os.environ, TERM="xterm", LINES=str(rows), COLUMNS=str(columns)))
        os.close(slave)

    @staticmethod
    def _take_terminal():
        # in the child, after setsid: make the pty its controlling terminal, so Ctrl-C sends SIGINT
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    @staticmethod
    def _take_terminal_ignoring_sigint():
        # as a shell without job control starts a background command (`scaler_top ... &` in a script)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def text(self):
        """The screen after everything the program has written so far."""
        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the program exited and closed its end
                break
            if not data:
                break
            self.stream.feed(data)
        return "\n".join(line.rstrip() for line in self.screen.display)

    def press(self, key):
        os.write(self.master, key)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.master)


def succeeded_on(text):
    match = re.search(r"succeeded\s+([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else None


def test_scaler_top_in_a_terminal_follows_the_cluster(combo):
    top = TopInTerminal(combo.monitor_address)
    client = Client(combo.address, timeout_seconds=60)
    results = []
    work = threading.Thread(target=lambda: results.append(client.map(time.sleep, [0.02] * 300)), daemon=True)
    try:
        wait_until(lambda: "Total 2 worker(s)" in top.text(), 20, message="two workers on the screen")
        wait_until(lambda: len(worker_rows(top.text().splitlines())) == 2, 10, message="two worker rows")
        work.start()
        first = wait_until(lambda: succeeded_on(top.text()), 20, message="some succeeded tasks on the screen")
        wait_until(lambda: (succeeded_on(top.text()) or 0) > first, 20, message="succeeded count to grow")
        work.join(60)
        assert results and len(results[0]) == 300
        wait_until(lambda: (succeeded_on(top.text()) or 0) >= 300, 20, message="all 300 tasks succeeded")

        assert "*cpu" in top.text()
        top.press(b"m")
        wait_until(lambda: "*rss" in top.text() and "*cpu" not in top.text(), 10, message="sort marker on rss")
        top.press(b"Q")
        assert top.process.wait(10) == 0
    finally:
        client.disconnect()
        top.close()


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint-default", "sigint-ignored-on-start"])
def test_scaler_top_quits_on_ctrl_c(combo, sigint_ignored):
    top = TopInTerminal(combo.monitor_address, rows=24, columns=80, sigint_ignored=sigint_ignored)
    try:
        wait_until(lambda: "Total 2 worker(s)" in top.text(), 20, message="the first frame")
        top.press(b"\x03")
        assert top.process.wait(10) == 0
        assert "Traceback" not in top.text()
    finally:
        top.close()


def test_scaler_top_without_a_terminal_prints_one_frame(combo):
    command = shutil.which("scaler_top", path=os.path.dirname(sys.executable)) or shutil.which("scaler_top") \
        or pytest.skip("scaler_top is not installed (pip install -e .)")
    finished = subprocess.run([command, combo.monitor_address, "--timeout", "20"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert finished.returncode == 0, finished.stderr
    assert "Total 2 worker(s)" in finished.stdout and "task_manager" in finished.stdout
