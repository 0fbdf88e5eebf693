"""Free ports for tests that start servers by address."""

import socket

from scaler_core.transport import free_tcp_port


def port_block(size: int = 3) -> int:
    """A port p with p .. p+size-1 all free: a scheduler takes its object storage at port + 1 and its
    monitor at port + 2 unless told otherwise."""
    for _ in range(200):
        port = free_tcp_port()
        if port + size >= 65535:
            continue
        try:
            for offset in range(1, size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError("no block of free ports")
