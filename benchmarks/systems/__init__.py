"""Registry of benchmarked systems. Modules are imported lazily so that an interpreter which lacks a
system's dependencies (e.g. the upstream venv without dask) can still run the others."""

import importlib

SYSTEM_CLASSES = {
    "ours": "benchmarks.systems.ours:OursSystem",
    "ours-journal": "benchmarks.systems.ours:OursJournalSystem",
    "ours-held": "benchmarks.systems.ours:OursHeldSystem",
    "ours-executor": "benchmarks.systems.ours:OursExecutorSystem",
    "upstream": "benchmarks.systems.upstream_scaler:UpstreamScalerSystem",
    "distributed": "benchmarks.systems.dask_distributed:DaskDistributedSystem",
    "ppe": "benchmarks.systems.process_pool:ProcessPoolSystem",
    "dask-threaded": "benchmarks.systems.dask_local:DaskThreadedSystem",
    "dask-processes": "benchmarks.systems.dask_local:DaskMultiprocessingSystem",
    "pyzmq-floor": "benchmarks.systems.pyzmq_floor:PyzmqFloorSystem",
}

# Which interpreter runs each system ("upstream" = --upstream-python); kept here to avoid imports.
SYSTEM_INTERPRETERS = {name: "main" for name in SYSTEM_CLASSES}
SYSTEM_INTERPRETERS["upstream"] = "upstream"


def load_system_class(name):
    module_name, class_name = SYSTEM_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
