"""Placeholders in argument blobs: both wire forms resolve against the task's inputs."""

import pickle

import pytest

from scaler_core.references import KeyRef
from scaler_core.errors import SerializationError
from scaler_core.serialization import dumps_with_references, loads_with_references


def reference_of(obj):
    return b"id-" + str(obj.key).encode() if type(obj) is KeyRef else None


@pytest.mark.parametrize("expect_references", [False, True])
def test_plain_data_placeholders_resolve_at_any_depth(expect_references):
    args = ((KeyRef("a"), [1, {"x": KeyRef("b")}]), {"k": (KeyRef("a"),)})
    frames, references = dumps_with_references(args, reference_of, expect_references)
    assert sorted(set(references)) == [b"id-a", b"id-b"]
    assert b"resolve_placeholder" in frames[0], "the C-pickler form"
    values = {b"id-a": 10, b"id-b": 20}
    assert loads_with_references(frames, values.__getitem__) == ((10, [1, {"x": 20}]), {"k": (10,)})


def test_cloudpickle_path_uses_persistent_ids():
    scale = 3
    args = ((lambda value: value * scale, KeyRef("a")), {})  # a lambda forces cloudpickle
    frames, references = dumps_with_references(args, reference_of)
    assert references == [b"id-a"] and b"resolve_placeholder" not in frames[0]
    (function, value), _ = loads_with_references(frames, {b"id-a": 7}.__getitem__)
    assert function(value) == 21


def test_placeholder_outside_a_resolver_is_a_clear_error():
    frames, _ = dumps_with_references(((KeyRef("a"),), {}), reference_of, True)
    with pytest.raises(SerializationError, match="outside loads_with_references"):
        pickle.loads(frames[0])
