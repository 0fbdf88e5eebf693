"""``persist``: compute Dask collections and leave their results on the cluster.

``dask.persist(x, scheduler=scaler_get)`` brings every value back to the caller, as any ``get``
does. ``scaler_dask.persist(x)`` instead returns collections whose chunks are the futures of
results kept where the workers made them (distributed's ``Client.persist`` is the model): a later
``dask.compute`` or ``persist`` of anything built on them runs its tasks on those copies, without
the bytes passing through the caller, and the cluster frees them once the collections are gone.
Small results (inline in the engine's messages) are simply held as values.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

import dask
from dask._task_spec import DataNode

# Futures standing for persisted results in some live collection: while there are none, a get does
# not scan its graph for them.
_live: "weakref.WeakSet" = weakref.WeakSet()


def persist(*args: Any, client: Any = None, **kwargs: Any) -> tuple:
    """Like ``dask.persist(*args)``, with the results left on the cluster (see the module's text).

    ``client``: the engine client to use (default: the one ``scaler_get`` uses). Blocks until
    every result is computed, so errors surface here."""
    from scaler_dask import cluster
    from scaler_dask.get import run_graph

    engine_client = client if client is not None else cluster.default_client()

    def scaler_get_keeping_results(dsk: Any, keys: Any, **_: Any) -> Any:
        return run_graph(lambda: engine_client, dsk, keys, forget_dead_client=client is None, keep_on_cluster=True)

    return dask.persist(*args, scheduler=scaler_get_keeping_results, **kwargs)


def persisted(future: Any) -> Any:
    """Record `future` as standing for a persisted result; returns it."""
    _live.add(future)
    return future


def with_persisted_values(graph: Mapping, requested: set) -> Mapping:
    """The graph with the caller's own requested keys that are persisted futures replaced by their
    values. Everywhere else a persisted future stays: the client passes tasks a reference to the
    object on the cluster in its place."""
    if not _live:
        return graph
    replaced = None
    for key in requested:
        value = graph.get(key)
        future = value.value if type(value) is DataNode else value
        if future is None or future not in _live:
            continue
        if replaced is None:
            replaced = dict(graph)
        replaced[key] = DataNode(key, future.result()) if type(value) is DataNode else future.result()
    return graph if replaced is None else replaced
