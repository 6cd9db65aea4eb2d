"""Robyn's receive-loop WebSocket API (``@app.websocket``): echo of text,
bytes and JSON (128 KiB too), WebSocketDisconnect with every close code
(the client's, 1006, 1009, ours, 1001 at shutdown), close() while the handler
awaits elsewhere or in receive, a close while the queue is full and the
handler never receives, handler errors (1011, logged once, counted) and early
returns (1000), on_connect/on_close return values and order, typed query
parameters (a missing required one refuses the upgrade), the upgrade
request's headers and client address, the bounded read pause, backpressure
under both policies, permessage-deflate, SubRouter prefixes, the legacy class
beside it, rooms and send_to on the websocket object, and broadcast, rooms
and send_to across worker processes and over Redis. Real clients:
websocket-client (also from a thread), websockets, and Chromium through a
page. TLS, metrics: tests/test_tls.py, tests/test_metrics.py."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import websocket as wsclient
from websockets.sync.client import connect as ws_connect_sync

from robyn_fast import Config, Robyn, SubRouter, WebSocket, WebSocketAdapter, WebSocketDisconnect
from robyn_fast.websocket.ids import node_of

from .process_helpers import ROOT, ServerProcess, owner, serve_script, worker_pids
from .redis_helpers import redis_server
from .server_helpers import running, wait_for
from .test_examples import chromium_page
from .test_workers import Client, spread_clients

BIG = 128 * 1024


def client(srv: Any, path: str = "/ws", **kw: Any) -> wsclient.WebSocket:
    return wsclient.create_connection(f"{srv.ws_url}{path}", timeout=10, **kw)


def close_frame(c: wsclient.WebSocket) -> tuple[int, bytes]:
    while True:
        frame = c.recv_frame()
        if frame.opcode == wsclient.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0], frame.data[2:]


def echo_app() -> Robyn:
    app = Robyn(__file__)

    @app.websocket("/ws")
    async def echo(websocket: WebSocketAdapter) -> None:
        while True:
            kind = await websocket.receive_text()
            if kind == "text":
                await websocket.send_text(await websocket.receive_text())
            elif kind == "bytes":
                await websocket.send_bytes(await websocket.receive_bytes())
            elif kind == "json":
                await websocket.send_json({"got": await websocket.receive_json()})

    return app


def test_echo_text_bytes_json_with_websocket_client(loop_kind: str) -> None:
    with running(echo_app(), loop_kind) as srv:
        c = client(srv)
        c.send("text")
        c.send("héllo")
        assert c.recv_data() == (wsclient.ABNF.OPCODE_TEXT, "héllo".encode())
        c.send("bytes")
        c.send_binary(b"\x00\xffbin")
        assert c.recv_data() == (wsclient.ABNF.OPCODE_BINARY, b"\x00\xffbin")
        c.send("json")
        c.send(json.dumps({"a": [1, 2]}))
        op, data = c.recv_data()
        assert op == wsclient.ABNF.OPCODE_TEXT and json.loads(data) == {"got": {"a": [1, 2]}}
        # 128 KiB each way, text and binary
        big_text = "x" * BIG
        c.send("text")
        c.send(big_text)
        assert c.recv() == big_text
        big_bin = bytes(range(256)) * (BIG // 256)
        c.send("bytes")
        c.send_binary(big_bin)
        assert c.recv_data() == (wsclient.ABNF.OPCODE_BINARY, big_bin)
        c.close()


def test_echo_with_the_websockets_library(loop_kind: str) -> None:
    with running(echo_app(), loop_kind) as srv:
        with ws_connect_sync(f"{srv.ws_url}/ws", max_size=None) as c:
            # permessage-deflate (RFC 7692) is agreed as for legacy endpoints; the 128 KiB message below is
            # compressed both ways
            assert "permessage-deflate" in (c.response.headers.get("Sec-WebSocket-Extensions") or "")
            for i in range(20):
                c.send("text")
                c.send(f"m{i}")
            assert [c.recv(timeout=10) for _ in range(20)] == [f"m{i}" for i in range(20)]
            c.send("bytes")
            c.send(b"\x01" * BIG)
            assert c.recv(timeout=10) == b"\x01" * BIG


def test_disconnect_carries_the_clients_close_code_and_on_close_runs(loop_kind: str) -> None:
    app = Robyn(__file__)
    seen: list[Any] = []

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append(("disconnect", exc.code, exc.reason))
            raise

    @handler.on_close
    def closed(websocket: WebSocketAdapter) -> str:
        seen.append(("on_close", websocket.id))
        return "nobody hears this"

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("one")
        c.close(status=4001, reason=b"bye now")
        assert wait_for(lambda: len(seen) == 2)
    assert seen[0] == ("disconnect", 4001, "bye now")
    assert seen[1][0] == "on_close"
    assert isinstance(WebSocketDisconnect(), ConnectionError)


def test_close_is_prompt_while_the_handler_awaits_elsewhere(loop_kind: str) -> None:
    app = Robyn(__file__, config=Config(close_timeout=1.0))
    adapters: list[WebSocketAdapter] = []
    outcome: list[str] = []

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        adapters.append(websocket)
        try:
            await asyncio.Event().wait()      # never set: awaits something else than a message
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    @handler.on_close
    def closed(websocket: WebSocketAdapter) -> None:
        outcome.append("on_close")

    with running(app, loop_kind) as srv:
        c = client(srv)
        assert wait_for(lambda: adapters)
        started = time.monotonic()
        fut = asyncio.run_coroutine_threadsafe(adapters[0].close(4000, "go away"), srv.loop)
        assert fut.result(5) is True
        assert close_frame(c) == (4000, b"go away")
        assert time.monotonic() - started < 1.0
        c.send_close()
        # The handler ignored the close: it is cancelled after close_timeout, then on_close runs.
        assert wait_for(lambda: outcome == ["cancelled", "on_close"], timeout=5)


def test_handler_closing_itself_then_receive_raises_with_its_code(loop_kind: str) -> None:
    app = Robyn(__file__)
    codes: list[int] = []

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        await websocket.receive_text()
        await websocket.send_text("Connection closed")
        await websocket.close(4002)
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            codes.append(exc.code)

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("close please")
        assert c.recv() == "Connection closed"
        assert close_frame(c) == (4002, b"")
        c.send_close()
        assert wait_for(lambda: codes == [4002])


def test_on_connect_return_values(loop_kind: str) -> None:
    app = Robyn(__file__)

    @app.websocket("/empty")
    async def empty(websocket: WebSocketAdapter) -> None:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())

    @empty.on_connect
    def say_nothing_but_send(websocket: WebSocketAdapter) -> str:
        return ""

    @app.websocket("/none")
    async def none(websocket: WebSocketAdapter) -> None:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())

    @none.on_connect
    async def say_nothing(websocket: WebSocketAdapter) -> None:
        return None

    @app.websocket("/hello")
    async def hello(websocket: WebSocketAdapter) -> None:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())

    @hello.on_connect
    async def greet(websocket: WebSocketAdapter) -> str:
        return f"Hello {websocket.id}"

    with running(app, loop_kind) as srv:
        c = client(srv, "/empty")
        assert c.recv_data() == (wsclient.ABNF.OPCODE_TEXT, b"")
        c.send("x")
        assert c.recv() == "echo x"
        c.close()
        c = client(srv, "/none")
        c.send("y")
        assert c.recv() == "echo y"        # nothing came before the echo
        c.close()
        c = client(srv, "/hello")
        first = c.recv()
        assert first.startswith("Hello ") and len(first) == len("Hello ") + 36
        c.close()


def raw_upgrade(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
        return head.split(b"\r\n")[0] + b"\r\n" + body


def test_typed_query_parameters(loop_kind: str) -> None:
    app = Robyn(__file__)

    @app.websocket("/room")
    async def room(websocket: WebSocketAdapter, name: str, count: int = 3, loud: bool = False,
                   note: str | None = None, ids: list[int] | None = None) -> None:
        await websocket.send_json({"name": name, "count": count, "loud": loud, "note": note,
                                   "qp": websocket.query_params.get("name"), "ids": ids})
        await websocket.receive_text()

    with running(app, loop_kind) as srv:
        c = client(srv, "/room?name=lobby")
        assert json.loads(c.recv()) == {"name": "lobby", "count": 3, "loud": False, "note": None, "qp": "lobby",
                                        "ids": None}
        c.close()
        c = client(srv, "/room?name=a%20b&count=7&loud=true&note=hi&ids=1&ids=2")
        assert json.loads(c.recv()) == {"name": "a b", "count": 7, "loud": True, "note": "hi", "qp": "a b",
                                        "ids": [1, 2]}
        c.close()
        answer = raw_upgrade(srv.port, "/room?name=x&ids=1&ids=two")
        assert b"invalid value 'two' for query parameter 'ids': expected int" in answer
        answer = raw_upgrade(srv.port, "/room?count=1")
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"missing required query parameter 'name'" in answer
        answer = raw_upgrade(srv.port, "/room?name=x&count=many")
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"invalid value 'many' for query parameter 'count': expected int" in answer
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            client(srv, "/room")
        assert info.value.status_code == 400


def test_unbindable_parameter_fails_at_decoration() -> None:
    app = Robyn(__file__)
    with pytest.raises(TypeError, match="cannot bind parameter 'things'"):
        @app.websocket("/ws")
        async def handler(websocket: Any, things: dict[str, int]) -> None: ...
    with pytest.raises(TypeError, match="takes an async function"):
        @app.websocket("/sync")
        def sync_handler(websocket: Any) -> None: ...


def test_upgrade_headers_path_params_and_client_address(loop_kind: str) -> None:
    app = Robyn(__file__)
    app.inject_global(GREETING="hi")

    @app.websocket("/peer/:room")
    async def peer(websocket: WebSocketAdapter, room: str, GREETING: str,
                   global_dependencies: dict[str, Any]) -> None:
        host, port = websocket.remote_addr or ("?", 0)
        await websocket.send_json({
            "header": websocket.headers.get("x-trace"), "host": host, "port": port, "room": room,
            "path_params": websocket.path_params, "greeting": GREETING,
            "globals": sorted(global_dependencies),
        })
        await websocket.receive_text()

    with running(app, loop_kind) as srv:
        c = client(srv, "/peer/blue", header=["X-Trace: abc-123"])
        got = json.loads(c.recv())
        assert got == {"header": "abc-123", "host": "127.0.0.1", "port": c.sock.getsockname()[1], "room": "blue",
                       "path_params": {"room": "blue"}, "greeting": "hi", "globals": ["GREETING"]}
        c.close()


def test_legacy_and_receive_loop_endpoints_side_by_side(loop_kind: str) -> None:
    app = Robyn(__file__)
    legacy = WebSocket(app, "/old")

    @legacy.on("message")
    def old_echo(ws: Any, msg: str) -> str:
        return f"old {msg}"

    @app.websocket("/new")
    async def new_echo(websocket: WebSocketAdapter) -> None:
        while True:
            msg = await websocket.receive_text()
            await websocket.send_text(f"new {msg}")
            await websocket.broadcast(f"all {msg}")

    with running(app, loop_kind) as srv:
        old, new1, new2 = client(srv, "/old"), client(srv, "/new"), client(srv, "/new")
        old.send("a")
        new1.send("b")
        assert old.recv() == "old a"
        assert sorted([new1.recv(), new1.recv()]) == ["all b", "new b"]
        assert new2.recv() == "all b"       # the broadcast reaches this endpoint's clients only
        old.send("c")
        assert old.recv() == "old c"
        for c in (old, new1, new2):
            c.close()


def test_subrouter_prefix(loop_kind: str) -> None:
    app = Robyn(__file__)
    router = SubRouter(__file__, prefix="/api")

    @router.websocket("/ws")
    async def routed(websocket: WebSocketAdapter) -> None:
        await websocket.send_text(f"routed {await websocket.receive_text()}")

    app.include_router(router)
    with running(app, loop_kind) as srv:
        c = client(srv, "/api/ws")
        c.send("x")
        assert c.recv() == "routed x"
        # The handler returned: the connection closes with 1000.
        assert close_frame(c)[0] == 1000
        c.send_close()


def test_a_handler_that_stops_receiving_pauses_reading(loop_kind: str) -> None:
    # 2000 messages of 4 KiB (8 MiB, more than the kernel's buffers on both sides take) to a handler that
    # receives nothing for a while: the server stops reading at read_high_water (what one read brought
    # still arrives), the sender blocks in the kernel, and then every message arrives, in order.
    count, size = 2000, 4096
    app = Robyn(__file__, config=Config(read_high_water=4, read_low_water=2))
    go = threading.Event()
    received: list[str] = []

    @app.websocket("/ws")
    async def slow(websocket: WebSocketAdapter) -> None:
        while not go.is_set():
            await asyncio.sleep(0.01)
        while len(received) < count:
            received.append(await websocket.receive_text())
        await websocket.send_text("done")

    with running(app, loop_kind) as srv:
        read_before = app.stats()["counters"]["messages_in"]
        c = client(srv, sockopt=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)])
        sender = threading.Thread(target=lambda: [c.send(f"{i:04d}" + "." * (size - 4)) for i in range(count)])
        sender.start()
        hub = srv.hub(app.websocket_endpoints()[0])
        assert wait_for(lambda: srv.call(lambda: [conn.reading_paused for conn in hub.connections.values()]) == [True])
        assert not wait_for(lambda: not sender.is_alive(), timeout=0.5)   # held back by TCP, not queued by us
        # What the server read: the four that paused it and the rest of those reads (256 KiB at most each).
        assert app.stats()["counters"]["messages_in"] - read_before <= 4 + 2 * (256 * 1024 // size)
        go.set()
        assert c.recv() == "done"
        sender.join(10)
        assert [m[:4] for m in received] == [f"{i:04d}" for i in range(count)]
        assert close_frame(c)[0] == 1000       # the handler returned
        c.send_close()


def test_compat_robyn_names() -> None:
    from robyn_fast import compat

    compat.install()
    try:
        import robyn
        import robyn.ws

        assert robyn.WebSocketDisconnect is WebSocketDisconnect is robyn.ws.WebSocketDisconnect
        assert robyn.ws.WebSocketAdapter is WebSocketAdapter
        assert callable(robyn.Robyn(__file__).websocket)
    finally:
        compat.uninstall()


# -- across worker processes ----------------------------------------------------------------------------

CHAT = ROOT / "tests" / "robyn_apps" / "receive_chat.py"


def test_broadcast_crosses_worker_processes(loop_kind: str) -> None:
    with serve_script(CHAT, loop_kind, args=["--processes", "2"], module=True) as server:
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        assert len(pids) == 2
        placed: dict[int, list[tuple[wsclient.WebSocket, str]]] = {pid: [] for pid in pids}
        opened = 0
        while any(not c for c in placed.values()):
            assert opened < 40
            c = wsclient.create_connection(f"ws://127.0.0.1:{port}/chat", timeout=10)
            opened += 1
            greeting = c.recv()
            assert greeting.startswith("welcome ")
            placed[owner(c.sock, port, pids)].append((c, greeting.split()[1]))
        (a, a_id), (b, b_id) = placed[pids[0]][0], placed[pids[1]][0]
        assert node_of(a_id) != node_of(b_id)
        everyone = [c for cs in placed.values() for c, _ in cs]
        a.send("from a")
        for c in everyone:
            assert c.recv() == f"{a_id}: from a"
        b.send_binary(b"bin:\x00\x01")
        for c in everyone:
            assert c.recv_data() == (wsclient.ABNF.OPCODE_BINARY, b"bin:\x00\x01")
        for c in everyone:
            c.close()


@contextmanager
def servers_over_redis(script: Path, loop_kind: str, url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers of ``script`` with ``--broker url``, each connected to it."""
    with serve_script(script, loop_kind, args=["--broker", url], module=True) as one, \
            serve_script(script, loop_kind, args=["--broker", url], module=True) as two:
        assert one.port is not None and two.port is not None
        for server in (one, two):
            server.wait_output(r"broker: connected to Redis at ", timeout=10)
        yield one, two


@contextmanager
def two_hosts_over_redis(script: Path, loop_kind: str, prefix: str) -> Iterator[tuple[int, int]]:
    """Two servers of ``script`` joined by a real redis-server, each connected to it: their ports."""
    with redis_server() as redis, servers_over_redis(script, loop_kind, f"{redis.url}?prefix={prefix}") as (one, two):
        assert one.port is not None and two.port is not None
        yield one.port, two.port


def test_broadcast_crosses_hosts_over_redis(loop_kind: str) -> None:
    with two_hosts_over_redis(CHAT, loop_kind, "receive-api") as (one, two):
        a = wsclient.create_connection(f"ws://127.0.0.1:{one}/chat", timeout=10)
        b = wsclient.create_connection(f"ws://127.0.0.1:{two}/chat", timeout=10)
        try:
            a_id = a.recv().split()[1]
            assert b.recv().startswith("welcome ")
            a.send("over redis")
            assert a.recv() == f"{a_id}: over redis"
            assert b.recv() == f"{a_id}: over redis"
            b.send_binary(b"bin:redis")
            assert a.recv_data() == (wsclient.ABNF.OPCODE_BINARY, b"bin:redis")
            assert b.recv_data() == (wsclient.ABNF.OPCODE_BINARY, b"bin:redis")
        finally:
            a.close()
            b.close()


def test_access_log_lines_as_for_legacy_endpoints(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app = Robyn(__file__, config=Config(access_log=True))

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        await websocket.send_text(await websocket.receive_text())

    caplog.set_level("INFO", logger="robyn_fast.access")
    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("x")
        assert c.recv() == "x"
        assert close_frame(c)[0] == 1000      # the handler returned
        c.send_close()
        assert wait_for(lambda: any(" WS close /ws " in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records if r.name == "robyn_fast.access"]
    assert any(" WS open /ws id=" in line for line in lines), lines
    assert any(" WS close /ws id=" in line and " code=1000 " in line for line in lines), lines


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_sends_to_a_client_that_does_not_read_meet_the_backpressure_policy(loop_kind: str, policy: str) -> None:
    app = Robyn(__file__, config=Config(max_backpressure=256 * 1024, backpressure_policy=policy))
    refused_at: list[int | None] = []

    @app.websocket("/ws")
    async def flood(websocket: WebSocketAdapter) -> None:
        await websocket.receive_text()
        chunk = b"x" * 65536
        for i in range(400):           # 25 MiB at most: more than the kernel's socket buffers hold
            if not await websocket.send_bytes(chunk):
                refused_at.append(i)
                break
            await asyncio.sleep(0)
        else:
            refused_at.append(None)
        # "drop": the connection stays open; once the client has read what was queued, sends go again.
        await websocket.receive_text()
        await websocket.send_text(f"after {await websocket.send_text('one more')}")

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.send("go")                   # then read nothing until the handler is refused
        assert wait_for(lambda: refused_at, timeout=20)
        assert refused_at[0] is not None
        if policy == "close":
            # After what was queued, a Close 1008.
            assert close_frame(c)[0] == 1008
            c.send_close()
            return
        chunks = 0
        while chunks < refused_at[0]:
            assert c.recv_data() == (wsclient.ABNF.OPCODE_BINARY, b"x" * 65536)
            chunks += 1
        c.send("drained")
        assert [c.recv(), c.recv()] == ["one more", "after True"]
        assert close_frame(c)[0] == 1000
        c.send_close()


# -- closing: every close code reaches the handler; nothing waits behind a full queue ----------------------


def test_every_close_code_reaches_the_handler(loop_kind: str) -> None:
    app = Robyn(__file__, config=Config(max_message_size=1024))
    seen: dict[str, tuple[int, str]] = {}
    closed: list[str] = []

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        await websocket.send_text(websocket.id)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen[websocket.id] = (exc.code, exc.reason)
            raise

    @handler.on_close
    def gone(websocket: WebSocketAdapter) -> None:
        closed.append(websocket.id)

    ids: dict[str, str] = {}
    with running(app, loop_kind) as srv:
        clients = {how: client(srv) for how in ("1000", "1001", "4000", "tcp", "too big", "shutdown")}
        ids = {how: c.recv() for how, c in clients.items()}
        for code in (1000, 1001, 4000):
            clients[str(code)].close(status=code, reason=f"bye {code}".encode())
        clients["tcp"].sock.close()                     # no Close frame: 1006
        clients["too big"].send("x" * 2000)             # over max_message_size: the server fails it with 1009
        assert close_frame(clients["too big"])[0] == 1009
        clients["too big"].send_close()
        assert wait_for(lambda: len(seen) == 5 and len(closed) == 5)
        last = clients["shutdown"]
        answered = threading.Thread(target=lambda: (close_frame(last), last.send_close()))
        answered.start()
    answered.join(10)
    assert {how: seen[ids[how]] for how in ids} == {
        "1000": (1000, "bye 1000"), "1001": (1001, "bye 1001"), "4000": (4000, "bye 4000"), "tcp": (1006, ""),
        "too big": (1009, seen[ids["too big"]][1]), "shutdown": (1001, "server shutting down"),
    }
    assert sorted(closed) == sorted(ids.values())


@pytest.mark.parametrize("who", ["client", "server"])
def test_a_close_while_the_queue_is_full_and_the_handler_does_not_receive(loop_kind: str, who: str) -> None:
    # Before the queue held the socket's reading itself, the message event waited for the handler to take
    # messages: the close ran behind it, so this handler was never cancelled and on_close never ran. With
    # reading held, a client's Close behind messages nobody takes is not read (as with any TCP backpressure):
    # a client that goes is found by the keepalive (no Pong: Close 1011, then its EOF).
    app = Robyn(__file__, config=Config(read_high_water=4, read_low_water=2, close_timeout=0.5,
                                        ping_interval=0.2, ping_timeout=0.3))
    adapters: list[WebSocketAdapter] = []
    outcome: list[str] = []

    @app.websocket("/ws")
    async def ticker(websocket: WebSocketAdapter) -> None:
        adapters.append(websocket)
        try:
            await asyncio.Event().wait()        # never receives
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    @ticker.on_close
    def closed(websocket: WebSocketAdapter) -> None:
        outcome.append(f"on_close {websocket.connector.close_code}")

    with running(app, loop_kind) as srv:
        c = client(srv)
        for i in range(10):
            c.send(f"m{i}")
        hub = srv.hub(app.websocket_endpoints()[0])
        assert wait_for(lambda: srv.call(lambda: [x.reading_paused for x in hub.connections.values()]) == [True])
        if who == "client":
            c.sock.close()
        else:
            started = time.monotonic()
            assert asyncio.run_coroutine_threadsafe(adapters[0].close(4001), srv.loop).result(5) is True
            assert close_frame(c)[0] == 4001       # read while the reading of the socket is held
            assert time.monotonic() - started < 1.0
            c.send_close(status=4001)
        code = 1011 if who == "client" else 4001
        assert wait_for(lambda: outcome == ["cancelled", f"on_close {code}"]), outcome
        assert wait_for(lambda: srv.call(lambda: hub.live) == 0)


def test_close_wakes_a_handler_waiting_in_receive(loop_kind: str) -> None:
    app = Robyn(__file__)
    adapters: list[WebSocketAdapter] = []
    seen: list[tuple[int, str]] = []

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        adapters.append(websocket)
        try:
            await websocket.receive_bytes()
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    with running(app, loop_kind) as srv:
        c = client(srv)
        assert wait_for(lambda: adapters)
        assert asyncio.run_coroutine_threadsafe(adapters[0].close(4003, "later"), srv.loop).result(5) is True
        # The handler is woken at once, before the client has answered the Close.
        assert wait_for(lambda: seen == [(4003, "later")])
        assert close_frame(c) == (4003, b"later")
        c.send_close()


# -- what the handler's end means for the connection ---------------------------------------------------


def test_a_handler_that_raises_or_returns(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app = Robyn(__file__)
    closed: list[str] = []

    @app.websocket("/raise")
    async def raising(websocket: WebSocketAdapter) -> None:
        await websocket.send_text("before")
        await websocket.receive_text()
        raise RuntimeError("handler failure on purpose")

    @app.websocket("/return")
    async def returning(websocket: WebSocketAdapter) -> None:
        await websocket.send_text("bye")

    for handler in (raising, returning):
        handler.on_close(lambda websocket: closed.append(websocket.connector.endpoint))

    caplog.set_level("INFO", logger="robyn_fast")
    with running(app, loop_kind) as srv:
        errors_before = app.stats()["counters"]["handler_errors"]
        c = client(srv, "/raise")
        assert c.recv() == "before"
        c.send("go")
        assert close_frame(c) == (1011, b"internal error")
        c.send_close()
        c = client(srv, "/return")
        assert c.recv() == "bye"
        assert close_frame(c) == (1000, b"")
        c.send_close()
        assert wait_for(lambda: sorted(closed) == ["/raise", "/return"])
        # Counted as a legacy handler's error is (robyn_fast_ws_handler_errors_total).
        assert app.stats()["counters"]["handler_errors"] - errors_before == 1
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "raising" in logged[0].getMessage() and "1011" in logged[0].getMessage()
    assert logged[0].exc_info is not None and "handler failure on purpose" in str(logged[0].exc_info[1])


def test_on_connect_goes_first_and_its_error_does_not_stop_the_handler(
        loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app = Robyn(__file__)

    async def first_then_echo(websocket: WebSocketAdapter) -> None:
        await websocket.send_text("first")       # no suspension before it: sent in the Task's first step
        while True:
            await websocket.send_text(await websocket.receive_text())

    sync_greet = app.websocket("/sync")(first_then_echo)
    sync_greet.on_connect(lambda websocket: "welcome")

    async def later(websocket: WebSocketAdapter) -> str:
        await asyncio.sleep(0.05)
        return "late welcome"

    async def slow_then_echo(websocket: WebSocketAdapter) -> None:
        await first_then_echo(websocket)

    app.websocket("/async")(slow_then_echo).on_connect(later)

    async def broken_then_echo(websocket: WebSocketAdapter) -> None:
        await first_then_echo(websocket)

    def broken(websocket: WebSocketAdapter) -> str:
        raise ValueError("on_connect failure on purpose")

    app.websocket("/broken")(broken_then_echo).on_connect(broken)

    caplog.set_level("INFO", logger="robyn_fast")
    with running(app, loop_kind) as srv:
        for path, greeting in (("/sync", ["welcome"]), ("/async", ["late welcome"]), ("/broken", [])):
            c = client(srv, path)
            assert [c.recv() for _ in range(len(greeting) + 1)] == [*greeting, "first"], path
            c.send("still served")
            assert c.recv() == "still served"
            c.close()
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and "connect handler" in logged[0].getMessage(), [r.getMessage() for r in logged]
    assert logged[0].exc_info is not None and "on_connect failure on purpose" in str(logged[0].exc_info[1])


# -- rooms and send_to on the websocket object, in one process and across processes and hosts ---------------

ROOMS = ROOT / "tests" / "robyn_apps" / "receive_rooms.py"


def test_room_names_are_checked_and_a_closing_connection_joins_nothing(loop_kind: str) -> None:
    app = Robyn(__file__)
    outcomes: list[Any] = []

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        # After a first suspension: a close() in the first step of an eagerly started Task (3.12+) goes
        # when that step ends, as any handler's close() during its own step does.
        await websocket.receive_text()
        try:
            websocket.join(["a list"])
        except TypeError as exc:
            outcomes.append(str(exc))
        outcomes.append(websocket.join(("any", "hashable")))      # one process, no broker: any hashable name
        outcomes.append(websocket.join("red"))
        outcomes.append(websocket.rooms)
        outcomes.append((websocket.leave("red"), websocket.leave("red")))
        await websocket.close()
        outcomes.append((websocket.join("late"), websocket.rooms))

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("go")
        assert close_frame(c)[0] == 1000
        c.send_close()
        assert wait_for(lambda: len(outcomes) == 6)
    assert outcomes == ["a room name must be hashable, not list", True, True, frozenset({("any", "hashable"), "red"}),
                        (True, False), (False, frozenset({("any", "hashable")}))]   # left when the TCP goes


def test_rooms_and_send_to_cross_worker_processes(loop_kind: str) -> None:
    with serve_script(ROOMS, loop_kind, args=["--processes", "2"], module=True) as server:
        assert server.port is not None
        pids = worker_pids(server.pid)
        placed = spread_clients(server.port, pids, per_worker=2, path="/rooms")
        everyone = [c for cs in placed.values() for c in cs]
        try:
            (a1, a2), (b1, b2) = placed[pids[0]][:2], placed[pids[1]][:2]
            for member in (a1, b1):
                member.ws.send("join red")
                assert member.ws.recv() == "joined red"
            # A join races room sends from other workers (README, "Rooms"): the reply to "join" can
            # reach the client before the joining worker's interest message reached the other worker.
            # A presence query is the barrier: each worker answers on the link its interest messages
            # took, so once the asker has both answers it knows both workers' members.
            for member in (a1, b1):
                member.ws.send("members red 5")
                assert set(json.loads(member.ws.recv())["ids"]) == {a1.id, b1.id}
            # A room send from each worker reaches the members on both. Messages from one worker to
            # another keep their order, so a private message sent after the room message that arrives
            # first shows a non-member was skipped, on either worker.
            for sender in (a1, b1):
                sender.ws.send("room red hello")
                for member in (a1, b1):
                    assert member.ws.recv() == f"{sender.id}@red: hello"
                for outsider in (a2, b2):
                    sender.ws.send(f"@{outsider.id} after")
                    assert outsider.ws.recv() == f"private from {sender.id}: after"
            # exclude_self, across workers: the sender's next message is its own echo.
            b1.ws.send("others red from b1")
            assert a1.ws.recv() == f"{b1.id}@red: from b1"
            b1.ws.send("ping")
            assert b1.ws.recv() == "echo ping"
            # rooms, leave; the sync variant; a member that left gets nothing.
            b1.ws.send("rooms")
            assert b1.ws.recv() == "red"
            b1.ws.send("leave red")
            assert b1.ws.recv() == "left red True"
            b1.ws.send("leave red")
            assert b1.ws.recv() == "left red False"
            a1.ws.send("room red sync:only a1 now")
            assert a1.ws.recv() == f"{a1.id}@red: sync:only a1 now"
            a1.ws.send(f"@{b1.id} after leaving")
            assert b1.ws.recv() == f"private from {a1.id}: after leaving"
            # send_to an id no live worker owns.
            a1.ws.send("@00000000-0000-4000-8000-000000000000 nobody")
            assert a1.ws.recv() == "no such user 00000000-0000-4000-8000-000000000000"
            # Who is where, on both workers: every connection with the node holding it; red's members.
            a2.ws.send("who 5")
            assert json.loads(a2.ws.recv()) == {"ids": {c.id: node_of(c.id) for c in everyone}, "complete": True,
                                                "missing": 0, "silent": []}
            b2.ws.send("members red 5")
            assert json.loads(b2.ws.recv())["ids"] == {a1.id: node_of(a1.id)}
            # A room with members on worker 0 only: its messages are not sent to worker 1 (counted).
            a1.ws.send("join solo")
            assert a1.ws.recv() == "joined solo"
            a1.ws.send("stats")
            before = json.loads(a1.ws.recv())
            for i in range(20):
                a1.ws.send(f"room solo {i}")
                assert a1.ws.recv() == f"{a1.id}@solo: {i}"
            a1.ws.send("stats")
            after = json.loads(a1.ws.recv())
            assert after["filtered"] - before["filtered"] == 20 and after["subscriptions"] == 2
        finally:
            for c in everyone:
                c.close()


def test_rooms_and_send_to_cross_hosts_over_redis(loop_kind: str) -> None:
    with two_hosts_over_redis(ROOMS, loop_kind, "receive-rooms") as (one, two):
        a, b, outsider = Client(one, "/rooms"), Client(two, "/rooms"), Client(two, "/rooms")
        try:
            assert node_of(a.id) != node_of(b.id)
            for member in (a, b):
                member.ws.send("join red")
                assert member.ws.recv() == "joined red"
            a.ws.send("room red over redis")
            for member in (a, b):
                assert member.ws.recv() == f"{a.id}@red: over redis"
            a.ws.send(f"@{outsider.id} after")
            assert outsider.ws.recv() == f"private from {a.id}: after"
            b.ws.send("others red from b")
            assert a.ws.recv() == f"{b.id}@red: from b"
            b.ws.send(f"@{a.id} private over redis")
            assert a.ws.recv() == f"private from {b.id}: private over redis"
            b.ws.send("ping")
            assert b.ws.recv() == "echo ping"
        finally:
            for c in (a, b, outsider):
                c.close()


# -- permessage-deflate, as for legacy endpoints ----------------------------------------------------------


def test_permessage_deflate_is_agreed_and_used_as_for_legacy_endpoints(loop_kind: str) -> None:
    app = Robyn(__file__)
    for mode in ("shared", "dedicated", "off"):
        async def echo(websocket: WebSocketAdapter) -> None:
            agreed = websocket.connector.compression
            await websocket.send_json(None if agreed is None else agreed.response)
            while True:
                await websocket.send_text(await websocket.receive_text())

        app.websocket(f"/{mode}", config=Config(compression=mode))(echo)

    big = "".join(f'{{"seq":{i},"text":"message {i} ✓"}},' for i in range(10_000))
    with running(app, loop_kind) as srv:
        for mode in ("shared", "dedicated", "off"):
            with ws_connect_sync(f"{srv.ws_url}/{mode}", max_size=None) as c:
                answer = c.response.headers.get("Sec-WebSocket-Extensions")
                assert json.loads(c.recv(timeout=10)) == answer        # what the handler sees is what was agreed
                assert (answer is None) == (mode == "off"), (mode, answer)
                before = app.stats()["compressions"]
                c.send(big)
                assert c.recv(timeout=10) == big
                assert app.stats()["compressions"] - before == (0 if mode == "off" else 1)
        plain = client(srv, "/shared")              # offers nothing: websocket-client fails on any RSV bit
        assert plain.recv() == "null"
        plain.send(big)
        assert plain.recv() == big
        plain.close()


# -- Chromium through a page --------------------------------------------------------------------------------

# Runs in the page: two sockets to the rooms app; greetings, a room both join, a private message by id, the
# agreed extensions, and the close code the browser sees when the handler returns.
ROOMS_JS = """
async () => {
  const open = (path) => new Promise((ok, fail) => {
    const ws = new WebSocket(`ws://${location.host}${path}`);
    const inbox = [], waiters = [];
    ws.onmessage = (e) => { if (waiters.length) waiters.shift()(e.data); else inbox.push(e.data); };
    ws.next = () => inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r));
    ws.onopen = () => ok(ws);
    ws.onerror = () => fail(new Error(`no connection to ${path}`));
  });
  const a = await open("/rooms"), b = await open("/rooms");
  const out = {a: await a.next(), b: await b.next(), extensions: a.extensions};
  const idOf = (welcome) => welcome.split(" ")[1];
  for (const ws of [a, b]) { ws.send("join blue"); out[`joined${ws === a ? "A" : "B"}`] = await ws.next(); }
  a.send("room blue ✓ hello from the page");
  out.roomA = await a.next();
  out.roomB = await b.next();
  b.send(`@${idOf(out.a)} just for a`);
  out.privateA = await a.next();
  const closed = new Promise((ok) => { a.onclose = (e) => ok([e.code, e.wasClean]); });
  a.send("quit");
  out.closeA = await closed;
  b.close(1000);
  return out;
}
"""


def test_chromium_through_a_page(tmp_path: Any) -> None:
    with serve_script(ROOMS, module=True) as server, chromium_page(tmp_path / "chromium-profile") as page:
        page.goto(f"http://127.0.0.1:{server.port}/", wait_until="load")
        out = page.evaluate(ROOMS_JS)
    a_id, b_id = out["a"].split()[1], out["b"].split()[1]
    assert out["a"].startswith("welcome ") and a_id != b_id
    assert out["extensions"].startswith("permessage-deflate")
    assert out["joinedA"] == out["joinedB"] == "joined blue"
    assert out["roomA"] == out["roomB"] == f"{a_id}@blue: ✓ hello from the page"
    assert out["privateA"] == f"private from {b_id}: just for a"
    assert out["closeA"] == [1000, True]
    assert "Traceback" not in server.output()
