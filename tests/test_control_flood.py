"""Control frames under hostile traffic: every byte queued for a connection
counts against max_backpressure, Pongs are coalesced (RFC 6455 §5.5.3),
reading pauses while our writes back up, a Pong flood past the budget closes
with 1008 (logged once), and keepalive Pings cannot be answered blindly.

Flood tests run the server in a subprocess (its RSS is what they measure);
the rest run in-process on both loops or drive a Connection with a fake
transport, which sees every byte and every pause."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_close, build_ping, build_pong, build_text
from robyn_fast._core.connection import Connection, Hub
from robyn_fast.encoding import dumps

from .fake_transport import FakeTransport
from .loops import LOOPS
from .process_helpers import ROOT, ServerProcess, process_rss
from .server_helpers import eventually, read_frame, recv_until, running, upgrade_request, wait_for, ws_connect

MASK = b"\x0a\x0b\x0c\x0d"
FLOOD_APP = ROOT / "tests" / "robyn_apps" / "control_flood.py"
TOO_SLOW = re.compile(r"client reads too slowly: (\d+) bytes queued.*closing with 1008")


# -- with a fake transport ----------------------------------------------------------------------


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    yield loop
    loop.close()


def connection(loop: asyncio.AbstractEventLoop, on_message: Any = None, **config: Any) -> tuple[Connection, FakeTransport]:
    hub = Hub(loop, Config(**{"ping_interval": None, **config}), json_dumps=dumps)
    conn = Connection(hub, "c0", None, on_message, None)
    conn.connector = conn
    transport = FakeTransport()
    conn.start(transport)  # type: ignore[arg-type]
    return conn, transport


def one_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def run_until(loop: asyncio.AbstractEventLoop, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Run the loop an iteration at a time until ``predicate()`` holds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"still not {what} after {timeout}s"
        one_iteration(loop)


def pings(first: int, count: int) -> bytes:
    return b"".join(build_ping(i.to_bytes(4, "big"), mask=MASK) for i in range(first, first + count))


def test_a_client_that_keeps_up_gets_every_pong(loop: asyncio.AbstractEventLoop) -> None:
    conn, transport = connection(loop)
    conn.data_received(pings(0, 10))  # Autobahn 2.10 expects ten Pongs
    one_iteration(loop)
    assert transport.chunks == [build_pong(i.to_bytes(4, "big")) for i in range(10)]


def test_a_client_behind_gets_one_pong_per_iteration_with_the_latest_payload(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn, transport = connection(loop, lambda c, m: m)
    transport.buffered = 1  # it has not read everything we sent
    conn.data_received(build_text("a", mask=MASK) + pings(0, 500) + build_text("b", mask=MASK) + pings(500, 500))
    one_iteration(loop)
    # The Pong takes the place of the first Ping's answer, carrying the last Ping's payload.
    assert transport.chunks == [build_text("a"), build_pong((999).to_bytes(4, "big")), build_text("b")]
    assert conn.buffered_amount == 1


def test_pings_while_writing_is_paused_get_one_pong_when_it_resumes(loop: asyncio.AbstractEventLoop) -> None:
    conn, transport = connection(loop)
    conn.pause_writing()
    assert conn.reading_paused and not transport.reading
    conn.data_received(pings(0, 1000))  # what was already read is parsed, and answered later
    one_iteration(loop)
    assert transport.chunks == []
    conn.resume_writing()
    assert conn.reading_paused is False and transport.reading
    one_iteration(loop)
    assert transport.chunks == [build_pong((999).to_bytes(4, "big"))]
    conn.data_received(pings(7, 1))  # writing flows: the next Ping is answered in its own iteration
    one_iteration(loop)
    assert transport.chunks[1:] == [build_pong((7).to_bytes(4, "big"))]


def test_reading_resumes_only_when_neither_reason_holds(loop: asyncio.AbstractEventLoop) -> None:
    gate = loop.create_future()
    handled: list[str] = []

    async def slow(c: Any, m: str) -> None:
        await gate
        handled.append(m)

    conn, transport = connection(loop, slow, read_high_water=4, read_low_water=1)
    conn.data_received(b"".join(build_text(str(i), mask=MASK) for i in range(6)))
    assert conn.reading_paused and transport.pauses == 1  # the handler backlog
    conn.pause_writing()
    conn.resume_writing()
    assert conn.reading_paused and not transport.reading  # the backlog still holds
    conn.pause_writing()
    gate.set_result(None)
    run_until(loop, lambda: len(handled) == 6 and conn.hub.live_tasks == 0, "the six handlers done")
    assert conn.reading_paused and not transport.reading  # backlog gone, writes still backed up
    conn.resume_writing()
    assert not conn.reading_paused and transport.reading and transport.pauses == 1


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_a_pong_past_the_budget_closes_1008_whatever_the_policy(
    loop: asyncio.AbstractEventLoop, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn, transport = connection(loop, max_backpressure=1000, backpressure_policy=policy, close_timeout=30)
    transport.buffered = 950  # the client has not read these yet
    conn.data_received(pings(0, 1))  # a 6-byte Pong fits
    one_iteration(loop)
    assert transport.chunks == [build_pong((0).to_bytes(4, "big"))] and conn.state == 0
    transport.buffered = 996
    conn.data_received(pings(1, 3))  # 1002 bytes would be queued
    one_iteration(loop)
    assert transport.chunks[1:] == [build_close(1008, "client too slow")]
    assert conn.close_code == 1008 and conn.state == 1
    conn.data_received(pings(4, 100))  # closing: no more answers, no more log lines
    one_iteration(loop)
    assert len(transport.chunks) == 2
    lines = [r.getMessage() for r in caplog.records if "closing with 1008" in r.getMessage()]
    assert len(lines) == 1
    assert "996 bytes queued" in lines[0] and "127.0.0.1" in lines[0], lines
    conn.abort()


def test_data_and_close_frames_count_against_the_budget(loop: asyncio.AbstractEventLoop) -> None:
    conn, transport = connection(loop, max_backpressure=1000, backpressure_policy="drop")
    assert conn.send("x" * 600) and conn.send("y" * 300)
    assert not conn.send("z" * 100)  # 604 + 304 bytes queued: 102 more would pass 1000
    assert conn.dropped == 1
    conn.close(1000)
    assert conn.buffered_amount == 604 + 304 + 4  # the Close counts too
    one_iteration(loop)
    assert transport.chunks[-1] == build_close(1000)


# -- keepalive ----------------------------------------------------------------------------------


def test_keepalive_payloads_are_unpredictable(loop_kind: str) -> None:
    app = Robyn(__file__)
    WebSocket(app, "/ws", config=Config(ping_interval=0.1, ping_timeout=2.0))
    with running(app, loop_kind) as srv:
        payloads = []
        for _ in range(2):
            sock, rest = ws_connect(srv.port)
            for _ in range(2):
                b0, payload, rest = read_frame(sock, rest)
                assert b0 == 0x89
                payloads.append(payload)
                sock.sendall(build_pong(payload, mask=MASK))  # the right answer: the next Ping follows
            sock.close()
    assert all(len(p) == 8 for p in payloads)
    assert len(set(payloads)) == 4, payloads


def test_a_blind_pong_does_not_keep_the_connection_alive(loop_kind: str) -> None:
    app = Robyn(__file__)
    WebSocket(app, "/ws", config=Config(ping_interval=0.1, ping_timeout=0.4, close_timeout=1.0))
    with running(app, loop_kind) as srv:
        sock, rest = ws_connect(srv.port)
        b0, payload, rest = read_frame(sock, rest)
        assert b0 == 0x89
        started = time.monotonic()
        # What the old predictable payload would have been, and other guesses; never the real one.
        guesses = [b"ka" + seq.to_bytes(4, "big") for seq in range(0, 4)] + [b"", b"\x00" * 8]
        assert payload not in guesses
        sock.sendall(b"".join(build_pong(g, mask=MASK) for g in guesses))
        b0, close_payload, rest = read_frame(sock, rest)
        assert b0 == 0x88 and int.from_bytes(close_payload[:2], "big") == 1011
        assert time.monotonic() - started >= 0.3  # closed at ping_timeout, not before
        sock.close()


# -- real servers: floods and slow readers -------------------------------------------------------


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def never_reading_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(upgrade_request())
    head = recv_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def send_all_or_stall(sock: socket.socket, data: bytes, stall: float = 3.0) -> int:
    """Send ``data`` without blocking; stop when the server has taken nothing
    for ``stall`` seconds. Returns the bytes sent."""
    sock.setblocking(False)
    view, sent, idle_since = memoryview(data), 0, None
    try:
        while sent < len(data):
            try:
                sent += sock.send(view[sent : sent + (1 << 20)])
                idle_since = None
            except BlockingIOError:
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since > stall:
                    break
                select.select([], [sock], [], 0.1)
    finally:
        sock.setblocking(True)
    return sent


def flood_pings(count: int) -> tuple[bytes, int]:
    """``count`` masked Pings with 125-byte payloads ending in their index."""
    frames = [build_ping(b"p" * 117 + i.to_bytes(8, "big"), mask=MASK) for i in range(count)]
    return b"".join(frames), len(frames[0])


def read_frames_until(sock: socket.socket, stop: Any, timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """Frames read until ``stop(first_byte, payload)`` is true (or EOF)."""
    sock.settimeout(timeout)
    frames: list[tuple[int, bytes]] = []
    rest = b""
    while True:
        try:
            b0, payload, rest = read_frame(sock, rest)
        except EOFError:
            return frames
        frames.append((b0, payload))
        if stop(b0, payload):
            return frames


def rss_growth(pid: int, rss_before: int, hwm_before: int) -> int:
    return max(process_rss(pid) - rss_before, vm_hwm(pid) - hwm_before)


def test_400k_pings_from_a_client_that_never_reads(loop_kind: str) -> None:
    """Before: ~117 bytes of server memory per Ping (400k: +70 MiB measured).
    Now, once the client is behind, a Pong per read at most, and none (nor
    any reading) while writes are backed up: memory stays flat, and when the
    client finally reads it gets the latest Pong and the connection works."""
    count = 400_000
    data, _ = flood_pings(count)
    server = ServerProcess([str(FLOOD_APP)], loop_kind, {"FLOOD_SNDBUF": "4096"})
    try:
        port = server.wait_listening()
        sock = never_reading_client(port)
        debug = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def connections() -> list[dict[str, Any]]:
            debug.request("GET", "/debug")
            with debug.getresponse() as resp:
                return list(json.loads(resp.read())["connections"])

        def reading_paused() -> bool:
            return bool(connections()[0]["reading_paused"])

        # The baseline once the server holds the upgraded connection (and has served /debug once).
        eventually(connections, lambda cs: len(cs) == 1)
        rss_before, hwm_before = process_rss(server.pid), vm_hwm(server.pid)
        sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        sender.start()

        # Either the server took all 400k Pings, or it stopped reading them.
        assert wait_for(lambda: not sender.is_alive() or reading_paused(), timeout=60)
        growth = rss_growth(server.pid, rss_before, hwm_before)
        assert growth < 8 << 20, f"server grew {growth / 2**20:.1f} MiB"
        last = b"p" * 117 + (count - 1).to_bytes(8, "big")
        frames = read_frames_until(sock, lambda b0, p: b0 != 0x8A or p == last, timeout=60)
        sender.join(10)
        assert not sender.is_alive()
        assert frames and frames[-1] == (0x8A, last), frames[-3:]
        assert all(b0 == 0x8A for b0, _ in frames)
        indices = [int.from_bytes(p[-8:], "big") for _, p in frames]
        assert indices == sorted(set(indices))  # in order, never the same Ping twice
        # Coalesced: every Ping is answered while the kernel still takes our
        # bytes (the client's receive buffer, which Linux grows to several MB,
        # counts as keeping up), then one Pong per read at most. How many that
        # is depends on the kernel's buffer tuning (36k-49k of 400k seen here).
        assert len(frames) < count // 4, len(frames)
        growth = rss_growth(server.pid, rss_before, hwm_before)
        assert growth < 8 << 20, f"server grew {growth / 2**20:.1f} MiB"
        sock.sendall(build_text("still open", mask=MASK))
        assert read_frames_until(sock, lambda b0, p: True)[0] == (0x81, b"still open")
        sock.close()
        debug.close()
        assert not TOO_SLOW.search(server.output())
    finally:
        server.stop()


def test_400k_pings_from_a_client_that_never_reads_it_is_closed_by_keepalive(loop_kind: str) -> None:
    """The same flood from a client that never reads at all, with keepalive on
    (1 s interval and timeout): the server's memory stays flat while it holds
    the connection, and the connection is closed (the keepalive Ping goes
    unanswered, then the Close too: TCP aborted after close_timeout)."""
    count = 400_000
    data, _ = flood_pings(count)
    env = {"FLOOD_SNDBUF": "4096", "FLOOD_PING_INTERVAL": "1", "FLOOD_PING_TIMEOUT": "1",
           "FLOOD_CLOSE_TIMEOUT": "1"}
    server = ServerProcess([str(FLOOD_APP)], loop_kind, env)
    try:
        port = server.wait_listening()
        sock = never_reading_client(port)
        debug = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def open_connections() -> int:
            debug.request("GET", "/debug")
            with debug.getresponse() as resp:
                return len(json.loads(resp.read())["connections"])

        # The baseline once the server holds the upgraded connection (and has served /debug once).
        eventually(open_connections, lambda n: n == 1)
        rss_before, hwm_before = process_rss(server.pid), vm_hwm(server.pid)
        try:
            sent = send_all_or_stall(sock, data, stall=10.0)
        except (ConnectionResetError, BrokenPipeError):
            sent = -1  # closed by the server while the flood was still going out
        debug.close()  # idle through the flood (the server may time it out): a fresh one below
        debug = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        assert wait_for(lambda: open_connections() == 0, timeout=30), "the flooding client was never closed"
        growth = rss_growth(server.pid, rss_before, hwm_before)
        assert growth < 8 << 20, f"server grew {growth / 2**20:.1f} MiB"
        assert sent != 0
        # The client, reading at last, finds the connection gone (after any
        # Pongs the kernel still held for it): EOF or a reset, never a hang.
        try:
            frames = read_frames_until(sock, lambda b0, p: False, timeout=30)
        except ConnectionResetError:
            frames = []
        assert all(b0 in (0x8A, 0x89, 0x88) for b0, _ in frames)
        sock.close()
        debug.close()
    finally:
        server.stop()


def test_a_ping_flood_past_the_budget_closes_1008_once(loop_kind: str) -> None:
    """Echo requests and Pings from a client that never reads: with the
    "drop" policy the echoes are dropped at the budget, and the first Pong
    that would pass it closes the connection with 1008, logged once."""
    limit = 16 * 1024
    env = {"FLOOD_BACKPRESSURE": str(limit), "FLOOD_POLICY": "drop", "FLOOD_CLOSE_TIMEOUT": "20",
           "FLOOD_SNDBUF": "4096"}
    server = ServerProcess([str(FLOOD_APP)], loop_kind, env)
    try:
        port = server.wait_listening()
        sock = never_reading_client(port)
        rss_before, hwm_before = process_rss(server.pid), vm_hwm(server.pid)
        # In an iteration where a 102-byte echo was dropped, the backlog is
        # within 102 bytes of the budget: the 127-byte Pong after it cannot fit.
        unit = build_text("m" * 100, mask=MASK) * 10 + build_ping(b"p" * 125, mask=MASK)
        send_all_or_stall(sock, unit * 20_000)
        match = server.wait_output(TOO_SLOW.pattern)
        assert limit - 127 < int(match.group(1)) <= limit, match.group(0)
        growth = rss_growth(server.pid, rss_before, hwm_before)
        assert growth < 8 << 20, f"server grew {growth / 2**20:.1f} MiB"
        frames = read_frames_until(sock, lambda b0, p: b0 == 0x88)
        assert frames[-1][0] == 0x88 and int.from_bytes(frames[-1][1][:2], "big") == 1008, frames[-3:]
        assert len(frames) - 1 < 200_000  # echoes were dropped
        sock.sendall(build_close(1008, mask=MASK))
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the handshake done, the server closes TCP
        sock.close()
        output = server.output()
        assert len(TOO_SLOW.findall(output)) == 1, output
        assert "dropped" in output  # the data policy is still "drop"
    finally:
        server.stop()


def test_a_slow_but_legal_reader_gets_everything(loop_kind: str) -> None:
    """Writes back up (the server's kernel buffer is small), so the server
    stops reading; the client reads slowly but answers keepalive Pings as it
    reads them: every echo arrives in order, its own last Ping is answered,
    and neither keepalive (its Pong waits unread while reading is paused) nor
    the budget closes it."""
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws", config=Config(ping_interval=0.1, ping_timeout=1.0, max_backpressure=8 << 20))
    count, size = 256, 8192  # ~2 MiB read 4 KiB per 4 ms: paused several ping_timeouts long

    @ws.on("connect")
    def small_kernel_buffer(conn: Any) -> None:
        assert app.server is not None
        transport = app.server.hub(ws).connections[conn.id].transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    @ws.on("message")
    def echo(conn: Any, msg: str) -> str:
        return msg

    with running(app, loop_kind) as srv:
        sock = never_reading_client(srv.port)
        outgoing = [build_text(f"{i:08d}" + "s" * (size - 8), mask=MASK) for i in range(count)]
        outgoing.append(build_ping(b"mine", mask=MASK))
        writer = threading.Thread(target=lambda: sock.sendall(b"".join(outgoing)), daemon=True)
        writer.start()

        def paused() -> bool:
            return bool(srv.call(lambda: [(c.writing_paused and c.reading_paused)
                                          for c in srv.server.hub(ws).connections.values()] == [True]))

        sock.settimeout(10)
        echoes: list[bytes] = []
        pongs: list[bytes] = []
        pings = 0
        seen_paused = False
        rest = b""
        started = time.monotonic()
        deadline = started + 60
        reads = 0
        while (len(echoes) < count or b"mine" not in pongs) and time.monotonic() < deadline:
            chunk = sock.recv(4096)  # slowly: 4 KiB at a time
            assert chunk, "the server closed the connection"
            rest += chunk
            reads += 1
            if reads % 8 == 0 and not seen_paused:
                seen_paused = paused()
            time.sleep(0.004)
            while True:
                try:
                    b0, payload, rest = parse_one(rest)
                except ValueError:
                    break
                if b0 == 0x89:
                    pings += 1
                    sock.sendall(build_pong(payload, mask=MASK))  # keepalive, answered as read
                elif b0 == 0x8A:
                    pongs.append(payload)
                else:
                    assert b0 == 0x81, (b0, payload[:20])
                    echoes.append(payload)
        writer.join(10)
        assert [int(e[:8]) for e in echoes] == list(range(count))
        assert all(len(e) == size for e in echoes)
        assert pongs == [b"mine"]
        assert seen_paused, "the server never paused reading on write pressure"
        # A keepalive Ping went out, and its Pong waited unread (reading paused)
        # past ping_timeout: the client kept reading, so that did not close it.
        assert pings >= 1 and time.monotonic() - started > 0.1 + 0.3
        assert srv.call(lambda: [c.state for c in srv.server.hub(ws).connections.values()]) == [0]
        sock.close()


def parse_one(data: bytes) -> tuple[int, bytes, bytes]:
    """One unmasked frame from the front of ``data``; ValueError if incomplete."""
    if len(data) < 2:
        raise ValueError
    n, h = data[1] & 0x7F, 2
    if n == 126:
        if len(data) < 4:
            raise ValueError
        n, h = int.from_bytes(data[2:4], "big"), 4
    elif n == 127:
        if len(data) < 10:
            raise ValueError
        n, h = int.from_bytes(data[2:10], "big"), 10
    if len(data) < h + n:
        raise ValueError
    return data[0], data[h : h + n], data[h + n :]


def test_the_server_log_names_the_peer(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """The 1008 line says which peer and how many bytes were queued, once
    (here for data sends under the "close" policy, in-process)."""
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws", config=Config(max_backpressure=4096, backpressure_policy="close"))
    with running(app, loop_kind) as srv:
        sock = never_reading_client(srv.port)
        port = sock.getsockname()[1]
        conn = eventually(lambda: srv.call(lambda: list(srv.server.hub(ws).connections.values())))[0]
        sent = srv.call(lambda: sum(conn.send("x" * 1000) for _ in range(10_000)), timeout=30)
        assert sent < 10_000

        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if "closing with 1008" in r.getMessage()]

        assert wait_for(lambda: lines())
        assert len(lines()) == 1 and f"'127.0.0.1', {port}" in lines()[0], lines()
        sock.close()
