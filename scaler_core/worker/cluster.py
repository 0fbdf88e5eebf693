"""A cluster: a supervisor process that keeps N worker processes alive on one machine.

The supervisor notices a worker's death the moment its process ends (a pidfd per worker, no
polling), tells the scheduler at once (so the dead worker's tasks are re-run without waiting
for a heartbeat timeout) and starts a replacement. It exits when the scheduler is gone.

It also owns the cluster's host store (host_store/store.py), where its workers keep their large
results: it creates the directories before the first worker starts and removes them when it ends,
so the objects outlive any one worker but not the cluster.
"""

from __future__ import annotations

import logging
import dataclasses
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Dict, Optional

import zmq

from scaler_core import protocol, transport
from scaler_core.child import spawn
from scaler_core.host_store import HostStore, ObjectServer, close_process_store, open_process_store
from scaler_core.security import secure_client
from scaler_core.logging_setup import setup_logging
from scaler_core.settings import LoggingSettings, WorkerSettings
from scaler_core.worker.process import EXIT_PRELOAD_FAILED, EXIT_REPLACE_ME, EXIT_SCHEDULER_GONE, Worker

logger = logging.getLogger(__name__)


def worker_main(scheduler_address: str, worker_id: bytes, settings: WorkerSettings, cluster_id: bytes,
                logging_level: str, logging_paths) -> None:
    setup_logging(logging_level, logging_paths)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    worker = Worker(scheduler_address, worker_id, settings, cluster_id)
    # SIGTERM comes from our supervisor, or straight from a resource manager ending the job (Slurm
    # signals the whole process group, then SIGKILLs after KillWait): hand the tasks back first. A
    # thread, because the handler runs on the I/O loop's thread, which must stay free to send.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(
        target=worker.terminate, args=("stopped by SIGTERM",), daemon=True).start())
    try:
        worker.run()
    except Exception:
        logger.exception("worker %r crashed", worker_id)
        os._exit(1)
    os._exit(EXIT_SCHEDULER_GONE)


class Cluster:
    def __init__(self, scheduler_address: str, n_workers: int, settings: WorkerSettings,
                 logging_level: str = LoggingSettings.logging_level, logging_paths=LoggingSettings.logging_paths,
                 restart_workers: bool = True,
                 cluster_id: bytes = b""):
        if n_workers < 1:
            raise ValueError(f"a cluster needs at least one worker, got num_of_workers={n_workers}")
        self.scheduler_address = scheduler_address
        self.n_workers = n_workers
        self.settings = settings
        self.logging_level = logging_level
        self.logging_paths = tuple(logging_paths)
        self.restart_workers = restart_workers
        self.cluster_id = cluster_id or new_cluster_id()
        self.workers: Dict[int, tuple] = {}  # pidfd -> (process, worker id, index)
        self._stopping = False
        self._sequence = 0
        self._wakeup_reader, self._wakeup_writer = os.pipe()
        self.host_store: Optional[HostStore] = None
        self.object_server: Optional[ObjectServer] = None

    def stop(self, *_):
        self._stopping = True
        os.write(self._wakeup_writer, b"x")  # interrupt the wait at once

    def _start_worker(self) -> None:
        self._sequence += 1
        worker_id = b"W|%s|%d|%d|%s" % (socket.gethostname().encode(), os.getpid(), self._sequence,
                                         os.urandom(4).hex().encode())
        process = spawn(worker_main, (self.scheduler_address, worker_id, self.settings, self.cluster_id,
                                      self.logging_level, self.logging_paths), f"worker-{self._sequence}",
                        numerical_thread_limits(self.n_workers))
        self.workers[os.pidfd_open(process.pid)] = (process, worker_id, self._sequence)
        logger.info("Worker[%d] started (pid %d)", self._sequence, process.pid)

    def run(self) -> None:
        context = zmq.Context()
        scheduler = transport.configure(context.socket(zmq.DEALER), identity=self.cluster_id, linger_ms=1000)
        secure_client(scheduler, self.settings.keys)
        scheduler.connect(self.scheduler_address)
        self._create_host_store()
        limit = self.settings.memory_limit_bytes
        logger.info("ClusterProcess: starting %d workers, heartbeat_interval_seconds=%g, worker memory limit %s",
                    self.n_workers, self.settings.heartbeat_interval_seconds,
                    f"{limit / 2**20:.0f} MiB" if limit else "none")
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
                    transport.send(scheduler, self._heartbeat())
                    next_heartbeat = now + self.settings.heartbeat_interval_seconds
                ended = multiprocessing.connection.wait(list(self.workers) + [self._wakeup_reader],
                                                        timeout=max(0.01, next_heartbeat - now))
                for message in transport.receive_waiting(scheduler):
                    if type(message) is protocol.HeartbeatEcho:
                        last_echo = time.monotonic()
                    elif type(message) is protocol.SchedulerShutdown:
                        logger.info("ClusterProcess: scheduler shut down (%s), stopping", message.reason)
                        self._stopping = True
                for pidfd in ended:
                    if pidfd in self.workers:
                        self._on_worker_exit(pidfd, scheduler)
        finally:
            self._terminate_all()
            close_process_store(self.host_store, self.object_server)
            scheduler.close(linger=500)
            context.term()

    def _heartbeat(self):
        if self.host_store is None:
            return protocol.Heartbeat()
        self.host_store.trim_recycled()
        in_memory, on_disk = self.host_store.usage()
        return protocol.Heartbeat(object_memory_bytes=in_memory, object_disk_bytes=on_disk,
                                  object_memory_limit_bytes=self.host_store.memory_limit_bytes)

    def _create_host_store(self) -> None:
        self.host_store, self.object_server = open_process_store(
            self.scheduler_address, self.settings.keys, "ClusterProcess", self.settings.object_memory_directory,
            self.settings.spill_directory, self.settings.object_memory_limit_bytes)
        if self.host_store is not None:
            self.host_store.recycle_deleted_files()
            self.settings = dataclasses.replace(self.settings, host_store_location=self.host_store.encoded_location,
                                                object_memory_limit_bytes=self.host_store.memory_limit_bytes)
        # the workers share what the host store's objects leave of the machine
        object_limit = self.host_store.memory_limit_bytes if self.host_store is not None else 0
        self.settings = self.settings.with_memory_limit_for(self.n_workers, object_limit)
        self.settings = self.settings.with_held_budget_for(self.n_workers, object_limit)

    def _on_worker_exit(self, pidfd: int, scheduler) -> None:
        process, worker_id, _ = self.workers.pop(pidfd)
        os.close(pidfd)
        code = process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if code == EXIT_SCHEDULER_GONE:
            logger.info("ClusterProcess: worker %r stopped (scheduler gone)", worker_id)
            return
        if code == EXIT_PRELOAD_FAILED:
            logger.error("ClusterProcess: worker %r did not start: its preload failed (see its log)", worker_id)
            return
        if code != EXIT_REPLACE_ME:
            logger.warning("ClusterProcess: worker %r died (exit code %s)", worker_id, code)
        # also after a planned exit: if its goodbye got lost, the scheduler still learns at once
        transport.send(scheduler, protocol.WorkerDied(worker_id=worker_id, exit_code=code or 0))
        if self.restart_workers and not self._stopping:
            try:
                self._start_worker()
            except OSError as error:  # e.g. out of processes: keep supervising the others
                logger.error("ClusterProcess: could not start a replacement worker: %s", error)

    def _terminate_all(self) -> None:
        for process, _, _ in self.workers.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 3
        for pidfd, (process, _, _) in self.workers.items():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdin is not None:
                process.stdin.close()
            os.close(pidfd)
        self.workers.clear()


# Numerical libraries (OpenBLAS, MKL, OpenMP, numexpr) start a thread per core in every process; with a
# worker per core, each running one task at a time, that oversubscribes the machine several times over
# (a matrix product ran 1.3x slower than under distributed, whose nanny limits these too). Each worker
# gets its share of the cores instead; a value the user exported wins.
NUMERICAL_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                              "NUMEXPR_NUM_THREADS")


def numerical_thread_limits(n_workers: int) -> Dict[str, str]:
    share = str(max(1, (os.cpu_count() or 1) // max(1, n_workers)))
    return {name: share for name in NUMERICAL_THREAD_VARIABLES if name not in os.environ}


def new_cluster_id() -> bytes:
    return b"K|%s|%d|%s" % (socket.gethostname().encode(), os.getpid(), os.urandom(4).hex().encode())


def run_cluster(scheduler_address: str, n_workers: int, settings: WorkerSettings,
                logging_level: str = LoggingSettings.logging_level, logging_paths=LoggingSettings.logging_paths,
                cluster_id: bytes = b"") -> None:
    setup_logging(logging_level, logging_paths)
    cluster = Cluster(scheduler_address, n_workers, settings, logging_level, logging_paths, cluster_id=cluster_id)
    signal.signal(signal.SIGTERM, cluster.stop)
    signal.signal(signal.SIGINT, cluster.stop)
    cluster.run()
