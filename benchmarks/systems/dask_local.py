"""Dask's single-machine schedulers, for graph workloads (W3, W4)."""

from benchmarks.systems.base import SystemAdapter


class DaskThreadedSystem(SystemAdapter):
    name = "dask-threaded"
    description = "dask.threaded.get, n threads, no serialization"
    scheduler_location = "client-process"

    def start(self):
        import dask.threaded
        self._get = dask.threaded.get

    def _scheduler(self):
        import functools
        return functools.partial(self._get, num_workers=self.n_workers)

    def get_graph(self, graph, keys):
        return self._scheduler()(graph, keys)

    def dask_scheduler(self):
        return self._scheduler()


class DaskMultiprocessingSystem(SystemAdapter):
    name = "dask-processes"
    description = "dask.multiprocessing.get, n spawned processes"
    scheduler_location = "client-process"

    def start(self):
        import concurrent.futures
        import multiprocessing
        # A persistent pool so process start-up is outside the timed region, like the clusters.
        self.pool = concurrent.futures.ProcessPoolExecutor(
            self.n_workers, mp_context=multiprocessing.get_context("spawn"))
        self.wait_for_all_workers(lambda fn, items: list(self.pool.map(fn, items)))

    def stop(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _scheduler(self):
        import functools
        import dask.multiprocessing
        return functools.partial(dask.multiprocessing.get, pool=self.pool, num_workers=self.n_workers)

    def get_graph(self, graph, keys):
        # No linear fusion for plain dict graphs: a fused 1M-node chain is one nested task that
        # overflows the pickler's recursion limit, and dask.threaded does not fuse either.
        return self._scheduler()(graph, keys, optimize_graph=False)

    def dask_scheduler(self):
        return self._scheduler()
