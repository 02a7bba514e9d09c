"""Socket plumbing shared by tests that stand in for a load balancer on 127.0.0.1."""

from __future__ import annotations

import socket


def splice(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` into ``sink`` until either side closes, then shut both down (one
    direction of a forwarded TCP connection; run one thread per direction)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
