"""A cluster: a supervisor process that keeps N worker processes alive on one machine.

The supervisor notices a worker's death the moment its process ends (multiprocessing sentinels,
no polling), tells the scheduler at once (so the dead worker's tasks are re-run without waiting
for a heartbeat timeout) and starts a replacement. It exits when the scheduler is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from typing import Dict, Optional

import zmq

from scaler_core import protocol, transport
from scaler_core.logging_setup import setup_logging
from scaler_core.worker.process import EXIT_REPLACE_ME, EXIT_SCHEDULER_GONE, Worker, WorkerSettings

logger = logging.getLogger(__name__)


def watch_parent(pipe_reader) -> None:
    """Exit this process as soon as the process holding the other end of the pipe dies."""

    def wait_and_exit():
        try:
            pipe_reader.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=wait_and_exit, name="scaler-parent-watch", daemon=True).start()


def worker_main(scheduler_address: str, worker_id: bytes, settings: WorkerSettings, cluster_id: bytes,
                logging_level: str, logging_paths, parent_pipe) -> None:
    setup_logging(logging_level, logging_paths)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    if parent_pipe is not None:
        watch_parent(parent_pipe)
    worker = Worker(scheduler_address, worker_id, settings, cluster_id)
    try:
        worker.run()
    except Exception:
        logger.exception("worker %r crashed", worker_id)
        os._exit(1)
    os._exit(EXIT_SCHEDULER_GONE)


class Cluster:
    def __init__(self, scheduler_address: str, n_workers: int, settings: WorkerSettings,
                 logging_level: str = "INFO", logging_paths=("/dev/stdout",), restart_workers: bool = True):
        if n_workers < 1:
            raise ValueError(f"a cluster needs at least one worker, got num_of_workers={n_workers}")
        self.scheduler_address = scheduler_address
        self.n_workers = n_workers
        self.settings = settings
        self.logging_level = logging_level
        self.logging_paths = tuple(logging_paths)
        self.restart_workers = restart_workers
        self.cluster_id = b"K|%s|%d|%s" % (socket.gethostname().encode(), os.getpid(), os.urandom(4).hex().encode())
        self._spawn = multiprocessing.get_context("spawn")
        self.workers: Dict[int, tuple] = {}  # sentinel -> (process, worker id, pipe writer)
        self._stopping = False
        self._sequence = 0

    def stop(self, *_):
        self._stopping = True

    def _start_worker(self) -> None:
        self._sequence += 1
        worker_id = b"W|%s|%d|%d|%s" % (socket.gethostname().encode(), os.getpid(), self._sequence,
                                         os.urandom(4).hex().encode())
        reader, writer = self._spawn.Pipe(duplex=False)
        process = self._spawn.Process(
            target=worker_main, name=f"scaler-worker-{self._sequence}",
            args=(self.scheduler_address, worker_id, self.settings, self.cluster_id, self.logging_level,
                  self.logging_paths, reader))
        process.start()
        reader.close()
        self.workers[process.sentinel] = (process, worker_id, writer)
        logger.info("Worker[%d] started (pid %d)", self._sequence, process.pid)

    def run(self) -> None:
        logger.info("ClusterProcess: starting %d workers, heartbeat_interval_seconds=%g", self.n_workers,
                    self.settings.heartbeat_interval_seconds)
        context = zmq.Context()
        scheduler = transport.configure(context.socket(zmq.DEALER), identity=self.cluster_id, linger_ms=1000)
        scheduler.connect(self.scheduler_address)
        for _ in range(self.n_workers):
            self._start_worker()
        last_echo = time.monotonic()
        next_heartbeat = 0.0
        try:
            while not self._stopping and self.workers:
                now = time.monotonic()
                if now >= next_heartbeat:
                    if now - last_echo > self.settings.death_timeout_seconds:
                        logger.error("ClusterProcess: scheduler silent for %.0fs, stopping", now - last_echo)
                        break
                    transport.send(scheduler, protocol.Heartbeat())
                    next_heartbeat = now + self.settings.heartbeat_interval_seconds
                ended = multiprocessing.connection.wait(list(self.workers), timeout=max(0.01, next_heartbeat - now))
                while True:
                    try:
                        message, _ = transport.decode_parts(scheduler.recv_multipart(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    except protocol.ProtocolError:
                        continue
                    if type(message) is protocol.HeartbeatEcho:
                        last_echo = time.monotonic()
                for sentinel in ended:
                    self._on_worker_exit(sentinel, scheduler)
        finally:
            self._terminate_all()
            scheduler.close(linger=500)
            context.term()

    def _on_worker_exit(self, sentinel, scheduler) -> None:
        process, worker_id, writer = self.workers.pop(sentinel)
        process.join()
        writer.close()
        code = process.exitcode
        if code == EXIT_SCHEDULER_GONE:
            logger.info("ClusterProcess: worker %r stopped (scheduler gone)", worker_id)
            return
        if code != EXIT_REPLACE_ME:
            logger.warning("ClusterProcess: worker %r died (exit code %s)", worker_id, code)
            transport.send(scheduler, protocol.WorkerDied(worker_id=worker_id, exit_code=code or 0))
        if self.restart_workers and not self._stopping:
            self._start_worker()

    def _terminate_all(self) -> None:
        for process, _, _ in self.workers.values():
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + 3
        for process, _, writer in self.workers.values():
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            writer.close()
        self.workers.clear()


def run_cluster(scheduler_address: str, n_workers: int, settings: WorkerSettings, logging_level: str = "INFO",
                logging_paths=("/dev/stdout",), parent_pipe=None) -> None:
    setup_logging(logging_level, logging_paths)
    if parent_pipe is not None:
        watch_parent(parent_pipe)
    cluster = Cluster(scheduler_address, n_workers, settings, logging_level, logging_paths)
    signal.signal(signal.SIGTERM, cluster.stop)
    signal.signal(signal.SIGINT, cluster.stop)
    cluster.run()
