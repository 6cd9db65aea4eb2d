"""Whole-server behaviour in subprocesses: graceful shutdown with handlers
suspended, bytes streamed behind an upgrade that waits its turn, and
connection churn with everything back to its baseline. Plus upgrades
pipelined behind ordinary requests (in-process)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import select
import signal
import socket
import struct
import threading
import time
import urllib.request
from typing import Any

import pytest
import websocket as wsclient

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_frame, build_text

from .process_helpers import ROOT, ServerProcess, open_fds, process_rss
from .server_helpers import connect, eventually, read_frame, recv_until, running, upgrade_request

APPS = ROOT / "tests" / "robyn_apps"
MASK = b"\x11\x22\x33\x44"
MiB = 1024 * 1024


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


# -- graceful shutdown ----------------------------------------------------------------------------------


def test_sigterm_closes_suspended_connections_at_once_and_waits_for_close_handlers(loop_kind: str) -> None:
    close_timeout = 5.0
    server = ServerProcess([str(APPS / "suspended_handlers.py")], loop_kind,
                           env={"CLOSE_TIMEOUT": str(close_timeout)})
    clients: list[wsclient.WebSocket] = []
    try:
        port = server.wait_listening()
        for i in range(24):  # half async close handlers, half sync; half suspended for good
            path = "/ws" if i % 2 else "/ws-sync"
            c = wsclient.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=15)
            c.send("forever" if i % 4 < 2 else "0.5")
            clients.append(c)
        eventually(lambda: server.output().count("SUSPENDED "), lambda n: n == 24, timeout=15)
        suspended = set(re.findall(r"SUSPENDED (\S+)", server.output()))
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        waited = []
        for c in clients:
            frame = c.recv_frame()
            waited.append(time.monotonic() - started)
            assert frame.opcode == wsclient.ABNF.OPCODE_CLOSE, (frame.opcode, frame.data)
            assert frame.data == struct.pack("!H", 1001) + b"server shutting down"
            c.send_close()
        # At once: not after the handlers, not after close_timeout.
        assert max(waited) < close_timeout / 2, waited
        assert server.wait(close_timeout + 10) == 0
    finally:
        for c in clients:
            c.shutdown()
        server.stop()
    out = server.output()
    lines = out.splitlines()
    closed = [line.split()[1] for line in lines if line.startswith("CLOSED ")]
    assert sorted(closed) == sorted(suspended) and len(closed) == 24  # each close handler ran, once
    last_closed = max(i for i, line in enumerate(lines) if line.startswith("CLOSED "))
    assert lines.index("SHUTDOWN-HOOK") > last_closed  # the hooks after the close handlers
    assert "shutdown: 12 handler(s) still running after 5.0s were cancelled" in out
    assert "Traceback" not in out


# -- bytes behind an upgrade --------------------------------------------------------------------------


def test_64_mib_behind_a_waiting_upgrade_stay_in_the_kernel_then_reach_the_websocket(loop_kind: str) -> None:
    payload = bytes(range(256)) * 256  # 64 KiB
    frame = build_frame(0x2, payload, mask=MASK)
    total_frames = 1024  # 64 MiB of payload
    server = ServerProcess([str(APPS / "churn.py")], loop_kind)
    try:
        port = server.wait_listening()
        assert get_json(port, "/debug")["bytes"] == 0
        baseline = process_rss(server.pid)
        sock = connect(port)
        # An upgrade pipelined behind a request that waits: it cannot be
        # answered yet, and neither can the frames after it be read.
        sock.sendall(get("/slow") + upgrade_request("/ws"))
        sock.setblocking(False)
        stream = memoryview(frame * 16)  # 1 MiB per chunk
        sent = 0
        while sent < total_frames * len(frame):
            rlist, wlist, _ = select.select([], [sock], [], 1.0)
            if not wlist:
                break  # the kernel's buffers are full: the server is not reading
            offset = sent % len(stream)
            try:
                sent += sock.send(stream[offset:])
            except BlockingIOError:
                continue
        assert sent < total_frames * len(frame), "the server read everything behind the pending upgrade"
        growth = process_rss(server.pid) - baseline
        assert growth < 8 * MiB, f"server RSS grew {growth / MiB:.1f} MiB with {sent / MiB:.1f} MiB sent"
        assert get_json(port, "/debug")["live"] == 0  # still serving, no WebSocket yet
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/release", timeout=10) as resp:
            assert resp.read() == b"released"

        def send_rest() -> None:
            rest = total_frames * len(frame) - sent
            offset = sent % len(stream)
            sock.setblocking(True)
            while rest:
                chunk = stream[offset : offset + rest]
                sock.sendall(chunk)
                rest -= len(chunk)
                offset = 0

        sender = threading.Thread(target=send_rest)
        sender.start()
        sender.join(60)
        assert not sender.is_alive()
        head = recv_until(sock, b"\r\n\r\n", limit=1 << 16)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"slow done" in head
        if b"101 Switching Protocols" not in head:
            head += recv_until(sock, b"101 Switching Protocols")
        stats = eventually(lambda: get_json(port, "/debug"), lambda d: d["bytes"] == total_frames * len(payload),
                           timeout=60)
        assert stats["messages"] == total_frames
        assert process_rss(server.pid) - baseline < 24 * MiB
        sock.close()
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_an_upgrade_pipelined_behind_requests_is_answered_after_them(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    def echo(conn: Any, msg: str) -> str:
        return f"echo {msg}"

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "slow"

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    with running(app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(get("/slow") + get("/plain") + upgrade_request("/ws") + build_text("sent with the handshake", mask=MASK))
        data = recv_until(sock, b"101 Switching Protocols")
        data += recv_until(sock, b"\r\n\r\n") if not data.split(b"101 Switching Protocols", 1)[1].count(
            b"\r\n\r\n") else b""
        slow_reply, plain_reply, switch = data.split(b"HTTP/1.1 ")[1:]
        # Both answered in order, and kept alive (an upgrade behind them is no reason to close).
        assert slow_reply.startswith(b"200 OK\r\n") and slow_reply.endswith(b"\r\n\r\nslow")
        assert plain_reply.startswith(b"200 OK\r\n") and plain_reply.endswith(b"\r\n\r\nplain")
        assert b"connection: close" not in (slow_reply + plain_reply).lower()
        assert switch.startswith(b"101 Switching Protocols\r\n")
        tail = switch.split(b"\r\n\r\n", 1)[1]
        b0, payload, _ = read_frame(sock, tail)
        assert (b0, payload) == (0x81, b"echo sent with the handshake")
        sock.close()


def test_an_upgrade_read_at_once_with_frames_behind_it_is_handed_over_with_them(loop_kind: str) -> None:
    """A connection's first read holding the whole upgrade and frames (the compiled head scan's path, no
    httptools): the frames reach the WebSocket; refusals and HTTP answers to an upgrade on that path close as
    on httptools' path."""
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    strict = WebSocket(app, "/strict", config=Config(allowed_origins=frozenset({"https://ok.example"})))

    @ws.on("message")
    def echo(conn: Any, msg: str) -> str:
        return f"echo {msg}"

    @strict.on("message")
    def never(conn: Any, msg: str) -> str:
        raise AssertionError("a refused upgrade reached its endpoint")

    @app.get("/page")
    def page() -> str:
        return "page"

    with running(app, loop_kind) as srv:
        for i in range(3):  # several connections: nothing of one is left to the next
            sock = connect(srv.port)
            sock.sendall(upgrade_request("/ws") + build_text(f"one {i}", mask=MASK) + build_text("two", mask=MASK))
            head = recv_until(sock, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            b0, payload, rest = read_frame(sock, rest)
            assert (b0, payload) == (0x81, f"echo one {i}".encode())
            assert read_frame(sock, rest)[:2] == (0x81, b"echo two")
            sock.close()
        for path, status in (("/strict", b"403"), ("/page", b"200")):
            sock = connect(srv.port)
            sock.sendall(upgrade_request(path) + build_text("ignored", mask=MASK))
            answer = recv_until(sock, b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 " + status), answer
            sock.settimeout(10)
            while sock.recv(65536):  # then the server closes
                pass
            sock.close()


# -- churn --------------------------------------------------------------------------------------------------


def _abrupt_cycle(port: int, request: bytes, reset: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, "closed before the 101"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 ")
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


@pytest.mark.slow
@pytest.mark.full_scope
def test_10000_abrupt_connections_leave_fds_tasks_and_memory_at_baseline(loop_kind: str) -> None:
    server = ServerProcess([str(APPS / "churn.py")], loop_kind)
    try:
        port = server.wait_listening()
        request = upgrade_request("/ws")
        # One keep-alive connection for every /debug, so it is one steady fd
        # of the server's, never a transient one.
        debug_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def debug() -> dict[str, Any]:
            debug_conn.request("GET", "/debug")
            with debug_conn.getresponse() as resp:
                assert resp.status == 200
                return json.loads(resp.read())

        def settled(expected_connects: int) -> dict[str, Any]:
            return eventually(
                debug,
                lambda d: d["connects"] == d["closes"] == expected_connects and d["live"] == 0 and d["tasks"] == 0,
                timeout=60,
            )

        def churn(n: int) -> None:
            errors: list[BaseException] = []

            def worker(count: int, offset: int) -> None:
                try:
                    for i in range(count):
                        _abrupt_cycle(port, request, reset=(i + offset) % 2 == 0)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(n // 4, k)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            assert not errors, errors[:3]

        churn(1000)  # warm-up: allocator pools, caches, lazily built objects
        settled(1000)
        fds, rss = open_fds(server.pid), process_rss(server.pid)
        churn(10_000)
        stats = settled(11_000)
        assert stats["live"] == 0 and stats["tasks"] == 0
        assert open_fds(server.pid) == fds
        growth = process_rss(server.pid) - rss
        assert growth < 4 * MiB, f"RSS grew {growth / MiB:.2f} MiB over 10,000 connections"
    finally:
        server.stop()
    assert "Traceback" not in server.output()
