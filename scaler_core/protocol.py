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
        for name, default, factory in self._initializers:
            if name in kwargs:
                value = kwargs.pop(name)
            elif factory is None:
                value = default
            else:
                value = factory()
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(kwargs)}")

    def __repr__(self):
        parts = ", ".join(f"{f.py_name}={getattr(self, f.py_name)!r}" for f in self._fields)
        return f"{type(self).__name__}({parts})"

    def __eq__(self, other):
        return type(self) is type(other) and all(
            _as_list(getattr(self, f.py_name)) == _as_list(getattr(other, f.py_name)) for f in self._fields
        )


def _as_list(value):
    # a list field may hold a shared empty tuple after decoding (see _decode_task_batch)
    return list(value) if type(value) is tuple else value


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
    cls._initializers = tuple(
        (field.py_name, field.default,
         list if field.kind.startswith("list") else field.struct_class if field.kind == "struct" else None)
        for field in fields)
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
TaskResult = _classes["TaskResult"]
TaskCancel = _classes["TaskCancel"]
TaskLog = _classes["TaskLog"]
TaskWarnings = _classes["TaskWarnings"]
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
Reintroduce = _classes["Reintroduce"]
ObjectPut = _classes["ObjectPut"]
ObjectGet = _classes["ObjectGet"]
ObjectData = _classes["ObjectData"]
ObjectDelete = _classes["ObjectDelete"]
ObjectDeleteOwner = _classes["ObjectDeleteOwner"]
MonitorStatus = _classes["MonitorStatus"]
BalanceRequest = _classes["BalanceRequest"]
BalanceResponse = _classes["BalanceResponse"]
TaskStarted = _classes["TaskStarted"]
WorkerStatus = _classes["WorkerStatus"]
MessageCount = _classes["MessageCount"]
Capability = _classes["Capability"]
ObjectInput = _classes["ObjectInput"]
Profiling = _classes["Profiling"]
WorkerManagerHello = _classes["WorkerManagerHello"]
StartWorkerGroup = _classes["StartWorkerGroup"]
StopWorkerGroup = _classes["StopWorkerGroup"]
WorkerGroupEvent = _classes["WorkerGroupEvent"]



# --- columnar batches -------------------------------------------------------------------------
# TaskBatch and ResultBatch travel by column (one list per field) because decoding thousands of
# small structs one field at a time dominated the cost of a task. In Python they stay lists of
# Task / TaskResult rows.


class TaskBatch(ProtocolStruct):
    __slots__ = ("tasks",)
    _fields = ()
    _initializers = ()

    def __init__(self, tasks=None):
        self.tasks = [] if tasks is None else tasks

    def __repr__(self):
        return f"TaskBatch({len(self.tasks)} tasks)"

    def __eq__(self, other):
        return type(other) is TaskBatch and self.tasks == other.tasks


class ResultBatch(ProtocolStruct):
    __slots__ = ("results",)
    _fields = ()
    _initializers = ()

    def __init__(self, results=None):
        self.results = [] if results is None else results

    def __repr__(self):
        return f"ResultBatch({len(self.results)} results)"

    def __eq__(self, other):
        return type(other) is ResultBatch and self.results == other.results


_TASK_STATUSES = [name for name, _ in sorted(_schema.TaskStatus.schema.enumerants.items(), key=lambda kv: kv[1])]
REQUESTED, STREAM_OUTPUT, NOTIFY_START, HOLD_RESULT = 1, 2, 4, 8


def _offsets(rows, attribute):
    offsets = [0]
    total = 0
    any_items = False
    for row in rows:
        total += len(getattr(row, attribute))
        offsets.append(total)
        any_items = any_items or total > 0
    return offsets if any_items else None


def _encode_task_batch(builder, batch: TaskBatch) -> None:
    tasks = batch.tasks
    builder.taskIds = [task.task_id for task in tasks]
    builder.clientIds = [task.client_id for task in tasks]
    builder.functionIds = [task.function_id for task in tasks]
    builder.args = [task.args for task in tasks]
    builder.priorities = [task.priority for task in tasks]
    builder.flags = [(REQUESTED if task.requested else 0) | (STREAM_OUTPUT if task.stream_output else 0)
                     | (NOTIFY_START if task.notify_start else 0) | (HOLD_RESULT if task.hold_result else 0)
                     for task in tasks]
    if any(task.args_stored for task in tasks):
        builder.argsObjectIds = [task.args_object_id if task.args_stored else b"" for task in tasks]
    if any(task.retries for task in tasks):
        builder.retries = [task.retries for task in tasks]
    if any(task.dependent_count for task in tasks):
        builder.dependentCounts = [task.dependent_count for task in tasks]
    if any(task.graph_id for task in tasks):
        builder.graphIds = [task.graph_id for task in tasks]
    offsets = _offsets(tasks, "inputs")
    if offsets is not None:
        inputs = [item for task in tasks for item in task.inputs]
        builder.inputOffsets = offsets
        builder.inputObjectIds = [item.object_id for item in inputs]
        builder.inputInline = [item.inline for item in inputs]
        builder.inputStored = [item.stored for item in inputs]
    offsets = _offsets(tasks, "dependencies")
    if offsets is not None:
        builder.dependencyOffsets = offsets
        builder.dependencyIds = [dependency for task in tasks for dependency in task.dependencies]
    offsets = _offsets(tasks, "capabilities")
    if offsets is not None:
        capabilities = [item for task in tasks for item in task.capabilities]
        builder.capabilityOffsets = offsets
        builder.capabilityNames = [item.name for item in capabilities]
        builder.capabilityQuantities = [item.quantity for item in capabilities]


# pycapnp finds a field by name on every attribute read (~0.7 us); a field object resolved once here
# is read in ~0.2 us. On a lone task's round trip four batches are decoded, so this is on the W2 path.
_TASK_BATCH_FIELDS = _schema.TaskBatch.schema.fields
_RESULT_BATCH_FIELDS = _schema.ResultBatch.schema.fields
_MESSAGE_FIELDS = _schema.Message.schema.fields


def _column(reader, fields, name, count, default):
    field = fields[name]
    if not reader._has_by_field(field):  # an optional column left out: no list reader to build
        return [default] * count
    values = list(reader._get_by_field(field))
    if not values:
        return [default] * count
    if len(values) != count:
        raise ProtocolError(f"column {name} has {len(values)} entries for {count} rows")
    return values


def _ragged(reader, fields, offsets_name, count, *columns):
    """Per-row slices of flattened columns, or None when no row has any entry."""
    field = fields[offsets_name]
    if not reader._has_by_field(field):
        return None
    offsets = list(reader._get_by_field(field))
    if not offsets:
        return None
    if len(offsets) != count + 1 or offsets[0] != 0 or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ProtocolError(f"column {offsets_name} is not a valid offsets list")
    values = [list(reader._get_by_field(fields[column])) for column in columns]
    if any(len(column) != offsets[-1] for column in values):
        raise ProtocolError(f"columns {columns} do not match {offsets_name}")
    return offsets, values


# Shared by every decoded task without inputs, dependencies or capabilities: a queued task then
# carries no list objects of its own (3 x 56 bytes; see W7). Code that adds to them replaces the tuple.
_NONE = ()


def _decode_task_batch(reader) -> TaskBatch:
    fields = _TASK_BATCH_FIELDS
    task_ids = list(reader._get_by_field(fields["taskIds"]))
    count = len(task_ids)
    # the same owner, function and graph repeat across a batch: keep one bytes object of each
    shared: Dict[bytes, bytes] = {}
    client_ids = [shared.setdefault(value, value) for value in _column(reader, fields, "clientIds", count, b"")]
    function_ids = [shared.setdefault(value, value) for value in _column(reader, fields, "functionIds", count, b"")]
    args = _column(reader, fields, "args", count, b"")
    args_object_ids = _column(reader, fields, "argsObjectIds", count, b"")
    priorities = _column(reader, fields, "priorities", count, 0)
    flags = _column(reader, fields, "flags", count, 0)
    retries = _column(reader, fields, "retries", count, 0)
    dependent_counts = _column(reader, fields, "dependentCounts", count, 0)
    graph_ids = [shared.setdefault(value, value) for value in _column(reader, fields, "graphIds", count, b"")]
    inputs = _ragged(reader, fields, "inputOffsets", count, "inputObjectIds", "inputInline", "inputStored")
    dependencies = _ragged(reader, fields, "dependencyOffsets", count, "dependencyIds")
    capabilities = _ragged(reader, fields, "capabilityOffsets", count, "capabilityNames", "capabilityQuantities")
    new_task = Task.__new__
    tasks = []
    for index in range(count):
        task = new_task(Task)
        task.task_id = task_ids[index]
        task.client_id = client_ids[index]
        task.function_id = function_ids[index]
        task.args = args[index]
        object_id = args_object_ids[index]
        task.args_stored = bool(object_id)
        task.args_object_id = object_id
        task.priority = priorities[index]
        flag = flags[index]
        task.requested = bool(flag & REQUESTED)
        task.stream_output = bool(flag & STREAM_OUTPUT)
        task.notify_start = bool(flag & NOTIFY_START)
        task.hold_result = bool(flag & HOLD_RESULT)
        task.retries = retries[index]
        task.dependent_count = dependent_counts[index]
        task.graph_id = graph_ids[index]
        if inputs is None or inputs[0][index] == inputs[0][index + 1]:
            task.inputs = _NONE
        else:
            (offsets, (ids, inline, stored)) = inputs
            task.inputs = [make_object_input(ids[i], inline[i], stored[i]) for i in range(offsets[index], offsets[index + 1])]
        if dependencies is None or dependencies[0][index] == dependencies[0][index + 1]:
            task.dependencies = _NONE
        else:
            offsets, (ids,) = dependencies
            task.dependencies = ids[offsets[index]:offsets[index + 1]]
        if capabilities is None or capabilities[0][index] == capabilities[0][index + 1]:
            task.capabilities = _NONE
        else:
            offsets, (names, quantities) = capabilities
            task.capabilities = [Capability(name=names[i], quantity=quantities[i])
                                 for i in range(offsets[index], offsets[index + 1])]
        tasks.append(task)
    return TaskBatch(tasks)


def make_object_input(object_id: bytes, inline: bytes, stored: bool) -> "ObjectInput":
    """An ObjectInput built without keyword parsing (hot path)."""
    item = ObjectInput.__new__(ObjectInput)
    item.object_id = object_id
    item.inline = inline
    item.stored = stored
    return item


def _encode_result_batch(builder, batch: ResultBatch) -> None:
    results = batch.results
    builder.taskIds = [result.task_id for result in results]
    builder.statuses = [result.status for result in results]
    builder.values = [result.value for result in results]
    if any(result.stored for result in results):
        builder.stored = [result.stored for result in results]
    builder.durationSeconds = [result.profiling.duration_seconds for result in results]
    builder.cpuSeconds = [result.profiling.cpu_seconds for result in results]
    builder.peakMemoryBytes = [result.profiling.peak_memory_bytes for result in results]
    if any(result.size for result in results):
        builder.sizes = [result.size for result in results]
        if any(result.held for result in results):
            builder.held = [result.held for result in results]
    if any(result.delivered for result in results):
        builder.delivered = [result.delivered for result in results]


def _decode_result_batch(reader) -> ResultBatch:
    fields = _RESULT_BATCH_FIELDS
    task_ids = list(reader._get_by_field(fields["taskIds"]))
    count = len(task_ids)
    statuses = [_TASK_STATUSES[status.raw] for status in _column(reader, fields, "statuses", count, None)] \
        if reader._has_by_field(fields["statuses"]) and len(reader._get_by_field(fields["statuses"])) \
        else ["success"] * count
    values = _column(reader, fields, "values", count, b"")
    stored = _column(reader, fields, "stored", count, False)
    durations = _column(reader, fields, "durationSeconds", count, 0.0)
    cpu = _column(reader, fields, "cpuSeconds", count, 0.0)
    peaks = _column(reader, fields, "peakMemoryBytes", count, 0)
    sizes = _column(reader, fields, "sizes", count, 0)
    held = _column(reader, fields, "held", count, False)
    delivered = _column(reader, fields, "delivered", count, False)
    new_result, new_profiling = TaskResult.__new__, Profiling.__new__
    results = []
    for index in range(count):
        profiling = new_profiling(Profiling)
        profiling.duration_seconds = durations[index]
        profiling.cpu_seconds = cpu[index]
        profiling.peak_memory_bytes = peaks[index]
        result = new_result(TaskResult)
        result.task_id = task_ids[index]
        result.status = statuses[index]
        result.value = values[index]
        result.stored = stored[index]
        result.profiling = profiling
        result.size = sizes[index]
        result.held = held[index]
        result.delivered = delivered[index]
        results.append(result)
    return ResultBatch(results)


_COLUMNAR = {TaskBatch: ("taskBatch", _encode_task_batch), ResultBatch: ("resultBatch", _encode_result_batch)}
_COLUMNAR_DECODERS = {"taskBatch": _decode_task_batch, "resultBatch": _decode_result_batch}
for _cls, (_member, _) in _COLUMNAR.items():
    _UNION_BY_CLASS.pop(_CLASS_BY_UNION[_member], None)
    _UNION_BY_CLASS[_cls] = _member
    _CLASS_BY_UNION[_member] = _cls

MESSAGE_TYPES = tuple(_UNION_BY_CLASS)


def make_task(task_id: bytes, client_id: bytes, function_id: bytes, args: bytes, priority: int, requested: bool,
              stream_output: bool, graph_id: bytes = b"") -> "Task":
    """A Task with the remaining fields at their defaults, built without keyword parsing (hot path)."""
    task = Task.__new__(Task)
    task.task_id = task_id
    task.client_id = client_id
    task.function_id = function_id
    task.args = args
    task.args_stored = False
    task.args_object_id = b""
    task.inputs = []
    task.dependencies = []
    task.requested = requested
    task.priority = priority
    task.capabilities = []
    task.stream_output = stream_output
    task.graph_id = graph_id
    task.retries = 0
    task.dependent_count = 0
    task.notify_start = False
    task.hold_result = False
    return task


def make_result(task_id: bytes, status: str, value: bytes, stored: bool, profiling: "Profiling", size: int = 0,
                held: bool = False) -> "TaskResult":
    """A TaskResult built without keyword parsing (hot path)."""
    result = TaskResult.__new__(TaskResult)
    result.task_id = task_id
    result.status = status
    result.value = value
    result.stored = stored
    result.profiling = profiling
    result.size = size
    result.held = held
    result.delivered = False
    return result


def make_profiling(duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int) -> "Profiling":
    profiling = Profiling.__new__(Profiling)
    profiling.duration_seconds = duration_seconds
    profiling.cpu_seconds = cpu_seconds
    profiling.peak_memory_bytes = peak_memory_bytes
    return profiling


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
    columnar = _COLUMNAR.get(type(message))
    if columnar is not None:
        columnar[1](builder.init(union_name), message)
    else:
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
            union_name = reader._which_str()
            member = reader._get_by_field(_MESSAGE_FIELDS[union_name])
            columnar = _COLUMNAR_DECODERS.get(union_name)
            if columnar is not None:
                return columnar(member)
            data = member.to_dict()
    except ProtocolError:
        raise
    except Exception as error:  # capnp raises KjException and friends for malformed input
        raise ProtocolError(f"malformed message frame ({len(frame)} bytes): {error}") from None
    return _from_dict(_CLASS_BY_UNION[union_name], data)
