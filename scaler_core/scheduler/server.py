"""The scheduler process: an asyncio shell that moves bytes between sockets and SchedulerState.

Sockets: a ROUTER for clients, workers and cluster supervisors; a DEALER to the object storage
server (to free objects); an XPUB for the monitor stream (status is only built while someone
subscribes). Incoming messages are drained in bursts and handed to the state machine; what it wants
sent is flushed once per burst, so tasks and results are naturally batched.

Besides, an inbox (a Unix datagram socket, `direct_results.py`) named in every welcome: clients and
workers on this host send it what fits in a datagram, and the scheduler sends theirs the same, which
saves ZeroMQ's I/O threads their wake-ups; `local_link.py` keeps both channels of a peer in order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
from typing import Dict, Optional

import psutil
import zmq

from scaler_core import direct_results, protocol, transport
from scaler_core.local_link import MESSAGES_PER_READ, OPENING_MESSAGES, ORDERED, LinkCounter, LinkOrder, frame, unframe
from scaler_core.memory import QuietTrimmer
from scaler_core.optional import require
from scaler_core.scheduler.journal import Journal
from scaler_core.scheduler.outbox import OBJECT_STORAGE
from scaler_core.scheduler.policies import make_policy
from scaler_core.scheduler.scaling import ScalingPolicy
from scaler_core.scheduler.state import SchedulerState
from scaler_core.settings import SchedulerSettings
from scaler_core.security import CurveKeys, secure_client, secure_server, stop_authenticator

logger = logging.getLogger(__name__)

BURST = 2000
# A burst also ends after this long, so a huge submission cannot keep heartbeats unanswered.
BURST_SECONDS = 0.05


class SchedulerServer:
    def __init__(self, address: str, object_storage_address: str, monitor_address: Optional[str],
                 settings: SchedulerSettings, allocate_policy: str = SchedulerSettings.allocate_policy,
                 keys: CurveKeys = CurveKeys()):
        self.address = address
        self.monitor_address = monitor_address
        settings.object_storage_address = object_storage_address
        settings.scheduler_address = address
        self.state = SchedulerState(settings, make_policy(allocate_policy))
        self.journal: Optional[Journal] = None
        if settings.journal:
            self.journal, recovered = Journal.open(settings.journal)
            self.state.epoch = recovered.epoch
            if recovered.epoch > 1:
                self.state.resume_from(recovered, time.monotonic())
        self.context = zmq.Context()
        self.router = transport.configure(self.context.socket(zmq.ROUTER),
                                          max_message_bytes=transport.SCHEDULER_MAX_MESSAGE_BYTES)
        secure_server(self.context, self.router, keys)
        self.router.bind(address)
        self.storage = transport.configure(self.context.socket(zmq.DEALER), identity=b"S|scheduler|%d" % os.getpid(),
                                           linger_ms=1000)
        secure_client(self.storage, keys)
        self.storage.connect(object_storage_address)
        self.monitor = None
        self.monitor_subscribers = 0
        if monitor_address:
            self.monitor = transport.configure(self.context.socket(zmq.XPUB), max_message_bytes=1024)
            self.monitor.bind(monitor_address)
        self.inbox_id = b"scheduler|%d|" % os.getpid() + os.urandom(8)
        self.inbox = direct_results.open_inbox(self.inbox_id)
        self.state.inbox_id = self.inbox_id if self.inbox is not None else b""
        self.inboxes = direct_results.InboxSender()  # the inboxes of peers on this host
        self._sent_to: Dict[bytes, LinkCounter] = {}  # peers welcomed: what went to each by ZeroMQ
        self._order = LinkOrder()
        self._welcomes_sent = 0
        self.sent = collections.Counter()
        self.received = collections.Counter()
        self.process = psutil.Process()
        self._trimmer = QuietTrimmer()  # returns the heap of a finished burst to the OS
        self.process.cpu_percent()
        self.scaling = ScalingPolicy(idle_seconds=settings.adapter_idle_seconds) \
            if settings.adapter_webhook_url else None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Future] = None
        logger.info("Scheduler: listen to scheduler address %s", address)
        logger.info("Scheduler: connect to object storage server %s", object_storage_address)
        if monitor_address:
            logger.info("Scheduler: listen to scheduler monitor address %s", monitor_address)

    # --- loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._loop.add_reader(self.router.getsockopt(zmq.FD), self._on_router_readable)
        if self.inbox is not None:
            self._loop.add_reader(self.inbox.fileno(), self._on_inbox_readable)
        if self.monitor is not None:
            self._loop.add_reader(self.monitor.getsockopt(zmq.FD), self._on_monitor_readable)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self._stop_on_signal, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        self._schedule_tick()
        self._on_router_readable()  # messages may have arrived before the reader was registered
        try:
            await self._stopped
        finally:
            self._loop.remove_reader(self.router.getsockopt(zmq.FD))
            if self.inbox is not None:
                self._loop.remove_reader(self.inbox.fileno())
            if self.monitor is not None:
                self._loop.remove_reader(self.monitor.getsockopt(zmq.FD))
            self.close()

    def _stop_on_signal(self, signum: int = signal.SIGTERM) -> None:
        if self.journal is not None and signum == signal.SIGTERM:
            # a restart (SIGINT, Ctrl-C, is the final stop): clients and workers wait for the next start
            logger.info("scheduler: stopping; clients and workers wait for a restart on %s", self.journal.path)
            self._flush()
            self.stop()
            return
        # say goodbye first, so clients fail their futures at once instead of after their timeout
        self.state.shutdown("the scheduler was stopped")
        self._flush()
        self._loop.call_later(0.2, self.stop)

    def stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def close(self) -> None:
        for sock in (self.router, self.storage, self.monitor):
            if sock is not None:
                sock.close(linger=200)
        stop_authenticator(self.context)
        self.context.term()
        self.inboxes.close()
        if self.inbox is not None:
            self.inbox.close()
        if self.journal is not None:
            self.journal.close()

    def _schedule_tick(self) -> None:
        interval = min(0.5, self.state.settings.heartbeat_interval_seconds / 2)
        self._loop.call_later(interval, self._on_tick)

    def _on_tick(self) -> None:
        if self._stopped.done():
            return
        self._on_router_readable()  # judge liveness on the freshest news, not on a backlog
        now = time.monotonic()
        overdue = self._order.overdue(now)
        if overdue:
            logger.warning("scheduler: %d message(s) waited %.1f s for an earlier one of their sender that never "
                           "came; handled now", len(overdue), self._order.hold_seconds)
            for sender, encoded in overdue:
                self._handle_datagram(sender, encoded, now)
        self.state.on_tick(now)
        self._forget_departed_peers()
        self.state.outbox.send(OBJECT_STORAGE, protocol.Heartbeat())  # a storage waiting for a restart knows we are here
        self._flush()
        self._trimmer.check()
        if self.monitor is not None and self.monitor_subscribers > 0:
            self._publish_status(now)
        if self.scaling is not None:
            self._scale(now)
        self._schedule_tick()

    # --- worker adapter -------------------------------------------------------------------------

    def _scale(self, now: float) -> None:
        for action, group_id in self.scaling.decide(now, self.state.queued_count(), self.state.group_loads()):
            request = {"action": "start_worker_group"} if action == "start" else \
                {"action": "shutdown_worker_group", "worker_group_id": group_id}
            future = self._loop.run_in_executor(None, _post_json, self.state.settings.adapter_webhook_url, request)
            future.add_done_callback(lambda done, action=action: self._on_adapter_answer(action, done))

    def _on_adapter_answer(self, action: str, done) -> None:
        try:
            status, body = done.result()
        except Exception as error:  # unreachable adapter: try again after the cooldown
            status, body = 0, {"error": repr(error)}
        if action == "start":
            if status == 200 and isinstance(body.get("worker_group_id"), str):
                self.scaling.on_started(body["worker_group_id"], time.monotonic())
                logger.info("scheduler: worker adapter started group %s", body["worker_group_id"])
            else:
                self.scaling.on_start_failed()
                if status != 429:
                    logger.warning("scheduler: worker adapter refused to start a group: %s %s", status, body)
        elif status != 200:
            logger.warning("scheduler: worker adapter failed to stop a group: %s %s", status, body)

    def _on_router_readable(self) -> None:
        now = time.monotonic()
        deadline = now + BURST_SECONDS
        handled = 0
        while handled < BURST and time.monotonic() < deadline:
            batch = transport.receive_batch(self.router, MESSAGES_PER_READ)
            if not batch:
                break
            # what peers sent by datagram before these messages is in the inbox by now
            self._read_inbox(now, everything=True)
            for parts in batch:
                opening_epoch = self._handle(parts, now)
                if len(parts) >= 2:
                    sender = parts[0].bytes
                    for encoded in (self._order.opened(sender, opening_epoch) if opening_epoch
                                    else self._order.streamed(sender)):
                        self._handle_datagram(sender, encoded, now)
            handled += len(batch)
            if len(batch) < MESSAGES_PER_READ:
                break
        self._trimmer.handled(handled)
        self._flush()
        if self.state.stopping:
            self._loop.call_later(0.2, self.stop)
        # zmq's FD is edge-triggered: if anything is left (or arrived while we sent), go again
        # (call_soon lets timers such as the tick run in between)
        if transport.input_pending(self.router):
            self._loop.call_soon(self._on_router_readable)

    def _handle(self, parts, now: float) -> int:
        """Hand one ROUTER message to the state machine; the epoch it opens on its sender's local link
        (0: none; local_link.py)."""
        routed = transport.decode_routed(parts, "scheduler")
        if routed is None:
            return 0
        sender, message, frames = routed
        if frames:
            logger.warning("scheduler: dropped %s from %r carrying unexpected payload frames",
                           protocol.message_name(message), sender[:40])
            return 0
        self.received[protocol.message_name(message)] += 1
        self.state.on_message(sender, message, frames, now)
        return message.link_epoch if type(message) in OPENING_MESSAGES else 0

    def _on_inbox_readable(self) -> None:
        self._read_inbox(time.monotonic())
        self._flush()

    def _read_inbox(self, now: float, everything: bool = False) -> None:
        if self.inbox is None:
            return
        for datagram in self.inbox.read(everything):
            try:
                kind, epoch, stamp, sender, encoded = unframe(datagram)
            except protocol.ProtocolError as error:
                logger.warning("scheduler: dropped a malformed datagram: %s", error)
                continue
            if kind == ORDERED:
                for due in self._order.datagram(sender, epoch, stamp, encoded, now):
                    self._handle_datagram(sender, due, now)

    def _handle_datagram(self, sender: bytes, encoded: bytes, now: float) -> None:
        try:
            message = protocol.decode(encoded)
        except protocol.ProtocolError as error:
            logger.warning("scheduler: dropped a malformed datagram from %r: %s", sender[:40], error)
            return
        self.received[protocol.message_name(message)] += 1
        self.state.on_message(sender, message, (), now)

    def _flush(self) -> None:
        if self.journal is not None:
            lines = self.state.take_journal_lines()
            if lines:  # before the welcomes they go with: a client we answered is one we remember
                self.journal.append(lines)
                if self.journal.appended > self.journal.COMPACT_AFTER_LINES:  # many clients came and went
                    self.journal.rewrite(self.state.epoch, self.state.journaled_clients())
        for destination, message, frames in self.state.take_outgoing():
            self.sent[protocol.message_name(message)] += 1
            try:
                if destination == OBJECT_STORAGE:
                    transport.send(self.storage, message, frames)
                else:
                    self._send_to_peer(destination, message, frames)
            except zmq.ZMQError as error:
                logger.warning("scheduler: could not send %s to %r: %s", protocol.message_name(message),
                               destination[:40], error)

    def _forget_departed_peers(self) -> None:
        """The local-link counts of peers the state no longer knows (epochs keep a returning one right)."""
        state = self.state
        for peer in self._order.senders():
            if peer not in state.clients and peer not in state.workers and peer not in state.clusters:
                self._sent_to.pop(peer, None)
                self._order.forget(peer)

    def _send_to_peer(self, destination: bytes, message, frames) -> None:
        """By datagram to a welcomed peer's inbox on this host when the message fits, else by ZeroMQ."""
        counter = self._sent_to.get(destination)
        opening = type(message) is protocol.Welcome
        if opening:
            self._welcomes_sent += 1  # an epoch no earlier link to this peer had, even a forgotten one
            message.link_epoch = self._welcomes_sent
        encoded = protocol.encode(message)
        if not opening and counter is not None and not frames and self.inboxes.send(
                destination, frame(ORDERED, counter.epoch, counter.sent, self.inbox_id, encoded)):
            return
        transport.send_encoded(self.router, encoded, frames, identity=destination)
        if opening:
            if counter is None and self._order.knows(destination):  # a peer of an earlier version: no datagrams
                counter = self._sent_to[destination] = LinkCounter()
            if counter is not None:
                counter.opened(message.link_epoch)
        elif counter is not None:
            counter.streamed()

    # --- monitor --------------------------------------------------------------------------------

    def _on_monitor_readable(self) -> None:
        while True:
            try:
                event = self.monitor.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if event[:1] == b"\x01":
                self.monitor_subscribers += 1
            elif event[:1] == b"\x00":
                self.monitor_subscribers = max(0, self.monitor_subscribers - 1)

    def status(self, now: float) -> "protocol.MonitorStatus":
        counts = self.state.task_counts()
        workers = [
            protocol.WorkerStatus(
                worker_id=worker.worker_id, hostname=worker.hostname, pid=worker.pid,
                cpu_percent=worker.cpu_percent, rss_bytes=worker.rss_bytes, held_bytes=worker.held_bytes,
                paused=worker.paused, memory_limit_bytes=worker.memory_limit_bytes,
                running=min(1 + worker.blocked, len(worker.assigned)),
                queued=max(0, len(worker.assigned) - 1 - worker.blocked), sent=worker.sent, blocked=worker.blocked,
                free=0 if worker.paused else max(0, worker.limit - len(worker.assigned)),
                capabilities=[protocol.Capability(name=n, quantity=q) for n, q in worker.capabilities.items()],
            )
            for worker in self.state.workers.values()
        ]
        return protocol.MonitorStatus(
            timestamp=time.time(), cpu_percent=self.process.cpu_percent(), rss_bytes=self.process.memory_info().rss,
            pending=counts["pending"], running=counts["running"], succeeded=counts["succeeded"],
            failed=counts["failed"], cancelled=counts["cancelled"], clients=len(self.state.clients),
            workers=workers,
            sent=[protocol.MessageCount(name=k, count=v) for k, v in sorted(self.sent.items())],
            received=[protocol.MessageCount(name=k, count=v) for k, v in sorted(self.received.items())],
            host_stores=[protocol.HostStoreStatus(
                cluster_id=cluster_id, hostname=_host_of_cluster(cluster_id), memory_bytes=memory, disk_bytes=disk,
                memory_limit_bytes=limit) for cluster_id, (memory, disk, limit) in sorted(self.state.host_stores.items())],
            managers=self.state.managers.status(),
        )

    def _publish_status(self, now: float) -> None:
        try:
            transport.send(self.monitor, self.status(now))
        except zmq.ZMQError:
            pass


def _host_of_cluster(cluster_id: bytes) -> str:
    """K|<host>|<pid>|<hex> -> <host>."""
    parts = cluster_id.split(b"|")
    return parts[1].decode(errors="replace") if len(parts) > 2 else ""


def _post_json(url: str, request: dict, timeout: float = 10.0):
    import json
    import urllib.error
    import urllib.request

    http_request = urllib.request.Request(url, data=json.dumps(request).encode(),
                                          headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def run_scheduler(address: str, object_storage_address: str, monitor_address: Optional[str],
                  settings: SchedulerSettings, allocate_policy: str = SchedulerSettings.allocate_policy,
                  event_loop: str = SchedulerSettings.event_loop,
                  keys: CurveKeys = CurveKeys()) -> None:
    """Run a scheduler in this process until it is stopped (signal or accepted remote shutdown)."""
    server = SchedulerServer(address, object_storage_address, monitor_address, settings, allocate_policy, keys)
    if event_loop == "uvloop":
        require("uvloop", "--event-loop uvloop").run(server.run())
    else:
        asyncio.run(server.run())
