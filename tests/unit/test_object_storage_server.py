"""The object storage server with held objects, against real DEALER sockets in this process: the holder
is asked, answers with a file, is told of deletes; a holder gone loses its objects; a peer that left
does not end the server. No engine processes."""

import os
import threading

import pytest
import zmq

from scaler_core import protocol, transport
from scaler_core.host_store import HostStoreLocation
from scaler_core.object_storage.server import REASK_SECONDS, ObjectStorageServer

pytestmark = pytest.mark.timeout(40)

OBJECT = b"o" * 20


@pytest.fixture
def storage():
    address = f"tcp://127.0.0.1:{transport.free_tcp_port()}"
    server = ObjectStorageServer(address)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    context = zmq.Context()
    peers = []

    def connect(identity: bytes) -> zmq.Socket:
        socket = transport.configure(context.socket(zmq.DEALER), identity=identity)
        socket.connect(address)
        peers.append(socket)
        return socket

    yield connect
    server.stop()
    thread.join(timeout=5)
    for socket in peers:
        socket.close(linger=0)
    context.term()


def receive(socket: zmq.Socket, timeout_ms: int = 5000):
    assert socket.poll(timeout_ms), f"nothing arrived within {timeout_ms} ms"
    message, _ = transport.decode_parts(socket.recv_multipart(copy=False))
    return message


def test_a_held_object_is_asked_for_written_out_and_its_file_removed_when_deleted_meanwhile(storage, tmp_path):
    holder, reader, owner = storage(b"W|holder|os"), storage(b"W|reader|os"), storage(b"Cowner")
    transport.send(holder, protocol.ObjectPut(object_id=OBJECT, owner_id=b"Cowner", held=True, size=8))
    transport.send(reader, protocol.ObjectGet(object_ids=[OBJECT]))
    ask = receive(holder)
    assert type(ask) is protocol.ObjectGet and list(ask.object_ids) == [OBJECT]
    # the holder writes it out; the owner deletes it before the holder's put arrives
    location = HostStoreLocation(str(tmp_path / "memory"), str(tmp_path / "disk"))
    os.makedirs(location.memory_directory)
    memory_path, _ = location.paths_of(OBJECT)
    open(memory_path, "wb").close()
    transport.send(owner, protocol.ObjectDelete(object_ids=[OBJECT]))
    dropped = receive(holder)
    assert type(dropped) is protocol.ObjectDelete and list(dropped.object_ids) == [OBJECT]
    transport.send(holder, protocol.ObjectPut(object_id=OBJECT, owner_id=b"Cowner", location=location.encode(),
                                              size=8))
    transport.send(holder, protocol.Heartbeat())  # answered after the put is handled
    assert type(receive(holder)) is protocol.HeartbeatEcho
    assert not os.path.exists(memory_path), "the file written across the delete is removed"


def test_a_held_object_whose_holder_is_gone_is_not_found_at_once(storage):
    holder, reader, leaver = storage(b"W|holder|os"), storage(b"W|reader|os"), storage(b"Cleaver")
    transport.send(holder, protocol.ObjectPut(object_id=OBJECT, owner_id=b"Cowner", held=True, size=8))
    transport.send(holder, protocol.Heartbeat())
    assert type(receive(holder)) is protocol.HeartbeatEcho  # the held put was handled
    transport.send(leaver, protocol.Heartbeat())  # a peer that asks, then leaves: its echo must not end the server
    leaver.close(linger=1000)
    holder.close(linger=0)
    transport.send(reader, protocol.ObjectGet(object_ids=[OBJECT]))
    # at once if the storage has seen the holder's connection close, else when it asks again (5 s)
    answer = receive(reader, timeout_ms=int((REASK_SECONDS + 3) * 1000))
    assert type(answer) is protocol.ObjectData and answer.object_id == OBJECT and not answer.found
    transport.send(reader, protocol.ObjectGet(object_ids=[OBJECT]))  # a later reader: also at once
    answer = receive(reader)
    assert type(answer) is protocol.ObjectData and not answer.found
