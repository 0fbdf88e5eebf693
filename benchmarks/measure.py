"""Measurement helpers: process discovery, resident-set sampling, percentiles."""

import os
import statistics
import threading
import time
from urllib.parse import urlparse

import psutil

MB = 1024 * 1024


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values):
    return statistics.median(values) if values else float("nan")


def rss_bytes(pid):
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def descendants(pid=None):
    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


def port_of_address(address):
    """'tcp://127.0.0.1:1234' -> 1234; None when the address is not tcp."""
    if not address or not str(address).startswith("tcp://"):
        return None
    try:
        return urlparse(str(address)).port
    except ValueError:
        return None


def listening_process(port, candidates):
    """The process among candidates that listens on a tcp port."""
    for process in candidates:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
                return process.pid
    return None


def find_scheduler_pid(address, name_hint="scheduler", wait_seconds=10.0):
    """Scheduler process of a locally started cluster: the descendant that listens on the address port,
    else a descendant whose command line mentions name_hint, else None."""
    port = port_of_address(address)
    deadline = time.monotonic() + wait_seconds
    while True:
        family = [psutil.Process()] + descendants()
        if port is not None:
            pid = listening_process(port, family)
            if pid is not None:
                return pid
        for process in family[1:]:
            try:
                if name_hint in " ".join(process.cmdline()).lower():
                    return process.pid
            except psutil.Error:
                continue
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def reset_peak_rss(pid):
    """Reset the kernel's high-water RSS mark (Linux >= 4.0); False when not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def kernel_peak_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRssMonitor:
    """Peak RSS of named processes during a phase: kernel high-water marks (reset at start) combined with a
    sampling thread, so short spikes are caught even where clear_refs is not permitted."""

    def __init__(self, named_pids, interval_seconds=0.01):
        self.named_pids = {name: pid for name, pid in named_pids.items() if pid}
        self.interval_seconds = interval_seconds
        self.peaks = {name: 0 for name in self.named_pids}
        self.start_rss = {}
        self._kernel_reset = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            for name, pid in self.named_pids.items():
                value = rss_bytes(pid)
                if value and value > self.peaks[name]:
                    self.peaks[name] = value
            self._stop.wait(self.interval_seconds)

    def __enter__(self):
        for name, pid in self.named_pids.items():
            self.start_rss[name] = rss_bytes(pid) or 0
            self._kernel_reset[name] = reset_peak_rss(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for name, pid in self.named_pids.items():
            if self._kernel_reset.get(name):
                kernel_value = kernel_peak_rss(pid)
                if kernel_value:
                    self.peaks[name] = max(self.peaks[name], kernel_value)
        return False

    def peaks_mb(self):
        return {name: round(value / MB, 1) for name, value in self.peaks.items()}


def wait_until_rss_settles(pid, settle_seconds=1.0, max_seconds=30.0, tolerance=0.005):
    """Poll RSS until it changes less than tolerance over settle_seconds; returns the last value."""
    deadline = time.monotonic() + max_seconds
    previous = rss_bytes(pid) or 0
    while time.monotonic() < deadline:
        time.sleep(settle_seconds)
        current = rss_bytes(pid) or 0
        if previous and abs(current - previous) <= tolerance * previous:
            return current
        previous = current
    return previous


def cpu_seconds_of(pids):
    """Total user+system CPU seconds of a set of processes (for CPU-per-task figures)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total
