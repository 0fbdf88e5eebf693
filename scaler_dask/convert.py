"""Turn a Dask graph into the engine's graph form.

Dask hands a scheduler ``get`` either a Mapping or an object with
``__dask_graph__()``, whose values are the current task spec (``Task``,
``Alias``, ``DataNode``, containers nested in args) or the legacy spec (tuples,
lists, bare keys, literals). :func:`build_plan` walks from the requested keys
only, converting each reached value with Dask's own ``convert_legacy_task``, so
the unreached part of the graph is never converted (culling for free).

Each node becomes an engine task ``(fn, args, kwargs)`` in which
``KeyRef(key)`` stands for the value of another key. Simple tasks are shipped
as their own function and arguments so that the engine pickles a function
reference plus small args instead of a whole ``Task`` object; anything more
complex (inline sub-tasks, namedtuples, unusual node classes) is shipped as the
node itself plus a ``{dependency: KeyRef}`` mapping and evaluated by
:func:`run_node` on the worker.

No function here recurses per dependency: the graph walk keeps an explicit
stack, so 10,000-task chains are fine. Recursion only follows the nesting of
containers inside one task's arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dask._task_spec import (
    Alias,
    DataNode,
    Dict,
    GraphNode,
    List,
    Set,
    Task,
    TaskRef,
    Tuple,
    _identity_cast,
    convert_legacy_task,
)

from scaler_core.references import KeyRef

from scaler_core.errors import GraphCycleError as _EngineCycleError  # callers catching it catch ours too


class GraphCycleError(_EngineCycleError, RuntimeError):
    """A cycle among the keys the requested values depend on.

    Also a ``RuntimeError`` because that is what Dask's own schedulers raise
    (from ``dask.order``) for a cyclic graph.
    """


@dataclass
class GraphPlan:
    """Everything one ``get`` call needs to submit and to report progress."""

    nodes: dict = field(default_factory=dict)  # key -> GraphNode, culled
    postorder: list = field(default_factory=list)  # dependencies before dependents
    has_dependents: set = field(default_factory=set)  # keys some culled node needs


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


def build_plan(graph: Mapping, wanted: list) -> GraphPlan:
    """Cull ``graph`` to what ``wanted`` needs and convert it to GraphNodes.

    Raises KeyError for a requested key that is not in the graph,
    ``ValueError("Missing dependency ...")`` for an absent dependency and
    :class:`GraphCycleError` for a cycle, all before anything is submitted.
    """
    plan = GraphPlan()
    nodes = plan.nodes
    postorder = plan.postorder
    has_dependents = plan.has_dependents
    finished: set = set()
    for root in wanted:
        if root in nodes:
            continue
        root_node = _convert_node(graph, root)
        if root_node is None:
            raise KeyError(root)
        nodes[root] = root_node
        # Explicit DFS stack of (key, iterator over its dependencies); the key
        # set of the stack doubles as the "in progress" colour for cycles.
        stack = [(root, iter(root_node.dependencies))]
        on_stack = {root}
        while stack:
            key, dependencies = stack[-1]
            for dependency in dependencies:
                has_dependents.add(dependency)
                if dependency in finished:
                    continue
                if dependency in on_stack:
                    raise _cycle_error(stack, dependency)
                node = _convert_node(graph, dependency)
                if node is None:
                    raise ValueError(f"Missing dependency {dependency!r} for dependents {{{key!r}}}")
                nodes[dependency] = node
                stack.append((dependency, iter(node.dependencies)))
                on_stack.add(dependency)
                break
            else:
                stack.pop()
                on_stack.discard(key)
                finished.add(key)
                postorder.append(key)
    return plan


def _convert_node(graph: Mapping, key: Any) -> GraphNode | None:
    """The GraphNode for ``key``, or None when the graph does not define it."""
    try:
        raw = graph[key]
    except (KeyError, TypeError):
        return None
    node = convert_legacy_task(key, raw, graph)
    if isinstance(node, Alias) and node.target == key:
        # ``{"x": "x"}``: Dask drops self-aliases, leaving the key undefined.
        return None
    if not isinstance(node, GraphNode):
        node = DataNode(key, node)
    return node


def _cycle_error(stack: list, repeated_key: Any) -> GraphCycleError:
    stack_keys = [key for key, _ in stack]
    cycle = stack_keys[stack_keys.index(repeated_key) :] + [repeated_key]
    path = "\n".join(f"  -> {key!r}" for key in cycle)
    return GraphCycleError(f"Cycle detected between the following keys:\n{path}", cycle)


# ---------------------------------------------------------------------------
# node -> engine task


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


_NATIVE_CONTAINERS = {List: list, Tuple: tuple, Set: set}


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


def _identity(value: Any) -> Any:
    return value
