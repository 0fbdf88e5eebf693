"""The local link's order (local_link.py): datagrams merged back among a sender's ZeroMQ messages.

Each test plays a sender that interleaves both channels (a LinkCounter stamping its datagrams) and
checks that the receiver's LinkOrder hands everything over in the order it was sent, whatever order
the two channels deliver in."""

import pytest

from scaler_core.local_link import DIRECT_RESULT, ORDERED, LinkCounter, LinkOrder, frame, unframe
from scaler_core.protocol import ProtocolError

PEER = b"client-1"


class Sender:
    """A sender's two channels, as a receiver would see them arrive: stream FIFO, datagrams FIFO."""

    def __init__(self):
        self.counter = LinkCounter()
        self.stream = []  # (name, the epoch it opens or 0)
        self.datagrams = []  # (epoch, stamp, name)

    def open(self, name):
        self.counter.opened(self.counter.epoch + 1)
        self.stream.append((name, self.counter.epoch))

    def by_stream(self, name):
        self.stream.append((name, 0))
        self.counter.streamed()

    def by_datagram(self, name):
        self.datagrams.append((self.counter.epoch, self.counter.sent, name))


def receive(sender, schedule, order=None):
    """Deliver per `schedule` ("s": the next stream message, "d": the next datagram, as a receiver
    reads them: every datagram read before the stream message taken with it is handled) and return
    the names in the order the receiver handled them."""
    order = order or LinkOrder()
    handled = []
    for step in schedule:
        if step == "d":
            epoch, stamp, name = sender.datagrams.pop(0)
            handled.extend(order.datagram(PEER, epoch, stamp, name, now=0.0))
        else:
            name, opening_epoch = sender.stream.pop(0)
            handled.append(name)
            handled.extend(order.opened(PEER, opening_epoch) if opening_epoch else order.streamed(PEER))
    return handled


def test_a_datagram_waits_for_the_stream_message_sent_before_it():
    sender = Sender()
    sender.open("hello")
    sender.by_stream("big task")
    sender.by_datagram("cancel")
    # the datagram overtakes the stream
    assert receive(sender, "dss") == ["hello", "big task", "cancel"]


def test_a_stream_message_is_handled_after_the_datagrams_sent_before_it():
    sender = Sender()
    sender.open("hello")
    sender.by_datagram("task 1")
    sender.by_datagram("task 2")
    sender.by_stream("large graph")
    sender.by_datagram("task 3")
    # the receiver reads its inbox before handling what it took from the stream
    assert receive(sender, "sddsd") == ["hello", "task 1", "task 2", "large graph", "task 3"]
    sender = Sender()
    sender.open("hello")
    sender.by_datagram("task 1")
    sender.by_stream("large graph")
    sender.by_datagram("task 2")
    assert receive(sender, "dsds") == ["hello", "task 1", "large graph", "task 2"]


def test_many_interleavings_keep_the_order_sent():
    import random
    generator = random.Random(7)
    for _ in range(200):
        sender = Sender()
        sent = ["hello"]
        sender.open("hello")
        for index in range(20):
            name = f"m{index}"
            sent.append(name)
            if generator.random() < 0.5:
                sender.by_stream(name)
            else:
                sender.by_datagram(name)
        # any delivery that respects what the receiver is promised: a stream message is handled only
        # once every datagram sent before it was read
        schedule, streamed, datagrams = [], list(sender.stream), list(sender.datagrams)
        sent_position = {name: position for position, name in enumerate(sent)}
        while streamed or datagrams:
            next_stream_position = sent_position[streamed[0][0]] if streamed else None
            must_read = datagrams and next_stream_position is not None and \
                sent_position[datagrams[0][2]] < next_stream_position
            if datagrams and (must_read or not streamed or generator.random() < 0.5):
                schedule.append("d")
                datagrams.pop(0)
            else:
                schedule.append("s")
                streamed.pop(0)
        assert receive(sender, schedule) == sent


def test_counts_start_again_with_each_opening_message():
    order = LinkOrder()
    first = Sender()
    first.open("hello")
    first.by_stream("a")
    first.by_stream("b")
    assert receive(first, "sss", order) == ["hello", "a", "b"]
    # the sender says hello again (a reconnection) and then sends by datagram, stamped in epoch 2:
    # the datagram must wait for that hello, although its stamp is below the old count
    again = Sender()
    again.counter.epoch = first.counter.epoch
    again.open("hello again")
    again.by_datagram("task")
    assert receive(again, "ds", order) == ["hello again", "task"]


def test_held_datagrams_are_handled_after_the_hold_limit():
    order = LinkOrder(hold_seconds=2.0)
    assert order.opened(PEER, 1) == []
    # stamped after a stream message that never arrives (lost in a reconnection)
    assert order.datagram(PEER, 1, 2, b"first", now=10.0) == []
    assert order.datagram(PEER, 1, 2, b"second", now=10.5) == []
    assert order.holding() == 2
    assert order.overdue(now=11.0) == []
    assert order.overdue(now=12.0) == [(PEER, b"first"), (PEER, b"second")]
    assert order.holding() == 0
    # the lost message is taken as handled: what the sender stamps after it is due at once
    assert order.datagram(PEER, 1, 2, b"third", now=12.5) == [b"third"]
    assert order.streamed(PEER) == []
    assert order.datagram(PEER, 1, 3, b"fourth", now=12.6) == [b"fourth"]


def test_senders_are_ordered_independently():
    order = LinkOrder()
    order.opened(b"a", 1)
    order.opened(b"b", 1)
    assert order.datagram(b"a", 1, 2, b"a-late", now=0.0) == []
    assert order.datagram(b"b", 1, 1, b"b-now", now=0.0) == [b"b-now"]
    assert order.streamed(b"a") == [b"a-late"]


def test_a_departed_sender_is_forgotten_and_its_next_epoch_still_ordered():
    order = LinkOrder()
    order.opened(PEER, 1)
    order.datagram(PEER, 1, 5, b"held", now=0.0)
    assert order.forget(PEER) == [b"held"]
    assert order.holding() == 0
    # it comes back: its hello names epoch 2, and a datagram it sent after that hello waits for it
    assert order.datagram(PEER, 2, 1, b"after the hello", now=0.0) == []
    assert order.opened(PEER, 2) == [b"after the hello"]


def test_frames_round_trip_and_garbage_is_refused():
    datagram = frame(ORDERED, 3, 17, b"client-1", b"payload")
    assert unframe(datagram) == (ORDERED, 3, 17, b"client-1", b"payload")
    with pytest.raises(ProtocolError):
        unframe(frame(ORDERED, 1, 1, b"", b"")[:6])
    with pytest.raises(ProtocolError):
        unframe(frame(ORDERED, 1, 1, b"sender", b"")[:16])  # cut inside the sender's id


def test_a_datagram_without_a_header_is_a_direct_result():
    from scaler_core import protocol
    encoded = protocol.encode(protocol.ResultBatch(results=[]))
    assert encoded[0] not in (DIRECT_RESULT, ORDERED)
    assert unframe(encoded) == (DIRECT_RESULT, 0, 0, b"", encoded)
