"""PeerIO's local link with a scheduler on its host (local_link.py), against real sockets in this
process: a ROUTER and an inbox play the scheduler. Datagrams overtake ZeroMQ here (no I/O threads on
their way), so the order checks below meet real reordering, not a simulation of it."""

import contextlib
import os
import threading
import time

import pytest

from scaler_core import direct_results, protocol, transport
from scaler_core.instructions import Leave, ToScheduler
from scaler_core.local_link import ORDERED, frame, unframe
from scaler_core.peer_io import PeerIO
from scaler_core.security import CurveKeys

from tests.unit.test_peer_io import Recorder, receive, router  # noqa: F401  (the ROUTER fixture)

pytestmark = pytest.mark.timeout(30)

IDENTITY = b"C|peer-io-local-link|" + os.urandom(4).hex().encode()


def tagged(text):
    return protocol.TaskLog(task_id=b"t" * 16, stream="stdout", text=text)


@pytest.fixture
def scheduler_inbox():
    inbox_id = b"scheduler|test|" + os.urandom(8)
    inbox = direct_results.open_inbox(inbox_id)
    if inbox is None:
        pytest.skip("no Unix datagram sockets here")
    sender = direct_results.InboxSender()
    yield inbox_id, inbox, sender
    sender.close()
    inbox.close()


def start(handler, address):
    io = PeerIO(handler, name="test", identity=IDENTITY, scheduler_address=address, keys=CurveKeys(),
                tick_interval_seconds=10.0, linger_ms=0)
    thread = threading.Thread(target=io.run, args=(protocol.ClientHello(client_id=IDENTITY, version=1),), daemon=True)
    thread.start()
    return io, thread


def stop(io, thread):
    io.post(Leave(linger_ms=0))
    thread.join(10)
    assert not thread.is_alive()


def welcome(router_socket, identity, inbox_id, epoch):
    transport.send(router_socket, protocol.Welcome(inbox=inbox_id, link_epoch=epoch), identity=identity)


@contextlib.contextmanager
def welcomed_peer(router_socket, address, inbox_id, epoch):
    """A PeerIO that said hello and got a welcome naming `inbox_id` (ended when the block ends):
    (io, its handler, its identity on the ROUTER, its hello)."""
    handler = Recorder()
    io, thread = start(handler, address)
    try:
        identity, hello = receive(router_socket)
        welcome(router_socket, identity, inbox_id, epoch)
        yield io, handler, identity, hello
    finally:
        stop(io, thread)


def wait_for(condition, timeout=10.0, on_timeout=lambda: ""):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out {on_timeout()}"
        time.sleep(0.005)


def test_datagrams_from_the_scheduler_are_handled_in_the_order_sent(router, scheduler_inbox):  # noqa: F811
    router_socket, address = router
    inbox_id, _, sender = scheduler_inbox
    with welcomed_peer(router_socket, address, inbox_id, epoch=7) as (io, handler, identity, hello):
        assert type(hello) is protocol.ClientHello and hello.link_epoch == 1
        sent_by_zmq, expected = 1, []
        for round_ in range(100):
            # by ZeroMQ, then at once a datagram stamped after it: the datagram usually arrives first
            transport.send(router_socket, tagged(f"zmq {round_}"), identity=identity)
            sent_by_zmq += 1
            encoded = protocol.encode(tagged(f"datagram {round_}"))
            if not sender.send(IDENTITY, frame(ORDERED, 7, sent_by_zmq, inbox_id, encoded)):
                # its inbox is full (the kernel queues 10 datagrams here): by ZeroMQ, as the scheduler does
                transport.send_encoded(router_socket, encoded, identity=identity)
                sent_by_zmq += 1
            expected += [f"zmq {round_}", f"datagram {round_}"]
        wait_for(lambda: len(handler.received) == 1 + len(expected),
                 on_timeout=lambda: f"{len(handler.received)} handled, {io._from_scheduler.holding()} held")
        assert type(handler.received[0]) is protocol.Welcome
        assert [message.text for message in handler.received[1:]] == expected


def test_what_a_peer_sends_by_datagram_is_stamped_with_its_zmq_count(router, scheduler_inbox):  # noqa: F811
    router_socket, address = router
    inbox_id, inbox, _ = scheduler_inbox
    with welcomed_peer(router_socket, address, inbox_id, epoch=1) as (io, handler, _, hello):
        wait_for(lambda: handler.received)  # it knows the scheduler's inbox only from the welcome
        io.post(ToScheduler(tagged("small 1")))
        io.post(ToScheduler(tagged("x" * 300_000)))  # more than a datagram takes: by ZeroMQ
        io.post(ToScheduler(tagged("small 2")))
        datagrams = []
        wait_for(lambda: datagrams.extend(inbox.read()) or len(datagrams) == 2)
        stamps = []
        for datagram in datagrams:
            kind, epoch, stamp, sender_id, encoded = unframe(datagram)
            assert (kind, epoch, sender_id) == (ORDERED, hello.link_epoch, IDENTITY)
            stamps.append((protocol.decode(encoded).text, stamp))
        # the hello was the link's first ZeroMQ message, the large one its second
        assert stamps == [("small 1", 1), ("small 2", 2)]
        _, large = receive(router_socket)
        assert len(large.text) == 300_000


def test_a_peer_without_the_scheduler_inbox_sends_everything_by_zmq(router):  # noqa: F811
    router_socket, address = router
    # a scheduler without an inbox (or on another host)
    with welcomed_peer(router_socket, address, b"", epoch=1) as (io, handler, _, _):
        wait_for(lambda: handler.received)
        io.post(ToScheduler(tagged("small")))
        _, message = receive(router_socket)
        assert message.text == "small"
