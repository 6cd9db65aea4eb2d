"""Closed connections are freed by reference counting, at once, with their
buffers: a leak counter in the style of uvloop's debug build (which counts
live handles and asserts zero at teardown). The server process runs with the
cyclic garbage collector disabled (tests/robyn_apps/leak_counter.py), so any
reference cycle a closed connection is left in keeps it, its parser and its
connector alive, and the partial message its parser held.

Each round opens connections that each send most of a 1 MiB message (half of
them compressed, after one complete compressed message, so their zlib
streams exist) and aborts them all with a TCP reset. Afterwards no
connection, parser, read window or connector object is left, no collection
ever ran, and RSS is back near where it was after a warm-up round."""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import threading
from typing import Any

from robyn_fast._core.codec import Deflater

from .process_helpers import ROOT, ServerProcess, process_rss
from .server_helpers import eventually, read_frame, ws_connect

APPS = ROOT / "tests" / "robyn_apps"
MASK = b"\x11\x22\x33\x44"
MiB = 1024 * 1024
MESSAGE = 1 << 20                 # what each frame header announces: max_message_size exactly
PARTIAL = MESSAGE - 4096          # what each connection sends of it before the reset
CONNECTIONS = 100                 # per round
ROUNDS = 4
# Ours: the connection, its parser and read window, its connector, and the HTTP protocol that
# upgraded it with its httptools parser. (asyncio's socket transports stay in a cycle of their own,
# a bound method of theirs they keep, and hold no buffer of ours once closed.)
LEAK_TYPES = ("BufferedConnection", "Connection", "FrameParser", "_ReadWindow", "WebSocketConnector", "HttpProtocol",
              "HttpRequestParser")


def _hold_partial(port: int, compressed: bool) -> socket.socket:
    """A connection whose server side holds a partial message of PARTIAL bytes."""
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if compressed else ""
    sock, rest = ws_connect(port, extra=extra)
    sock.settimeout(30)
    b0 = 0x82
    if compressed:
        # One whole compressed message first: it is echoed compressed, so the
        # connection's own decompressor and compressor hold zlib state now.
        deflater = Deflater(15, no_context_takeover=False)
        sock.sendall(deflater.build_message(b"x" * 4096, mask=MASK))
        first, _payload, _rest = read_frame(sock, rest)
        assert first == 0xC2, hex(first)        # FIN, RSV1, binary: the echo, compressed
        b0 = 0xC2
    sock.sendall(bytes([b0, 0xFF]) + struct.pack("!Q", MESSAGE) + MASK + os.urandom(PARTIAL))
    return sock


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Debug:
    """GET requests to the leak-counter app over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> Any:
        self.conn.request("GET", path)
        with self.conn.getresponse() as resp:
            assert resp.status == 200, resp.status
            return json.loads(resp.read())


def _round(port: int, debug: _Debug, connects_before: int) -> None:
    socks: list[socket.socket] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def opener(count: int, compressed: bool) -> None:
        try:
            for _ in range(count):
                sock = _hold_partial(port, compressed)
                with lock:
                    socks.append(sock)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(CONNECTIONS // 4, k % 2 == 0)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors[:3]
        # Every server-side parser now holds its partial message.
        eventually(lambda: debug.get("/state"),
                   lambda s: s["live"] == CONNECTIONS and s["buffered"] >= CONNECTIONS * PARTIAL, timeout=60)
    finally:
        for sock in socks:
            _reset(sock)
    total = connects_before + CONNECTIONS
    eventually(lambda: debug.get("/state"),
               lambda s: s["connects"] == s["closes"] == total and s["live"] == 0, timeout=60)


def _alive(debug: _Debug) -> dict[str, Any]:
    # The close handler keeps the last closed connector, as user code may:
    # /probe uses it as a closed connector and lets it go.
    probe = debug.get("/probe")
    assert probe["kept"]
    assert probe["closed"] is True
    # Everything a closed connector offers answers as documented, no error.
    assert (probe["close"], probe["join"], probe["leave"], probe["rooms"], probe["send_to_self"]) == (
        False, False, False, [], False), probe
    return debug.get("/alive")  # type: ignore[no-any-return]


def _run(loop_kind: str) -> None:
    server = ServerProcess([str(APPS / "leak_counter.py")], loop_kind)
    try:
        port = server.wait_listening()
        debug = _Debug(port)
        _round(port, debug, 0)  # warm-up: allocator pools, caches, lazily built objects
        before = _alive(debug)  # (after malloc_trim: RSS counts what is referenced)
        assert before["gc_enabled"] is False
        rss_before = process_rss(server.pid)
        for i in range(ROUNDS):
            _round(port, debug, CONNECTIONS * (i + 1))
        after = _alive(debug)
        growth = process_rss(server.pid) - rss_before
        assert after["collections"] == before["collections"], "the cyclic GC ran"
        # What is left is what was there before the rounds: no WebSocket connection (the
        # kept connector was let go), and the HTTP connection these requests come through.
        assert all(before["alive"][name] == 0 for name in LEAK_TYPES if not name.startswith("Http")), before
        survivors = {name: after["alive"][name] - before["alive"][name] for name in LEAK_TYPES
                     if after["alive"][name] != before["alive"][name]}
        assert not survivors, (
            f"after {ROUNDS * CONNECTIONS} aborted connections (0 live), alive without a collection: {survivors}; "
            f"RSS {growth / MiB:+.1f} MiB")
        print(f"{loop_kind}: RSS {growth / MiB:+.1f} MiB after {ROUNDS} x {CONNECTIONS} aborted connections; "
              f"alive: {dict((name, after['alive'][name]) for name in LEAK_TYPES)}")
        grown = sorted(((n - before["alive"].get(name, 0), name) for name, n in after["alive"].items()),
                       reverse=True)[:8]
        assert growth < 8 * MiB, (
            f"RSS grew {growth / MiB:.1f} MiB over {ROUNDS} rounds of {CONNECTIONS} aborted connections "
            f"(0 live now); most grown object counts: {grown}")
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_aborted_connections_holding_partial_messages_leave_nothing_alive(loop_kind: str) -> None:
    _run(loop_kind)
