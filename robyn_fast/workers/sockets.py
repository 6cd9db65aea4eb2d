"""Listening sockets for several processes on one address."""

from __future__ import annotations

import socket
import sys

__all__ = ["bind", "reuse_port_available"]


def reuse_port_available() -> bool:
    """Whether processes bind sockets of their own to one address with
    SO_REUSEPORT and the kernel spreads connections over them (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int, *, reuse_port: bool, backlog: int | None) -> socket.socket:
    """A TCP socket bound to ``host:port`` (the first address ``host``
    resolves to), listening with ``backlog`` unless it is None (a socket that
    only holds the port). OSError when the address cannot be bound."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
