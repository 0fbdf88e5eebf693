"""The shared I/O loop of clients and workers (`peer_io.PeerIO`) against a real ROUTER socket in this
process: what it sends, in which order, and how it ends. No engine processes."""

import threading
import time

import pytest
import zmq

from scaler_core import protocol, transport
from scaler_core.instructions import Leave, ToScheduler
from scaler_core.peer_io import PeerIO
from scaler_core.security import CurveKeys

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A handler that records what arrives; on a message of type `leave_on` it sends a Heartbeat, then leaves."""

    def __init__(self, leave_on=None):
        self.received = []
        self.ticks = 0
        self.performed = []
        self.error = None
        self.leave_on = leave_on

    def on_scheduler(self, message, frames, now):
        self.received.append(message)
        if self.leave_on is not None and type(message) is self.leave_on:
            return [ToScheduler(protocol.Heartbeat()), Leave(goodbye=protocol.ClientDisconnect())]
        return []

    def on_storage(self, message, frames, now):
        return []

    def on_tick(self, now):
        self.ticks += 1
        return []

    def on_leave(self, leave):
        return []

    def end_of_cycle(self):
        return []

    def perform(self, instruction):
        if instruction == "boom":
            raise RuntimeError("a bug in the handler")
        self.performed.append(instruction)

    def on_loop_error(self, error):
        self.error = error


@pytest.fixture
def router():
    context = zmq.Context()
    socket = transport.configure(context.socket(zmq.ROUTER))
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    yield socket, f"tcp://127.0.0.1:{port}"
    socket.close(0)
    context.term()


def receive(socket, timeout=5.0):
    assert socket.poll(int(timeout * 1000)), "nothing arrived"
    identity, *parts = socket.recv_multipart()
    message, _ = transport.decode_parts(parts)
    return identity, message


def started(handler, address, tick=10.0):
    io = PeerIO(handler, name="test", identity=b"C|peer-io", scheduler_address=address, keys=CurveKeys(),
                tick_interval_seconds=tick, linger_ms=0)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("leave", io.run(protocol.Heartbeat())), daemon=True)
    thread.start()
    return io, thread, result


def test_hello_first_then_posts_in_order_and_direct_sends(router):
    socket, address = router
    io, thread, _ = started(Recorder(leave_on=protocol.SchedulerShutdown), address)
    identity, hello = receive(socket)
    assert identity == b"C|peer-io" and type(hello) is protocol.Heartbeat
    io.post(ToScheduler(protocol.TaskCancel(task_ids=[b"1"])), ToScheduler(protocol.TaskCancel(task_ids=[b"2"])))
    assert [receive(socket)[1].task_ids for _ in range(2)] == [[b"1"], [b"2"]]
    io.direct_sends = True
    deadline = time.monotonic() + 5
    while not io.send_now_if_idle(protocol.encode(protocol.TaskCancel(task_ids=[b"3"]))):
        assert time.monotonic() < deadline, "the loop never went idle"
    assert receive(socket)[1].task_ids == [b"3"]
    transport.send(socket, protocol.SchedulerShutdown(reason="bye"), identity=identity)
    thread.join(5)
    assert not thread.is_alive() and io.closed.is_set()
    assert not io.post(ToScheduler(protocol.Heartbeat()))  # refused once the loop has ended


def test_a_leave_sends_what_came_before_it_then_the_goodbye(router):
    socket, address = router
    handler = Recorder(leave_on=protocol.SchedulerShutdown)
    io, thread, result = started(handler, address)
    identity, _ = receive(socket)
    transport.send(socket, protocol.SchedulerShutdown(reason="go"), identity=identity)
    assert type(receive(socket)[1]) is protocol.Heartbeat         # the instruction before the Leave
    assert type(receive(socket)[1]) is protocol.ClientDisconnect  # then the goodbye, last
    thread.join(5)
    assert isinstance(result["leave"], Leave) and handler.error is None


def test_other_instructions_reach_the_handler_and_a_bug_ends_the_loop_cleanly(router):
    socket, address = router
    handler = Recorder()
    io, thread, result = started(handler, address)
    receive(socket)
    io.post("kept")
    deadline = time.monotonic() + 5
    while handler.performed != ["kept"]:
        assert time.monotonic() < deadline, "the posted instruction never reached the handler"
        time.sleep(0.01)
    io.post("boom")
    thread.join(5)
    assert not thread.is_alive() and result["leave"] is None
    assert isinstance(handler.error, RuntimeError) and io.closed.is_set()


def test_ticks_come_at_their_interval_and_malformed_input_is_dropped(router):
    socket, address = router
    handler = Recorder(leave_on=protocol.SchedulerShutdown)
    io, thread, _ = started(handler, address, tick=0.05)
    identity, _ = receive(socket)
    socket.send_multipart([identity, b"not a message"])
    transport.send(socket, protocol.HeartbeatEcho(), identity=identity)
    deadline = time.monotonic() + 5
    while handler.ticks < 3 or not handler.received:
        assert time.monotonic() < deadline, f"ticks {handler.ticks}, received {handler.received}"
        time.sleep(0.01)
    assert [type(message) for message in handler.received] == [protocol.HeartbeatEcho]
    transport.send(socket, protocol.SchedulerShutdown(reason="bye"), identity=identity)
    thread.join(5)
    assert not thread.is_alive()
