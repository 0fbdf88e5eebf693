"""A recording stand-in for the engine client, to test graph conversion alone.

``RecordingClient.submit_graph`` keeps what scaler_dask submitted and
evaluates it in the calling thread, in topological order, with a cloudpickle
round trip per task to mimic the process boundary.
"""

from __future__ import annotations

from concurrent.futures import Future

import cloudpickle

from scaler_core.references import KeyRef


def _substitute(value, results):
    if type(value) is KeyRef:
        return results[value.key]
    if type(value) in (list, tuple, set):
        return type(value)(_substitute(item, results) for item in value)
    if type(value) is dict:
        return {name: _substitute(item, results) for name, item in value.items()}
    return value


def _references(value, found):
    if type(value) is KeyRef:
        found.add(value.key)
    elif type(value) in (list, tuple, set):
        for item in value:
            _references(item, found)
    elif type(value) is dict:
        for item in value.values():
            _references(item, found)
    return found


class RecordingClient:
    def __init__(self):
        self.graph_calls = []

    def submit_graph(self, tasks, keys, priorities=None):
        self.graph_calls.append((tasks, list(keys), priorities))
        dependencies = {key: _references((spec[1], spec[2]), set()) for key, spec in tasks.items()}
        results, failures = {}, {}
        for key in self._topological_order(dependencies):
            failed = [dep for dep in dependencies[key] if dep in failures]
            if failed:
                failures[key] = failures[failed[0]]
                continue
            fn, args, kwargs = cloudpickle.loads(cloudpickle.dumps(tasks[key]))
            try:
                results[key] = fn(*_substitute(args, results), **_substitute(kwargs, results))
            except Exception as error:
                failures[key] = error
        futures = {}
        for key in keys:
            futures[key] = Future()
            if key in failures:
                futures[key].set_exception(failures[key])
            else:
                futures[key].set_result(results[key])
        return futures

    @staticmethod
    def _topological_order(dependencies):
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
        return ordered

    def cancel(self, futures):
        for future in futures:
            future.cancel()
