"""The inbox of a client and a worker's direct sends, over real Unix sockets in one process."""

import os
import shutil
import socket
import tempfile

import pytest

from scaler_core import direct_results

CLIENT = b"C|client"


@pytest.fixture
def private_tmp(monkeypatch):
    short = tempfile.mkdtemp(prefix="inbox-", dir="/tmp")  # a Unix socket's path has at most 107 bytes
    monkeypatch.setattr("tempfile.tempdir", short)
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def sender():
    sender = direct_results.InboxSender()
    yield sender
    sender.close()


def received(inbox):
    return list(inbox.read())


def test_no_inbox_where_its_path_would_be_too_long_for_a_unix_socket(monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / ("d" * 80)))
    assert direct_results.open_inbox(CLIENT) is None


def test_the_inbox_lives_in_a_directory_only_its_user_can_open_and_goes_with_its_client(private_tmp):
    inbox = direct_results.open_inbox(CLIENT)
    assert inbox is not None
    path = direct_results.inbox_path(CLIENT)
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700 and os.path.exists(path)
    inbox.close()
    assert not os.path.exists(path), "its socket file is left behind"


def test_no_inbox_in_a_directory_others_can_open(private_tmp):
    directory = os.path.dirname(direct_results.inbox_path(CLIENT))
    os.mkdir(directory)
    os.chmod(directory, 0o777)  # anyone could put pickles in it for the client to load
    assert direct_results.open_inbox(CLIENT) is None


def test_a_sent_result_is_in_the_inbox_when_send_returns(private_tmp, sender):
    inbox = direct_results.open_inbox(CLIENT)
    try:
        assert sender.send(CLIENT, b"first") and sender.send(CLIENT, b"second")
        sender.close()  # the worker going away loses nothing already sent
        assert received(inbox) == [b"first", b"second"]
    finally:
        inbox.close()


def test_nothing_goes_to_a_client_without_an_inbox_on_this_host(private_tmp, sender):
    assert not sender.send(b"C|elsewhere", b"result")


def test_no_result_goes_to_an_inbox_in_a_directory_others_can_open(private_tmp, sender):
    inbox = direct_results.open_inbox(CLIENT)
    try:
        os.chmod(os.path.dirname(direct_results.inbox_path(CLIENT)), 0o777)  # whoever can write there is not trusted
        assert not sender.send(CLIENT, b"result")
        assert received(inbox) == []
    finally:
        inbox.close()


def test_a_closed_inbox_takes_nothing_more(private_tmp, sender):
    inbox = direct_results.open_inbox(CLIENT)
    assert sender.send(CLIENT, b"first")
    inbox.close()
    assert not sender.send(CLIENT, b"later")


def test_a_result_larger_than_the_inbox_reads_goes_the_usual_way(private_tmp, sender, monkeypatch):
    monkeypatch.setattr(direct_results, "MAX_DATAGRAM_BYTES", 1000)
    inbox = direct_results.open_inbox(CLIENT)  # reads datagrams of up to 1,000 bytes
    try:
        assert not sender.send(CLIENT, b"x" * 1001), "a datagram cut short would be a lost result"
        assert sender.send(CLIENT, b"y" * 1000)
        assert received(inbox) == [b"y" * 1000]
    finally:
        inbox.close()


def test_the_inbox_reads_each_result_whole(private_tmp, sender):
    inbox = direct_results.open_inbox(CLIENT)
    try:
        for n, size in enumerate((150, 65_000, 1, 120_000)):  # one at a time: the kernel bounds the queue
            assert sender.send(CLIENT, bytes([n]) * size)
            assert received(inbox) == [bytes([n]) * size]
    finally:
        inbox.close()


def test_a_full_inbox_refuses_rather_than_blocks(private_tmp, sender):
    inbox = direct_results.open_inbox(CLIENT)
    try:
        sent = 0
        while sender.send(CLIENT, b"x" * 60_000):  # the kernel bounds a datagram socket's queue
            sent += 1
            assert sent < 100_000, "the inbox never filled"
        assert len(received(inbox)) == sent
        assert sender.send(CLIENT, b"after"), "a drained inbox takes results again"
    finally:
        inbox.close()


def test_an_inbox_left_by_a_killed_client_is_removed_by_the_next_one(private_tmp):
    path = direct_results.inbox_path(b"C|killed")
    os.makedirs(os.path.dirname(path), mode=0o700)
    left = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.bind(path)
    left.close()  # as a killed process would: the file stays, nothing is bound to it
    inbox = direct_results.open_inbox(CLIENT)
    try:
        assert not os.path.exists(path)
    finally:
        inbox.close()
