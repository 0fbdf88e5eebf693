"""Dask task spec objects (``dask._task_spec``) in the engine's normal form.

A node becomes an engine task ``(fn, args, kwargs)`` in which ``KeyRef(key)`` stands for the value
of another key. Simple tasks are shipped as their own function and arguments, so the engine pickles
a function reference plus small arguments instead of a whole ``Task`` object; anything more complex
(inline sub-tasks, namedtuples, unusual node classes) is shipped as the node itself plus a
``{dependency: KeyRef}`` mapping and evaluated by :func:`run_node` on the worker.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from dask._task_spec import (
    Alias,
    DataNode,
    Dict,
    GraphNode,
    List,
    Set,
    Task,
    TaskRef,
    Tuple as TupleNode,
    _identity_cast,
    convert_legacy_task,
)

from scaler_core.graph_plan import _identity
from scaler_core.references import KeyRef


def is_graph_node(value: Any) -> bool:
    return isinstance(value, (GraphNode, TaskRef))


def normalise_node(key: Any, value: Any, graph: Any) -> Optional[Tuple[tuple, list, bool]]:
    """(engine task, keys it needs, is a literal) of a task spec node or of a legacy value only
    Dask's converter reads (namedtuples, futures); None when ``key`` is not really defined."""
    node = convert_legacy_task(key, value, graph)
    if isinstance(node, Alias) and node.target == key:
        return None  # ``{"x": "x"}``: Dask drops self-aliases, leaving the key undefined
    if not isinstance(node, GraphNode):
        node = DataNode(key, node)
    if type(node) is DataNode:
        return (_identity, (node.value,), {}), [], True
    return to_engine_task(node), list(node.dependencies), False


def to_engine_task(node: GraphNode) -> tuple:
    """``(fn, args, kwargs)`` for the engine; KeyRefs mark dependencies."""
    if type(node) is Task:
        direct = _direct_task(node)
        if direct is not None:
            return direct
    elif type(node) is Alias:
        return (_identity, (KeyRef(node.target),), {})
    return (run_node, (node, {dependency: KeyRef(dependency) for dependency in node.dependencies}), {})


class _NotNative(Exception):
    """An argument that the engine's KeyRef substitution cannot express."""


def _direct_task(task: Task) -> tuple | None:
    # List comprehensions and the TaskRef/plain-value checks inline: this runs
    # once per task of graphs with millions of tasks.
    try:
        args = tuple([
            KeyRef(argument.key) if type(argument) is TaskRef
            else argument if not isinstance(argument, (GraphNode, TaskRef))
            else _native_argument(argument)
            for argument in task.args
        ])
        kwargs = {name: _native_argument(value) for name, value in task.kwargs.items()} if task.kwargs else {}
    except _NotNative:
        return None
    return (task.func, args, kwargs)


_NATIVE_CONTAINERS = {List: list, TupleNode: tuple, Set: set}


def _native_argument(argument: Any) -> Any:
    """One Task argument with references turned into KeyRefs.

    Mirrors ``Task.__call__``: only TaskRefs and GraphNodes are evaluated;
    plain values (even containers) are passed through untouched.
    """
    if isinstance(argument, TaskRef):
        return KeyRef(argument.key)
    if not isinstance(argument, GraphNode):
        return argument
    argument_type = type(argument)
    if argument_type is Alias:
        return KeyRef(argument.target)
    if argument_type is DataNode:
        return argument.value
    if argument_type in _NATIVE_CONTAINERS:
        return _NATIVE_CONTAINERS[argument_type](_native_argument(item) for item in argument.args)
    if argument_type is Dict:
        return _native_dict(argument)
    if argument_type is Task and argument.func is _identity_cast and _is_plain_cast(argument):
        # Legacy ``[a, b]`` arguments convert to _identity_cast(..., typ=list)
        return argument.kwargs["typ"](_native_argument(item) for item in argument.args)
    raise _NotNative


def _is_plain_cast(task: Task) -> bool:
    return len(task.kwargs) == 1 and task.kwargs.get("typ") in (list, tuple, set)


def _native_dict(container: Dict) -> dict:
    items = container.args
    result = {}
    for index in range(0, len(items), 2):
        name = items[index]
        if isinstance(name, (GraphNode, TaskRef)):
            raise _NotNative
        result[name] = _native_argument(items[index + 1])
    return result


def run_node(node: GraphNode, values: dict) -> Any:
    """Evaluate a Dask node on a worker, given its dependencies' values."""
    return node(values)

