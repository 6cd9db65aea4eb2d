"""Behind a proxy, on a running server: forwarding headers from trusted and
untrusted peers (HTTP requests, WebSocket upgrades, the access log), the
PROXY protocol from a raw socket, and the ``before_upgrade`` hook of both
WebSocket APIs (accept, refuse, async, raise, time out), on uvloop and
asyncio. The parsers alone: tests/test_forwarded.py."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from robyn_fast import Config, Request, Response, Robyn, WebSocket
from robyn_fast.exceptions import HTTPError
from robyn_fast.proxy_protocol import V2_SIGNATURE

from .codec_helpers import masked
from .loops import LOOPS
from .server_helpers import (connect, eventually, read_frame, recv_all, recv_until, running,
                             upgrade_request)

pytestmark = pytest.mark.parametrize("loop_kind", LOOPS)


def _app(**config: Any) -> tuple[Robyn, dict[str, Any]]:
    app = Robyn(__file__, config=Config(**config))
    seen: dict[str, Any] = {}

    @app.get("/who")
    def who(request: Request) -> dict[str, Any]:
        return {"ip": request.ip_addr, "scheme": request.url.scheme}

    chat = WebSocket(app, "/ws")

    @chat.on("connect")
    def connected(ws: Any) -> str:
        seen["remote_addr"] = ws.remote_addr
        return json.dumps(ws.remote_addr)

    @app.websocket("/rx/<room>")
    async def rx(websocket: Any) -> None:
        await websocket.send_json({"remote_addr": websocket.remote_addr, "room": websocket.path_params["room"]})
        while True:
            msg = await websocket.receive_text()
            await websocket.send_text("echo " + msg)

    seen["chat"], seen["rx"] = chat, rx
    return app, seen


def _get(port: int, path: str = "/who", extra: str = "", prefix: bytes = b"") -> tuple[bytes, bytes]:
    sock = connect(port)
    try:
        sock.sendall(prefix + f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        data = recv_all(sock)
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _refused(port: int, prefix: bytes, path: str = "/who") -> bool:
    """The connection closed (FIN or reset) without a byte of an answer."""
    try:
        return _get(port, path, prefix=prefix) == (b"", b"")
    except ConnectionResetError:
        return True


def _who(port: int, extra: str = "", prefix: bytes = b"") -> dict[str, Any]:
    head, body = _get(port, extra=extra, prefix=prefix)
    assert head.startswith(b"HTTP/1.1 200"), head
    result: dict[str, Any] = json.loads(body)
    return result


def _upgrade(port: int, path: str, extra: str = "", prefix: bytes = b"") -> tuple[socket.socket, bytes, bytes]:
    """(socket, response head, what followed it)."""
    sock = connect(port)
    sock.sendall(prefix + upgrade_request(path, extra=extra))
    data = recv_until(sock, b"\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head, rest


@pytest.fixture
def caplog_access(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="robyn_fast.access")
    yield caplog


# -- forwarding headers -----------------------------------------------------------------------------------


def test_forwarding_headers_of_a_trusted_peer(loop_kind: str, caplog_access: pytest.LogCaptureFixture) -> None:
    app, seen = _app(access_log=True)  # the default list trusts 127.0.0.1, where the test connects from
    with running(app, loop_kind) as srv:
        xff = "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
        assert _who(srv.port, xff) == {"ip": "203.0.113.7", "scheme": "https"}
        assert _who(srv.port, 'Forwarded: for="[2001:db8::17]:4711";proto=https\r\n') == {
            "ip": "2001:db8::17", "scheme": "https"}
        assert _who(srv.port) == {"ip": "127.0.0.1", "scheme": "http"}
        # malformed: ignored whole, the peer kept, never a 500
        assert _who(srv.port, "X-Forwarded-For: not-an-ip\r\nForwarded: for=\r\n")["ip"] == "127.0.0.1"
        # the WebSocket connector (legacy API) and the adapter (@app.websocket)
        sock, head, rest = _upgrade(srv.port, "/ws", xff)
        assert head.startswith(b"HTTP/1.1 101")
        _, payload, _ = read_frame(sock, rest)
        assert json.loads(payload) == ["203.0.113.7", 0]
        sock.close()
        sock, head, rest = _upgrade(srv.port, "/rx/lobby", "X-Forwarded-For: [2001:db8::9]:81\r\n")
        _, payload, _ = read_frame(sock, rest)
        assert json.loads(payload) == {"remote_addr": ["2001:db8::9", 81], "room": "lobby"}
        sock.close()
        lines = eventually(lambda: [r.getMessage() for r in caplog_access.records if r.name == "robyn_fast.access"],
                           lambda v: sum("WS open" in line for line in v) >= 2)
        assert any(line.startswith('203.0.113.7:0 "GET /who"') for line in lines), lines
        assert any(line.startswith("203.0.113.7:0 WS open /ws") for line in lines), lines
        assert any(line.startswith("[2001:db8::9]:81 WS open") or line.startswith("2001:db8::9:81 WS open")
                   for line in lines), lines


def test_forwarding_headers_of_an_untrusted_peer_are_ignored(loop_kind: str) -> None:
    app, _ = _app(forwarded_allow_ips="10.0.0.0/8")
    with running(app, loop_kind) as srv:
        assert _who(srv.port, "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n") == {
            "ip": "127.0.0.1", "scheme": "http"}
        sock, head, rest = _upgrade(srv.port, "/ws", "Forwarded: for=203.0.113.7\r\n")
        _, payload, _ = read_frame(sock, rest)
        assert json.loads(payload)[0] == "127.0.0.1"
        sock.close()


# -- PROXY protocol ----------------------------------------------------------------------------------------

V1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
V2_TCP6 = (V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", 36 + 7) + bytes(15) + b"\x05" + bytes(15) + b"\x06"
           + struct.pack("!HH", 4242, 80) + b"\x04\x00\x04tlv!")
V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


def test_proxy_protocol_v1_and_v2(loop_kind: str) -> None:
    app, _ = _app(proxy_protocol=True, handshake_timeout=1.0)
    with running(app, loop_kind) as srv:
        assert _who(srv.port, prefix=V1)["ip"] == "192.0.2.1"
        assert _who(srv.port, prefix=V2_TCP6)["ip"] == "::5"
        assert _who(srv.port, prefix=V2_LOCAL)["ip"] == "127.0.0.1"  # a health check: the peer stands
        # the header's client is not a trusted proxy: its X-Forwarded-For is not believed
        assert _who(srv.port, "X-Forwarded-For: 6.6.6.6\r\n", prefix=V1)["ip"] == "192.0.2.1"
        # a WebSocket behind it, the header and the upgrade request in separate writes
        sock = connect(srv.port)
        sock.sendall(V1[:10])
        sock.sendall(V1[10:])
        sock.sendall(upgrade_request("/ws"))
        data = recv_until(sock, b"\r\n\r\n")
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        _, payload, _ = read_frame(sock, rest)
        assert json.loads(payload) == ["192.0.2.1", 56324]
        sock.close()
        # no header, a bad one, or one that never completes: closed without an answer
        assert _refused(srv.port, b"")
        assert _refused(srv.port, b"PROXY TCP4 1.2.3.4 nope 1 2\r\n")
        sock = connect(srv.port)
        sock.sendall(V1[:20])
        try:
            assert recv_all(sock, timeout=10) == b""  # handshake_timeout: 1 s
        except ConnectionResetError:
            pass
        sock.close()


def test_proxy_protocol_from_an_untrusted_peer_is_refused(loop_kind: str) -> None:
    app, _ = _app(proxy_protocol=True, forwarded_allow_ips="10.0.0.1")
    with running(app, loop_kind) as srv:
        assert _refused(srv.port, V1)


def test_proxy_protocol_and_tls_are_refused_together(loop_kind: str) -> None:
    import ssl

    with pytest.raises(ValueError, match="PROXY header comes before the TLS handshake"):
        Config(proxy_protocol=True, ssl=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))


# -- before_upgrade ----------------------------------------------------------------------------------------


def _hooked(handshake_timeout: float = 10.0) -> tuple[Robyn, dict[str, Any]]:
    app, seen = _app(handshake_timeout=handshake_timeout)
    seen["messages"] = []
    chat, rx = seen["chat"], seen["rx"]

    @chat.on("message")
    def message(ws: Any, msg: str) -> str:
        seen["messages"].append(msg)
        return "got " + msg

    @chat.before_upgrade
    def check(request: Request) -> Any:
        seen["request"] = request
        token = request.query_params.get("token")
        if token == "ok":
            return None
        if token == "int":
            return 429
        if token == "false":
            return False
        if token == "raise":
            raise RuntimeError("hook bug")
        if token == "http-error":
            raise HTTPError(401, "bad token", [("www-authenticate", "Bearer")])
        if token == "bad-return":
            return Response(200, {}, "fine?")
        return Response(401, {"WWW-Authenticate": 'Bearer realm="chat"'}, "no token")

    @rx.before_upgrade
    async def check_rx(request: Request) -> Any:
        seen["rx_request"] = request
        if request.headers.get("x-slow"):
            await asyncio.sleep(30)
        await asyncio.sleep(0.05)  # a real suspension: the upgrade waits, reading paused
        if request.headers.get("authorization") != "Bearer s3cret":
            return Response(403, {"X-Why": "token"}, "forbidden")
        if request.path_params["room"] == "boom":
            raise ValueError("async hook bug")
        return True

    return app, seen


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def test_before_upgrade_on_the_legacy_api(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app, seen = _hooked()
    with running(app, loop_kind) as srv:
        sock, head, rest = _upgrade(srv.port, "/ws?token=ok", "X-Forwarded-For: 203.0.113.5\r\nX-Test: 1\r\n")
        assert _status(head) == 101
        request = seen["request"]
        assert (request.ip_addr, request.url.path, request.url.scheme, request.headers.get("x-test")) == (
            "203.0.113.5", "/ws", "ws", "1")
        read_frame(sock, rest)
        sock.close()
        for token, status, check in [
            ("int", 429, b""), ("false", 403, b""), ("none", 401, b'www-authenticate: bearer realm="chat"'),
            ("http-error", 401, b"www-authenticate: bearer"), ("raise", 500, b""), ("bad-return", 500, b""),
        ]:
            # a frame right behind the request: refused, it never reaches the message handler
            sock = connect(srv.port)
            sock.sendall(upgrade_request(f"/ws?token={token}") + masked(0x81, b"hi"))
            data = recv_all(sock)
            sock.close()
            assert _status(data) == status, (token, data)
            assert check in data.lower() and b"connection: close" in data.lower()
        assert seen["messages"] == []
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "before_upgrade" in r.getMessage()]
        assert len(errors) == 2  # the raise and the bad return, each logged once


def test_before_upgrade_async_on_the_receive_api(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app, seen = _hooked(handshake_timeout=1.0)
    with running(app, loop_kind) as srv:
        # accepted after the hook awaited; a frame sent behind the request waits for it and then arrives in order
        sock = connect(srv.port)
        sock.sendall(upgrade_request("/rx/lobby?x=1", extra="Authorization: Bearer s3cret\r\n")
                     + masked(0x81, b"hi"))
        data = recv_until(sock, b"\r\n\r\n")
        head, _, rest = data.partition(b"\r\n\r\n")
        assert _status(head) == 101
        _, payload, rest = read_frame(sock, rest)
        assert json.loads(payload)["room"] == "lobby"
        _, payload, rest = read_frame(sock, rest)
        assert payload == b"echo hi"
        request = seen["rx_request"]
        assert request.path_params == {"room": "lobby"} and request.query_params.get("x") == "1"
        sock.close()
        # refused with the hook's status, headers and body
        sock, head, rest = _upgrade(srv.port, "/rx/lobby")
        assert _status(head) == 403 and b"x-why: token" in head.lower()
        assert (rest + recv_all(sock)).endswith(b"forbidden")
        sock.close()
        # an async hook that raises: 500, logged once
        sock, head, _ = _upgrade(srv.port, "/rx/boom", "Authorization: Bearer s3cret\r\n")
        assert _status(head) == 500
        sock.close()
        # one that takes longer than handshake_timeout: 503
        sock, head, _ = _upgrade(srv.port, "/rx/lobby", "X-Slow: 1\r\n")
        assert _status(head) == 503
        sock.close()
        messages = [r.getMessage() for r in caplog.records if "before_upgrade" in r.getMessage()]
        assert sum("raised" in m for m in messages) == 1 and sum("did not finish" in m for m in messages) == 1


def test_before_upgrade_hook_left_behind_when_the_client_goes(loop_kind: str) -> None:
    app, seen = _hooked(handshake_timeout=60.0)  # only the client's leaving can end the hook within the wait
    with running(app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request("/rx/lobby", extra="X-Slow: 1\r\n"))
        eventually(lambda: "rx_request" in seen)
        sock.close()
        # the server drops the waiting upgrade (its hook Task cancelled): nothing is left running
        eventually(lambda: srv.call(lambda: (len(srv.server.tasks), len(srv.server.http_connections))),
                   lambda v: v == (0, 0))


def test_before_upgrade_rejects_what_is_not_callable(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    with pytest.raises(TypeError, match="before_upgrade takes a callable"):
        ws.before_upgrade("nope")  # type: ignore[arg-type]


def test_before_upgrade_in_a_robyn_app(loop_kind: str) -> None:
    """Robyn's names (robyn.WebSocket, robyn.exceptions.HTTPException) reach the same hook."""
    from robyn_fast.compat.robyn import Robyn as RobynApp
    from robyn_fast.compat.robyn import WebSocket as RobynWebSocket
    from robyn_fast.compat.robyn.exceptions import HTTPException

    app = RobynApp(__file__)
    ws = RobynWebSocket(app, "/ws")

    @ws.on("connect")
    def connect_(ws: Any) -> str:
        return "hello"

    @ws.before_upgrade
    def check(request: Any) -> None:
        if request.headers.get("x-key") != "k":
            raise HTTPException(401, "who are you")

    @app.websocket("/rx")
    async def rx(websocket: Any) -> None:
        await websocket.send_text("rx")

    @rx.before_upgrade
    def check_rx(request: Any) -> Any:
        return 418

    with running(app, loop_kind) as srv:
        sock, head, rest = _upgrade(srv.port, "/ws")
        assert _status(head) == 401 and (rest + recv_all(sock)).endswith(b"who are you")
        sock.close()
        sock, head, rest = _upgrade(srv.port, "/ws", "X-Key: k\r\n")
        assert _status(head) == 101 and read_frame(sock, rest)[1] == b"hello"
        sock.close()
        sock, head, _ = _upgrade(srv.port, "/rx")
        assert _status(head) == 418
        sock.close()

