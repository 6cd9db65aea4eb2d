"""Issue 21 items 2 and 3: ``await app.serve()`` on a running loop (stopped or cancelled, then the
same graceful shutdown as ``app.start()``), ``app.start()`` inside a running loop refused in one
line, and :func:`robyn_fast.testing.serve` for users' tests (``with`` and ``async with``, on both
loops, port 0). Real servers on 127.0.0.1, real clients (``websockets``, ``websocket-client``,
``urllib``)."""

from __future__ import annotations

import asyncio
import gc
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
import websocket
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast.exceptions import InvalidState
from robyn_fast.server import new_event_loop
from robyn_fast.testing import LiveServer, serve

from .process_helpers import ServerProcess
from .server_helpers import eventually, read_frame, ws_connect as raw_ws_connect

T = TypeVar("T")
TIMEOUT = 20.0


def make_app(events: list[str], config: Config | None = None) -> Robyn:
    app = Robyn(__file__, config=config)
    ws = WebSocket(app, "/ws")

    @app.get("/")
    def index() -> str:
        return "ok"

    @ws.on("message")
    def echo(ws: Any, msg: str) -> str:
        return msg

    @ws.on("close")
    def closed(ws: Any) -> None:
        events.append("close handler")

    @app.startup_handler
    def started() -> None:
        events.append("startup")

    @app.shutdown_handler
    async def stopped() -> None:
        events.append("shutdown")

    return app


def on_loop(loop_kind: str, main: Callable[[], Awaitable[T]]) -> T:
    """``main()`` on a fresh loop of ``loop_kind``, bounded in time."""
    loop = new_event_loop(loop_kind)
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
    finally:
        loop.close()


async def serving(app: Robyn, task: asyncio.Task[None]) -> int:
    """The port ``app.serve()`` listens on, once it does (or what ended the task)."""
    deadline = time.monotonic() + TIMEOUT
    while not (app.server is not None and app.server.sockets):
        if task.done():
            task.result()
            raise AssertionError("app.serve() returned before serving")
        assert time.monotonic() < deadline, "app.serve() not serving"
        await asyncio.sleep(0.005)
    return int(app.server.sockets[0].getsockname()[1])


async def http_get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return data


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


# -- await app.serve() ---------------------------------------------------------------------------


def test_app_serve_until_stopped(loop_kind: str) -> None:
    events: list[str] = []
    app = make_app(events)

    async def main() -> None:
        task = asyncio.create_task(app.serve(port=0, log_config=None))
        port = await serving(app, task)
        assert (await http_get(port)).endswith(b"\r\n\r\nok")
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as client:
            await client.send("hi")
            assert await client.recv() == "hi"
            assert app.stop() is True  # returns at once; serve() shuts down gracefully
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert await task is None
        assert events == ["startup", "close handler", "shutdown"]
        assert app.server is None and app.stop() is False
        assert refused(port)

    on_loop(loop_kind, main)


def test_app_serve_cancelled_shuts_down_then_raises_cancelled(loop_kind: str) -> None:
    events: list[str] = []
    app = make_app(events)

    async def main() -> None:
        task = asyncio.create_task(app.serve(port=0, log_config=None))
        port = await serving(app, task)
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as client:
            task.cancel()
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        with pytest.raises(asyncio.CancelledError):
            await task
        assert events == ["startup", "close handler", "shutdown"]
        assert refused(port)

    on_loop(loop_kind, main)


def test_app_serve_on_a_socket_of_the_callers() -> None:
    app = make_app([])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]

    async def main() -> None:
        task = asyncio.create_task(app.serve(sock=sock, log_config=None))
        assert await serving(app, task) == port
        assert (await http_get(port)).endswith(b"\r\n\r\nok")
        app.stop()
        await task

    on_loop("asyncio", main)
    assert sock.fileno() == -1 and refused(port)  # closed on the way out


def test_app_serve_on_a_busy_port_raises_cannot_listen() -> None:
    app = make_app([])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def main() -> None:
            with pytest.raises(OSError, match=rf"^\[Errno \d+\] cannot listen on 127\.0\.0\.1:{port}: "):
                await app.serve(port=port, log_config=None)

        on_loop("asyncio", main)


def test_app_start_inside_a_running_loop_says_to_await_serve(loop_kind: str) -> None:
    # Before: uvloop's "Cannot run the event loop while another loop is running" and a
    # coroutine never awaited.
    app = make_app([])

    async def main() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(InvalidState) as raised:
                app.start(port=0, argv=[])
            gc.collect()
        assert str(raised.value) == (
            "app.start() blocks and runs its own event loop, and this thread is running one already (an async "
            "function, Jupyter): use `await app.serve(host, port)` there")
        assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]

    on_loop(loop_kind, main)


def test_asyncio_run_app_serve_stops_gracefully_on_ctrl_c(tmp_path: Path) -> None:
    """The embedded entry point as a script: ``asyncio.run(app.serve(...))``; Ctrl+C (SIGINT)
    cancels it, the shutdown hooks run, and robyn_fast's records went through logging."""
    script = tmp_path / "embedded.py"
    script.write_text(textwrap.dedent('''
        import asyncio
        from robyn_fast import Robyn

        app = Robyn(__file__)

        @app.get("/")
        def index():
            return "ok"

        @app.shutdown_handler
        def stopped():
            print("STOPPED", flush=True)

        try:
            asyncio.run(app.serve(port=0))
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
    '''))
    server = ServerProcess([str(script)], cwd=tmp_path)
    try:
        port = server.wait_listening(TIMEOUT)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.read() == b"ok"
        server.proc.send_signal(signal.SIGINT)
        server.wait(TIMEOUT)
    finally:
        server.stop()
    out = server.output()
    assert "INFO robyn_fast.server: robyn_fast: serving on http://127.0.0.1:" in out, out
    assert "INFO robyn_fast.server: robyn_fast: shutting down" in out and "STOPPED" in out, out
    assert "INTERRUPTED" in out and "Traceback" not in out, out


# -- robyn_fast.testing.serve ---------------------------------------------------------------------


def test_with_serve_runs_the_app_on_its_own_thread(loop_kind: str) -> None:
    events: list[str] = []
    app = make_app(events, Config(close_timeout=1.0))
    with serve(app, loop="uvloop" if loop_kind == "uvloop" else "asyncio") as live:
        assert isinstance(live, LiveServer)
        assert live.url == f"http://127.0.0.1:{live.port}" and live.ws_url == f"ws://127.0.0.1:{live.port}"
        assert type(live.loop).__module__.startswith("uvloop" if loop_kind == "uvloop" else "asyncio")
        with urllib.request.urlopen(live.url + "/", timeout=10) as resp:
            assert resp.read() == b"ok"
        client = websocket.create_connection(live.ws_url + "/ws", timeout=10)
        client.send("hello")
        assert client.recv() == "hello"
        client.close()
        raw, rest = raw_ws_connect(live.port)  # left open: the shutdown must close it
        assert live.call(lambda: app.server is live.server) is True
        port = live.port
    first, payload, _ = read_frame(raw, rest)
    raw.close()
    assert first == 0x88 and payload[:2] == (1001).to_bytes(2, "big")
    assert events == ["startup", "close handler", "close handler", "shutdown"]
    assert refused(port) and app.server is None


def test_async_with_serve_runs_the_app_on_the_running_loop(loop_kind: str) -> None:
    events: list[str] = []
    app = make_app(events)

    async def main() -> None:
        async with serve(app) as live:
            assert live.loop is asyncio.get_running_loop()
            assert live.url.startswith("http://127.0.0.1:") and live.ws_url == "ws" + live.url[4:]
            assert (await http_get(live.port)).endswith(b"\r\n\r\nok")
            client = await ws_connect(live.ws_url + "/ws")
            await client.send("hi")
            assert await client.recv() == "hi"
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert events == ["startup", "close handler", "shutdown"]
        assert refused(live.port)

    on_loop(loop_kind, main)


def test_serve_raises_what_stopped_the_app_at_start_up(loop_kind: str) -> None:
    app = Robyn(__file__)

    @app.startup_handler
    def broken() -> None:
        raise RuntimeError("the database is not there")

    with pytest.raises(RuntimeError, match="the database is not there"):
        with serve(app, loop="uvloop" if loop_kind == "uvloop" else "asyncio"):
            pass

    async def main() -> None:
        with pytest.raises(RuntimeError, match="the database is not there"):
            async with serve(app):
                pass

    on_loop(loop_kind, main)
    assert app.server is None


def test_serve_tls_gives_https_and_wss_urls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    app = make_app([], Config(ssl=context))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with serve(app) as live:
        assert live.url == f"https://127.0.0.1:{live.port}" and live.ws_url == f"wss://127.0.0.1:{live.port}"
        with urllib.request.urlopen(live.url + "/", timeout=10, context=client_context) as resp:
            assert resp.read() == b"ok"


def test_serve_misuse_is_a_clear_error() -> None:
    app = make_app([])
    with pytest.raises(ValueError, match=r"^loop must be 'uvloop', 'asyncio' or None, not 'trio'$"):
        serve(app, loop="trio")  # type: ignore[arg-type]
    serving_app = serve(app)
    with serving_app:
        with pytest.raises(RuntimeError, match=r"in use already; call serve\(app\) again"):
            serving_app.__enter__()


def test_the_readmes_quick_start_and_testing_your_app_run_as_shown(tmp_path: Path) -> None:
    """The README's Quick start app and test, and its "Testing your app" file (a fixture, sync
    tests, an async test), run by pytest as a user would: what the README shows works as shown."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    quick = readme[readme.index("## Quick start"):readme.index("## A first app")]
    testing = readme[readme.index("## Testing your app"):]
    app_source, quick_test = re.findall(r"```python\n(.*?)```", quick, re.S)[:2]
    testing_file = re.findall(r"```python\n(.*?)```", testing, re.S)[0]
    (tmp_path / "app.py").write_text(app_source)
    (tmp_path / "test_quick_start.py").write_text(quick_test)
    (tmp_path / "test_app.py").write_text(testing_file)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "4 passed" in result.stdout, result.stdout + result.stderr


def test_serve_gives_up_on_a_slow_start_up_and_the_server_stops_once_up() -> None:
    events: list[str] = []
    app = make_app(events)

    @app.startup_handler
    async def slow() -> None:
        await asyncio.sleep(1.0)

    with pytest.raises(TimeoutError, match=r"^the app was not serving within 0\.2s"):
        with serve(app, start_timeout=0.2):
            pass
    # it came up after the test gave up, and stopped by itself (its thread and port do not linger)
    eventually(lambda: events, lambda e: e[-1:] == ["shutdown"], TIMEOUT)
    eventually(lambda: app.server, lambda server: server is None, TIMEOUT)
