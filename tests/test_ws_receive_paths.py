"""The receive-loop API's message paths (``@app.websocket``): a message
handed straight to a waiting receive, messages queued while the handler is
busy and taken in order, a receive cancelled while it waited (the next one
still gets the next message, nothing lost), two receives at once refused,
and sends made from the handler's Task (straight to the connection) and from
another thread (through the loop) arriving in order. Real clients
(websocket-client)."""

from __future__ import annotations

import asyncio
from typing import Any

import websocket as wsclient

from robyn_fast import Robyn, WebSocketAdapter

from .server_helpers import running


def client(srv: Any, path: str) -> wsclient.WebSocket:
    return wsclient.create_connection(f"{srv.ws_url}{path}", timeout=10)


def test_waiting_queued_and_cancelled_receives(loop_kind: str) -> None:
    app = Robyn(__file__)
    gate = asyncio.Event()

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        # 1: a receive that times out is cancelled while it waits
        try:
            await asyncio.wait_for(websocket.receive_text(), 0.05)
        except asyncio.TimeoutError:
            await websocket.send_text("timed out")
        # 2: the next receive still gets the next message
        await websocket.send_text("got " + await websocket.receive_text())
        # 3: a second receive while one waits is refused, the first one goes on
        first = asyncio.ensure_future(websocket.receive_text())
        await asyncio.sleep(0)
        try:
            await websocket.receive_text()
        except RuntimeError as exc:
            await websocket.send_text(f"refused: {exc}")
        await websocket.send_text("first " + await first)
        # 4: messages that arrive while the handler is busy queue, in order
        await websocket.send_text("busy")
        await gate.wait()
        got = [await websocket.receive_text() for _ in range(5)]
        await websocket.send_text(",".join(got))
        # binary and JSON through the same paths
        await websocket.send_bytes(await websocket.receive_bytes())
        await websocket.send_json(await websocket.receive_json())

    with running(app, loop_kind) as srv:
        c = client(srv, "/ws")
        assert c.recv() == "timed out"
        c.send("one")
        assert c.recv() == "got one"
        refused = c.recv()
        assert isinstance(refused, str) and refused.startswith("refused: another coroutine is already waiting"), refused
        c.send("two")
        assert c.recv() == "first two"
        assert c.recv() == "busy"
        for i in range(5):
            c.send(f"m{i}")
        c.send_binary(b"\x00\xff")
        c.send('{"a": [1]}')
        srv.loop.call_soon_threadsafe(gate.set)
        assert c.recv() == "m0,m1,m2,m3,m4"
        assert c.recv() == b"\x00\xff"
        assert c.recv() == '{"a":[1]}'
        c.close()


def test_sends_from_the_task_and_from_another_thread_keep_their_order(loop_kind: str) -> None:
    app = Robyn(__file__)

    def from_thread(websocket: WebSocketAdapter, n: int) -> list[bool]:
        # A coroutine of the adapter run on another thread's own loop: the
        # send goes through the connector to the server's loop.
        return [asyncio.run(websocket.send_text(f"thread {i}")) for i in range(n)]

    @app.websocket("/ws")
    async def handler(websocket: WebSocketAdapter) -> None:
        n = int(await websocket.receive_text())
        for i in range(n):
            assert await websocket.send_text(f"task {i}")
        results = await asyncio.get_running_loop().run_in_executor(None, from_thread, websocket, n)
        assert all(results)
        await websocket.send_text("done")
        await websocket.receive_text()

    with running(app, loop_kind) as srv:
        c = client(srv, "/ws")
        c.send("50")
        got = [c.recv() for _ in range(101)]
        assert got == [f"task {i}" for i in range(50)] + [f"thread {i}" for i in range(50)] + ["done"]
        c.close()
