"""Robyn's receive-loop WebSocket API (``@app.websocket``): echo of text,
bytes and JSON (128 KiB too), WebSocketDisconnect with the client's close
code, close() while the handler awaits elsewhere, on_connect/on_close return
values, typed query parameters (a missing required one refuses the upgrade),
the upgrade request's headers and client address, the bounded read pause,
SubRouter prefixes, the legacy class beside it, and broadcast across worker
processes. Real clients: websocket-client and websockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket as wsclient
from websockets.sync.client import connect as ws_connect_sync

from robyn_fast import Config, Robyn, SubRouter, WebSocket, WebSocketAdapter, WebSocketDisconnect
from robyn_fast.websocket.ids import node_of

from .process_helpers import ROOT, owner, serve_script, worker_pids
from .redis_helpers import redis_server
from .server_helpers import Running, wait_for
from .server_helpers import running as serve

BIG = 128 * 1024


_OPEN: list[wsclient.WebSocket] = []


def client(srv: Any, path: str = "/ws", **kw: Any) -> wsclient.WebSocket:
    c = wsclient.create_connection(f"{srv.ws_url}{path}", timeout=10, **kw)
    _OPEN.append(c)
    return c


@contextlib.contextmanager
def running(app: Robyn, loop_kind: str) -> Iterator[Running]:
    """The server, whose clients (client()) are dropped (TCP closed) when the test is done
    with them: shutdown would otherwise wait close_timeout (10 s) for the answer to its Close
    from a client that never reads again (a test's whole run, 8 tests, each Python and loop)."""
    with serve(app, loop_kind) as srv:
        try:
            yield srv
        finally:
            while _OPEN:
                _OPEN.pop().shutdown()


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
        c = client(srv, "/none")
        c.send("y")
        assert c.recv() == "echo y"        # nothing came before the echo
        c = client(srv, "/hello")
        first = c.recv()
        assert first.startswith("Hello ") and len(first) == len("Hello ") + 36


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
                   note: str | None = None) -> None:
        await websocket.send_json({"name": name, "count": count, "loud": loud, "note": note,
                                   "qp": websocket.query_params.get("name")})
        await websocket.receive_text()

    with running(app, loop_kind) as srv:
        c = client(srv, "/room?name=lobby")
        assert json.loads(c.recv()) == {"name": "lobby", "count": 3, "loud": False, "note": None, "qp": "lobby"}
        c = client(srv, "/room?name=a%20b&count=7&loud=true&note=hi")
        assert json.loads(c.recv()) == {"name": "a b", "count": 7, "loud": True, "note": "hi", "qp": "a b"}
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
        async def handler(websocket: Any, things: list[int]) -> None: ...
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


def test_a_handler_that_stops_receiving_pauses_reading(loop_kind: str) -> None:
    app = Robyn(__file__, config=Config(read_high_water=4, read_low_water=2))
    go = threading.Event()
    received: list[str] = []

    @app.websocket("/ws")
    async def slow(websocket: WebSocketAdapter) -> None:
        while not go.is_set():
            await asyncio.sleep(0.01)
        while len(received) < 60:
            received.append(await websocket.receive_text())
        await websocket.send_text("done")

    with running(app, loop_kind) as srv:
        c = client(srv)
        for i in range(60):
            c.send(f"{i:04d}" + "." * 1000)
        hub = srv.hub(app.websocket_endpoints()[0])
        assert wait_for(lambda: srv.call(lambda: [conn.reading_paused for conn in hub.connections.values()]) == [True])
        go.set()
        assert c.recv() == "done"
        assert [m[:4] for m in received] == [f"{i:04d}" for i in range(60)]
        assert srv.call(lambda: [conn.reading_paused for conn in hub.connections.values()]) == [False]


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


def test_broadcast_crosses_hosts_over_redis(loop_kind: str) -> None:
    with redis_server() as redis:
        url = redis.url + "?prefix=receive-api"
        with serve_script(CHAT, loop_kind, args=["--broker", url], module=True) as one, \
                serve_script(CHAT, loop_kind, args=["--broker", url], module=True) as two:
            assert one.port is not None and two.port is not None
            a = wsclient.create_connection(f"ws://127.0.0.1:{one.port}/chat", timeout=10)
            b = wsclient.create_connection(f"ws://127.0.0.1:{two.port}/chat", timeout=10)
            try:
                for server in (one, two):
                    server.wait_output(r"broker: connected to Redis at ", timeout=10)
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


def test_sends_to_a_client_that_does_not_read_meet_the_backpressure_policy(loop_kind: str) -> None:
    app = Robyn(__file__, config=Config(max_backpressure=256 * 1024))
    refused_at: list[int | None] = []

    @app.websocket("/ws")
    async def flood(websocket: WebSocketAdapter) -> None:
        await websocket.receive_text()
        chunk = b"x" * 65536
        for i in range(400):           # 25 MiB at most: more than the kernel's socket buffers hold
            if not await websocket.send_bytes(chunk):
                refused_at.append(i)
                return
            await asyncio.sleep(0)
        refused_at.append(None)

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.send("go")                   # then read nothing until the handler is refused
        assert wait_for(lambda: refused_at, timeout=20)
        assert refused_at[0] is not None
        # The "close" policy: after what was queued, a Close 1008.
        assert close_frame(c)[0] == 1008
