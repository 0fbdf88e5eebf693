"""A worker manager's connection to the scheduler: the protocol side of every manager type.

It registers (`WorkerManagerHello`: what one group of its backend offers), sends heartbeats, starts
and stops groups when told (`StartWorkerGroup` / `StopWorkerGroup`) and reports what became of them
(`WorkerGroupEvent`): started, failed with the resource manager's reason, ended. The backend is
polled on its own interval (a resource manager's queue is not asked on every loop turn).

It exits on SIGTERM/SIGINT, when the scheduler says it shuts down, or when the scheduler stays silent
for `death_timeout_seconds`, ending every group it started first.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import zmq

from scaler_core import protocol, transport
from scaler_core.security import CurveKeys, secure_client
from scaler_core.worker_manager.backend import GroupBackend, GroupStartError

logger = logging.getLogger(__name__)


class WorkerManagerAgent:
    def __init__(self, scheduler_address: str, manager_id: str, backend: GroupBackend, *,
                 heartbeat_interval_seconds: float = 1.0, death_timeout_seconds: float = 30.0,
                 poll_interval_seconds: float = 0.5, keys: CurveKeys = CurveKeys()):
        self.scheduler_address = scheduler_address
        self.manager_id = manager_id
        self.backend = backend
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.keys = keys
        self._stopping = False
        self._wakeup_reader, self._wakeup_writer = os.pipe()
        os.set_blocking(self._wakeup_writer, False)

    def stop(self, *_):
        self._stopping = True
        try:
            os.write(self._wakeup_writer, b"x")
        except BlockingIOError:
            pass

    def _hello(self) -> "protocol.WorkerManagerHello":
        backend = self.backend
        return protocol.WorkerManagerHello(
            manager_id=self.manager_id.encode(), kind=backend.kind, workers_per_group=backend.workers_per_group,
            capabilities=[protocol.Capability(name=n, quantity=q) for n, q in backend.capabilities.items()],
            max_groups=backend.max_groups, groups=backend.group_ids(), version=protocol.PROTOCOL_VERSION)

    def run(self) -> None:
        context = zmq.Context()
        scheduler = transport.configure(context.socket(zmq.DEALER), identity=b"M|" + self.manager_id.encode(),
                                        linger_ms=1000)
        secure_client(scheduler, self.keys)
        scheduler.connect(self.scheduler_address)
        poller = zmq.Poller()
        poller.register(scheduler, zmq.POLLIN)
        poller.register(self._wakeup_reader, zmq.POLLIN)
        transport.send(scheduler, self._hello())
        logger.info("worker manager %s (%s): registering with the scheduler at %s", self.manager_id,
                    self.backend.kind, self.scheduler_address)
        last_heard = time.monotonic()
        next_heartbeat = next_poll = 0.0
        try:
            while not self._stopping:
                now = time.monotonic()
                if now >= next_heartbeat:
                    if now - last_heard > self.death_timeout_seconds:
                        logger.error("worker manager %s: scheduler silent for %.0fs, stopping", self.manager_id,
                                     now - last_heard)
                        break
                    transport.send(scheduler, protocol.Heartbeat())
                    next_heartbeat = now + self.heartbeat_interval_seconds
                if now >= next_poll:
                    for ended in self.backend.poll():
                        event = "ended" if ended.ever_ran else "failed"
                        (logger.info if ended.ever_ran else logger.warning)(
                            "worker manager %s: group %s %s: %s", self.manager_id, ended.group_id.decode(), event,
                            ended.reason)
                        transport.send(scheduler, protocol.WorkerGroupEvent(group_id=ended.group_id, event=event,
                                                                            reason=ended.reason))
                    next_poll = now + self.poll_interval_seconds
                timeout = max(0.0, min(next_heartbeat, next_poll) - time.monotonic())
                events = dict(poller.poll(timeout * 1000))
                if self._wakeup_reader in events:
                    os.read(self._wakeup_reader, 64)
                for message in transport.receive_waiting(scheduler) if scheduler in events else ():
                    last_heard = time.monotonic()
                    self._on_message(scheduler, message)
        finally:
            logger.info("worker manager %s: stopping its groups", self.manager_id)
            self.backend.stop_all()
            scheduler.close(linger=500)
            context.term()

    def _on_message(self, scheduler, message) -> None:
        kind = type(message)
        if kind is protocol.StartWorkerGroup:
            group = message.group_id.decode(errors="replace")
            try:
                external_id = self.backend.start_group(message.group_id)
            except GroupStartError as error:
                logger.warning("worker manager %s: group %s could not start: %s", self.manager_id, group, error)
                transport.send(scheduler, protocol.WorkerGroupEvent(group_id=message.group_id, event="failed",
                                                                    reason=str(error)))
                return
            logger.info("worker manager %s: started group %s%s", self.manager_id, group,
                        f" as {external_id}" if external_id else "")
            transport.send(scheduler, protocol.WorkerGroupEvent(group_id=message.group_id, event="started",
                                                                external_id=external_id))
        elif kind is protocol.StopWorkerGroup:
            logger.info("worker manager %s: stopping group %s", self.manager_id, message.group_id.decode())
            self.backend.stop_group(message.group_id)
        elif kind is protocol.SchedulerShutdown:
            if message.reconnect:  # the scheduler forgot us: register again, groups included
                transport.send(scheduler, self._hello())
            else:
                logger.info("worker manager %s: scheduler shut down (%s)", self.manager_id, message.reason)
                self._stopping = True


def run_agent(agent: WorkerManagerAgent) -> None:
    """Run until a signal, the scheduler's shutdown or its silence; every group is ended on the way out."""
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    agent.run()
