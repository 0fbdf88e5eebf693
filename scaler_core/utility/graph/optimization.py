"""``from scaler.utility.graph.optimization import cull_graph`` with the package name changed."""

from typing import Any, Dict, Hashable, Iterable

from scaler_core.graph_plan import build_plan


def cull_graph(graph: Dict[Hashable, Any], keys: Iterable[Hashable]) -> Dict[Hashable, Any]:
    """The part of ``graph`` (a ``{key: value or (function, *args)}`` graph) that ``keys`` need:
    those keys and every key they name, directly or not (aliases and keys inside lists and dicts
    too: the engine's own graph plan decides), with their values as given, in the graph's order.
    KeyError for a key missing from the graph, GraphCycleError for a cycle."""
    needed = set(build_plan(graph, list(keys)).keys_by_id)
    return {key: value for key, value in graph.items() if key in needed}
