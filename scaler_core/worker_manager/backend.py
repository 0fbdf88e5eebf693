"""What a worker manager needs from a resource manager: the `GroupBackend` interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List


class GroupStartError(Exception):
    """The resource manager refused a group; the message is its reason, reported to the scheduler."""


@dataclass(frozen=True)
class GroupEnded:
    group_id: bytes
    reason: str           # the resource manager's words, e.g. "TIMEOUT" or "exit code 1"
    ever_ran: bool = True  # False: it ended before it ever ran (a failed start)


@dataclass
class GroupBackend:
    """One resource manager. Each group it starts runs `scaler_cluster` with the cluster id
    `K|<group id>`, connected to the scheduler. Calls come from the manager's one thread."""

    kind = "base"
    workers_per_group: int = 1
    capabilities: Dict[str, int] = field(default_factory=dict)
    max_groups: int = -1

    def start_group(self, group_id: bytes) -> str:
        """Start (or submit) one group; returns the resource manager's id for it. Raises
        GroupStartError with the reason when it is refused."""
        raise NotImplementedError

    def stop_group(self, group_id: bytes) -> None:
        """Ask for the group to end; `poll` reports it once it has."""
        raise NotImplementedError

    def poll(self) -> List[GroupEnded]:
        """Groups that ended since the last call (asked to or not)."""
        raise NotImplementedError

    def group_ids(self) -> List[bytes]:
        raise NotImplementedError

    def stop_all(self) -> None:
        """The manager exits: end every group it started."""
        raise NotImplementedError
