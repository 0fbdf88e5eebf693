"""The one module that knows Cap'n Proto.

Every struct of ``protocol/scaler.capnp`` becomes a plain Python class here (snake_case attributes,
defaults for everything), generated from the schema so the two cannot drift apart. ``encode`` turns
one of the union members of ``Message`` into bytes, ``decode`` does the reverse. Nothing else in the
code base imports ``capnp``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Tuple

import capnp

_SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas", "scaler.capnp")
_schema = capnp.load(_SCHEMA_PATH)

PROTOCOL_VERSION = 1

# A decoded message may not make the decoder walk more than this many 8-byte words: bounds the work
# a hostile or corrupt frame can cause (the frame size itself is bounded by the transport).
TRAVERSAL_LIMIT_WORDS = 1 << 28
NESTING_LIMIT = 16


class ProtocolError(ValueError):
    """A frame that is not a valid message of this protocol."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Field:
    __slots__ = ("capnp_name", "py_name", "kind", "struct_class", "default")

    def __init__(self, capnp_name, py_name, kind, struct_class, default):
        self.capnp_name = capnp_name
        self.py_name = py_name
        self.kind = kind  # "scalar" | "struct" | "list_scalar" | "list_struct"
        self.struct_class = struct_class
        self.default = default


class ProtocolStruct:
    """Base of the generated message classes."""

    __slots__ = ()
    _fields: Tuple[_Field, ...] = ()
    _capnp_name = ""

    def __init__(self, **kwargs):
        for field in self._fields:
            value = kwargs.pop(field.py_name, _MISSING)
            if value is _MISSING:
                value = list() if field.kind.startswith("list") else field.default
                if field.kind == "struct":
                    value = field.struct_class()
            object.__setattr__(self, field.py_name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(kwargs)}")

    def __repr__(self):
        parts = ", ".join(f"{f.py_name}={getattr(self, f.py_name)!r}" for f in self._fields)
        return f"{type(self).__name__}({parts})"

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, f.py_name) == getattr(other, f.py_name) for f in self._fields
        )


_MISSING = object()
_SCALAR_DEFAULTS = {
    "data": b"",
    "text": "",
    "bool": False,
    "float32": 0.0,
    "float64": 0.0,
    "enum": None,
}

_classes: Dict[str, type] = {}
_capnp_structs: Dict[str, Any] = {}


def _struct_class(name: str):
    if name in _classes:
        return _classes[name]
    capnp_struct = getattr(_schema, name)
    _capnp_structs[name] = capnp_struct
    slots = tuple(_snake(field_name) for field_name in capnp_struct.schema.fieldnames)
    cls = type(name, (ProtocolStruct,), {"__slots__": slots, "_capnp_name": name})
    _classes[name] = cls
    fields = []
    for field_name in capnp_struct.schema.fieldnames:
        field_schema = capnp_struct.schema.fields[field_name]
        type_kind = field_schema.proto.slot.type.which()
        struct_class = None
        if type_kind == "struct":
            kind = "struct"
            struct_class = _struct_class(_type_name(capnp_struct, field_name))
            default = None
        elif type_kind == "list":
            element = field_schema.proto.slot.type.list.elementType.which()
            if element == "struct":
                kind = "list_struct"
                struct_class = _struct_class(_type_name(capnp_struct, field_name, list_element=True))
            else:
                kind = "list_scalar"
            default = None
        else:
            kind = "scalar"
            if type_kind == "enum":
                default = _first_enumerant(capnp_struct, field_name)
            else:
                default = _SCALAR_DEFAULTS.get(type_kind, 0)
        fields.append(_Field(field_name, _snake(field_name), kind, struct_class, default))
    cls._fields = tuple(fields)
    return cls


def _type_name(capnp_struct, field_name: str, list_element: bool = False) -> str:
    field_type = capnp_struct.schema.fields[field_name].proto.slot.type
    type_id = field_type.list.elementType.struct.typeId if list_element else field_type.struct.typeId
    return _struct_names_by_id[type_id]


def _first_enumerant(capnp_struct, field_name: str) -> str:
    reader = capnp_struct.new_message()
    return str(getattr(reader, field_name))


_struct_names_by_id: Dict[int, str] = {}
for _name in dir(_schema):
    _obj = getattr(_schema, _name)
    if _name[:1].isupper() and hasattr(_obj, "schema") and hasattr(_obj.schema, "node"):
        node = _obj.schema.node
        if node.which() == "struct":
            _struct_names_by_id[node.id] = _name

_MESSAGE_UNION: List[str] = list(_schema.Message.schema.union_fields)
_UNION_BY_CLASS: Dict[type, str] = {}
for _member in _MESSAGE_UNION:
    _member_class = _struct_class(_type_name(_schema.Message, _member))
    _UNION_BY_CLASS[_member_class] = _member
_CLASS_BY_UNION: Dict[str, type] = {v: k for k, v in _UNION_BY_CLASS.items()}

# Export every struct as a module attribute: protocol.Task, protocol.TaskBatch, ...
for _name in _struct_names_by_id.values():
    globals()[_name] = _struct_class(_name)

Task = _classes["Task"]
TaskBatch = _classes["TaskBatch"]
TaskResult = _classes["TaskResult"]
ResultBatch = _classes["ResultBatch"]
TaskCancel = _classes["TaskCancel"]
TaskLog = _classes["TaskLog"]
ClientHello = _classes["ClientHello"]
Welcome = _classes["Welcome"]
WorkerHello = _classes["WorkerHello"]
Heartbeat = _classes["Heartbeat"]
HeartbeatEcho = _classes["HeartbeatEcho"]
WorkerBlocked = _classes["WorkerBlocked"]
ClientDisconnect = _classes["ClientDisconnect"]
ShutdownResponse = _classes["ShutdownResponse"]
WorkerDisconnect = _classes["WorkerDisconnect"]
WorkerDied = _classes["WorkerDied"]
SchedulerShutdown = _classes["SchedulerShutdown"]
ObjectPut = _classes["ObjectPut"]
ObjectGet = _classes["ObjectGet"]
ObjectData = _classes["ObjectData"]
ObjectDelete = _classes["ObjectDelete"]
ObjectDeleteOwner = _classes["ObjectDeleteOwner"]
MonitorStatus = _classes["MonitorStatus"]
BalanceRequest = _classes["BalanceRequest"]
BalanceResponse = _classes["BalanceResponse"]
WorkerStatus = _classes["WorkerStatus"]
MessageCount = _classes["MessageCount"]
Capability = _classes["Capability"]
ObjectInput = _classes["ObjectInput"]
Profiling = _classes["Profiling"]

MESSAGE_TYPES = tuple(_UNION_BY_CLASS)


def message_name(message: ProtocolStruct) -> str:
    """The name a message type has in logs and monitor counters (its struct name)."""
    return type(message).__name__


# --- encoding -----------------------------------------------------------------------------------


def _fill(builder, message: ProtocolStruct) -> None:
    for field in message._fields:
        value = getattr(message, field.py_name)
        kind = field.kind
        if kind == "scalar":
            if value != field.default and value is not None:
                setattr(builder, field.capnp_name, value)
        elif kind == "list_struct":
            if value:
                elements = builder.init(field.capnp_name, len(value))
                for index, item in enumerate(value):
                    _fill(elements[index], item)
        elif kind == "list_scalar":
            if value:
                elements = builder.init(field.capnp_name, len(value))
                for index, item in enumerate(value):
                    elements[index] = item
        else:
            if value is not None:
                _fill(builder.init(field.capnp_name), value)


def encode(message: ProtocolStruct) -> bytes:
    """Serialize one message (an instance of a ``Message`` union member class) to bytes."""
    try:
        union_name = _UNION_BY_CLASS[type(message)]
    except KeyError:
        raise TypeError(f"{type(message).__name__} is not a top-level protocol message") from None
    builder = _schema.Message.new_message()
    _fill(builder.init(union_name), message)
    return builder.to_bytes()


# --- decoding -----------------------------------------------------------------------------------


def _from_dict(cls, data: Dict[str, Any]) -> ProtocolStruct:
    instance = cls.__new__(cls)
    for field in cls._fields:
        value = data.get(field.capnp_name, _MISSING)
        kind = field.kind
        if value is _MISSING:
            if kind == "scalar":
                value = field.default
            elif kind == "struct":
                value = field.struct_class()
            else:
                value = []
        elif kind == "list_struct":
            value = [_from_dict(field.struct_class, item) for item in value]
        elif kind == "struct":
            value = _from_dict(field.struct_class, value)
        object.__setattr__(instance, field.py_name, value)
    return instance


def decode(frame) -> ProtocolStruct:
    """Parse one message frame; raises ProtocolError for anything that is not a valid message."""
    try:
        with _schema.Message.from_bytes(
            bytes(frame) if not isinstance(frame, bytes) else frame,
            traversal_limit_in_words=TRAVERSAL_LIMIT_WORDS,
            nesting_limit=NESTING_LIMIT,
        ) as reader:
            union_name = reader.which()
            data = getattr(reader, union_name).to_dict()
    except Exception as error:  # capnp raises KjException and friends for malformed input
        raise ProtocolError(f"malformed message frame ({len(frame)} bytes): {error}") from None
    return _from_dict(_CLASS_BY_UNION[union_name], data)
