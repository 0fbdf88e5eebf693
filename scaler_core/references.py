"""Placeholders that stand for values living on the cluster."""

from __future__ import annotations

from concurrent.futures import CancelledError

from scaler_core.errors import GraphError


class KeyRef:
    """Inside the arguments of a graph task: "the value of graph key `key`"."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __repr__(self):
        return f"KeyRef({self.key!r})"

    def __eq__(self, other):
        return type(other) is KeyRef and other.key == self.key

    def __hash__(self):
        return hash(("KeyRef", self.key))

    def __reduce__(self):
        return KeyRef, (self.key,)


class ObjectReference:
    """An object sent with Client.send_object; pass it as a task argument (top level or nested).

    Workers receive the object itself in its place. Objects are freed when their client disconnects
    or when `Client.clear_object` is called."""

    __slots__ = ("object_id", "name", "size")

    def __init__(self, object_id: bytes, name: str = "", size: int = 0):
        self.object_id = object_id
        self.name = name
        self.size = size

    def __repr__(self):
        label = f" {self.name!r}" if self.name else ""
        return f"<ObjectReference{label} {self.object_id.hex()[:12]} {self.size} bytes>"

    def __eq__(self, other):
        return type(other) is ObjectReference and other.object_id == self.object_id

    def __hash__(self):
        return hash(self.object_id)

    def __reduce__(self):
        return ObjectReference, (self.object_id, self.name, self.size)


class MissingInputError(GraphError):
    """The scheduler does not know a task named as an input: never submitted, or already finished
    and forgotten. A client that passed a future can recover: by the time this error reaches it, the
    input's own result has reached it too (the scheduler sent that first), so it sends the value."""


class InputCancelledError(CancelledError):
    """A task's input (a future passed as an argument) was cancelled, so the task could not run.

    A concurrent.futures.CancelledError, raised by the dependent's result(); the dependent itself
    was not cancelled (its cancelled() is False)."""
