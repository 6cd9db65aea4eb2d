"""Test your app against a real server in the test's own process: :func:`serve`.

::

    from robyn_fast.testing import serve

    def test_echo():
        with serve(app) as live:            # a thread with its own event loop
            ...  # HTTP to live.url, WebSocket to live.ws_url + "/ws"

    async def test_echo_async():
        async with serve(app) as live:      # the test's running loop
            ...

The server listens on 127.0.0.1 on a port the kernel picks (port 0: tests
running side by side never collide), goes through the same launch path as
``app.start()`` (:func:`robyn_fast.workers.launch.serve`: startup hooks,
binding, the app's Config and TLS), and on exit shuts down gracefully as a
served app does (Close 1001, close handlers, shutdown hooks), whatever the
test did. A startup hook that raises, or an address that cannot be bound,
raises from the ``with``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar

from .server import ServedApp, Server, new_event_loop, run, url_of
from .workers.launch import bind, serve as serve_on_this_loop

__all__ = ["serve", "Serving", "LiveServer"]

T = TypeVar("T")

#: How long entering waits for the server to serve, beyond which it gives up (TimeoutError).
START_TIMEOUT = 30.0


class LiveServer:
    """A server serving an app for a test: where to reach it and the
    running :class:`~robyn_fast.server.Server`.

    ``url``: ``http://127.0.0.1:PORT`` (``https://`` when the app's Config
    has TLS); ``ws_url``: the same with ``ws://`` (``wss://``), to which the
    endpoint's path is appended (``live.ws_url + "/chat"``)."""

    __slots__ = ("app", "server", "host", "port", "url", "ws_url")

    def __init__(self, app: ServedApp, server: Server) -> None:
        self.app = app
        self.server = server
        name = server.sockets[0].getsockname()
        self.host: str = name[0]
        self.port: int = name[1]
        self.url: str = url_of(server.sockets[0], tls=server.tls)
        self.ws_url: str = "ws" + self.url[len("http"):]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on."""
        return self.server.loop

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the server's loop and its result, from any thread
        (:meth:`Server.call`): to look at server state between steps of a test."""
        return self.server.call(fn, *args)

    def __repr__(self) -> str:
        return f"<LiveServer {self.url}>"


class Serving:
    """What :func:`serve` returns: a context manager for ``with`` (a
    background thread with its own event loop) and for ``async with`` (the
    running loop). Each use serves once; enter it again for a new server."""

    def __init__(self, app: ServedApp, host: str, port: int, loop: Literal["uvloop", "asyncio"] | None,
                 start_timeout: float) -> None:
        if loop not in (None, "uvloop", "asyncio"):
            raise ValueError(f"loop must be 'uvloop', 'asyncio' or None, not {loop!r}")
        self.app = app
        self.host = host
        self.port = port
        self.loop_kind = loop
        self.start_timeout = start_timeout
        self._live: LiveServer | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def _stop_timeout(self) -> float:
        """How long exiting waits for the graceful shutdown: the longest
        close timeout of the app (and its endpoints), plus a margin for the
        close handlers and shutdown hooks."""
        timeouts = [self.app.config.close_timeout]
        timeouts += [ws.effective_config.close_timeout for ws in self.app.websocket_endpoints()]
        return max(timeouts) + 10.0

    def _not_serving(self) -> TimeoutError:
        return TimeoutError(f"the app was not serving within {self.start_timeout}s (a startup hook still running?)")

    def _entered(self) -> None:
        if self._live is not None or self._thread is not None or self._task is not None:
            raise RuntimeError("this serve(app) is in use already; call serve(app) again for another server")

    # -- with: a thread of its own --------------------------------------------------------

    def __enter__(self) -> LiveServer:
        self._entered()
        sockets = bind(self.host, self.port, self.app.config.backlog)  # OSError here, in the test's thread
        kind = self.loop_kind
        started = threading.Event()
        found: list[Server] = []
        abandoned = threading.Event()

        async def ready(server: Server) -> None:
            found.append(server)
            started.set()
            if abandoned.is_set():  # serving after the test gave up waiting: stop at once
                server.stop()

        def main() -> None:
            try:
                run(self.app, sockets, loop_factory=lambda: new_event_loop(kind), on_ready=ready,
                    handle_signals=False)
            except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
                self._error = exc
            finally:
                for sock in sockets:
                    sock.close()
                started.set()

        thread = self._thread = threading.Thread(target=main, name=f"robyn_fast.testing-{kind or 'loop'}",
                                                 daemon=True)
        thread.start()
        if not started.wait(self.start_timeout):
            abandoned.set()
            if found:
                found[0].stop()
            self._thread = None
            raise self._not_serving()
        if not found:  # the thread ended before serving
            thread.join()
            self._thread = None
            error, self._error = self._error, None
            raise error if error is not None else RuntimeError("the server stopped before it served")
        self._live = LiveServer(self.app, found[0])
        return self._live

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        thread, live = self._thread, self._live
        self._thread = self._live = None
        if thread is None or live is None:
            return
        live.server.stop()
        thread.join(self._stop_timeout())
        if thread.is_alive():
            raise RuntimeError(f"the server did not shut down within {self._stop_timeout():.0f}s")
        error, self._error = self._error, None
        if error is not None and exc is None:
            raise error

    # -- async with: the running loop ---------------------------------------------------------

    async def __aenter__(self) -> LiveServer:
        self._entered()
        if self.loop_kind is not None:
            raise ValueError("async with serve(app) runs on the test's own loop: loop= is for `with` only")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Server] = loop.create_future()

        async def on_ready(server: Server) -> None:
            if not ready.done():
                ready.set_result(server)

        task = self._task = loop.create_task(
            serve_on_this_loop(self.app, self.host, self.port, on_ready=on_ready))
        first: set[asyncio.Future[Any]] = {ready, task}
        try:
            await asyncio.wait(first, timeout=self.start_timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            self._task = None
            raise
        if not ready.done():
            self._task = None
            if task.done():
                task.result()  # what stopped it (OSError, a startup hook's exception)
                raise RuntimeError("the server stopped before it served")
            task.cancel()
            raise self._not_serving()
        self._live = LiveServer(self.app, ready.result())
        return self._live

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, live = self._task, self._live
        self._task = self._live = None
        if task is None or live is None:
            return
        live.server.stop()
        done, _ = await asyncio.wait([task], timeout=self._stop_timeout())
        if not done:
            task.cancel()
            raise RuntimeError(f"the server did not shut down within {self._stop_timeout():.0f}s")
        if exc is None:
            task.result()


def serve(app: ServedApp, *, host: str = "127.0.0.1", port: int = 0,
          loop: Literal["uvloop", "asyncio"] | None = None, start_timeout: float = START_TIMEOUT) -> Serving:
    """Serve ``app`` in this process for a test: ``with serve(app) as live``
    (a background thread running its own event loop: uvloop when it is
    installed, or ``loop="asyncio"``/``"uvloop"``) or ``async with
    serve(app) as live`` (the running loop, through ``app.serve()``'s
    launch path). ``live`` is a :class:`LiveServer` (``.url``, ``.ws_url``,
    ``.port``, ``.server``). On port 0 (the default) the kernel picks a free
    port. Leaving the block shuts the server down gracefully and waits for
    it; an error of the server (a startup hook that raises, an address that
    cannot be bound) is raised from the ``with``."""
    return Serving(app, host, port, loop, start_timeout)
