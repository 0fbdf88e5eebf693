"""Optional CurveZMQ authentication and encryption for every connection of the engine.

One server key pair is shared by the servers (scheduler, object storage, monitor stream); every
connecting process (client, worker, cluster, and the scheduler towards the object storage) has its
own key pair, and servers only accept client public keys found in an authorized-keys directory (the
server's own public key is always accepted, so the scheduler can reach the object storage).
Keys are the files of `zmq.auth.create_certificates` (`NAME.key` public, `NAME.key_secret` both).

Without keys everything runs in the clear: bind to 127.0.0.1 or a trusted network only.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import Set

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CurveKeys:
    secret_key_file: str = ""          # this process's key pair (*.key_secret)
    server_public_key_file: str = ""   # the servers' public key (*.key); peers that connect need it
    authorized_keys_dir: str = ""      # servers: directory of accepted client public keys (*.key)

    @property
    def enabled(self) -> bool:
        return bool(self.secret_key_file)

    def validate(self, *, server: bool, client: bool) -> None:
        if not self.enabled:
            if self.server_public_key_file or self.authorized_keys_dir:
                raise ValueError("CurveZMQ: curve_secret_key_file is required when other curve options are set")
            return
        if not os.path.isfile(self.secret_key_file):
            raise ValueError(f"CurveZMQ: secret key file {self.secret_key_file!r} does not exist")
        if client and not os.path.isfile(self.server_public_key_file):
            raise ValueError(f"CurveZMQ: server public key file {self.server_public_key_file!r} does not exist")
        if server and not os.path.isdir(self.authorized_keys_dir):
            raise ValueError(f"CurveZMQ: authorized keys directory {self.authorized_keys_dir!r} does not exist")


def create_key_pair(directory: str, name: str):
    """Write NAME.key and NAME.key_secret into `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    return zmq.auth.create_certificates(directory, name)


class _AuthorizedKeys:
    def __init__(self, allowed: Set[bytes]):
        self.allowed = allowed

    def callback(self, domain, key: bytes) -> bool:
        accepted = key in self.allowed
        if not accepted:
            logger.warning("CurveZMQ: refused a peer with an unknown public key")
        return accepted


_authenticators = {}


def secure_server(context: zmq.Context, socket: zmq.Socket, keys: CurveKeys) -> None:
    """Make a listening socket require CurveZMQ with an authorized client key."""
    if not keys.enabled:
        return
    public, secret = zmq.auth.load_certificate(keys.secret_key_file)
    if context not in _authenticators:
        allowed = {zmq.auth.load_certificate(path)[0]
                   for path in glob.glob(os.path.join(keys.authorized_keys_dir, "*.key"))}
        allowed.add(public)
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve_callback(domain="*", credentials_provider=_AuthorizedKeys(allowed))
        _authenticators[context] = authenticator
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def secure_client(socket: zmq.Socket, keys: CurveKeys) -> None:
    """Make a connecting socket authenticate with this process's key and check the server's."""
    if not keys.enabled:
        return
    public, secret = zmq.auth.load_certificate(keys.secret_key_file)
    # the scheduler talks to the object storage with the server key pair they share
    server_public = zmq.auth.load_certificate(keys.server_public_key_file)[0] if keys.server_public_key_file \
        else public
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public


def stop_authenticator(context: zmq.Context) -> None:
    authenticator = _authenticators.pop(context, None)
    if authenticator is not None:
        authenticator.stop()
