"""Dask distributed: LocalCluster(processes=True, threads_per_worker=1)."""

import logging
import os

from benchmarks.systems.base import SystemAdapter


class DaskDistributedSystem(SystemAdapter):
    name = "distributed"
    description = "dask.distributed LocalCluster(n_workers=n, processes=True, threads_per_worker=1)"
    # LocalCluster keeps its scheduler inside the client process; memory figures include the client.
    scheduler_location = "client-process"

    def start(self):
        from distributed import Client, LocalCluster
        for logger_name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
            logging.getLogger(logger_name).setLevel(logging.ERROR)
        self.cluster = LocalCluster(n_workers=self.n_workers, processes=True, threads_per_worker=1,
                                    dashboard_address=None, silence_logs=logging.ERROR)
        self.client = Client(self.cluster)
        self.client.wait_for_workers(self.n_workers)
        self.wait_for_all_workers()

    def stop(self):
        self.client.close(timeout=10)
        self.cluster.close(timeout=10)

    def map(self, fn, items):
        return self.client.gather(self.client.map(fn, list(items), pure=False))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def get_graph(self, graph, keys):
        return self.client.get(graph, keys)

    def dask_scheduler(self):
        return self.client

    def send_object(self, obj):
        return self.client.scatter(obj)

    def scheduler_pid(self):
        return os.getpid()

    def worker_pids(self):
        return sorted(self.client.run(os.getpid).values())
