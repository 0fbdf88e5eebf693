"""The submit-time argument check: counting positional arguments must agree with Signature.bind."""

import inspect

import pytest

from scaler_core.client.client import _signature_of


def plain(a, b): ...
def with_default(a, b=1): ...
def star_args(a, *rest): ...
def keyword_only_required(a, *, key): ...
def keyword_only_optional(a, *, key=2): ...
def positional_only(a, /, b=0): ...
def star_kwargs(a, **options): ...
def nothing(): ...


CASES = [plain, with_default, star_args, keyword_only_required, keyword_only_optional, positional_only,
         star_kwargs, nothing]
CALLS = [((), {}), ((1,), {}), ((1, 2), {}), ((1, 2, 3), {}), ((1,), {"b": 2}), ((1,), {"key": 3}),
         ((), {"a": 1}), ((1, 2), {"b": 3}), ((1,), {"other": 4})]


def _binds(fn, args, kwargs) -> bool:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("fn", CASES, ids=lambda fn: fn.__name__)
@pytest.mark.parametrize("call", CALLS, ids=repr)
def test_the_check_accepts_exactly_what_bind_accepts(fn, call):
    args, kwargs = call
    shape = _signature_of(fn)
    if _binds(fn, args, kwargs):
        shape.check(args, kwargs)
    else:
        with pytest.raises(TypeError):
            shape.check(args, kwargs)

