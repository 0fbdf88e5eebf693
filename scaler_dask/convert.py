"""Dask's side of the graph pipeline: the graph and key shapes a Dask ``get`` receives.

Dask hands a scheduler ``get`` either a Mapping or an object with ``__dask_graph__()``, whose
values are the current task spec (``Task``, ``Alias``, ``DataNode``, containers nested in args) or
the legacy spec (tuples, lists, bare keys, literals). Both are normalised, culled, ordered and
cycle-checked by :func:`scaler_core.graph_plan.build_plan`, the same path ``Client.get`` takes;
task spec objects become engine tasks in :mod:`scaler_core.dask_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scaler_core.dask_spec import run_node, to_engine_task  # noqa: F401  (the conversion's public names)
from scaler_core.errors import GraphCycleError as _EngineCycleError  # callers catching it catch ours too


class GraphCycleError(_EngineCycleError, RuntimeError):
    """A cycle among the keys the requested values depend on.

    Also a ``RuntimeError`` because that is what Dask's own schedulers raise
    (from ``dask.order``) for a cyclic graph.
    """

    @classmethod
    def from_engine(cls, error: _EngineCycleError) -> "GraphCycleError":
        path = "\n".join(f"  -> {key!r}" for key in error.cycle + error.cycle[:1])
        return cls(f"Cycle detected between the following keys:\n{path}", error.cycle)


def normalize_graph(dsk: Any) -> Mapping:
    """Return a Mapping view of a dict, HighLevelGraph or Dask expression."""
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    if not isinstance(dsk, dict):
        # A HighLevelGraph looks keys up layer by layer; one flat dict is
        # much cheaper for the per-key lookups of the walk.
        dsk = dict(dsk)
    return dsk


def flatten_keys(keys: Any) -> list:
    """Requested keys in first-seen order, without duplicates.

    Lists nest (they are levels of the result structure); tuples are keys.
    """
    flat: list = []
    seen: set = set()
    pending = [keys]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif item not in seen:
            seen.add(item)
            flat.append(item)
    return flat
