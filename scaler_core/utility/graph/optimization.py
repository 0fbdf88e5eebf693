"""``from scaler.utility.graph.optimization import cull_graph`` with the package name changed."""

from typing import Any, Dict, Hashable, Iterable


def _is_call(node: Any) -> bool:
    return isinstance(node, tuple) and len(node) > 0 and callable(node[0])


def cull_graph(graph: Dict[Hashable, Any], keys: Iterable[Hashable]) -> Dict[Hashable, Any]:
    """The part of ``graph`` (a ``{key: value or (function, *args)}`` graph) that ``keys`` need:
    those keys and every key their calls' arguments name, directly or not, in the graph's order."""
    needed = set()
    pending = list(keys)
    while pending:
        key = pending.pop()
        if key in needed:
            continue
        if key not in graph:
            raise KeyError(key)
        needed.add(key)
        node = graph[key]
        if _is_call(node):
            for argument in node[1:]:
                try:
                    if argument in graph and argument not in needed:
                        pending.append(argument)
                except TypeError:  # an unhashable literal argument names no key
                    pass
    return {key: value for key, value in graph.items() if key in needed}
