"""WebSocket side of the server: the handshake and every close path at the
byte level with raw sockets, bad input, backpressure, and real clients
(websocket-client, websockets). Each test runs on uvloop and asyncio."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import time
from typing import Any

import pytest
import websocket as wsclient
import websockets

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_binary, build_close, build_ping, build_text

from .codec_helpers import masked
from .server_helpers import (
    connect,
    read_frame,
    recv_all,
    recv_until,
    running,
    settled,
    upgrade_request,
    wait_for,
    ws_connect,
)

MASK = b"\x11\x22\x33\x44"


class Recorder:
    """An app whose handlers record what they saw."""

    def __init__(self, config: Config | None = None, path: str = "/ws") -> None:
        self.app = Robyn(__file__)
        self.ws = WebSocket(self.app, path, config=config)
        self.connects: list[str] = []
        self.messages: list[Any] = []
        self.closes: list[str] = []
        self.connectors: dict[str, Any] = {}

        @self.ws.on("connect")
        def on_connect(ws: Any) -> None:
            self.connects.append(ws.id)
            self.connectors[ws.id] = ws

        @self.ws.on("message")
        def on_message(ws: Any, msg: Any) -> Any:
            self.messages.append(msg)
            if msg == "close-me":
                ws.close(4000, "as asked")
                return "bye"
            if msg == "raise":
                raise RuntimeError("handler failure")
            return msg

        @self.ws.on("close")
        def on_close(ws: Any) -> None:
            self.closes.append(ws.id)


# -- handshake ------------------------------------------------------------------------


def test_handshake_response_bytes(loop_kind: str) -> None:
    rec = Recorder()
    key = base64.b64encode(b"0123456789abcdef")
    expected_accept = base64.b64encode(
        hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request(key=key))
        head = recv_until(sock, b"\r\n\r\n").split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 101 switching protocols")
        assert b"upgrade: websocket" in head
        assert b"connection: upgrade" in head
        assert b"sec-websocket-accept: " + expected_accept.lower() in head
        assert wait_for(lambda: len(rec.connects) == 1)
        sock.close()
        assert wait_for(lambda: len(rec.closes) == 1)


@pytest.mark.parametrize(
    ("request_bytes", "status", "must_contain"),
    [
        (upgrade_request(version="8"), b"426", b"sec-websocket-version: 13"),
        (upgrade_request(key=b"c2hvcnQ="), b"400", b""),
        (upgrade_request(key=b"not base64!!"), b"400", b""),
        (upgrade_request().replace(b"Upgrade: websocket\r\n", b"Upgrade: h2c\r\n"), b"426", b"upgrade: websocket"),
        (upgrade_request().replace(b"Connection: Upgrade\r\n", b"Connection: keep-alive\r\n"), b"426", b""),
        (upgrade_request().replace(b"GET ", b"POST "), b"405", b"allow: get"),
        (upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0"), b"400", b""),
        (upgrade_request().replace(b"Host: 127.0.0.1\r\n", b""), b"400", b""),
    ],
)
def test_bad_handshakes_are_refused_before_any_handler(
    loop_kind: str, request_bytes: bytes, status: bytes, must_contain: bytes
) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(request_bytes)
        response = recv_all(sock).lower()
        assert response.startswith(b"http/1.1 " + status), response[:200]
        assert must_contain in response
        assert rec.connects == [] and rec.messages == []


def test_origin_allowlist(loop_kind: str) -> None:
    rec = Recorder(Config(allowed_origins=frozenset({"https://good.example"})))
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request(extra="Origin: https://evil.example\r\n"))
        assert recv_all(sock).startswith(b"HTTP/1.1 403 ")
        sock, _ = ws_connect(srv.port, extra="Origin: https://good.example\r\n")
        assert wait_for(lambda: len(rec.connects) == 1)
        sock.close()


def test_subprotocol_negotiation(loop_kind: str) -> None:
    rec = Recorder(Config(subprotocols=("chat.v2", "chat.v1")))
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request(extra="Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"))
        head = recv_until(sock, b"\r\n\r\n").lower()
        assert b"sec-websocket-protocol: chat.v1\r\n" in head
        # The handlers see what was agreed.
        assert wait_for(lambda: len(rec.connectors) == 1)
        assert [c.subprotocol for c in rec.connectors.values()] == ["chat.v1"]
        sock.close()
    with running(rec.app, loop_kind) as srv:
        plain, _ = ws_connect(srv.port)
        assert wait_for(lambda: len(rec.connectors) == 2)
        assert list(rec.connectors.values())[1].subprotocol is None  # none offered: none agreed
        plain.close()


def test_frames_sent_with_the_handshake_are_processed(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request() + build_text("early", mask=MASK) + build_text("bird", mask=MASK))
        data = recv_until(sock, b"\r\n\r\n")
        rest = data.split(b"\r\n\r\n", 1)[1]
        b0, payload, rest = read_frame(sock, rest)
        assert (b0, payload) == (0x81, b"early")
        b0, payload, rest = read_frame(sock, rest)
        assert (b0, payload) == (0x81, b"bird")
        sock.close()


def test_slow_handshake_is_disconnected(loop_kind: str) -> None:
    rec = Recorder()
    rec.app.config = Config(handshake_timeout=0.3, header_timeout=5)
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request()[:20])  # a handshake that never completes
        started = time.monotonic()
        response = recv_all(sock, timeout=5)
        assert time.monotonic() - started < 3
        assert response == b"" or response.startswith(b"HTTP/1.1 408")
        assert rec.connects == []


def test_oversized_handshake_headers(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(upgrade_request(extra="X-Big: " + "a" * 9000 + "\r\n"))
        assert recv_all(sock).startswith(b"HTTP/1.1 431 ")
        assert rec.connects == []


# -- close paths ----------------------------------------------------------------------------


def test_client_close_is_echoed_then_tcp_closed(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_close(3001, "done", mask=MASK))
        b0, payload, rest = read_frame(sock, rest)
        assert (b0, payload) == (0x88, (3001).to_bytes(2, "big"))
        assert recv_all(sock) == b""  # the server closes TCP first (RFC 6455 §7.1.1)
        assert wait_for(lambda: len(rec.closes) == 1)
        settled(srv, rec.ws)  # nothing left to run: no second close handler can come
        assert len(rec.closes) == 1


def test_empty_client_close_gets_empty_close(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_close(None, mask=MASK))
        assert read_frame(sock, rest)[:2] == (0x88, b"")
        assert recv_all(sock) == b""


def test_server_close_after_handler_reply(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_text("close-me", mask=MASK))
        b0, payload, rest = read_frame(sock, rest)
        assert (b0, payload) == (0x81, b"bye")  # the handler's return value leaves first
        b0, payload, rest = read_frame(sock, rest)
        assert b0 == 0x88 and payload == (4000).to_bytes(2, "big") + b"as asked"
        sock.sendall(build_close(4000, mask=MASK))
        assert recv_all(sock) == b""
        assert wait_for(lambda: len(rec.closes) == 1)


def test_server_close_aborts_when_peer_never_answers(loop_kind: str) -> None:
    rec = Recorder(Config(close_timeout=0.3))
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_text("close-me", mask=MASK))
        read_frame(sock, rest)
        started = time.monotonic()
        # Read the Close, never answer it: the server aborts after close_timeout.
        sock.settimeout(5)
        while True:
            try:
                if not sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        assert time.monotonic() - started < 3
        assert wait_for(lambda: len(rec.closes) == 1)


def test_close_is_idempotent_and_sends_after_close_fail(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        assert wait_for(lambda: len(rec.connects) == 1)
        conn = rec.connectors[rec.connects[0]]
        assert srv.call(conn.close, 1000, "") is True
        assert srv.call(conn.close, 1000, "") is False
        assert srv.call(conn.sync_send_to, conn.id, "late") is False
        b0, payload, rest = read_frame(sock, rest)
        assert (b0, payload) == (0x88, b"\x03\xe8")
        sock.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x02hi", 1002),  # unmasked client frame
        (masked(0x83, b"", MASK), 1002),  # reserved opcode
        (masked(0x09, b"", MASK), 1002),  # fragmented ping
        (build_text(b"\xc0\x80", mask=MASK), 1007),  # invalid UTF-8
        (masked(0x88, (1005).to_bytes(2, "big"), MASK), 1002),  # close code that must not be sent
        (b"\x82\xff" + ((1 << 63) - 1).to_bytes(8, "big") + MASK, 1009),  # announces 2^63-1 bytes
        (b"\x82\xff" + (1 << 63).to_bytes(8, "big") + MASK, 1002),  # top bit set
    ],
)
def test_protocol_errors_close_with_the_right_code(loop_kind: str, frame: bytes, code: int) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(frame)
        b0, payload, rest = read_frame(sock, rest)
        assert b0 == 0x88
        assert int.from_bytes(payload[:2], "big") == code
        assert recv_all(sock) == b""
        assert wait_for(lambda: len(rec.closes) == 1)
        assert rec.messages == []


def test_message_too_big_from_header(loop_kind: str) -> None:
    rec = Recorder(Config(max_message_size=1000))
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_binary(b"x" * 1001, mask=MASK)[:8])  # the header alone
        b0, payload, _ = read_frame(sock, rest)
        assert (b0, payload[:2]) == (0x88, (1009).to_bytes(2, "big"))


def test_ping_gets_pong_with_same_payload(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_ping(b"are you there", mask=MASK))
        assert read_frame(sock, rest)[:2] == (0x8A, b"are you there")
        sock.close()


def test_keepalive_closes_dead_peer(loop_kind: str) -> None:
    rec = Recorder(Config(ping_interval=0.2, ping_timeout=0.2, close_timeout=0.3))
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        b0, _payload, rest = read_frame(sock, rest)
        assert b0 == 0x89  # the server's keepalive ping; we never answer it
        b0, payload, rest = read_frame(sock, rest)
        assert b0 == 0x88 and int.from_bytes(payload[:2], "big") == 1011
        assert wait_for(lambda: len(rec.closes) == 1, timeout=3)


def test_keepalive_answered_keeps_connection(loop_kind: str) -> None:
    rec = Recorder(Config(ping_interval=0.1, ping_timeout=0.2))

    def pongs() -> int:
        return int(rec.app.stats()["counters"]["pongs_received"])

    async def talk(url: str) -> str:
        before = pongs()
        async with websockets.connect(url, ping_interval=None) as client:
            # websockets answers the server's keepalive Pings in the background: once four
            # rounds are answered (the server counts the Pongs), the connection is still open.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while pongs() - before < 4:
                assert loop.time() < deadline, pongs() - before
                await asyncio.sleep(0.01)
            await client.send("still here")
            return str(await client.recv())

    with running(rec.app, loop_kind) as srv:
        assert asyncio.run(talk(f"{srv.ws_url}/ws")) == "still here"
        assert wait_for(lambda: len(rec.closes) == 1)
        assert rec.messages == ["still here"]


def test_peer_vanishing_mid_frame_runs_close_handler_once(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        for hard in (False, True):
            sock, _ = ws_connect(srv.port)
            sock.sendall(build_binary(b"z" * 5000, mask=MASK)[:1000])
            if hard:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        assert wait_for(lambda: len(rec.closes) == 2)
        settled(srv, rec.ws)
        assert sorted(rec.closes) == sorted(rec.connects)
        assert rec.messages == []
        assert srv.call(lambda: len(rec.ws.connections)) == 0


def test_handler_error_keeps_connection_open(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        client = wsclient.create_connection(f"{srv.ws_url}/ws", timeout=5)
        client.send("raise")
        client.send("after")
        assert client.recv() == "after"
        client.close()
    assert any(
        "message handler Recorder.__init__.<locals>.on_message raised" in r.getMessage() and r.exc_info
        for r in caplog.records
    )


def test_close_on_handler_error_switch(loop_kind: str) -> None:
    rec = Recorder(Config(close_on_handler_error=True))
    with running(rec.app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        sock.sendall(build_text("raise", mask=MASK))
        b0, payload, _ = read_frame(sock, rest)
        assert b0 == 0x88 and int.from_bytes(payload[:2], "big") == 1011
        sock.close()  # else shutdown waits close_timeout (10 s) for the answer to that Close


# -- backpressure ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_never_reading_client_stays_bounded(loop_kind: str, policy: str) -> None:
    limit = 256 * 1024
    rec = Recorder(Config(max_backpressure=limit, backpressure_policy=policy, close_timeout=0.5))
    payload = "m" * 4096
    with running(rec.app, loop_kind) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(upgrade_request())
        recv_until(sock, b"\r\n\r\n")
        assert wait_for(lambda: len(rec.connects) == 1)
        conn_id = rec.connects[0]
        conn = srv.call(lambda: srv.server.hub(rec.ws).connections[conn_id])

        def flood() -> tuple[int, int]:
            sent, peak = 0, 0
            for _ in range(5000):  # 20 MiB offered to a client that never reads
                if rec.ws.send_to(conn_id, payload):
                    sent += 1
                peak = max(peak, conn.buffered_amount)
            return sent, peak

        sent, peak = srv.call(flood, timeout=30)
        assert peak <= limit + len(payload) + 16
        assert sent < 5000
        if policy == "drop":
            assert conn.dropped == 5000 - sent
            assert conn.state == 0  # still open
        else:
            assert conn.state != 0  # closing with 1008, then aborted after close_timeout
            assert wait_for(lambda: len(rec.closes) == 1, timeout=5)
        sock.close()


def test_late_reader_gets_every_broadcast_whole_and_in_order(loop_kind: str) -> None:
    # Flushes write to the socket themselves while the transport holds nothing
    # of ours; once the kernel takes only part, the rest goes to the transport.
    # A client that reads nothing for a while (4 KiB receive buffer) meets
    # every case: whole sends, a partial send (one frame cut, in a batch of
    # one and of several frames), then the transport's buffer; read later,
    # everything arrives whole and in order, and so it does for a client
    # beside it.
    rec = Recorder(Config(max_backpressure=64 * 1024 * 1024, ping_interval=None))
    pad = "p" * 32000
    with running(rec.app, loop_kind) as srv:
        late = socket.socket()
        late.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        late.connect(("127.0.0.1", srv.port))
        late.sendall(upgrade_request())
        rest = recv_until(late, b"\r\n\r\n").partition(b"\r\n\r\n")[2]
        prompt, prompt_rest = ws_connect(srv.port)
        assert wait_for(lambda: len(rec.connects) == 2)
        conn = srv.call(lambda: srv.server.hub(rec.ws).connections[rec.connects[0]])
        peak = 0
        seq = 0
        for batch in range(200):  # a flush each: 1 frame, then 3 frames per batch (sendmsg)
            count = 1 if batch % 2 else 3
            srv.call(lambda first=seq, n=count: [rec.ws.broadcast(f"{i} {pad}") for i in range(first, first + n)])
            seq += count
            peak = max(peak, srv.call(lambda: conn.buffered_amount))
        assert peak > 0, "the late reader's transport never had to buffer anything"
        prompt.settimeout(10)
        for want in range(seq):
            opcode, payload, prompt_rest = read_frame(prompt, prompt_rest)
            assert (opcode, payload.decode()) == (0x81, f"{want} {pad}")
        late.settimeout(10)
        for want in range(seq):
            opcode, payload, rest = read_frame(late, rest)
            assert (opcode, payload.decode()) == (0x81, f"{want} {pad}"), f"message {want}"
        assert wait_for(lambda: srv.call(lambda: conn.buffered_amount) == 0)
        assert srv.call(lambda: conn.state) == 0
        late.close()
        prompt.close()


def test_flush_never_writes_to_a_closed_transports_socket_number(loop_kind: str) -> None:
    # A flush writes to the socket's fd itself. uvloop closes a transport's fd
    # (after abort() or a read error) before it calls connection_lost: until
    # then the connection is open to us while the fd number may already be
    # another socket's, so a flush asks the transport whether it is closing
    # first. Here a broadcast is queued, the connection aborted and the fd
    # number taken by a new socket pair before connection_lost: nothing may
    # reach it. (asyncio closes the fd after connection_lost: no reuse.)
    rec = Recorder(Config(ping_interval=None))
    with running(rec.app, loop_kind) as srv:
        sock, _ = ws_connect(srv.port)
        assert wait_for(lambda: len(rec.connects) == 1)
        conn = srv.call(lambda: srv.server.hub(rec.ws).connections[rec.connects[0]])

        pair: list[socket.socket] = []

        def broadcast_abort_reuse() -> int:
            fd: int = conn.transport.get_extra_info("socket").fileno()
            rec.ws.broadcast("not for the next owner of this fd")  # the flush is queued, then:
            conn.abort()  # uvloop closes the fd at the end of this iteration
            # A timer of the next iteration runs before the queued callbacks
            # (the flush, then connection_lost) and opens a socket: fd reused.
            srv.loop.call_later(0, lambda: pair.extend(socket.socketpair()))
            return fd

        fd = srv.call(broadcast_abort_reuse)
        assert wait_for(lambda: len(rec.closes) == 1 and len(pair) == 2)
        a, b = pair
        try:
            if loop_kind == "uvloop":
                assert a.fileno() == fd, "the scenario needs the aborted socket's number reused"
            b.setblocking(False)
            with pytest.raises(BlockingIOError):
                b.recv(4096)
        finally:
            a.close()
            b.close()
            sock.close()


def test_reading_pauses_when_handlers_fall_behind(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws", config=Config(read_high_water=8, read_low_water=2))
    gate = asyncio.Event()
    seen: list[str] = []
    paused: list[bool] = []

    @ws.on("message")
    async def slow(conn: Any, msg: str) -> str:
        if msg == "0":
            await gate.wait()
        seen.append(msg)
        return msg

    with running(app, loop_kind) as srv:
        client = wsclient.create_connection(f"{srv.ws_url}/ws", timeout=10)
        for i in range(100):
            client.send(str(i))
        def paused_now() -> list[bool]:
            return srv.call(lambda: [c.reading_paused for c in srv.server.hub(ws).connections.values()])

        assert wait_for(lambda: any(paused_now()))
        paused.append(True)
        srv.call(gate.set)
        replies = [client.recv() for _ in range(100)]
        assert replies == [str(i) for i in range(100)]
        assert seen == [str(i) for i in range(100)]
        assert not any(paused_now())
        client.close()
    assert paused == [True]


# -- real clients ---------------------------------------------------------------------------------


def test_websocket_client_echo_and_order(loop_kind: str) -> None:
    rec = Recorder()
    with running(rec.app, loop_kind) as srv:
        client = wsclient.create_connection(f"{srv.ws_url}/ws", timeout=10)
        client.send("héllo")
        assert client.recv() == "héllo"
        client.send_binary(b"\x00\xff")
        assert client.recv() == b"\x00\xff"
        for i in range(1000):
            client.send(f"n{i}")
        assert [client.recv() for _ in range(1000)] == [f"n{i}" for i in range(1000)]
        big = "x" * 500_000
        client.send(big)
        assert client.recv() == big
        # A fragmented message: three frames.
        client.send_frame(wsclient.ABNF.create_frame("frag", wsclient.ABNF.OPCODE_TEXT, 0))
        client.send_frame(wsclient.ABNF.create_frame("men", wsclient.ABNF.OPCODE_CONT, 0))
        client.send_frame(wsclient.ABNF.create_frame("ted", wsclient.ABNF.OPCODE_CONT, 1))
        assert client.recv() == "fragmented"
        client.close()
        assert wait_for(lambda: len(rec.closes) == 1)


def test_websockets_client_round_trip(loop_kind: str) -> None:
    rec = Recorder()

    async def talk(url: str) -> tuple[list[Any], int | None]:
        async with websockets.connect(url) as client:
            await client.send("one")
            await client.send(b"two")
            got = [await client.recv(), await client.recv()]
            pong = await client.ping(b"p")
            await asyncio.wait_for(pong, 5)
            await client.send("close-me")
            got.append(await client.recv())
            try:
                await client.recv()
            except websockets.ConnectionClosed as exc:
                return got, exc.rcvd.code if exc.rcvd else None
        return got, None

    with running(rec.app, loop_kind) as srv:
        got, code = asyncio.run(talk(f"{srv.ws_url}/ws"))
    assert got == ["one", b"two", "bye"]
    assert code == 4000


def test_handler_forms_and_return_values(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    events: list[str] = []

    @ws.on("connect")
    async def connected(conn: Any) -> str:
        events.append("connect")
        return f"welcome {len(conn.id)}"

    @ws.on("message")
    async def message(conn: Any, msg: Any) -> Any:
        await asyncio.sleep(0)
        if msg == "none":
            return None
        if msg == "bytes":
            return b"\x01\x02"
        if msg == "dm":
            assert conn.sync_send_to(conn.id, "direct")
            return "after-direct"
        return msg.upper()

    @ws.on("close")
    def closed(conn: Any) -> None:
        events.append("close")

    with running(app, loop_kind) as srv:
        client = wsclient.create_connection(f"{srv.ws_url}/ws", timeout=5)
        assert client.recv() == "welcome 36"
        for msg in ("a", "none", "bytes", "dm", "b"):
            client.send(msg)
        assert [client.recv() for _ in range(5)] == ["A", b"\x01\x02", "direct", "after-direct", "B"]
        client.close()
        assert wait_for(lambda: events == ["connect", "close"])


def test_sigterm_sends_1001_and_exits_zero(tmp_path: Any) -> None:
    from .process_helpers import EXAMPLES, serve_script

    with serve_script(EXAMPLES / "echo.py") as server:
        client = wsclient.create_connection(f"ws://127.0.0.1:{server.port}/ws", timeout=10)
        client.send("ping")
        assert client.recv() == "ping"
        server.proc.terminate()
        frame = client.recv_frame()
        assert frame.opcode == wsclient.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1001
        client.send_close()
        assert server.wait(15) == 0
        assert "shutting down" in server.output()


def test_garbage_after_the_handshake_never_hurts_the_server(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    import random

    rng = random.Random(6455)
    rec = Recorder(Config(max_message_size=4096, close_timeout=0.5))
    with running(rec.app, loop_kind) as srv:
        for i in range(120):
            sock, rest = ws_connect(srv.port)
            kind = i % 3
            if kind == 0:  # pure noise
                junk = rng.randbytes(rng.randrange(1, 400))
            elif kind == 1:  # a valid frame, then noise
                junk = build_text("ok", mask=MASK) + rng.randbytes(rng.randrange(1, 200))
            else:  # frame headers with random lengths, opcodes and bits
                junk = bytes([rng.randrange(256), rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 300))
            sock.sendall(junk)
            sock.settimeout(0.3)
            try:
                while sock.recv(65536):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass  # still waiting for the rest of a frame: our side gives up
            sock.close()
        assert wait_for(lambda: len(rec.closes) == 120, timeout=10)
        assert sorted(rec.closes) == sorted(rec.connects)
        client = wsclient.create_connection(f"{srv.ws_url}/ws", timeout=5)
        client.send("still serving")
        assert client.recv() == "still serving"
        client.close()
        assert wait_for(lambda: srv.call(lambda: len(rec.ws.connections)) == 0)
    assert not [r for r in caplog.records if r.levelno >= 40], [r.getMessage() for r in caplog.records if r.levelno >= 40]
