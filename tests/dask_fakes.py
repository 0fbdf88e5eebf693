"""A local stand-in for the engine's client, for testing graph conversion
while ``scaler_core`` is incomplete.

``install_fake_engine_modules()`` registers stub modules for the parts of
``scaler_core`` that scaler_dask imports, only when the real ones are missing.
``FakeClient.submit_graph`` evaluates a graph in topological order in the
calling thread, with a cloudpickle round trip per task to mimic the process
boundary.
"""

from __future__ import annotations

import sys
import types
from concurrent.futures import Future, ThreadPoolExecutor

import cloudpickle


class FakeKeyRef:
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __eq__(self, other):
        return isinstance(other, FakeKeyRef) and other.key == self.key

    def __hash__(self):
        return hash(("KeyRef", self.key))

    def __repr__(self):
        return f"KeyRef({self.key!r})"


class FakeGraphCycleError(ValueError):
    pass


class FakeSchedulerDiedError(ConnectionError):
    pass


def install_fake_engine_modules() -> bool:
    """Register stubs where scaler_core lacks them; True if any was needed."""
    import scaler_core

    installed = False
    try:
        import scaler_core.client.graph_refs  # noqa: F401
    except ImportError:
        client_package = sys.modules.get("scaler_core.client") or types.ModuleType("scaler_core.client")
        client_package.__path__ = getattr(client_package, "__path__", [])
        graph_refs = types.ModuleType("scaler_core.client.graph_refs")
        graph_refs.KeyRef = FakeKeyRef
        sys.modules["scaler_core.client"] = client_package
        sys.modules["scaler_core.client.graph_refs"] = graph_refs
        client_package.graph_refs = graph_refs
        installed = True
    try:
        import scaler_core.errors  # noqa: F401
    except ImportError:
        errors = types.ModuleType("scaler_core.errors")
        errors.GraphCycleError = FakeGraphCycleError
        errors.SchedulerDiedError = FakeSchedulerDiedError
        sys.modules["scaler_core.errors"] = errors
        installed = True
    if not hasattr(scaler_core, "Client"):
        scaler_core.Client = FakeClient
        scaler_core.SchedulerClusterCombo = FakeCluster
        installed = True
    return installed


def _substitute(value, results, key_ref_type):
    if isinstance(value, key_ref_type):
        return results[value.key]
    if type(value) in (list, tuple, set):
        return type(value)(_substitute(item, results, key_ref_type) for item in value)
    if type(value) is dict:
        return {name: _substitute(item, results, key_ref_type) for name, item in value.items()}
    return value


def _references(value, key_ref_type, found):
    if isinstance(value, key_ref_type):
        found.add(value.key)
    elif type(value) in (list, tuple, set):
        for item in value:
            _references(item, key_ref_type, found)
    elif type(value) is dict:
        for item in value.values():
            _references(item, key_ref_type, found)
    return found


class FakeCluster:
    def __init__(self, address=None, n_workers=1):
        self.address = "fake://local"

    def shutdown(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.shutdown()


class FakeClient:
    def __init__(self, address=None, timeout_seconds=30):
        self.pool = ThreadPoolExecutor(4)
        self.graph_calls = []

    def submit(self, fn, *args, **kwargs):
        return self.pool.submit(fn, *args, **kwargs)

    def submit_graph(self, tasks, keys, priorities=None):
        from scaler_core.client.graph_refs import KeyRef

        self.graph_calls.append((tasks, list(keys), priorities))
        dependencies = {key: _references((spec[1], spec[2]), KeyRef, set()) for key, spec in tasks.items()}
        for key, deps in dependencies.items():
            for dep in deps:
                if dep not in tasks:
                    raise ValueError(f"Missing dependency {dep!r} of {key!r}")
        results, failures = {}, {}
        for key in self._topological_order(dependencies):
            failed = [dep for dep in dependencies[key] if dep in failures]
            if failed:
                failures[key] = failures[failed[0]]
                continue
            fn, args, kwargs = cloudpickle.loads(cloudpickle.dumps(tasks[key]))
            try:
                value = fn(*_substitute(args, results, KeyRef), **_substitute(kwargs, results, KeyRef))
                results[key] = cloudpickle.loads(cloudpickle.dumps(value))
            except Exception as error:
                failures[key] = error
        futures = {}
        for key in keys:
            future = Future()
            if key in failures:
                future.set_exception(failures[key])
            else:
                future.set_result(results[key])
            futures[key] = future
        return futures

    @staticmethod
    def _topological_order(dependencies):
        from scaler_core.errors import GraphCycleError

        remaining = {key: len(deps) for key, deps in dependencies.items()}
        dependents = {key: [] for key in dependencies}
        for key, deps in dependencies.items():
            for dep in deps:
                dependents[dep].append(key)
        ready = [key for key, count in remaining.items() if count == 0]
        ordered = []
        while ready:
            key = ready.pop()
            ordered.append(key)
            for dependent in dependents[key]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    ready.append(dependent)
        if len(ordered) != len(dependencies):
            raise GraphCycleError(f"cycle among {sorted(map(repr, set(dependencies) - set(ordered)))}")
        return ordered

    def cancel(self, futures):
        for future in futures:
            future.cancel()

    def disconnect(self):
        self.pool.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.disconnect()
