"""HTTP rules and budgets of robyn_fast.http.protocol, on uvloop and asyncio:

- ``Host`` (RFC 9112 §3.2): an HTTP/1.1 request without it, or any request
  with two, gets 400 and the connection is closed (the WebSocket upgrade
  request too); HTTP/1.0 without it is served.
- Pipelined request bodies share one per-connection budget
  (``Config.max_pipelined_bytes``): a client pipelining 1 MiB uploads behind
  a slow handler makes the server stop reading instead of holding every
  body (its RSS stays bounded), and every response still arrives, in order,
  once the handler finishes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from robyn_fast import Config, Request, Robyn, WebSocket

from .process_helpers import ROOT, ServerProcess, process_rss
from .server_helpers import connect, eventually, recv_all, recv_until, running, upgrade_request

MiB = 1024 * 1024


def read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[int, bytes, bytes]:
    """One response framed by content-length: (status, body, bytes read past it)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"closed inside a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed inside a response body")
        rest += chunk
    return int(lines[0].split()[1]), rest[:length], rest[length:]


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


# --------------------------------------------------------------------------
# Pipelined bodies
# --------------------------------------------------------------------------


def test_config_max_pipelined_bytes_is_validated() -> None:
    assert Config().max_pipelined_bytes == 1 * MiB
    with pytest.raises(ValueError, match="max_pipelined_bytes"):
        Config(max_pipelined_bytes=0)
    with pytest.raises(TypeError, match="max_pipelined_bytes"):
        Config(max_pipelined_bytes="1M")  # type: ignore[arg-type]


UPLOADS = 40  # pipelined 1 MiB bodies; without the budget 33 of them were held at once
BODY = b"x" * MiB


def upload(n: int) -> bytes:
    return (f"POST /upload?n={n} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(BODY)}\r\n\r\n").encode() + BODY


def unread_by_server(port: int, client_port: int) -> int:
    """Bytes the server has not read yet from the connection of
    ``client_port`` (its socket's receive queue, /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return int(fields[4].split(":")[1], 16)
    return 0


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return bytes(r.read())


def test_pipelined_bodies_share_one_budget(loop_kind: str) -> None:
    server = ServerProcess([str(ROOT / "tests" / "robyn_apps" / "slow_upload.py")], loop_kind)
    sock: socket.socket | None = None
    try:
        port = server.wait_listening()
        first = connect(port, timeout=30)
        # Warm-up: uploads answered at once, so the allocator has seen 1 MiB bodies.
        for n in range(3):
            first.sendall(upload(-1))
            assert read_response(first)[:2] == (200, f"-1:{MiB}".encode())
        assert get(port, "/hold") == b"holding"
        first.sendall(upload(-1))  # waits in the handler, which holds its body
        baseline = process_rss(server.pid)

        sock = connect(port, timeout=30)
        client_port = sock.getsockname()[1]
        sent = [0]
        errors: list[BaseException] = []

        def send_all() -> None:
            assert sock is not None
            try:
                for n in range(UPLOADS):
                    sock.sendall(upload(n))
                    sent[0] = n + 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        # The server stops reading: bytes pile up unread in its socket (as many
        # as the kernel's receive buffer takes: 0.7-1 MiB seen here, depending
        # on its autotuning, so the wait asks for a quarter of a MiB).
        eventually(lambda: unread_by_server(port, client_port), lambda n: n >= MiB // 4, timeout=20)
        # What it holds then, sampled over a second (a server still reading would grow).
        grown = 0
        for _ in range(20):
            grown = max(grown, process_rss(server.pid) - baseline)
            time.sleep(0.05)
        assert grown < 8 * MiB, f"the server's RSS grew {grown / MiB:.1f} MiB for uploads queued behind one request"
        assert sent[0] < UPLOADS

        assert get(port, "/release") == b"released"
        assert read_response(first)[:2] == (200, f"-1:{MiB}".encode())
        rest = b""
        for n in range(UPLOADS):
            status, body, rest = read_response(sock, rest)
            assert (status, body) == (200, f"{n}:{MiB}".encode()), n
        sender.join(10)
        assert not errors, errors
        assert sent[0] == UPLOADS
        first.close()
    finally:
        if sock is not None:
            sock.close()
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]


def test_no_timeout_while_reading_is_paused_for_the_pipeline(loop_kind: str) -> None:
    """A body half read when the budget paused reading is not cut by the body
    timeout however long the handler ahead of it takes."""
    app = Robyn(__file__, config=Config(max_pipelined_bytes=64 * 1024, keep_alive_timeout=0.3, header_timeout=0.3))
    release = asyncio.Event()

    @app.post("/slow")
    async def slow(request: Request) -> str:
        await release.wait()
        return f"slow:{len(request.raw_body)}"

    @app.post("/echo")
    def echo(request: Request) -> str:
        return f"echo:{len(request.raw_body)}"

    with running(app, loop_kind) as srv:
        sock = connect(srv.port, timeout=10)
        body = b"y" * (512 * 1024)
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        sending = threading.Thread(target=sock.sendall, args=(head + body,), daemon=True)
        sending.start()
        # Ten times the body timeout passes while the handler ahead waits:
        # the server must not answer 408 (nor anything else) meanwhile.
        sock.settimeout(3.0)
        with pytest.raises(socket.timeout):
            sock.recv(1)
        srv.call(release.set)
        sock.settimeout(10)
        status, text, rest = read_response(sock)
        assert (status, text) == (200, b"slow:3")
        status, text, _ = read_response(sock, rest)
        assert (status, text) == (200, f"echo:{len(body)}".encode())
        sending.join(10)
        sock.close()


# --------------------------------------------------------------------------
# Methods httptools does not know (RFC 9110 §9.1: any token)
# --------------------------------------------------------------------------


def test_unknown_method_reaches_the_router(loop_kind: str) -> None:
    app = Robyn(__file__)

    @app.get("/")
    def index() -> str:
        return "ok"

    app.add_route("NONSTANDARD", "/custom", lambda request: f"{request.method} {request.body}")
    with running(app, loop_kind) as srv:
        sock = connect(srv.port)
        try:
            # No route has the method: 405 with Allow, as for a known method; the connection stays open.
            sock.sendall(b"NONSTANDARD / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, body, rest = read_response(sock)
            assert (status, body) == (405, b"Method Not Allowed")
            # A route registered for it answers it, body and all; then a known method on the same connection.
            sock.sendall(b"NONSTANDARD /custom HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            status, body, rest = read_response(sock, rest)
            assert (status, body) == (200, b"NONSTANDARD abc")
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock, rest)[:2] == (200, b"ok")
        finally:
            sock.close()
        head = answer_then_close(srv.port, b"NONSTANDARD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405 ") and b"\r\nallow: GET, HEAD\r\n" in head
        # Not a token: still malformed.
        assert answer_then_close(srv.port, b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
