"""Streamed responses and server-sent events on a real server, both loops:
chunked framing on the wire, items sent as they are yielded (a sync
generator that sleeps does not stall the loop), keep-alive after the last
chunk, the generator closed when the client goes away, flow control."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from robyn_fast import Robyn
from robyn_fast.http.streaming import SSEMessage, SSEResponse, StreamingResponse

from .server_helpers import LOOPS, running
from .test_middlewares import fetch

WAIT = 10.0


def make_app(state: dict[str, Any]) -> Robyn:
    app = Robyn(__file__)
    app.set_response_header("server", "rf")

    @app.after_request()
    def after(response: Any) -> Any:
        response.headers.set("x-after", "1")
        return response

    @app.get("/sse")
    def sse() -> StreamingResponse:
        def events() -> Iterator[str]:
            for i in range(3):
                yield SSEMessage(f"m{i}", event="tick", id=str(i))

        return SSEResponse(events())

    @app.get("/slow-sync")
    def slow_sync() -> StreamingResponse:
        def events() -> Iterator[str]:
            yield "data: first\n\n"
            time.sleep(0.3)  # in a worker thread: the loop keeps serving
            yield "data: second\n\n"

        return SSEResponse(events())

    @app.get("/async")
    async def async_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"a", b"", b"bc"):
                await asyncio.sleep(0)
                yield part

        return StreamingResponse(chunks(), 201, {"x-custom": "yes"}, media_type="application/octet-stream")

    @app.get("/forever")
    def forever() -> StreamingResponse:
        async def ticks() -> AsyncIterator[str]:
            try:
                while True:
                    state["ticks"] = state.get("ticks", 0) + 1
                    yield "data: tick\n\n"
                    await asyncio.sleep(0.01)
            finally:
                state["closed"].set()

        return SSEResponse(ticks())

    @app.get("/big")
    def big() -> StreamingResponse:
        async def blocks() -> AsyncIterator[bytes]:
            for _ in range(64):
                state["big_sent"] = state.get("big_sent", 0) + 1
                yield b"x" * 65536

        return StreamingResponse(blocks(), media_type="application/octet-stream")

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    return app


@pytest.fixture(params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Any, dict[str, Any]]]:
    state: dict[str, Any] = {"closed": threading.Event()}
    with running(make_app(state), request.param) as srv:
        yield srv, state


def raw(port: int, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.sendall(request)
    return sock


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_sse_events_and_headers(server: Any) -> None:
    srv, _ = server
    status, headers, body = fetch(srv.port, "GET", "/sse")
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert headers["x-accel-buffering"] == "no" and headers["transfer-encoding"] == "chunked"
    assert headers["server"] == "rf"  # global headers apply
    assert "x-after" not in headers  # after-request middlewares do not run for a stream
    assert body == b"".join(SSEMessage(f"m{i}", event="tick", id=str(i)).encode() for i in range(3))


def test_chunked_framing_and_keep_alive(server: Any) -> None:
    srv, _ = server
    sock = raw(srv.port, b"GET /async HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        data = read_until(sock, b"0\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 201 ")
        assert b"x-custom: yes" in head and b"content-length" not in head
        assert body == b"1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"  # the empty item sends no chunk
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection is still usable
        assert read_until(sock, b"pong").endswith(b"pong")


def test_items_leave_as_yielded_and_the_loop_keeps_serving(server: Any) -> None:
    srv, _ = server
    sock = raw(srv.port, b"GET /slow-sync HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        data = read_until(sock, b"data: first")
        assert b"data: second" not in data
        started = time.monotonic()
        assert fetch(srv.port, "GET", "/ping")[2] == b"pong"  # while the generator sleeps in its thread
        assert time.monotonic() - started < 0.3
        assert b"data: second" in read_until(sock, b"data: second", data)


def test_head_of_a_stream(server: Any) -> None:
    srv, _ = server
    status, headers, body = fetch(srv.port, "HEAD", "/sse")
    assert (status, body) == (200, b"")
    assert headers["content-type"] == "text/event-stream"


def test_the_generator_is_closed_when_the_client_goes(server: Any) -> None:
    srv, state = server
    sock = raw(srv.port, b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    read_until(sock, b"data: tick")
    sock.close()
    assert state["closed"].wait(WAIT)
    ticks = state["ticks"]
    time.sleep(0.1)
    assert state["ticks"] == ticks  # nothing asked of it any more
    assert fetch(srv.port, "GET", "/ping")[2] == b"pong"


def test_a_client_that_does_not_read_holds_the_generator_back(server: Any) -> None:
    srv, state = server
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", srv.port))
    with sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + WAIT
        last = -1
        # Wait until the count stops moving: the pump waits on flow control.
        while time.monotonic() < deadline:
            now = state.get("big_sent", 0)
            if now == last and now > 0:
                break
            last = now
            time.sleep(0.2)
        assert 0 < state["big_sent"] < 64  # 4 MiB were not all taken while nobody read
        received = 0
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
            data = data[-16:] + chunk
        assert state["big_sent"] == 64 and received > 64 * 65536


def test_stream_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="generator"):
        StreamingResponse("not a generator")
    with pytest.raises(ValueError, match="line break"):
        SSEMessage("x", event="a\nb")
    assert SSEMessage("") == "data: \n\n"
    assert SSEMessage("a\r\nb\rc", retry=5) == "retry: 5\ndata: a\ndata: b\ndata: c\n\n"


@pytest.mark.parametrize("loop", LOOPS)
def test_shutdown_ends_an_open_stream_at_once(loop: str) -> None:
    from robyn_fast import Config

    state: dict[str, Any] = {"closed": threading.Event()}
    app = make_app(state)
    app.config = Config(close_timeout=8.0)
    with running(app, loop) as srv:
        sock = raw(srv.port, b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until(sock, b"data: tick")
        started = time.monotonic()
    took = time.monotonic() - started  # running() has shut the server down
    with sock:
        sock.settimeout(WAIT)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert took < 3.0, f"shutdown waited {took:.1f}s behind an open stream"
    assert state["closed"].is_set()
    assert data.endswith(b"0\r\n\r\n")  # a clean end of the stream


EVENTS_PAGE = """<!DOCTYPE html><html><body><ul id="log"></ul><script>
const source = new EventSource("/events");
const log = (text) => { const li = document.createElement("li"); li.textContent = text;
                        document.getElementById("log").appendChild(li); };
source.addEventListener("tick", (e) => log(`tick ${e.lastEventId} ${e.data}`));
source.addEventListener("end", (e) => { log(`end ${e.data}`); source.close(); });
</script></body></html>"""


def test_event_source_in_headless_chromium(tmp_path: Any) -> None:
    from pathlib import Path

    from .test_examples import CHROMIUM, CHROMIUM_ARGS

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` installs Debian's chromium"
    import playwright.sync_api as playwright_api

    app = Robyn(__file__)

    @app.get("/")
    def page() -> str:
        return EVENTS_PAGE

    @app.get("/events")
    def events() -> StreamingResponse:
        async def gen() -> AsyncIterator[str]:
            for i in range(3):
                await asyncio.sleep(0.05)
                yield SSEMessage(f"line {i}\nsecond", event="tick", id=str(i))
            yield SSEMessage("done", event="end")

        return SSEResponse(gen())

    with running(app, "uvloop") as srv, playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"http://127.0.0.1:{srv.port}/", wait_until="load")
            items = page.locator("#log li")
            playwright_api.expect(items).to_have_count(4, timeout=10_000)
            assert items.all_text_contents() == [
                "tick 0 line 0\nsecond", "tick 1 line 1\nsecond", "tick 2 line 2\nsecond", "end done"]
        finally:
            context.close()
