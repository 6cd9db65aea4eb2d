"""HTTP rules of robyn_fast.http.protocol, on uvloop and asyncio:

- ``Host`` (RFC 9112 §3.2): an HTTP/1.1 request without it, or any request
  with two, gets 400 and the connection is closed (the WebSocket upgrade
  request too); HTTP/1.0 without it is served.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from robyn_fast import Robyn, WebSocket

from .server_helpers import connect, recv_all, recv_until, running, upgrade_request


# --------------------------------------------------------------------------
# Host
# --------------------------------------------------------------------------


@pytest.fixture
def host_app(loop_kind: str) -> Iterator[int]:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @app.get("/")
    def index() -> str:
        return "ok"

    @ws.on("message")
    def echo(conn: object, msg: str) -> str:
        return msg

    with running(app, loop_kind) as srv:
        yield srv.port


def answer_then_close(port: int, request: bytes) -> bytes:
    """Everything the server sends in answer to ``request`` until it closes."""
    sock = connect(port)
    try:
        sock.sendall(request)
        return recv_all(sock)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", b"missing Host header"),
        (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", b"more than one Host header"),
        (b"GET / HTTP/1.0\r\nHost: a.example\r\nhost: a.example\r\n\r\n", b"more than one Host header"),
        # An upgrade is an HTTP/1.1 request like any other.
        (upgrade_request("/ws").replace(b"Host: 127.0.0.1\r\n", b""), b"missing Host header"),
        (upgrade_request("/ws", extra="Host: other.example\r\n"), b"more than one Host header"),
    ],
    ids=["1.1-none", "1.1-two", "1.0-two", "upgrade-none", "upgrade-two"],
)
def test_host_rules_400_and_close(host_app: int, request_bytes: bytes, reason: bytes) -> None:
    data = answer_then_close(host_app, request_bytes)  # recv_all: returns once the server closed
    assert data.startswith(b"HTTP/1.1 400 "), data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert reason in body


def test_http10_without_host_is_served(host_app: int) -> None:
    data = answer_then_close(host_app, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b"\r\n\r\nok")


def test_host_400_comes_after_the_responses_owed(host_app: int) -> None:
    """A Host-less request pipelined behind a good one: the good one is
    answered first, then the 400, then the close."""
    data = answer_then_close(
        host_app, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and first.endswith(b"ok")
    assert second.startswith(b"400 ") and second.endswith(b"missing Host header (required in HTTP/1.1)")


def test_upgrade_with_one_host_still_opens(host_app: int) -> None:
    sock = connect(host_app)
    try:
        sock.sendall(upgrade_request("/ws"))
        assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
    finally:
        sock.close()
