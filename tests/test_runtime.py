"""The runtime's contract with handlers: real Tasks from the first line, a
context per message, Tasks kept alive, prompt close from anywhere, one JSON
encoder, an honest cross-thread API, fork-safe ids, one server per app, and
the HTTP side's binding and HTTPError statuses. In-process servers on both
loops, real clients."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
import warnings
import weakref
from typing import Any

import pytest
import websocket as wsclient

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_text
from robyn_fast._core.connection import Connection, Hub
from robyn_fast.encoding import dumps
from robyn_fast.exceptions import HTTPError, InvalidState, MethodNotAllowed, NotFound
from robyn_fast.server import Server
from robyn_fast.websocket.ids import new_id

from .fake_transport import FakeTransport
from .server_helpers import eventually, running, wait_for

TIMEOUT = 10


def client(srv: Any, path: str = "/ws") -> wsclient.WebSocket:
    return wsclient.create_connection(f"{srv.ws_url}{path}", timeout=TIMEOUT)


def close_frame(c: wsclient.WebSocket) -> tuple[int, bytes]:
    """The next frame must be a Close: its code and reason."""
    frame = c.recv_frame()
    assert frame.opcode == wsclient.ABNF.OPCODE_CLOSE, (frame.opcode, frame.data)
    return int.from_bytes(frame.data[:2], "big"), frame.data[2:]


def http_get(srv: Any, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{srv.url}{path}", timeout=TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- async handlers run in real Tasks --------------------------------------------------------


def test_async_handlers_that_suspend_reply_and_keep_order(loop_kind: str) -> None:
    """The defect of Python 3.12/3.13 (a suspending handler wedged its
    connection for good): replies, order and the close handler, on every
    version."""
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    closed: list[str] = []

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> str:
        await asyncio.sleep(0.01 if msg.startswith("slow") else 0)
        return f"done {msg}"

    @ws.on("close")
    async def on_close(conn: Any) -> None:
        await asyncio.sleep(0.01)
        closed.append(conn.id)

    with running(app, loop_kind) as srv:
        c = client(srv)
        for m in ("slow 1", "fast 2", "slow 3", "fast 4"):
            c.send(m)
        assert [c.recv() for _ in range(4)] == ["done slow 1", "done fast 2", "done slow 3", "done fast 4"]
        c.close()
        assert wait_for(lambda: len(closed) == 1)
        hub = srv.hub(ws)
        assert eventually(lambda: (hub.live, hub.live_tasks), lambda v: v == (0, 0))


def test_timeout_wait_for_taskgroup_and_current_task_work_from_the_first_line(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> dict[str, Any]:
        task = asyncio.current_task()  # the first line: a Task is current
        report: dict[str, Any] = {"task": task is not None}
        report["wait_for"] = await asyncio.wait_for(asyncio.sleep(0, "w"), 1)
        async with asyncio.timeout(1):
            report["timeout"] = "t"
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            report["timed_out"] = True
        async with asyncio.TaskGroup() as tg:
            a = tg.create_task(asyncio.sleep(0, 1))
            b = tg.create_task(asyncio.sleep(0.001, 2))
        report["taskgroup"] = a.result() + b.result()
        report["same_task"] = asyncio.current_task() is task
        return report

    expected: dict[str, Any] = {"task": True, "wait_for": "w", "same_task": True, "timeout": "t", "timed_out": True,
                                "taskgroup": 3}
    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("go")
        assert json.loads(c.recv()) == expected
        c.send("again")  # the connection is not wedged
        assert json.loads(c.recv()) == expected
        c.close()


def test_connect_and_close_handlers_run_in_tasks_too(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    seen: list[tuple[str, bool]] = []

    @ws.on("connect")
    async def on_connect(conn: Any) -> str:
        seen.append(("connect", asyncio.current_task() is not None))
        await asyncio.wait_for(asyncio.sleep(0), 1)
        return "hello"

    @ws.on("close")
    async def on_close(conn: Any) -> None:
        seen.append(("close", asyncio.current_task() is not None))
        await asyncio.wait_for(asyncio.sleep(0), 1)

    with running(app, loop_kind) as srv:
        c = client(srv)
        assert c.recv() == "hello"
        c.close()
        assert wait_for(lambda: seen == [("connect", True), ("close", True)])


def test_threaded_sync_handlers_work_and_keep_order(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    threads: set[str] = set()

    @ws.on("message", threaded=True)
    def blocking(conn: Any, msg: str) -> str:
        threads.add(threading.current_thread().name)
        time.sleep(0.02 if msg == "0" else 0)  # blocks its worker thread, not the loop
        return f"t{msg}"

    with running(app, loop_kind) as srv:
        c = client(srv)
        for i in range(5):
            c.send(str(i))
        assert [c.recv() for _ in range(5)] == [f"t{i}" for i in range(5)]
        c.close()
    assert threads and not any(name.startswith("robyn_fast-") for name in threads)


def test_each_message_runs_in_its_own_context(loop_kind: str) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    app = Robyn(__file__)
    async_ws = WebSocket(app, "/async")
    sync_ws = WebSocket(app, "/sync")

    @async_ws.on("message")
    async def set_async(conn: Any, msg: str) -> str:
        before = var.get()
        var.set(msg)  # before the first await
        await asyncio.sleep(0)
        return f"{before}->{var.get()}"

    @sync_ws.on("message")
    def set_sync(conn: Any, msg: str) -> str:
        before = var.get()
        var.set(msg)
        return f"{before}->{var.get()}"

    with running(app, loop_kind) as srv:
        for path in ("/async", "/sync"):
            c = client(srv, path)
            for m in ("a", "b", "c"):
                c.send(m)
            assert [c.recv() for _ in range(3)] == ["unset->a", "unset->b", "unset->c"]
            c.close()


def test_a_suspended_handler_task_is_kept_alive(loop_kind: str) -> None:
    """A handler awaiting something only its own frame references: without a
    strong reference the garbage collector would destroy its Task and the
    connection would stay busy for good."""
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    events: list[weakref.ref[asyncio.Event]] = []

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> str:
        if msg == "wait":
            event = asyncio.Event()
            events.append(weakref.ref(event))
            await event.wait()
            return "woke"
        return msg

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("wait")
        assert wait_for(lambda: len(events) == 1)
        c.send("next")  # queued behind the suspended handler
        srv.call(gc.collect)
        srv.call(gc.collect)
        event = events[0]()
        assert event is not None, "the suspended handler's Task was collected"
        assert srv.hub(ws).live_tasks == 1
        srv.call(event.set)
        assert [c.recv(), c.recv()] == ["woke", "next"]
        c.close()


def test_http_handler_tasks_are_kept_alive(loop_kind: str) -> None:
    app = Robyn(__file__)
    events: list[weakref.ref[asyncio.Event]] = []

    @app.get("/wait")
    async def wait(request: Any) -> str:
        event = asyncio.Event()
        events.append(weakref.ref(event))
        await event.wait()
        return "woke"

    with running(app, loop_kind) as srv:
        result: list[tuple[int, bytes]] = []
        t = threading.Thread(target=lambda: result.append(http_get(srv, "/wait")))
        t.start()
        assert wait_for(lambda: len(events) == 1)
        srv.call(gc.collect)
        event = events[0]()
        assert event is not None, "the HTTP handler's Task was collected"
        assert srv.server.live_tasks == 1
        srv.call(event.set)
        t.join(TIMEOUT)
        assert result == [(200, b"woke")]


# -- close from anywhere, at once --------------------------------------------------------------


@pytest.mark.parametrize("who", ["http-route", "other-connection", "other-thread"])
def test_close_is_prompt_while_the_handler_is_suspended(loop_kind: str, who: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    gate = asyncio.Event()
    suspended: list[str] = []
    sends_after_close: list[bool] = []
    closes: list[str] = []

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> str | None:
        if msg.startswith("kick "):
            return json.dumps(ws.connections[msg[5:]].close(4001, "kicked"))
        suspended.append(conn.id)
        await gate.wait()
        sends_after_close.append(conn.sync_send_to(conn.id, "after the close"))
        return "a reply nobody gets"

    @ws.on("close")
    def on_close(conn: Any) -> None:
        closes.append(conn.id)

    @app.get("/kick/:conn_id")
    def kick(request: Any, conn_id: str) -> dict[str, bool]:
        return {"closed": ws.connections[conn_id].close(4001, "kicked")}

    with running(app, loop_kind) as srv:
        victim = client(srv)
        victim.send("suspend")
        assert wait_for(lambda: len(suspended) == 1)
        victim_id = suspended[0]
        if who == "http-route":
            assert http_get(srv, f"/kick/{victim_id}") == (200, b'{"closed":true}')
        elif who == "other-connection":
            kicker = client(srv)
            kicker.send(f"kick {victim_id}")
            assert kicker.recv() == "true"
            kicker.close()
        else:
            assert ws.connections[victim_id].close(4001, "kicked") is True
        # The Close arrives while the handler is still suspended.
        assert close_frame(victim) == (4001, b"kicked")
        assert not gate.is_set()
        assert ws.connections[victim_id].close() is False  # already closing, from any thread
        victim.send_close()
        srv.call(gate.set)
        assert wait_for(lambda: victim_id in closes)
        assert sends_after_close == [False]
        assert eventually(lambda: srv.hub(ws).live, lambda n: n == 0) == 0
    assert closes.count(victim_id) == 1  # exactly once


def test_own_close_follows_the_return_value_or_goes_when_it_suspends(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    gate = asyncio.Event()

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> str:
        if msg == "close-then-return":
            await asyncio.sleep(0)
            conn.close(4002, "after reply")
            return "reply first"
        conn.close(4003, "then wait")
        await gate.wait()  # the Close must not wait for this
        return "never sent"

    with running(app, loop_kind) as srv:
        a = client(srv)
        a.send("close-then-return")
        assert a.recv() == "reply first"
        assert close_frame(a) == (4002, b"after reply")
        a.close()
        b = client(srv)
        b.send("close-then-wait")
        assert close_frame(b) == (4003, b"then wait")
        assert not gate.is_set()
        b.close()
        srv.call(gate.set)


# -- one JSON encoder -----------------------------------------------------------------------------


def test_websocket_and_http_encode_json_alike_and_refuse_nan(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    value = {"é": [1, 2.5, None, True], "nested": {"k": "v"}}
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    raised: list[str] = []

    @ws.on("message")
    def on_message(conn: Any, msg: str) -> Any:
        if msg == "value":
            return value
        if msg == "nan":
            return {"x": math.nan}
        if msg == "object":
            return {"x": object()}
        if msg == "send-nan":
            try:
                conn.sync_broadcast({"x": math.inf})
            except ValueError as exc:  # raised in the caller
                raised.append(str(exc))
            return "sent nothing"
        return msg

    @app.get("/value")
    def http_value() -> Any:
        return value

    @app.get("/nan")
    def http_nan() -> Any:
        return {"x": math.nan}

    with running(app, loop_kind) as srv:
        status, body = http_get(srv, "/value")
        assert status == 200 and body == dumps(value).encode() == '{"é":[1,2.5,null,true],"nested":{"k":"v"}}'.encode()
        assert http_get(srv, "/nan")[0] == 500
        c = client(srv)
        c.send("value")
        assert c.recv() == body.decode()  # the same bytes as HTTP
        for bad in ("nan", "object"):
            c.send(bad)  # nothing sent, connection open
        c.send("send-nan")
        assert c.recv() == "sent nothing"
        c.send("still open")
        assert c.recv() == "still open"
        c.close()
    assert raised and "Out of range float values are not JSON compliant" in raised[0]
    messages = [r.getMessage() for r in caplog.records if r.name == "robyn_fast.websocket"]
    assert sum("message handler test_websocket_and_http_encode_json_alike_and_refuse_nan.<locals>.on_message "
               "returned a value that cannot be sent" in m for m in messages) == 2
    assert any("ValueError: Out of range float" in m for m in messages)
    assert any("TypeError: Object of type object is not JSON serializable" in m for m in messages)


def test_unencodable_return_value_closes_1011_under_close_on_handler_error(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws", config=Config(close_on_handler_error=True))

    @ws.on("message")
    def on_message(conn: Any, msg: str) -> Any:
        return {"x": math.nan}

    with running(app, loop_kind) as srv:
        c = client(srv)
        c.send("x")
        assert close_frame(c) == (1011, b"internal error")
        c.close()


# -- the cross-thread API ---------------------------------------------------------------------------


def test_calls_from_another_thread_answer_as_on_the_loop(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    def scenario(connector: Any, other_id: str) -> list[Any]:
        """The same operations, wherever they run."""
        return [
            ws.send_to(other_id, "direct"),
            ws.send_to("no-such-id", "x"),
            connector.join("room"),
            connector.join("room"),
            sorted(connector.rooms),
            ws.broadcast_to("room", "to the room"),
            connector.leave("room"),
            connector.leave("room"),
            connector.close(4000, "bye"),
            connector.close(),
            connector.join("room"),
            connector.sync_send_to(connector.id, "to a closing connection"),
        ]

    with running(app, loop_kind) as srv:
        clients = [client(srv) for _ in range(4)]
        snapshot = eventually(lambda: ws.connections, lambda d: len(d) == 4)
        ids = list(snapshot)
        expected = [True, False, True, True, ["room"], 1, True, False, True, False, False, False]
        from_thread = scenario(snapshot[ids[0]], ids[1])
        on_loop = srv.call(scenario, snapshot[ids[2]], ids[3])
        assert from_thread == on_loop == expected
        # Snapshots are plain dicts: changing one changes nothing in the server.
        snapshot.clear()
        assert len(ws.connections) == 4 and ws.connections is not ws.connections
        # Argument errors raise in the caller's thread, before anything is sent.
        live = ws.connections[ids[1]]
        with pytest.raises(TypeError, match="a connection id is a str"):
            ws.send_to(None, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="cannot send a object"):
            ws.broadcast(object())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="Out of range float"):
            ws.broadcast({"x": math.nan})
        with pytest.raises(ValueError, match="invalid close code 999"):
            live.close(999)
        with pytest.raises(TypeError, match="room name must be hashable"):
            live.join(["not", "hashable"])
        with pytest.raises(TypeError, match="exclude must be a WebSocketConnector"):
            ws.broadcast_to("room", "x", exclude="someone")  # type: ignore[arg-type]
        for i, c in enumerate(clients):
            if i in (0, 2):
                assert c.recv() == "to the room"
                assert close_frame(c) == (4000, b"bye")
            else:
                assert c.recv() == "direct"
            c.close()
    # Once the server stopped, the same calls answer "nobody there".
    assert ws.connections == {} and ws.broadcast("x") == 0 and ws.send_to(ids[1], "x") is False
    assert live.close() is False and live.join("r") is False


def test_connection_ids_differ_in_a_forked_child() -> None:
    new_id()  # the parent holds a pool of random bytes now
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() in a process with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_end, json.dumps([new_id() for _ in range(200)]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent_ids = [new_id() for _ in range(200)]
    with os.fdopen(read_end, "rb") as f:
        child_ids = json.loads(f.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(child_ids) == 200 and len(set(child_ids)) == 200
    assert not set(child_ids) & set(parent_ids)


def test_one_server_at_a_time_serves_an_app() -> None:
    app = Robyn(__file__)
    WebSocket(app, "/ws")
    with running(app, "uvloop") as srv:
        loop = asyncio.new_event_loop()
        try:
            second = Server(app, loop)
            with pytest.raises(InvalidState, match="already being served by another server"):
                loop.run_until_complete(second.start("127.0.0.1", 0))
        finally:
            loop.close()
        assert app.server is srv.server
    assert app.server is None
    with running(app, "asyncio") as srv:  # served again once the first stopped
        assert app.server is srv.server


def test_broadcast_survives_connections_closing_inside_it() -> None:
    """A transport that reports connection_lost in the middle of a fan-out
    (of itself and of the next connection) changes nothing the loop walks."""
    loop = asyncio.new_event_loop()
    try:
        hub = Hub(loop, Config(ping_interval=None), json_dumps=dumps)
        conns: list[Connection] = []

        def going_away(index: int) -> None:
            # every third: it and the next one go away mid-broadcast
            conns[index].connection_lost(None)
            conns[index + 1].connection_lost(None)

        transports = [FakeTransport() for i in range(30)]
        for i in range(1, 30, 3):
            transports[i].on_buffer_size = functools.partial(going_away, i)
        for i, t in enumerate(transports):
            conn = Connection(hub, f"c{i}")
            conns.append(conn)
            conn.start(t)
        frame = build_text("fan-out")
        assert hub.broadcast_frame(frame) == 10  # indexes 0, 3, 6, ...: the others went away
        loop.run_until_complete(asyncio.sleep(0))
        assert [len(t.chunks) for t in transports] == [1 if i % 3 == 0 else 0 for i in range(30)]
        assert len(hub.connections) == 10 and hub.live == 10
    finally:
        loop.close()


# -- HTTP: binding at decoration, HTTPError statuses ------------------------------------------------------


class Point:
    """A class of the app's own, which no query text converts to."""


def test_an_unbindable_http_parameter_fails_at_decoration() -> None:
    app = Robyn(__file__)
    app.inject(db="the db")
    # a parameter that names nothing of the request is a query parameter (Robyn 0.80+), so what
    # cannot be bound is one whose annotation no query text converts to
    with pytest.raises(TypeError, match=r"cannot bind parameter 'user_id' of HTTP handler .*handler for '/users/:id'"
                       r".*its annotation .*Point.* is none of str, int"):

        @app.get("/users/:id")
        def handler(request: Any, user_id: Point) -> str:
            return str(user_id)

    @app.get("/items/:item_id")
    def fine(request: Any, item_id: str, db: str, query_params: Any, limit: int = 10) -> str:
        return f"{item_id} {db} {limit}"

    with running(app, "uvloop") as srv:
        assert http_get(srv, "/items/42") == (200, b"42 the db 10")


def test_http_errors_raised_by_handlers_become_their_status(loop_kind: str) -> None:
    app = Robyn(__file__)

    @app.get("/teapot")
    def teapot() -> str:
        raise HTTPError(418, "short and stout")

    @app.get("/missing")
    async def missing() -> str:
        await asyncio.sleep(0)
        raise NotFound(message="no such thing")

    @app.get("/method")
    def method() -> str:
        raise MethodNotAllowed(["GET", "POST"])

    with running(app, loop_kind) as srv:
        assert http_get(srv, "/teapot") == (418, b"short and stout")
        assert http_get(srv, "/missing") == (404, b"no such thing")
        try:
            urllib.request.urlopen(f"{srv.url}/method", timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            assert exc.code == 405 and exc.headers["allow"] == "GET, POST"
        else:
            raise AssertionError("expected 405")
