"""``scaler_ui MONITOR_ADDRESS --web-port P``: a live web page of a scheduler's monitor stream.

One thread follows the monitor stream and keeps the newest status plus a few minutes of history;
a standard-library HTTP server (a thread per request) serves

- ``/``, ``/monitor.js``, ``/monitor.css``: the page, with no external resources, so it works on
  machines without internet access;
- ``/api/status``: the newest status as JSON (503 until the first one arrives);
- ``/api/history``: the kept statuses, so a page opened late still draws its charts;
- ``/api/stream``: Server-Sent Events, one ``data:`` line of JSON per status.
"""

from __future__ import annotations

import collections
import http.server
import json
import logging
import signal
import sys
import threading
from importlib import resources
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from scaler_core import config
from scaler_core.logging_setup import setup_logging
from scaler_core.monitor.stream import StatusSubscriber, status_to_dict

logger = logging.getLogger(__name__)

# About five minutes of statuses at the scheduler's two per second.
HISTORY_LENGTH = 600
# An idle stream still writes a comment this often, so proxies and browsers keep it open and a
# closed page is noticed (the write fails) within this time.
STREAM_KEEPALIVE_SECONDS = 10.0

STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/monitor.js": ("monitor.js", "text/javascript; charset=utf-8"),
    "/monitor.css": ("monitor.css", "text/css; charset=utf-8"),
}


class StatusHub:
    """The newest status and recent history, shared by the stream thread and request threads."""

    def __init__(self, monitor_address: str, history_length: int = HISTORY_LENGTH):
        self.monitor_address = monitor_address
        self._changed = threading.Condition()
        self._history: Deque[Dict[str, Any]] = collections.deque(maxlen=history_length)
        self._latest: Optional[Dict[str, Any]] = None
        self._sequence = 0
        self._closed = False

    def publish(self, status: Dict[str, Any]) -> None:
        # The history drops per-message counters: the charts do not use them and they dominate size.
        compact = {key: value for key, value in status.items() if key not in ("sent", "received")}
        with self._changed:
            self._latest = status
            self._history.append(compact)
            self._sequence += 1
            self._changed.notify_all()

    def latest(self) -> Optional[Dict[str, Any]]:
        with self._changed:
            return self._latest

    def history(self) -> List[Dict[str, Any]]:
        with self._changed:
            return list(self._history)

    def wait_newer(self, seen_sequence: int, timeout: float) -> Tuple[int, Optional[Dict[str, Any]]]:
        """Block until a status newer than `seen_sequence` exists (or timeout/close): (sequence, it or None)."""
        with self._changed:
            self._changed.wait_for(lambda: self._sequence > seen_sequence or self._closed, timeout)
            if self._sequence > seen_sequence and not self._closed:
                return self._sequence, self._latest
            return seen_sequence, None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def follow_monitor_stream(hub: StatusHub, subscriber: StatusSubscriber, stop: threading.Event) -> None:
    with subscriber:
        while not stop.is_set():
            status = subscriber.receive_latest(0.25)
            if status is not None:
                hub.publish(status_to_dict(status))


def _static_file(name: str) -> bytes:
    return resources.files("scaler_core.monitor").joinpath("static", name).read_bytes()


class MonitorRequestHandler(http.server.BaseHTTPRequestHandler):
    hub: StatusHub  # set on the subclass made by `make_server`
    server_version = "scaler_ui"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        path = self.path.split("?", 1)[0]
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            self._reply(200, content_type, _static_file(name))
        elif path == "/api/status":
            latest = self.hub.latest()
            if latest is None:
                self._reply_json(503, {"error": f"no status received yet from {self.hub.monitor_address}"})
            else:
                self._reply_json(200, latest)
        elif path == "/api/history":
            self._reply_json(200, {"monitor_address": self.hub.monitor_address, "statuses": self.hub.history()})
        elif path == "/api/stream":
            self._stream()
        else:
            self._reply_json(404, {"error": f"no such page: {path}"})

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _reply_json(self, code: int, value: Any) -> None:
        self._reply(code, "application/json", json.dumps(value).encode())

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        sequence = 0
        try:
            while not self.hub.closed:
                sequence, status = self.hub.wait_newer(sequence, STREAM_KEEPALIVE_SECONDS)
                chunk = b": keepalive\n\n" if status is None else b"data: " + json.dumps(status).encode() + b"\n\n"
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page was closed or reloaded

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        logger.debug("scaler_ui: %s " + format, self.address_string(), *args)


class MonitorHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # open event streams must not keep the program alive at exit


def make_server(hub: StatusHub, host: str, port: int) -> MonitorHTTPServer:
    handler = type("BoundMonitorRequestHandler", (MonitorRequestHandler,), {"hub": hub})
    return MonitorHTTPServer((host, port), handler)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_webui(config.parse("webui", argv, prog="scaler_ui"))


def _web_endpoint(settings: Dict[str, Any]) -> Tuple[str, int]:
    if not settings.get("gui_address"):
        return settings["web_host"], settings["web_port"]
    host, _, port = settings["gui_address"].rpartition(":")
    if not host or not port.isdigit():
        sys.exit(f"scaler_ui: --gui-address must look like HOST:PORT, got {settings['gui_address']!r}")
    return host, int(port)


def run_webui(settings: Dict[str, Any]) -> None:
    setup_logging(settings["logging_level"], settings["logging_paths"])
    web_host, web_port = _web_endpoint(settings)
    hub = StatusHub(settings["address"])
    try:
        subscriber = StatusSubscriber(settings["address"])
    except ValueError as error:
        sys.exit(f"scaler_ui: {error}")
    try:
        server = make_server(hub, web_host, web_port)
    except OSError as error:
        subscriber.close()
        sys.exit(f"scaler_ui: cannot serve on {web_host}:{web_port}: {error}")
    stop = threading.Event()
    follower = threading.Thread(target=follow_monitor_stream, args=(hub, subscriber, stop), name="monitor-stream",
                                daemon=True)
    host, port = server.server_address[:2]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    follower.start()
    logger.info("scaler_ui: serving http://%s:%d/ for the monitor stream at %s", host, port, settings["address"])
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        hub.close()
        server.server_close()
        follower.join(5)


if __name__ == "__main__":
    main()
