"""The native worker adapter: an HTTP service that starts and stops worker groups on this machine.

A scheduler started with ``--adapter-webhook-url`` asks it for workers while tasks queue and
releases groups that sit idle. A worker group is one cluster supervisor with
``--workers-per-group`` workers; its id is the supervisor's identity, which the workers report to
the scheduler in their hello, so the scheduler knows which workers belong to which group.

HTTP interface (JSON in, JSON out, POST to the root path):

    {"action": "get_worker_adapter_info"}
        -> 200 {"max_worker_groups": int, "workers_per_group": int, "worker_groups": [ids]}
    {"action": "start_worker_group"}
        -> 200 {"worker_group_id": str}             the group is starting
        -> 429 {"error": "..."}                     --max-worker-groups reached
    {"action": "shutdown_worker_group", "worker_group_id": str}
        -> 200 {"worker_group_id": str}             the group's workers are stopping
        -> 404 {"error": "..."}                     no such group
Anything else -> 400 {"error": "..."}. The service binds 127.0.0.1 unless told otherwise and has no
authentication: whoever reaches it can start processes on this machine.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Sequence

from scaler_core.launch import ChildProcesses
from scaler_core.settings import LoggingSettings, WorkerSettings
from scaler_core.worker.cluster import new_cluster_id

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


class NativeWorkerAdapter:
    def __init__(self, scheduler_address: str, workers_per_group: int, max_worker_groups: int,
                 settings: WorkerSettings, logging_level: str = LoggingSettings.logging_level,
                 logging_paths: Sequence[str] = LoggingSettings.logging_paths):
        self.scheduler_address = scheduler_address
        self.workers_per_group = workers_per_group
        self.max_worker_groups = max_worker_groups
        self.settings = settings
        self.logging_level = logging_level
        self.logging_paths = tuple(logging_paths)
        self.children = ChildProcesses()
        self.groups: Dict[str, object] = {}
        self._lock = threading.Lock()

    def handle(self, request: dict):
        """One JSON request -> (HTTP status, JSON answer). Plain logic, testable without HTTP."""
        action = request.get("action") if isinstance(request, dict) else None
        with self._lock:
            self._forget_exited()
            if action == "get_worker_adapter_info":
                return 200, {"max_worker_groups": self.max_worker_groups, "workers_per_group": self.workers_per_group,
                             "worker_groups": sorted(self.groups)}
            if action == "start_worker_group":
                if self.max_worker_groups >= 0 and len(self.groups) >= self.max_worker_groups:
                    return 429, {"error": f"capacity exceeded: {len(self.groups)} of {self.max_worker_groups} groups"}
                cluster_id = new_cluster_id()
                group_id = cluster_id.decode()
                self.groups[group_id] = self.children.start_cluster(
                    self.scheduler_address, self.workers_per_group, self.settings, self.logging_level,
                    self.logging_paths, cluster_id)
                logger.info("native adapter: started worker group %s", group_id)
                return 200, {"worker_group_id": group_id}
            if action == "shutdown_worker_group":
                group_id = request.get("worker_group_id")
                process = self.groups.pop(group_id, None) if isinstance(group_id, str) else None
                if process is None:
                    return 404, {"error": f"no worker group {group_id!r}"}
                threading.Thread(target=self.children.stop, args=(process,), daemon=True).start()
                logger.info("native adapter: stopping worker group %s", group_id)
                return 200, {"worker_group_id": group_id}
        return 400, {"error": f"unknown action {action!r}; expected get_worker_adapter_info, start_worker_group "
                              "or shutdown_worker_group"}

    def _forget_exited(self) -> None:
        for group_id, process in list(self.groups.items()):
            if process.poll() is not None:
                del self.groups[group_id]

    def serve(self, host: str, port: int) -> None:
        adapter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_REQUEST_BYTES:
                    return self._answer(413, {"error": "request too large"})
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return self._answer(400, {"error": "the body must be JSON"})
                self._answer(*adapter.handle(request))

            def _answer(self, status, body):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                logger.debug("native adapter: " + args[0], *args[1:])

        server = ThreadingHTTPServer((host, port), Handler)
        # the bound port, not the asked one: port 0 means "any free port" and the scheduler needs the real one
        logger.info("native adapter: listening on http://%s:%d for scheduler %s", host, server.server_address[1],
                    self.scheduler_address)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            self.children.stop_all()
