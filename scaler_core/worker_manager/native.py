"""baremetal_native groups: clusters of this machine, one child process each."""

from __future__ import annotations

import threading
from typing import Dict, List, Sequence

from scaler_core.launch import ChildProcesses
from scaler_core.settings import LoggingSettings, WorkerSettings
from scaler_core.worker_manager.backend import GroupBackend, GroupEnded


class NativeGroups(GroupBackend):
    kind = "baremetal_native"

    def __init__(self, scheduler_address: str, workers_per_group: int, max_groups: int, settings: WorkerSettings,
                 logging_level: str = LoggingSettings.logging_level,
                 logging_paths: Sequence[str] = LoggingSettings.logging_paths):
        super().__init__(workers_per_group, dict(settings.capabilities), max_groups)
        self.scheduler_address = scheduler_address
        self.settings = settings
        self.logging_level = logging_level
        self.logging_paths = tuple(logging_paths)
        self.children = ChildProcesses()
        self.groups: Dict[bytes, object] = {}
        self._stopping: Dict[bytes, bool] = {}

    def start_group(self, group_id: bytes) -> str:
        from scaler_core.scheduler.worker_managers import cluster_id_of

        process = self.children.start_cluster(self.scheduler_address, self.workers_per_group, self.settings,
                                              self.logging_level, self.logging_paths, cluster_id_of(group_id))
        self.groups[group_id] = process
        return f"pid {process.pid}"

    def stop_group(self, group_id: bytes) -> None:
        process = self.groups.get(group_id)
        if process is not None and group_id not in self._stopping:
            self._stopping[group_id] = True
            # stopping waits for the workers to leave: not on the manager's thread
            threading.Thread(target=self.children.stop, args=(process,), daemon=True).start()

    def poll(self) -> List[GroupEnded]:
        ended = []
        for group_id, process in list(self.groups.items()):
            code = process.poll()
            if code is None:
                continue
            del self.groups[group_id]
            asked = self._stopping.pop(group_id, False)
            ended.append(GroupEnded(group_id, "stopped on request" if asked else f"its cluster exited (code {code})"))
        return ended

    def group_ids(self) -> List[bytes]:
        return list(self.groups)

    def stop_all(self) -> None:
        self.children.stop_all()
        self.groups.clear()
