"""The inbox of a client and a worker's direct sends, over real ZeroMQ sockets in one process."""

import os
import shutil
import tempfile
import time

import pytest
import zmq

from scaler_core import direct_results

DEADLINE_SECONDS = 10


@pytest.fixture
def private_tmp(monkeypatch):
    short = tempfile.mkdtemp(prefix="inbox-", dir="/tmp")  # a Unix socket's path has at most 107 bytes
    monkeypatch.setattr("tempfile.tempdir", short)
    yield short
    shutil.rmtree(short, ignore_errors=True)


def test_no_inbox_where_its_path_would_be_too_long_for_a_unix_socket(monkeypatch, tmp_path, context):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / ("d" * 80)))
    assert direct_results.open_inbox(context, b"C|client") is None


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_the_inbox_lives_in_a_directory_only_its_user_can_open(private_tmp, context):
    inbox = direct_results.open_inbox(context, b"C|client")
    assert inbox is not None
    directory = os.path.dirname(direct_results.inbox_path(b"C|client"))
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.path.exists(direct_results.inbox_path(b"C|client"))
    direct_results.close_inbox(inbox, b"C|client")
    assert not os.path.exists(direct_results.inbox_path(b"C|client")), "its socket file is left behind"


def test_no_inbox_in_a_directory_others_can_open(private_tmp, context):
    directory = os.path.dirname(direct_results.inbox_path(b"C|client"))
    os.mkdir(directory)
    os.chmod(directory, 0o777)  # anyone could connect and hand the client pickles
    assert direct_results.open_inbox(context, b"C|client") is None


def test_a_result_reaches_the_inbox_once_connected(private_tmp, context):
    inbox = direct_results.open_inbox(context, b"C|client")
    sender = direct_results.InboxSender()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not sender.send(b"C|client", b"result"):  # the first sends find the connection not up yet
            assert time.monotonic() < deadline, "the inbox never became reachable"
            time.sleep(0.01)
        assert inbox.poll(DEADLINE_SECONDS * 1000) and inbox.recv() == b"result"
    finally:
        sender.close()
        inbox.close()


def test_a_client_without_an_inbox_on_this_host_gets_nothing_directly(private_tmp):
    sender = direct_results.InboxSender()
    try:
        assert not sender.send(b"C|elsewhere", b"result")
    finally:
        sender.close()


def test_no_result_goes_to_an_inbox_in_a_directory_others_can_open(private_tmp, context):
    inbox = direct_results.open_inbox(context, b"C|client")
    os.chmod(os.path.dirname(direct_results.inbox_path(b"C|client")), 0o777)  # whoever made it is not to be trusted
    sender = direct_results.InboxSender()
    try:
        # a connection would be up within milliseconds: none is made
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert not sender.send(b"C|client", b"result")
            time.sleep(0.01)
    finally:
        sender.close()
        inbox.close()


def test_a_closed_inbox_takes_nothing_more(private_tmp, context):
    inbox = direct_results.open_inbox(context, b"C|client")
    sender = direct_results.InboxSender()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not sender.send(b"C|client", b"first"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        inbox.close()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while sender.send(b"C|client", b"later"):  # until the sender sees the connection go
            assert time.monotonic() < deadline, "results kept going to a closed inbox"
            time.sleep(0.01)
    finally:
        sender.close()
