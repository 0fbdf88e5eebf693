"""This engine: scaler_core (Client + SchedulerClusterCombo) and scaler_dask (scaler_get, ScalerExecutor)."""

from benchmarks import measure
from benchmarks.systems.base import NotSupported, SystemAdapter, SystemUnavailable


def _import_engine():
    try:
        from scaler_core import Client, SchedulerClusterCombo
    except Exception as error:  # noqa: BLE001 - anything here means "not usable yet"
        raise SystemUnavailable(f"from scaler_core import Client, SchedulerClusterCombo: {error!r}") from error
    return Client, SchedulerClusterCombo


class OursSystem(SystemAdapter):
    name = "ours"
    description = "scaler_core SchedulerClusterCombo + Client; Dask path via scaler_dask.scaler_get"

    def start(self):
        Client, SchedulerClusterCombo = _import_engine()
        self.combo = SchedulerClusterCombo(address=None, n_workers=self.n_workers)
        self.address = self.combo.address
        self.client = Client(address=self.address)
        self.wait_for_all_workers()

    def stop(self):
        self.client.disconnect()
        self.combo.shutdown()

    def map(self, fn, items):
        return list(self.client.map(fn, list(items)))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args)

    def get_graph(self, graph, keys):
        return self.client.get(graph, keys=list(keys))

    def dask_scheduler(self):
        """The public scaler_get, pointed at this cluster through the documented `scaler.address` config."""
        try:
            import dask
            from scaler_dask import scaler_get
        except Exception as error:  # noqa: BLE001
            raise SystemUnavailable(f"from scaler_dask import scaler_get: {error!r}") from error
        dask.config.set({"scaler.address": self.address})
        return scaler_get

    def send_object(self, obj):
        return self.client.send_object(obj)

    def scheduler_pid(self):
        return measure.find_scheduler_pid(self.address)


class OursJournalSystem(OursSystem):
    name = "ours-journal"
    description = "as ours, the scheduler started with a journal (--journal: it may restart without losing work)"

    def start(self):
        import tempfile

        Client, SchedulerClusterCombo = _import_engine()
        self.journal_directory = tempfile.TemporaryDirectory(prefix="scaler-journal-")
        self.combo = SchedulerClusterCombo(address=None, n_workers=self.n_workers,
                                           journal=f"{self.journal_directory.name}/scheduler.journal")
        self.address = self.combo.address
        self.client = Client(address=self.address)
        self.wait_for_all_workers()

    def stop(self):
        super().stop()
        self.journal_directory.cleanup()


class OursHeldSystem(OursSystem):
    name = "ours-held"
    description = ("as ours, workers holding graph intermediates in memory (--held-result-bytes -1: half the "
                   "object memory limit, shared among the workers)")
    combo_options = {"held_result_bytes": -1}

    def start(self):
        Client, SchedulerClusterCombo = _import_engine()
        self.combo = SchedulerClusterCombo(address=None, n_workers=self.n_workers, **self.combo_options)
        self.address = self.combo.address
        self.client = Client(address=self.address)
        self.wait_for_all_workers()


class OursExecutorSystem(SystemAdapter):
    name = "ours-executor"
    description = "scaler_dask.ScalerExecutor(max_workers=n) (concurrent.futures API; dask via scheduler=executor)"

    def start(self):
        try:
            from scaler_dask import ScalerExecutor
        except Exception as error:  # noqa: BLE001
            raise SystemUnavailable(f"from scaler_dask import ScalerExecutor: {error!r}") from error
        self.executor = ScalerExecutor(max_workers=self.n_workers)
        self.wait_for_all_workers()

    def stop(self):
        self.executor.shutdown(wait=False)

    def map(self, fn, items):
        return list(self.executor.map(fn, items))

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    def dask_scheduler(self):
        return self.executor

    def get_graph(self, graph, keys):
        raise NotSupported("executor has no dict-graph entry point")
