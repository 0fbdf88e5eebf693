import pytest

from scaler_core import protocol


def sample(cls):
    """An instance of `cls` with every field set to a non-default value."""
    values = {}
    for field in cls._fields:
        if field.kind == "struct":
            values[field.py_name] = sample(field.struct_class)
        elif field.kind == "list_struct":
            values[field.py_name] = [sample(field.struct_class), sample(field.struct_class)]
        elif field.kind == "list_scalar":
            values[field.py_name] = [b"a" * 16, b"b" * 16]
        elif isinstance(field.default, bytes):
            values[field.py_name] = b"\x01\x02payload"
        elif isinstance(field.default, str) and field.default == "":
            values[field.py_name] = "text"
        elif isinstance(field.default, bool):
            values[field.py_name] = True
        elif isinstance(field.default, float):
            values[field.py_name] = 1.5
        elif isinstance(field.default, int):
            values[field.py_name] = 7
        else:  # enum: pick the last enumerant
            values[field.py_name] = "schedulerError"  # the only enum: TaskStatus
    return cls(**values)


@pytest.mark.parametrize("cls", protocol.MESSAGE_TYPES, ids=lambda cls: cls.__name__)
def test_every_message_round_trips(cls):
    message = sample(cls)
    assert protocol.decode(protocol.encode(message)) == message


def test_defaults_round_trip_and_stay_small():
    encoded = protocol.encode(protocol.HeartbeatEcho())
    assert len(encoded) < 64
    assert protocol.decode(encoded) == protocol.HeartbeatEcho()


@pytest.mark.parametrize("frame", [b"", b"garbage", b"\x00" * 8, b"\xff" * 64, bytes(range(256)) * 4])
def test_garbage_is_a_protocol_error(frame):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(frame)


def test_truncated_message_is_a_protocol_error():
    encoded = protocol.encode(protocol.TaskBatch(tasks=[protocol.Task(task_id=b"x" * 16, args=b"y" * 100)]))
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(encoded[: len(encoded) // 2])


def test_unknown_keyword_is_rejected():
    with pytest.raises(TypeError):
        protocol.Task(no_such_field=1)


def test_non_message_struct_cannot_be_encoded_alone():
    with pytest.raises(TypeError):
        protocol.encode(protocol.Task())


def test_protocol_document_covers_every_struct():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "protocol", "PROTOCOL.md")
    text = open(path).read()
    for name in protocol._struct_names_by_id.values():
        assert name in text, f"PROTOCOL.md does not mention {name}"


def test_columnar_batches_round_trip_every_task_field():
    full = sample(protocol.Task)
    full.args_stored = True
    plain = protocol.Task(task_id=b"p" * 16, function_id=b"f", args=b"a", requested=True)
    batch = protocol.TaskBatch(tasks=[full, plain, full])
    assert protocol.decode(protocol.encode(batch)) == batch
    results = protocol.ResultBatch(results=[sample(protocol.TaskResult), protocol.TaskResult(task_id=b"r")])
    assert protocol.decode(protocol.encode(results)) == results


def test_inconsistent_columns_are_a_protocol_error():
    builder = protocol._schema.Message.new_message()
    batch = builder.init("taskBatch")
    batch.taskIds = [b"a", b"b"]
    batch.functionIds = [b"f"]  # one entry for two tasks
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(builder.to_bytes())
    builder = protocol._schema.Message.new_message()
    batch = builder.init("taskBatch")
    batch.taskIds = [b"a"]
    batch.dependencyOffsets = [0, 5]  # points past the end
    batch.dependencyIds = [b"x"]
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(builder.to_bytes())


def test_make_task_fast_path_equals_the_generated_constructor():
    fast = protocol.make_task(b"t", b"c", b"f", b"a", 3, True, True, b"g")
    assert fast == protocol.Task(task_id=b"t", client_id=b"c", function_id=b"f", args=b"a", priority=3,
                                 requested=True, stream_output=True, graph_id=b"g")
