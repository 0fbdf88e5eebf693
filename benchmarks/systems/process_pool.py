"""concurrent.futures.ProcessPoolExecutor: the floor for per-task overhead without a scheduler."""

import concurrent.futures
import multiprocessing

from benchmarks.systems.base import SystemAdapter


class ProcessPoolSystem(SystemAdapter):
    name = "ppe"
    description = "concurrent.futures.ProcessPoolExecutor(n), map chunksize=1"
    scheduler_location = "none"

    def start(self):
        self.executor = concurrent.futures.ProcessPoolExecutor(
            self.n_workers, mp_context=multiprocessing.get_context("spawn"))
        self.wait_for_all_workers()  # spawn the workers before timing

    def stop(self):
        self.executor.shutdown(wait=False, cancel_futures=True)

    def map(self, fn, items):
        return list(self.executor.map(fn, items, chunksize=1))

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    def dask_scheduler(self):
        return self.executor
