"""``--preload "package.module:function(args)"``: code a worker process runs once before its first task.

The arguments are Python literals (numbers, strings, lists, dicts, ...), positional or keyword;
without parentheses the function is called with none.
"""

from __future__ import annotations

import ast
import importlib
from typing import Any, Callable, Dict, Tuple


class PreloadError(Exception):
    """The preload spec is malformed, its function cannot be found, or the call failed."""


def parse_preload(spec: str) -> Tuple[str, str, Tuple[Any, ...], Dict[str, Any]]:
    """(module, function, args, kwargs) of a spec; PreloadError names what is wrong."""
    module_name, separator, call = spec.strip().partition(":")
    if not separator or not module_name or not call:
        raise PreloadError(f"preload {spec!r}: expected 'package.module:function(args)'")
    if "(" not in call:
        call += "()"
    try:
        expression = ast.parse(call, mode="eval").body
    except SyntaxError as error:
        raise PreloadError(f"preload {spec!r}: {error.msg}") from None
    if not isinstance(expression, ast.Call) or not isinstance(expression.func, (ast.Name, ast.Attribute)):
        raise PreloadError(f"preload {spec!r}: expected a function call after ':'")
    try:
        args = tuple(ast.literal_eval(argument) for argument in expression.args)
        kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in expression.keywords}
    except ValueError:
        raise PreloadError(f"preload {spec!r}: arguments must be Python literals") from None
    if None in kwargs:
        raise PreloadError(f"preload {spec!r}: **kwargs are not supported")
    return module_name, ast.unparse(expression.func), args, kwargs


def run_preload(spec: str) -> Any:
    module_name, function_path, args, kwargs = parse_preload(spec)
    try:
        target: Any = importlib.import_module(module_name)
        for name in function_path.split("."):
            target = getattr(target, name)
    except (ImportError, AttributeError) as error:
        raise PreloadError(f"preload {spec!r}: {error}") from error
    function: Callable = target
    try:
        return function(*args, **kwargs)
    except Exception as error:
        raise PreloadError(f"preload {spec!r} raised {type(error).__name__}: {error}") from error
