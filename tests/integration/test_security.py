"""CurveZMQ: unkeyed or wrong-keyed peers are refused; keyed ones work."""

import pytest
import zmq

from scaler_core import Client, ConnectTimeoutError, SchedulerClusterCombo, protocol
from scaler_core.security import CurveKeys, create_key_pair

from tests import helpers_tasks as tasks


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    authorized = directory / "authorized"
    server_public, server_secret = create_key_pair(str(directory), "server")
    client_public, client_secret = create_key_pair(str(authorized), "client")
    _, stranger_secret = create_key_pair(str(directory / "strangers"), "stranger")
    return {
        "server": CurveKeys(server_secret, server_public, str(authorized)),
        "client": CurveKeys(client_secret, server_public),
        "stranger": CurveKeys(stranger_secret, server_public),
    }


@pytest.fixture(scope="module")
def secure_combo(keys):
    with SchedulerClusterCombo(n_workers=1, security=keys["server"], logging_level="ERROR") as cluster:
        yield cluster


def test_keyed_client_works_including_objects_and_nested_tasks(secure_combo, keys):
    with Client(secure_combo.address, security=keys["client"]) as client:
        assert client.submit(tasks.square, 5).result(timeout=30) == 25
        reference = client.send_object(list(range(100)))
        assert client.submit(tasks.total, reference).result(timeout=30) == 4950
        assert client.submit(tasks.fibonacci, client, 5).result(timeout=60) == 5


@pytest.mark.parametrize("who", ["unkeyed", "stranger"])
def test_unkeyed_or_unknown_key_is_refused(secure_combo, keys, who):
    security = None if who == "unkeyed" else keys["stranger"]
    with pytest.raises(ConnectTimeoutError):
        Client(secure_combo.address, timeout_seconds=2, security=security)


def test_unkeyed_peer_cannot_read_objects_or_shut_down(secure_combo, keys):
    context = zmq.Context()
    try:
        storage = context.socket(zmq.DEALER)
        storage.setsockopt(zmq.LINGER, 0)
        storage.connect(secure_combo.object_storage_address)
        storage.send(protocol.encode(protocol.ObjectGet(object_ids=[b"x" * 16])))
        assert storage.poll(1000) == 0, "the object storage must not answer an unauthenticated peer"
        scheduler = context.socket(zmq.DEALER)
        scheduler.setsockopt(zmq.LINGER, 0)
        scheduler.setsockopt(zmq.IDENTITY, b"C|intruder")
        scheduler.connect(secure_combo.address)
        scheduler.send(protocol.encode(protocol.ClientDisconnect(shutdown_scheduler=True)))
        assert scheduler.poll(1000) == 0
    finally:
        context.destroy(linger=0)
    with Client(secure_combo.address, security=keys["client"]) as client:
        assert client.submit(tasks.square, 2).result(timeout=30) == 4


def test_missing_key_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="secret key file"):
        Client("tcp://127.0.0.1:1", security=CurveKeys(str(tmp_path / "nope.key_secret"), str(tmp_path / "x.key")))
