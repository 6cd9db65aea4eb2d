"""The Robyn WebSocket API: registration, handler binding, dependency
injection, return values, execution order, and the connector."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
import urllib.request
import uuid
from typing import Any

import pytest
import websocket as wsclient

from robyn_fast import Robyn, WebSocket
from robyn_fast.dependency_injection import DependencyMap

from .server_helpers import running, settled, wait_for


def client(srv: Any, path: str = "/ws", **kw: Any) -> wsclient.WebSocket:
    return wsclient.create_connection(f"{srv.ws_url}{path}", timeout=10, **kw)


# -- registration -----------------------------------------------------------------


def test_on_returns_the_handler_and_rejects_unknown_events() -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    def handler(ws: Any, msg: Any) -> str:
        return "direct call still works"

    assert ws.on("message")(handler) is handler
    assert handler(None, None) == "direct call still works"
    with pytest.raises(ValueError, match="unknown websocket event 'open'"):
        ws.on("open")
    with pytest.raises(TypeError):
        ws.on("connect")("not callable")  # type: ignore[arg-type]


def test_no_shared_mutable_defaults() -> None:
    for fn in (WebSocket.__init__, WebSocket.on, Robyn.__init__, DependencyMap.__init__):
        for p in inspect.signature(fn).parameters.values():
            assert not isinstance(p.default, (dict, list, set, DependencyMap)), (fn, p.name)
    app1, app2 = Robyn(__file__), Robyn(__file__)
    ws1, ws2 = WebSocket(app1, "/a"), WebSocket(app2, "/a")
    ws1.inject_global(secret="app1 only")
    ws1.inject(local="ws1 only")
    assert ws1.dependencies is app1.dependencies and ws2.dependencies is app2.dependencies
    assert "secret" not in app2.dependencies.get_global_dependencies()
    assert ws2.dependencies.get_router_dependencies(ws2) == {}


def test_endpoint_without_handlers(loop_kind: str) -> None:
    app = Robyn(__file__)
    WebSocket(app, "/ws")
    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("nobody listens")
        c.ping(b"still alive")
        assert c.recv_frame().opcode == wsclient.ABNF.OPCODE_PONG
        c.close()


# -- binding -------------------------------------------------------------------------


class FakeConnector:
    query_params = "QP"
    path_params = {"room_id": "lobby"}


SIGNATURES: list[tuple[str, str, Any]] = [
    ("message", "def h(): return 'none'", "none"),
    ("message", "def h(ws): return ws is conn", True),
    ("message", "def h(msg): return msg", "MSG"),
    ("message", "def h(ws, msg): return (ws is conn, msg)", (True, "MSG")),
    ("message", "def h(ws, msg, global_dependencies): return (msg, global_dependencies['logger'])", ("MSG", "LOG")),
    ("message", "def h(global_dependencies, router_dependencies): return (global_dependencies['logger'], router_dependencies['user_manager'])", ("LOG", "USERS")),
    ("connect", "def h(websocket_connector): return websocket_connector is conn", True),
    ("message", "def h(websocket_connector, message): return (websocket_connector is conn, message)", (True, "MSG")),
    ("connect", "def h(websocket_connector, logger, user_manager): return (websocket_connector is conn, logger, user_manager)", (True, "LOG", "USERS")),
    ("message", "def h(websocket_connector, message, logger, user_manager): return (message, logger, user_manager)", ("MSG", "LOG", "USERS")),
    ("message", "def h(msg, ws): return (msg, ws is conn)", ("MSG", True)),
    ("message", "def h(conn_, text): return (conn_ is conn, text)", (True, "MSG")),
    ("close", "def h(ws, room_id, query_params): return (room_id, query_params)", ("lobby", "QP")),
    ("message", "def h(ws, msg, *, logger): return logger", "LOG"),
    ("message", "def h(ws, msg, extra='default'): return extra", "default"),
    ("message", "async def h(ws, msg): return msg", "MSG"),
]


@pytest.mark.parametrize(("event", "source", "expected"), SIGNATURES)
def test_signatures_bind_as_their_authors_meant(event: str, source: str, expected: Any) -> None:
    app = Robyn(__file__)
    app.inject_global(logger="LOG")
    ws = WebSocket(app, "/room/<room_id>")
    ws.inject(user_manager="USERS")
    conn = FakeConnector()
    namespace: dict[str, Any] = {"conn": conn}
    exec(source, namespace)
    bound = ws.bind(event, namespace["h"])
    result = bound(conn, "MSG") if event == "message" else bound(conn)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    assert result == expected


def test_plain_signatures_are_called_without_a_wrapper() -> None:
    ws = WebSocket(Robyn(__file__), "/ws")

    def on_message(ws: Any, msg: Any) -> None: ...

    def on_connect(websocket_connector: Any) -> None: ...

    assert ws.bind("message", on_message) is on_message
    assert ws.bind("connect", on_connect) is on_connect


@pytest.mark.parametrize(
    ("event", "source", "param"),
    [
        ("connect", "def handler_x(ws, logger): pass", "logger"),
        ("connect", "def handler_x(ws, msg): pass", "msg"),
        ("message", "def handler_x(ws, msg, user_manager): pass", "user_manager"),
        ("close", "def handler_x(ws, *, token): pass", "token"),
    ],
)
def test_unbindable_parameter_is_a_type_error_at_decoration(event: str, source: str, param: str) -> None:
    ws = WebSocket(Robyn(__file__), "/ws")
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(TypeError) as info:
        ws.on(event)(namespace["handler_x"])
    assert "handler_x" in str(info.value) and repr(param) in str(info.value)


# -- dependency injection --------------------------------------------------------------------


def test_all_four_injection_points_reach_handlers_and_late_injection_is_visible(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    app.inject_global(a="app-global")
    app.inject(b="app-router")
    ws.inject_global(c="ws-global")
    ws.inject(d="ws-router")

    @ws.on("message")
    def on_message(ws: Any, msg: str, a: str, b: str, c: str, d: str, global_dependencies: dict[str, Any]) -> str:
        return json.dumps([a, b, c, d, sorted(global_dependencies)])

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("x")
        assert json.loads(c.recv()) == ["app-global", "app-router", "ws-global", "ws-router", ["a", "c"]]
        srv.call(lambda: (app.inject_global(a="replaced", late="new"), ws.inject(d="replaced too")))
        c.send("x")
        assert json.loads(c.recv()) == ["replaced", "app-router", "ws-global", "replaced too", ["a", "c", "late"]]
        c.close()


def test_one_binder_for_http_and_websocket_handlers_with_live_dependencies() -> None:
    """HTTP routes and WebSocket events are bound by the same code
    (robyn_fast.binding): one compiled call per message or request; the
    dependency dicts are resolved at registration and read at each call."""
    from robyn_fast.http.routes import bind_http

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    ws.inject(token="T1")
    app.inject_global(clock="C")

    def on_message(ws: Any, msg: Any, token: str, clock: str) -> tuple[Any, str, str]:
        return (msg, token, clock)

    def route(request: Any, clock: str) -> tuple[Any, str]:
        return (request, clock)

    bound = ws.bind("message", on_message)
    bound_http = bind_http(route, app.dependencies, app, "/r")
    assert bound.__module__ == bound_http.__module__ == "robyn_fast.binding"
    assert bound(object(), "m") == ("m", "T1", "C") and bound_http("req") == ("req", "C")
    ws.inject(token="T2")  # injected again after decoration: seen
    assert bound(object(), "m") == ("m", "T2", "C")
    app.dependencies.get_router_dependencies(ws).pop("token")
    with pytest.raises(LookupError, match="'token' is no longer injected"):
        bound(object(), "m")


def test_robyn_style_own_dependency_map() -> None:
    app = Robyn(__file__)
    deps = DependencyMap()
    ws = WebSocket(app, "/ws", dependencies=deps)
    ws.inject(x=1)
    app.inject_global(y=2)

    def h(ws: Any, x: int, y: int) -> tuple[int, int]:
        return (x, y)

    assert ws.bind("connect", h)(object()) == (1, 2)
    assert deps.get_router_dependencies(ws) == {"x": 1}
    with pytest.raises(TypeError):
        WebSocket(app, "/other", dependencies={"x": 1})  # type: ignore[arg-type]


# -- return values -------------------------------------------------------------------------------


def test_return_values(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    values: dict[str, Any] = {
        "none": None,
        "empty": "",
        "text": "Connection closed",  # no string has a special meaning
        "bytes": b"\x00\x01",
        "bytearray": bytearray(b"\x02"),
        "memoryview": memoryview(b"\x03"),
        "dict": {"k": [1, 2]},
        "list": [1, "two"],
        "int": 42,
    }

    @ws.on("message")
    def on_message(ws: Any, msg: str) -> Any:
        return values[msg]

    with running(app, loop_kind) as srv:
        c = client(srv)
        for key in values:
            c.send(key)
        c.send("text")  # the connection is still open after "Connection closed"
        got = [c.recv_data() for _ in range(8)]
        c.close()
    text, binary = wsclient.ABNF.OPCODE_TEXT, wsclient.ABNF.OPCODE_BINARY
    assert got == [
        (text, b""),
        (text, b"Connection closed"),
        (binary, b"\x00\x01"),
        (binary, b"\x02"),
        (binary, b"\x03"),
        (text, b'{"k":[1,2]}'),  # compact JSON, the HTTP side's encoder
        (text, b'[1,"two"]'),
        (text, b"Connection closed"),
    ]
    assert any("cannot send a int" in r.getMessage() for r in caplog.records)


# -- execution -----------------------------------------------------------------------------------


def test_async_replies_keep_arrival_order_and_connections_run_concurrently(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    release = asyncio.Event()

    @ws.on("message")
    async def on_message(ws: Any, msg: str) -> str:
        if msg == "wait":
            await release.wait()
        else:
            await asyncio.sleep(0.001 * (hash(msg) % 5))
        return msg

    with running(app, loop_kind) as srv:
        blocked, free = client(srv), client(srv)
        blocked.send("wait")
        blocked.send("after-wait")
        for i in range(50):
            free.send(str(i))
        assert [free.recv() for _ in range(50)] == [str(i) for i in range(50)]
        srv.call(release.set)
        assert [blocked.recv(), blocked.recv()] == ["wait", "after-wait"]
        blocked.close()
        free.close()


def test_threaded_sync_handler_runs_off_the_loop_in_order(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    threads: set[int] = set()

    @ws.on("message", threaded=True)
    def blocking(ws: Any, msg: str) -> str:
        threads.add(threading.get_ident())
        time.sleep(0.002)
        return msg

    with pytest.raises(ValueError):

        @ws.on("connect", threaded=True)
        async def not_sync(ws: Any) -> None: ...

    with running(app, loop_kind) as srv:
        loop_thread = srv.call(threading.get_ident)
        c = client(srv)
        for i in range(30):
            c.send(str(i))
        assert [c.recv() for _ in range(30)] == [str(i) for i in range(30)]
        c.close()
    assert threads and loop_thread not in threads


# -- the connector --------------------------------------------------------------------------------


def test_connector_attributes(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/room/:room_id")
    seen: dict[str, Any] = {}

    @ws.on("connect")
    def on_connect(ws: Any) -> None:
        seen.update(
            id=ws.id,
            name=ws.query_params.get("name"),
            tags=ws.query_params.get_all("tag"),
            room=ws.path_params,
            header=ws.headers.get("x-client"),
            addr=ws.remote_addr,
            endpoint=ws.endpoint,
        )

    with running(app, loop_kind) as srv:
        c = client(srv, "/room/caf%C3%A9?name=J%C3%BCrgen+K&tag=a&tag=b", header=["X-Client: tester"])
        assert wait_for(lambda: "id" in seen)
        c.close()
    assert uuid.UUID(seen["id"]).version == 4
    assert seen["name"] == "Jürgen K" and seen["tags"] == ["a", "b"]
    assert seen["room"] == {"room_id": "café"}
    assert seen["header"] == "tester"
    assert seen["addr"][0] == "127.0.0.1"
    assert seen["endpoint"] == "/room/:room_id"


def test_send_to_broadcast_and_bad_ids(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    results: list[Any] = []

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> None:
        cmd, _, arg = msg.partition(" ")
        if cmd == "to":
            results.append(conn.sync_send_to(arg, f"from {conn.id}"))
        elif cmd == "ato":
            results.append(await conn.async_send_to(arg, b"binary hello"))
        elif cmd == "all":
            results.append(conn.sync_broadcast(arg))
        elif cmd == "aall":
            results.append(await conn.async_broadcast(arg))
        elif cmd == "bad":
            results.append([conn.sync_send_to(x, "x") for x in ("", "nope", str(uuid.uuid4()))])
            for bad_id in (None, 42):
                try:
                    conn.sync_send_to(bad_id, "x")
                except TypeError as exc:  # an argument error raises in the caller
                    results.append(str(exc))
        elif cmd == "many":
            for i in range(1000):
                conn.sync_send_to(conn.id, f"#{i}")

    with running(app, loop_kind) as srv:
        a, b = client(srv), client(srv)
        assert wait_for(lambda: len(ws.connections) == 2)
        id_a, id_b = (srv.call(lambda: list(ws.connections)))
        a.send(f"to {id_b}")
        assert b.recv() == f"from {id_a}"
        a.send(f"ato {id_b}")
        assert b.recv() == b"binary hello"
        a.send("all hello everyone")
        assert a.recv() == b.recv() == "hello everyone"
        b.send("aall again")
        assert a.recv() == b.recv() == "again"
        a.send("bad")
        a.send("many")
        assert [a.recv() for _ in range(1000)] == [f"#{i}" for i in range(1000)]
        assert results == [
            True, True, 2, 2, [False] * 3,
            "a connection id is a str, not NoneType", "a connection id is a str, not int",
        ]
        a.close()
        b.close()


def test_sends_from_other_threads_and_http_routes(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @app.post("/announce")
    def announce(request: Any) -> dict[str, int]:
        return {"delivered": ws.broadcast(request.body)}

    with running(app, loop_kind) as srv:
        a, b = client(srv), client(srv)
        assert wait_for(lambda: len(ws.connections) == 2)
        ids = srv.call(lambda: list(ws.connections))
        # From a plain thread (not the loop): scheduled thread-safely.
        assert ws.send_to(ids[0], "from a thread") is True
        assert ws.send_to("unknown", "x") is False
        connector = ws.connections[ids[1]]  # a snapshot of the connectors, safe from any thread
        assert connector.sync_send_to(ids[1], "via a kept connector") is True
        assert connector.sync_broadcast("thread broadcast") == 2
        # Each connection receives in the order things were scheduled.
        assert [a.recv(), a.recv()] == ["from a thread", "thread broadcast"]
        assert [b.recv(), b.recv()] == ["via a kept connector", "thread broadcast"]
        # From an HTTP route handler (runs on the loop).
        req = urllib.request.Request(f"{srv.url}/announce", data=b"over http", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read()) == {"delivered": 2}
        assert a.recv() == b.recv() == "over http"
        a.close()
        b.close()


def test_close_handler_runs_exactly_once_however_it_ends(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    closed: list[str] = []

    @ws.on("message")
    def on_message(conn: Any, msg: str) -> None:
        conn.close()
        conn.close()

    @ws.on("close")
    def on_close(conn: Any) -> None:
        closed.append(conn.id)

    with running(app, loop_kind) as srv:
        c1 = client(srv)
        c1.send("close me")  # server-initiated close, called twice
        c1.recv_data_frame(True)
        c1.close()
        c2 = client(srv)
        c2.close()  # client-initiated
        c3 = client(srv)
        c3.sock.close()  # vanished
        assert wait_for(lambda: len(closed) == 3)
        settled(srv, ws)  # nothing left to run: no second close handler can come
        assert len(set(closed)) == 3


def test_connection_ids_are_uuid4_and_unique() -> None:
    from robyn_fast.websocket.ids import new_id

    ids = [new_id() for _ in range(5000)]  # spans many 256-id batches of random bytes
    assert len(set(ids)) == 5000
    for text in ids[:600]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
