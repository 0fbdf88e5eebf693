"""The reference opengris-scaler package from PyPI (import name ``scaler``), run by --upstream-python."""

from benchmarks import measure
from benchmarks.systems.base import NotSupported, SystemAdapter, SystemUnavailable


class UpstreamScalerSystem(SystemAdapter):
    name = "upstream"
    description = "opengris-scaler from PyPI: SchedulerClusterCombo + Client"
    interpreter = "upstream"

    def start(self):
        try:
            from scaler import Client, SchedulerClusterCombo
        except ImportError as error:
            raise SystemUnavailable(f"import scaler failed: {error}") from error
        self.combo = SchedulerClusterCombo(n_workers=self.n_workers, logging_level="WARNING")
        self.address = self.combo.get_address()
        self.client = Client(address=self.address)
        self.wait_for_all_workers()

    def stop(self):
        self.client.disconnect()
        self.combo.shutdown()

    def map(self, fn, items):
        return self.client.map(fn, list(items))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args)

    def get_graph(self, graph, keys):
        return self.client.get(graph, keys=list(keys))

    def dask_scheduler(self):
        raise NotSupported("the reference package has no dask scheduler get")

    def send_object(self, obj):
        return self.client.send_object(obj)

    def scheduler_pid(self):
        return measure.find_scheduler_pid(self.address)
