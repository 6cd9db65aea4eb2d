"""The compiled dispatch core: the connection table and broadcast loop,
rooms, corked writes (counted with a fake transport), slow consumers, the
lean per-message path, and idle connections' buffers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import websockets

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_binary, build_ping, build_text
from robyn_fast._core.connection import Connection, Dispatcher, Hub, Inbox, LoopResources
from robyn_fast.encoding import dumps

from .fake_transport import FakeTransport
from .server_helpers import running, wait_for

MASK = b"\x01\x02\x03\x04"


def new_hub(loop: asyncio.AbstractEventLoop, **config: Any) -> Hub:
    return Hub(loop, Config(ping_interval=None, **config), json_dumps=dumps)


def make(hub: Hub, n: int, on_message: Any = None) -> list[tuple[Connection, FakeTransport]]:
    out = []
    for i in range(n):
        conn = Connection(hub, f"c{i}", None, on_message, None)
        conn.connector = conn
        transport = FakeTransport()
        conn.start(transport)
        out.append((conn, transport))
    return out


def run_one_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


@pytest.fixture
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_everything_queued_in_one_iteration_leaves_in_one_write(loop: asyncio.AbstractEventLoop) -> None:
    hub = new_hub(loop)

    def on_message(conn: Any, msg: str) -> str:
        conn.send(f"sent {msg}")
        return f"reply {msg}"

    (conn, transport), (other, other_t) = make(hub, 2, on_message)
    data = b"".join(build_text(f"m{i}", mask=MASK) for i in range(10)) + build_ping(b"p", mask=MASK)
    conn.data_received(data)  # 10 messages and a ping in one read
    # What a read's messages produce leaves in one write once the read is
    # handled (as uWebSockets uncorks after its data callback): no flush round.
    expected = []
    for i in range(10):
        expected += [build_text(f"sent m{i}"), build_text(f"reply m{i}")]
    expected += [b"\x8a\x01p"]
    assert transport.write_calls == 1 and transport.chunks == expected
    assert hub.flushes == 0 and hub.writes == 1
    # Sends from outside a read are corked until the end of the iteration.
    other.send("direct")
    hub.broadcast_frame(build_text("to all"))
    assert transport.write_calls == 1 and other_t.write_calls == 0  # nothing written mid-iteration
    run_one_iteration(loop)
    assert transport.write_calls == 2 and other_t.write_calls == 1
    assert transport.chunks == expected + [build_text("to all")]
    assert other_t.chunks == [build_text("direct"), build_text("to all")]
    assert hub.flushes == 1 and hub.writes == 3


def test_a_read_on_an_idle_connection_is_answered_before_the_callback_returns(
        loop: asyncio.AbstractEventLoop) -> None:
    """The wake-up path: a message read through get_buffer()/buffer_updated()
    (as uvloop and asyncio read) is answered inside buffer_updated(), with no
    callback scheduled for a later iteration."""
    hub = new_hub(loop)
    ((conn, transport),) = make(hub, 1, lambda ws, msg: msg)
    frame = build_text("x" * 256, mask=MASK)
    for rounds in range(1, 4):
        with memoryview(conn.get_buffer(-1)) as window:
            window[:len(frame)] = frame
        conn.buffer_updated(len(frame))
        assert transport.chunks == [build_text("x" * 256)] * rounds
        run_one_iteration(loop)
        assert hub.flushes == 0     # no flush was scheduled


def test_a_large_bytes_reply_is_written_as_its_header_and_the_payload_object(
        loop: asyncio.AbstractEventLoop) -> None:
    """A bytes message of 16 KiB or more is not copied into a frame: the
    transport gets the header, then the very object the handler returned (or
    sent), in one writelines; smaller ones and str are one frame."""
    hub = new_hub(loop)
    payload = bytes(range(256)) * 300
    sent = b"s" * 20000

    def on_message(ws: Any, msg: str) -> Any:
        if msg == "small":
            return b"tiny"
        ws.send(sent)
        return payload

    ((conn, transport),) = make(hub, 1, on_message)
    conn.data_received(build_text("big", mask=MASK))
    assert transport.write_calls == 1
    head1, body1, head2, body2 = transport.chunks
    assert body1 is sent and body2 is payload
    assert head1 + body1 == build_binary(sent) and head2 + body2 == build_binary(payload)
    conn.data_received(build_text("small", mask=MASK))
    assert transport.chunks[4:] == [build_binary(b"tiny")]


def test_the_endpoints_of_a_loop_share_one_flush(loop: asyncio.AbstractEventLoop) -> None:
    """Two endpoints' hubs on one loop: one flush round writes both endpoints'
    connections; one read buffer and one deadline sweep serve both."""
    resources = LoopResources(loop)
    hub_a = Hub(loop, Config(ping_interval=None), json_dumps=dumps, resources=resources)
    hub_b = Hub(loop, Config(ping_interval=None, close_timeout=1.0), json_dumps=dumps, resources=resources)
    (a, ta), = make(hub_a, 1)
    (b, tb), = make(hub_b, 1)
    frame = build_text("both")
    assert hub_a.broadcast_frame(frame) == 1 and hub_b.broadcast_frame(frame) == 1
    run_one_iteration(loop)
    assert (resources.flushes, resources.writes) == (1, 2)
    assert hub_a.flushes == hub_b.flushes == 1
    assert ta.chunks == [frame] and tb.chunks == [frame]
    assert hub_a.resources is hub_b.resources and resources.hub_count == 2
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="another event loop"):
            Hub(other, Config(), json_dumps=dumps, resources=resources)
    finally:
        other.close()


def test_one_server_gives_its_endpoints_one_set_of_loop_resources(loop_kind: str) -> None:
    app = Robyn(__file__)
    first, second = WebSocket(app, "/a"), WebSocket(app, "/b")
    with running(app, loop_kind) as srv:
        hubs = srv.call(lambda: [srv.server.hub(first), srv.server.hub(second)])
        assert hubs[0] is not hubs[1]
        assert hubs[0].resources is hubs[1].resources is srv.server.ws_resources


def test_broadcast_writes_one_frame_object_to_every_connection(loop: asyncio.AbstractEventLoop) -> None:
    hub = new_hub(loop)
    conns = make(hub, 1000)
    frame = build_text("fan-out")
    assert hub.broadcast_frame(frame) == 1000
    run_one_iteration(loop)
    assert all(t.write_calls == 1 and t.chunks[0] is frame for _, t in conns)


def test_broadcast_skips_closing_and_survives_a_broken_transport(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    hub = new_hub(loop)
    conns = make(hub, 5)
    conns[1][0].close(1000, "")
    conns[2][1].fail = True
    frame = build_text("x")
    assert hub.broadcast_frame(frame) == 3
    assert hub.broadcast_frame(frame, conns[0][0]) == 2
    run_one_iteration(loop)
    assert [t.chunks.count(frame) for _, t in conns] == [1, 0, 0, 2, 2]
    assert any("broadcast send failed" in r.getMessage() for r in caplog.records)


def test_rooms(loop: asyncio.AbstractEventLoop) -> None:
    hub = new_hub(loop)
    (a, ta), (b, tb), (c, tc) = make(hub, 3)
    assert a.join("red") and b.join("red") and c.join("blue")
    assert not c.leave("red")
    frame = build_text("red only")
    assert hub.broadcast_room("red", frame) == 2
    assert hub.broadcast_room("red", frame, a) == 1
    assert hub.broadcast_room("green", frame) == 0
    run_one_iteration(loop)
    assert (ta.chunks.count(frame), tb.chunks.count(frame), tc.chunks.count(frame)) == (1, 2, 0)
    assert a.rooms == {"red"}
    a.connection_lost(None)  # a closed connection leaves its rooms
    assert set(hub.rooms["red"]) == {"c1"} and "c0" not in hub.connections
    assert a.rooms is None
    assert not a.join("red")  # a closed connection cannot join
    b.leave("red")
    assert "red" not in hub.rooms


def test_backpressure_applies_per_connection_in_the_broadcast_loop(loop: asyncio.AbstractEventLoop) -> None:
    hub = new_hub(loop, max_backpressure=1000, backpressure_policy="drop")
    conns = make(hub, 3)
    conns[1][1].buffered = 5000  # a client that stopped reading
    frame = build_text("y" * 100)
    for _ in range(5):
        hub.broadcast_frame(frame)
    run_one_iteration(loop)
    assert [len(t.chunks) for _, t in conns] == [5, 0, 5]
    assert conns[1][0].dropped == 5 and conns[1][0].state == 0


def test_async_handlers_run_in_a_task_from_their_first_line(loop_kind: str) -> None:
    seen: list[Any] = []
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> str:
        seen.append(asyncio.current_task())
        if msg == "suspend":
            await asyncio.sleep(0.01)
            seen.append(asyncio.current_task())
        return msg

    async def talk(url: str) -> list[str]:
        async with websockets.connect(url) as c:
            for m in ("fast", "suspend", "fast2"):
                await c.send(m)
            return [await c.recv() for _ in range(3)]

    with running(app, loop_kind) as srv:
        assert asyncio.run(talk(f"{srv.ws_url}/ws")) == ["fast", "suspend", "fast2"]
    # One Task per message, current from the first line to the last.
    assert all(t is not None for t in seen) and len(seen) == 4
    assert seen[1] is seen[2] and len({id(seen[0]), id(seen[1]), id(seen[3])}) == 3


def test_one_dispatcher_per_endpoint_holds_every_task_and_the_backlog_bound(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The hub's one Dispatcher serves all its connections: each suspended
    handler's Task is referenced (mapped to its connection) until done, the
    messages behind it wait in that connection's backlog, reading pauses at
    read_high_water and resumes at read_low_water, and each reply goes to its
    own connection in arrival order."""
    hub = new_hub(loop, read_high_water=3, read_low_water=1)
    gate = loop.create_future()

    async def on_message(conn: Any, msg: str) -> str:
        if msg.startswith("wait"):
            await gate
        return f"done {msg}"

    (a, ta), (b, tb) = make(hub, 2, on_message)
    a.data_received(b"".join(build_text(m, mask=MASK) for m in ("wait-a", "a1", "a2", "a3")))
    b.data_received(build_text("wait-b", mask=MASK))
    d = hub.dispatcher
    assert isinstance(d, Dispatcher)
    assert {conn.key: task for task, conn in d.tasks.items()} == {"c0": a.task, "c1": b.task}
    assert hub.tasks == set(d.tasks) and hub.live_tasks == 2
    assert a.reading_paused and not ta.reading and not b.reading_paused  # 3 messages behind a's handler

    async def settle() -> None:
        for _ in range(100):
            if not d.tasks and not a.reading_paused:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the flush

    gate.set_result(None)
    loop.run_until_complete(settle())
    assert not d.tasks and hub.live_tasks == 0
    assert not a.reading_paused and ta.reading
    assert ta.chunks == [build_text(f"done {m}") for m in ("wait-a", "a1", "a2", "a3")]
    assert tb.chunks == [build_text("done wait-b")]


def test_idle_connections_hold_no_read_buffer(loop_kind: str) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    def echo(conn: Any, msg: Any) -> Any:
        return msg

    async def talk(url: str, srv: Any) -> list[int]:
        async with websockets.connect(url) as c:
            await c.send("x" * 100_000)
            assert len(await c.recv()) == 100_000
            sizes = srv.call(lambda: [conn.read_buffer_size for conn in srv.server.hub(ws).connections.values()])
            await c.close()
            return sizes

    with running(app, loop_kind) as srv:
        assert asyncio.run(talk(f"{srv.ws_url}/ws", srv)) == [0]


def test_one_slow_subscriber_does_not_slow_the_others(loop_kind: str) -> None:
    limit = 128 * 1024
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws", config=Config(max_backpressure=limit, backpressure_policy="drop"))
    payload = "z" * 1024
    rounds = 300

    async def scenario(srv: Any) -> tuple[list[int], int, float]:
        import socket

        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", srv.port))
        from .server_helpers import upgrade_request

        slow.sendall(upgrade_request())
        readers = [await websockets.connect(f"{srv.ws_url}/ws", max_queue=None) for _ in range(100)]
        assert wait_for(lambda: len(ws.connections) == 101)
        started = time.monotonic()
        for _ in range(rounds):
            srv.call(ws.broadcast, payload)
        counts = []
        for r in readers:
            n = 0
            while n < rounds:
                msg = await asyncio.wait_for(r.recv(), 10)
                assert msg == payload
                n += 1
            counts.append(n)
        elapsed = time.monotonic() - started
        slow_buffered = max(
            srv.call(lambda: [c.buffered_amount for c in srv.server.hub(ws).connections.values()])
        )
        for r in readers:
            await r.close()
        slow.close()
        return counts, slow_buffered, elapsed

    with running(app, loop_kind) as srv:
        counts, slow_buffered, elapsed = asyncio.run(scenario(srv))
    assert counts == [rounds] * 100
    assert slow_buffered <= limit + 1024 + 16
    assert elapsed < 20


def test_rooms_through_the_connector_api(loop_kind: str) -> None:
    import json
    import urllib.request

    import websocket as wsclient

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    async def on_message(conn: Any, msg: str) -> Any:
        cmd, _, arg = msg.partition(" ")
        if cmd == "join":
            return json.dumps([conn.join(arg), sorted(conn.rooms)])
        if cmd == "leave":
            return json.dumps([conn.leave(arg), sorted(conn.rooms)])
        if cmd == "say":
            room, _, text = arg.partition(" ")
            return json.dumps(["said", conn.sync_broadcast_to(room, text, exclude_self=True)])
        if cmd == "shout":
            room, _, text = arg.partition(" ")
            return json.dumps(["shouted", await conn.async_broadcast_to(room, text)])
        return None

    @app.post("/rooms/<room>")
    def post(request: Any, room: str) -> dict[str, int]:
        return {"delivered": ws.broadcast_to(room, request.body)}

    with running(app, loop_kind) as srv:
        a, b, c = (wsclient.create_connection(f"{srv.ws_url}/ws", timeout=5) for _ in range(3))
        a.send("join red")
        assert json.loads(a.recv()) == [True, ["red"]]
        a.send("join blue")
        assert json.loads(a.recv()) == [True, ["blue", "red"]]
        b.send("join red")
        assert json.loads(b.recv()) == [True, ["red"]]
        c.send("leave red")
        assert json.loads(c.recv()) == [False, []]
        a.send("say red hello")
        assert json.loads(a.recv()) == ["said", 1]  # not to itself
        assert b.recv() == "hello"
        b.send("shout red HEY")
        assert {b.recv(), b.recv()} == {"HEY", '["shouted", 2]'}
        assert a.recv() == "HEY"
        assert ws.rooms() == {"red": 2, "blue": 1} and len(ws.room_members("red")) == 2
        req = urllib.request.Request(f"{srv.url}/rooms/blue", data=b"from http", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read()) == {"delivered": 1}
        assert a.recv() == "from http"
        a.close()  # a closed connection leaves its rooms
        assert wait_for(lambda: ws.rooms() == {"red": 1})
        c.send("say red nobody-else")
        assert json.loads(c.recv()) == ["said", 1]
        assert b.recv() == "nobody-else"
        b.close()
        c.close()


def test_an_inbox_wakes_its_receive_once_per_read_inline_and_a_cancel_loses_no_message(loop_kind: str) -> None:
    """The receive-loop API's compiled inbox: a read of three messages wakes the waiting Task once,
    inside the read callback (all three taken before the callback returns, no loop iteration); a
    receive cancelled after a message was handed to it puts the message back for the next one."""
    import uvloop

    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    try:
        hub = new_hub(loop)
        conn, _transport = make(hub, 1)[0]
        inbox = Inbox(conn, 64, 16)
        assert conn.inbox is inbox
        got: list[Any] = []
        wakes = [0]

        async def reader() -> None:
            while True:
                if not inbox.pending:
                    wakes[0] += 1
                got.append(await inbox)

        task = loop.create_task(reader())
        run_one_iteration(loop)
        assert not got and wakes == [1]
        seen: list[list[Any]] = []

        def read() -> None:
            conn.data_received(b"".join(build_text(f"m{i}", mask=MASK) for i in range(3)))
            seen.append(list(got))

        loop.call_soon(read)
        run_one_iteration(loop)
        assert seen == [["m0", "m1", "m2"]]
        assert wakes == [2]            # one wake-up for the read, then waiting again
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))

        async def one() -> Any:
            return await inbox

        waiting = loop.create_task(one())
        run_one_iteration(loop)

        async def deliver_then_cancel() -> None:
            inbox.put_message("kept")  # from inside a Task: the wake-up goes through call_soon
            assert inbox.done() and not waiting.done()
            waiting.cancel()

        loop.run_until_complete(deliver_then_cancel())
        loop.run_until_complete(asyncio.gather(waiting, return_exceptions=True))
        assert waiting.cancelled() and inbox.pending == 1
        assert loop.run_until_complete(one()) == "kept"
    finally:
        loop.close()
