"""Run a robyn_fast app in-process, on a background thread, for tests.

`running(app, loop_kind)` is :func:`robyn_fast.testing.serve` (127.0.0.1, an
ephemeral port, a fresh uvloop or asyncio loop, graceful shutdown on exit)
with the suite's extras. Raw-socket helpers speak bytes so tests can check the wire exactly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from robyn_fast import Robyn
from robyn_fast.server import Server
from robyn_fast.testing import serve

from .loops import LOOPS

T = TypeVar("T")


class Running:
    def __init__(self, app: Robyn, loop: asyncio.AbstractEventLoop, server: Server, port: int) -> None:
        self.app = app
        self.loop = loop
        self.server = server
        self.port = port
        tls = app.config.ssl is not None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"

    def hub(self, ws: Any) -> Any:
        """The server's connection table of endpoint ``ws``."""
        return self.call(self.server.hub, ws)

    def call(self, fn: Any, *args: Any, timeout: float = 5.0) -> Any:
        """Run ``fn(*args)`` on the server loop and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                box.append((False, exc))
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(timeout), "server loop did not answer"
        ok, value = box[0]
        if not ok:
            raise value
        return value


@contextlib.contextmanager
def running(app: Robyn, loop_kind: str = "uvloop") -> Iterator[Running]:
    """``app`` served by :func:`robyn_fast.testing.serve` (what users' tests get) on a
    ``loop_kind`` loop, with the suite's extras (``hub``, ``call`` with a timeout)."""
    with serve(app, loop="uvloop" if loop_kind == "uvloop" else "asyncio") as live:
        yield Running(app, live.loop, live.server, live.port)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    """Read until ``marker`` has arrived (or EOF); returns everything read."""
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def upgrade_request(path: str = "/ws", key: bytes | None = None, extra: str = "", version: str = "13") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16))
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def ws_connect(port: int, path: str = "/ws", extra: str = "") -> tuple[socket.socket, bytes]:
    """A raw socket after a successful handshake, and any bytes read past the 101."""
    sock = connect(port)
    sock.sendall(upgrade_request(path, extra=extra))
    data = recv_until(sock, b"\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, rest


def read_frame(sock: socket.socket, buffered: bytes = b"") -> tuple[int, bytes, bytes]:
    """One unmasked server frame: (first byte, payload, bytes left over)."""
    data = buffered
    while len(data) < 2:
        data += sock.recv(65536) or _eof()
    n = data[1] & 0x7F
    hlen = 2
    if n == 126:
        while len(data) < 4:
            data += sock.recv(65536) or _eof()
        n, hlen = int.from_bytes(data[2:4], "big"), 4
    elif n == 127:
        while len(data) < 10:
            data += sock.recv(65536) or _eof()
        n, hlen = int.from_bytes(data[2:10], "big"), 10
    while len(data) < hlen + n:
        data += sock.recv(65536) or _eof()
    return data[0], data[hlen : hlen + n], data[hlen + n :]


def _eof() -> bytes:
    raise EOFError("server closed the connection")


def eventually(fetch: Callable[[], T], check: Callable[[T], bool] = bool, timeout: float = 5.0,
               interval: float = 0.005) -> T:
    """The one poll loop of the tests: call ``fetch()`` until ``check``
    accepts its value and return that value; AssertionError with the last
    value after ``timeout``. For state no message confirms (a close handler
    that ran, a counter that returned to zero)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still {value!r} after {timeout}s")
        time.sleep(interval)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
    """True once ``predicate()`` is true (polled by :func:`eventually`),
    False if it is still false after ``timeout``."""
    try:
        eventually(predicate, bool, timeout)
    except AssertionError:
        return False
    return True


def settled(srv: Running, ws: Any, timeout: float = 5.0) -> None:
    """Wait until endpoint ``ws`` has no live connection (every close handler
    finished) and no handler Task left: nothing more can run for it."""
    hub = srv.hub(ws)
    eventually(lambda: srv.call(lambda: (hub.live, hub.live_tasks)), lambda v: v == (0, 0), timeout)
