"""Hostile input at every listening socket: the servers drop it, stay up and stay small."""

import os
import resource
import socket
import struct

import psutil
import pytest
import zmq

from scaler_core import protocol

from tests import helpers_tasks as tasks
from tests.conftest import wait_until


def zmtp_frame_claiming(size: int) -> bytes:
    """A ZMTP 3.0 NULL handshake as a DEALER, then a frame header announcing `size` bytes."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    properties = b"\x0bSocket-Type" + struct.pack("!I", 6) + b"DEALER"
    ready_body = b"\x05READY" + properties
    ready = b"\x04" + bytes([len(ready_body)]) + ready_body
    return greeting + ready + b"\x02" + struct.pack("!Q", size) + b"x" * 1024


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def server_processes(combo):
    return {p.args[-1]: psutil.Process(p.pid) for p in combo.processes()}


@pytest.fixture
def servers(combo):
    return [(combo.address, server_processes(combo)["scheduler"]),
            (combo.object_storage_address, server_processes(combo)["object-storage"]),
            (combo.monitor_address, server_processes(combo)["scheduler"])]


def test_frame_claiming_two_terabytes_is_refused_without_allocating(combo, client, servers):
    assert client.map(tasks.square, range(200)) == [n * n for n in range(200)]  # servers warmed up first
    for address, process in servers:
        before = process.memory_info().rss
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as raw:
                raw.sendall(zmtp_frame_claiming(1 << 40))
                raw.settimeout(5)
                try:
                    while raw.recv(65536):
                        pass  # the server closes the connection on the oversized frame
                except (ConnectionResetError, socket.timeout):
                    pass
        assert process.is_running()
        assert process.memory_info().rss - before < 10 * 2**20
    assert client.map(tasks.square, range(20)) == [n * n for n in range(20)]


def test_garbage_at_every_socket(combo, client, servers):
    assert client.map(tasks.square, range(200)) == [n * n for n in range(200)]  # servers warmed up first
    context = zmq.Context()
    try:
        for address, process in servers:
            before = process.memory_info().rss
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as raw:
                    raw.sendall(os.urandom(2048))
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(address)
            for payload in ([b"junk"], [os.urandom(300), os.urandom(10)],
                            [protocol.encode(protocol.TaskBatch(tasks=[protocol.Task()]))[:20]],
                            [protocol.encode(protocol.ObjectDeleteOwner(owner_id=b"C|someone"))],
                            [protocol.encode(protocol.ObjectGet(object_ids=[b"x" * 16])), b"unexpected"]):
                try:
                    dealer.send_multipart(payload, zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the monitor's PUB socket refuses a DEALER peer, leaving nowhere to queue
            dealer.close()
            assert process.is_running()
            assert process.memory_info().rss - before < 10 * 2**20
    finally:
        context.term()
    reference = client.send_object(list(range(10)))
    assert client.submit(tasks.total, reference).result(timeout=30) == 45


def test_a_thousand_idle_connections(combo, client, servers):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.skip(f"needs about 2,200 file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2200), hard))
    scheduler = servers[0][1]
    before = scheduler.memory_info().rss
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", port_of(combo.address)), timeout=5))
        wait_until(lambda: len([c for c in scheduler.net_connections() if c.status == "ESTABLISHED"]) >= 1000,
                   timeout=30, message="the scheduler to accept the idle connections")
        assert client.map(tasks.square, range(100)) == [n * n for n in range(100)]
        assert scheduler.memory_info().rss - before < 10 * 2**20
    finally:
        for connection in idle:
            connection.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
