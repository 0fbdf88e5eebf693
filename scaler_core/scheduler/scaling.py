"""When to ask a worker adapter for more workers and when to give them back (no I/O here).

The scheduler's shell feeds `decide` with the queue length and the load of each worker group once
per tick and carries out the returned actions over HTTP; the outcome comes back through
`on_started` / `on_start_failed` / `on_stopped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass
class GroupLoad:
    workers: int = 0
    busy_workers: int = 0


@dataclass
class ScalingPolicy:
    # after asking for a group, wait this long for its workers to connect before asking again
    start_cooldown_seconds: float = 3.0
    # a group whose workers all sat idle this long (with nothing queued) is released
    idle_seconds: float = 10.0
    started: Dict[str, float] = field(default_factory=dict)       # group id -> idle since (or 0.0 busy)
    _start_in_flight: bool = False
    _last_start: float = float("-inf")

    def decide(self, now: float, queued_tasks: int, loads: Dict[str, GroupLoad]) -> List[Tuple[str, Optional[str]]]:
        actions: List[Tuple[str, Optional[str]]] = []
        if queued_tasks > 0 and not self._start_in_flight and now - self._last_start >= self.start_cooldown_seconds:
            self._start_in_flight = True
            self._last_start = now
            actions.append(("start", None))
        for group_id in list(self.started):
            load = loads.get(group_id)
            busy = load is not None and load.busy_workers > 0
            if busy or queued_tasks > 0 or load is None:
                self.started[group_id] = now  # not idle (or still connecting): restart the idle clock
                continue
            if now - self.started[group_id] >= self.idle_seconds:
                del self.started[group_id]
                actions.append(("stop", group_id))
        return actions

    def on_started(self, group_id: str, now: float) -> None:
        self._start_in_flight = False
        self.started[group_id] = now

    def on_start_failed(self) -> None:
        self._start_in_flight = False
