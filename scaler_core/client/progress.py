"""A plain-text progress bar for long client calls (map, starmap, get), on stderr."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import Future
from typing import Iterable, TextIO


class ProgressBar:
    """Counts futures as they finish and redraws one line, at most ten times a second.

    Works in terminals and notebooks alike: it only writes carriage returns, no terminal codes."""

    def __init__(self, total: int, label: str = "tasks", stream: TextIO = None, width: int = 30):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._started = time.monotonic()

    def track(self, futures: Iterable[Future]) -> None:
        for future in futures:
            future.add_done_callback(self._on_done)

    def _on_done(self, _future) -> None:
        with self._lock:
            self.done += 1
            now = time.monotonic()
            if self.done == self.total or now - self._last_draw >= 0.1:
                self._last_draw = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {self.label} "
                f"{fraction:4.0%} {elapsed:5.1f}s {rate:,.0f}/s")
        self.stream.write(line + ("\n" if self.done == self.total else ""))
        self.stream.flush()
