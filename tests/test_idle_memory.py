"""What an idle WebSocket connection costs the server, in bytes Python
allocated for it and still holds (tracemalloc in the server process: exact
and unaffected by how loaded the machine is, unlike RSS).

500 connections each make the handshake a browser makes (ten header fields),
exchange one message (so the connection's frame parser exists, as on any
connection that has received a Pong) and go idle; the growth of the server's
traced memory, over a warm-up of 50 such connections, divided by 500 must stay
under the budget. It counts everything: the event loop's transport and
socket objects (uvloop's libuv handle too, allocated through PyMem_RawMalloc),
ours (the connection, its parser, its connector with the request's headers,
the table entry), whatever an upgrade leaves behind. bench/run.py's idle
workloads measure the same as RSS growth (rfload idle)."""

from __future__ import annotations

import http.client
import json
import socket
import sys
from typing import Any

from .codec_helpers import masked
from .process_helpers import ROOT, ServerProcess
from .server_helpers import eventually, read_frame, ws_connect

APP = ROOT / "tests" / "robyn_apps" / "idle_memory.py"
WARM_UP = 50
CONNECTIONS = 500
# A browser's upgrade request carries these besides Host, Upgrade, Connection and the two Sec-WebSocket fields.
BROWSER_FIELDS = (
    "Origin: http://127.0.0.1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Cache-Control: no-cache\r\n"
)
# Python-allocated bytes per idle connection. Measured: ~2.8 KiB on uvloop and asyncio (Python 3.11: 2,783
# and 2,764 B; 3.12 and 3.13 uvloop 2,786 B), of which the loop's own transport, socket and libuv handle are
# ~1.3-1.5 KiB; before the connector packed its headers, the backlog deque went and the parser was made
# on first data, ~5.3 KiB (uvloop); before uvloop stopped keeping a bound data_received and the handlers
# became one shared tuple, 80 B (uvloop) and 16 B (asyncio) more.
BUDGET = 3072
# asyncio's socket transport on Python >= 3.12 holds a collections.deque as its write buffer from the start
# (760 B) and is itself larger: asyncio measured 3,532 B per connection on 3.12, 3,747 B on 3.13.
ASYNCIO_312_TRANSPORT = 1024


def _budget(loop_kind: str) -> int:
    return BUDGET + (ASYNCIO_312_TRANSPORT if loop_kind == "asyncio" and sys.version_info >= (3, 12) else 0)


def _traced(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/traced")
        with conn.getresponse() as resp:
            assert resp.status == 200, resp.status
            return json.loads(resp.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def _open_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for i in range(count):
        sock, rest = ws_connect(port, extra=BROWSER_FIELDS)
        socks.append(sock)
        sock.settimeout(30)
        text = f"hello {i}".encode()
        sock.sendall(masked(0x81, text))
        first, payload, _ = read_frame(sock, rest)
        assert (first, payload) == (0x81, text)
    return socks


def test_idle_connection_memory_is_bounded(loop_kind: str) -> None:
    server = ServerProcess([str(APP)], loop_kind)
    socks: list[socket.socket] = []
    try:
        port = server.wait_listening()
        socks += _open_idle(port, WARM_UP)  # allocator pools, tables grown, objects built on first use
        before = eventually(lambda: _traced(port), lambda s: s["live"] == WARM_UP, timeout=30)
        socks += _open_idle(port, CONNECTIONS)
        after = eventually(lambda: _traced(port), lambda s: s["live"] == WARM_UP + CONNECTIONS, timeout=30)
        per_connection = (after["traced"] - before["traced"]) / CONNECTIONS
        print(f"{loop_kind}: {per_connection:.0f} B per idle connection (Python-allocated)")
        assert per_connection < _budget(loop_kind), (
            f"{loop_kind}: an idle connection holds {per_connection:.0f} bytes allocated by Python "
            f"(budget {_budget(loop_kind)})")
    finally:
        for sock in socks:
            sock.close()
        server.stop()
    assert "Traceback" not in server.output()
