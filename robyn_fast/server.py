"""The HTTP/1.1 server: one :class:`HttpProtocol` per TCP connection, parsing
with httptools, answering routes, and handing upgraded connections to the
compiled WebSocket :class:`~robyn_fast._core.connection.Connection`.

Limits (RFC 9112 framing, with the sizes of :class:`~robyn_fast.config.Config`):
a request line over ``max_request_line`` gets 414; a header line over
``max_header_size``, more than ``max_headers`` headers, or a head over
``max_head_size`` gets 431; a body over ``max_body_size`` gets 413 (from
``Content-Length`` before the body is read); malformed HTTP gets 400. Each of
these closes the connection, after the responses owed to the requests
received before it. A request head not finished within ``header_timeout``
closes the connection (with 408 if bytes had arrived); so does a body that
stops arriving for ``keep_alive_timeout`` (with 408).

Responses stop being produced while the transport's write buffer is above
its high-water mark (``pause_writing``), so a client that does not read makes
the server stop reading instead of buffering its answers. A client that
half-closes after its requests still gets every response, then the close.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import httptools

from .config import Config
from .exceptions import HandshakeError
from .handshake import accept_handshake, is_upgrade_request
from .http_types import error_response

if TYPE_CHECKING:
    from .app import Robyn

__all__ = ["HttpProtocol", "Server", "run"]

log = logging.getLogger("robyn_fast.server")

# Data is fed to httptools in slices of at most this many bytes so the bytes
# of an unfinished request head can be counted (httptools buffers header
# pieces internally); max_head_size is enforced to within one slice.
_SLICE = 16 * 1024


class _Abort(Exception):
    """Raised inside an httptools callback to stop parsing; the protocol has
    already decided what to answer."""


class _Request:
    """A parsed request waiting in the pipeline queue."""

    __slots__ = ("method", "target", "headers", "body", "keep_alive", "version", "upgrade")

    def __init__(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes,
        keep_alive: bool, version: str, upgrade: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.version = version
        self.upgrade = upgrade


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining (responses leave in request order)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.config: Config = server.app.config
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_addr: tuple[str, int] | None = None
        # Request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.in_head = False
        self.in_body = False
        self.head_bytes = 0
        self.fields_size = 0
        self.got_bytes = False
        # Pipeline.
        self.queue: collections.deque[_Request | bytes] = collections.deque()
        self.busy = False
        self.reading_paused = False
        self.writing_paused = False
        self.eof = False
        self.closing = False
        self.upgraded = False
        self.leftover = b""
        self.timer: asyncio.TimerHandle | None = None
        self.timer_is_head = False

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # (uvloop and asyncio both set TCP_NODELAY on TCP transports already.)
        peer = transport.get_extra_info("peername")
        self.peer_addr = tuple(peer[:2]) if peer else None
        self.server.http_connections.add(self)
        timeout = min(self.config.header_timeout, self.config.handshake_timeout)
        self.timer = self.loop.call_later(timeout, self._head_timeout)
        self.timer_is_head = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._cancel_timer()
        self.server.http_connections.discard(self)
        self.queue.clear()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_timeout(self) -> None:
        self.timer = None
        if self.closing or self.upgraded or self.transport is None:
            return
        if self.in_head or self.got_bytes:
            # Behind the responses still owed (a slow handler may be running).
            self._reject(408, "request head not received in time")
            self._run_queue()
        else:
            self.closing = True
            self.transport.close()

    def _idle_timeout(self) -> None:
        self.timer = None
        if self.in_body and not (self.closing or self.upgraded) and self.transport:
            # The body stopped arriving for a whole keep_alive_timeout.
            self._reject(408, "request body not received in time")
            self._run_queue()
            return
        if not (self.closing or self.upgraded or self.busy or self.queue or self.in_head) and self.transport:
            self.closing = True
            self.transport.close()

    def close_idle(self) -> bool:
        """Close this connection if no request is in progress (shutdown)."""
        if self.upgraded or self.busy or self.queue or self.in_head:
            return False
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()
        return True

    # -- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            # Frames sent right behind the upgrade request, before we answered it.
            self.leftover += data
            return
        if self.closing:
            return
        self.got_bytes = True
        if len(data) <= _SLICE:
            self._feed(data, b"")
        else:
            view = memoryview(data)
            for start in range(0, len(data), _SLICE):
                if self.closing or self.upgraded:
                    break
                self._feed(view[start : start + _SLICE], view[start + _SLICE :])
        if self.in_body and not self.closing and not self.upgraded:
            # A body arriving is activity: the idle timeout counts from the
            # last bytes, so a long upload is not cut while data flows.
            self._cancel_timer()
            self.timer = self.loop.call_later(self.config.keep_alive_timeout, self._idle_timeout)
            self.timer_is_head = False
        self._run_queue()

    def eof_received(self) -> bool | None:
        if self.busy or self.queue:
            # The client half-closed after its requests: answer them, then
            # close (returning True keeps the transport open for writing).
            self.eof = True
            return True
        return None

    def pause_writing(self) -> None:
        # The client reads slower than we answer: stop answering (and so,
        # once max_pipelined_requests are queued, stop reading) until the
        # transport's buffer drains below its low-water mark.
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._run_queue()

    def _feed(self, chunk: bytes | memoryview, rest: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            self.leftover = bytes(chunk[offset:]) + bytes(rest)
            self.upgraded = True  # stop parsing; the queue decides what the upgrade becomes
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Abort):
                return
            log.exception("error in HTTP parser callback")
            self.queue.append(error_response(500))
            self.closing = True
            return
        except httptools.HttpParserError as exc:
            self.queue.append(error_response(400, f"malformed HTTP request: {exc}"))
            self.closing = True
            return
        if self.in_head:
            self.head_bytes += len(chunk)
            if self.head_bytes > self.config.max_head_size:
                self._reject(431, "request header fields too large")

    def _reject(self, status: int, message: str) -> None:
        """Answer ``status`` after the requests already queued, then close."""
        self.queue.append(error_response(status, message))
        self.closing = True
        if self.transport is not None:
            self.transport.pause_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self.fields_size = 0
        self.url = b""
        self.headers = []
        self.body = []
        self.body_size = 0
        if self.timer is not None and not self.timer_is_head:
            self._cancel_timer()  # the keep-alive idle timer
        if self.timer is None:
            self.timer = self.loop.call_later(self.config.header_timeout, self._head_timeout)
            self.timer_is_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.config.max_request_line:
            self._reject(414, "request line too long")
            raise _Abort

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self.config.max_header_size:
            self._reject(431, "request header field too large")
            raise _Abort
        self.headers.append((name, value))
        if len(self.headers) > self.config.max_headers:
            self._reject(431, "too many request header fields")
            raise _Abort
        # ": " and CRLF; counted here because a whole head can arrive inside
        # one parser slice, where the byte count in _feed never sees it.
        self.fields_size += len(name) + len(value) + 4
        if len(self.url) + self.fields_size > self.config.max_head_size:
            self._reject(431, "request header fields too large")
            raise _Abort

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.in_body = True
        self._cancel_timer()
        for name, value in self.headers:
            if len(name) == 14 and name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.config.max_body_size:
                    self._reject(413, "request body too large")
                    raise _Abort
            elif len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
                if self.transport is not None and not self.queue and not self.busy:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.config.max_body_size:
            self._reject(413, "request body too large")
            raise _Abort
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_body = False
        parser = self.parser
        try:
            method = parser.get_method().decode("ascii")
            target = self.url.decode("utf-8", "surrogateescape")
        except UnicodeDecodeError:
            self._reject(400, "request line is not ASCII")
            raise _Abort from None
        self.queue.append(
            _Request(
                method,
                target,
                self.headers,
                b"".join(self.body),
                parser.should_keep_alive(),
                parser.get_http_version(),
                parser.should_upgrade(),
            )
        )
        self.body = []
        if len(self.queue) > self.config.max_pipelined_requests and not self.reading_paused:
            self.reading_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    # -- answering ------------------------------------------------------------------------

    def _run_queue(self) -> None:
        transport = self.transport
        while (
            self.queue
            and not self.busy
            and not self.writing_paused
            and transport is not None
            and not transport.is_closing()
        ):
            item = self.queue.popleft()
            if isinstance(item, bytes):
                self._cancel_timer()
                transport.write(item)
                transport.close()
                self.queue.clear()
                return
            if self._dispatch(item):
                return
        if self.reading_paused and not self.closing and len(self.queue) <= self.config.max_pipelined_requests // 2:
            self.reading_paused = False
            if transport is not None:
                transport.resume_reading()
        if self.eof and not self.queue and not self.busy and transport is not None:
            self.closing = True
            self._cancel_timer()
            transport.close()
            return
        if not self.queue and not self.busy and not self.in_head and not self.closing and not self.upgraded:
            if self.timer is None:
                self.timer = self.loop.call_later(self.config.keep_alive_timeout, self._idle_timeout)
                self.timer_is_head = False

    def _dispatch(self, req: _Request) -> bool:
        """Answer one request; True when the connection changed hands or an
        async handler is running (stop the queue)."""
        assert self.transport is not None
        path = req.target.partition("?")[0]
        ws = None
        if self.app._ws_router is not None:
            try:
                ws, path_params = self.app._ws_router.match("GET", path)
            except LookupError:
                ws = None
        if ws is not None and (req.upgrade or is_upgrade_request(req.headers)):
            self._upgrade(req, ws, path_params)
            return True
        if req.upgrade or self.upgraded:
            # An upgrade to something we do not speak: answer normally, then
            # close (the parser stopped at the upgrade).
            req.keep_alive = False
            self.upgraded = False
            self.closing = True
        result = self.app._handle_http(req.method, req.target, req.headers, req.body, req.keep_alive,
            self.peer_addr[0] if self.peer_addr else None,
        )
        if isinstance(result, bytes):
            self._respond(result, req.keep_alive)
            return False
        self.busy = True
        task: asyncio.Future[bytes] = asyncio.ensure_future(result, loop=self.loop)
        keep_alive = req.keep_alive
        task.add_done_callback(lambda t: self._async_done(t, keep_alive))
        return True

    def _async_done(self, task: asyncio.Future[bytes], keep_alive: bool) -> None:
        self.busy = False
        if task.cancelled():
            response = error_response(503, "server shutting down")
            keep_alive = False
        else:
            exc = task.exception()
            if exc is not None:
                log.error("HTTP handler failed", exc_info=exc)
                response = error_response(500)
                keep_alive = False
            else:
                response = task.result()
        self._respond(response, keep_alive)
        self._run_queue()

    def _respond(self, response: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(response)
        if not keep_alive:
            self.closing = True
            self.queue.clear()
            self.transport.close()
        elif self.closing and not self.queue:
            # Closing for another reason, and nothing else is owed. (An error
            # answer queued behind this request, for a malformed request
            # that followed it, is written by _run_queue, which then closes.)
            self.transport.close()

    def _upgrade(self, req: _Request, ws: Any, path_params: dict[str, str]) -> None:
        assert self.transport is not None
        config: Config = ws.effective_config
        try:
            response, _subprotocol = accept_handshake(
                req.method,
                req.version,
                req.headers,
                subprotocols=config.subprotocols or None,
                allowed_origins=config.allowed_origins,
            )
        except HandshakeError as exc:
            self.upgraded = False
            self.closing = True
            self.queue.clear()
            self._cancel_timer()
            self.transport.write(error_response(exc.status, exc.reason, exc.headers))
            self.transport.close()
            return
        self._cancel_timer()
        self.upgraded = True
        self.server.http_connections.discard(self)
        query = req.target.partition("?")[2]
        transport = self.transport
        transport.write(response)
        leftover, self.leftover = self.leftover, b""
        self.transport = None
        ws._accept(self.loop, transport, leftover, query, path_params, req.headers, self.peer_addr)


class Server:
    """A running server: the listening socket and every live connection."""

    def __init__(self, app: Robyn, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.http_connections: set[HttpProtocol] = set()
        self.aserver: asyncio.AbstractServer | None = None
        self.stopping = asyncio.Event()

    async def start(self, host: str, port: int) -> None:
        for ws in self.app._websockets():
            ws._attach(self.loop)
        for hook in self.app._startup_handlers:
            await _maybe_await(hook())
        self.aserver = await self.loop.create_server(
            lambda: HttpProtocol(self),
            host,
            port,
            reuse_address=True,
            backlog=self.app.config.backlog,
        )

    @property
    def sockets(self) -> list[socket.socket]:
        server = self.aserver
        return list(getattr(server, "sockets", ())) if server is not None else []

    async def shutdown(self) -> None:
        """Stop accepting, send Close 1001 to every WebSocket, wait up to the
        close timeout for connections to end, then run shutdown hooks."""
        if self.aserver is not None:
            self.aserver.close()
        websockets = list(self.app._websockets())
        timeout = max((ws.effective_config.close_timeout for ws in websockets), default=self.app.config.close_timeout)
        for ws in websockets:
            for conn in list(ws.connections.values()):
                conn.close(1001, "server shutting down")
        for proto in list(self.http_connections):
            proto.close_idle()
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline:
            pending = sum(len(ws.connections) for ws in websockets)
            busy = [p for p in self.http_connections if not p.close_idle()]
            if pending == 0 and not busy:
                break
            await asyncio.sleep(0.02)
        for ws in websockets:
            for conn in list(ws.connections.values()):
                conn.abort()
        for proto in list(self.http_connections):
            if proto.transport is not None:
                proto.transport.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks and close handlers run
        for hook in self.app._shutdown_handlers:
            try:
                await _maybe_await(hook())
            except Exception:
                log.exception("shutdown handler failed")
        if self.aserver is not None:
            try:
                await asyncio.wait_for(self.aserver.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's otherwise.

    ``ROBYN_FAST_LOOP=asyncio`` forces asyncio's loop (``uvloop`` forces
    uvloop and fails if it is missing)."""
    choice = os.environ.get("ROBYN_FAST_LOOP", "")
    if choice == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(app: Robyn, host: str, port: int, *, loop_factory: Any = None) -> int:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully.

    Returns the process exit code: 0 after a graceful shutdown, 1 when the
    address cannot be bound (the reason is printed as one line on stderr).
    """
    loop = (loop_factory or new_event_loop)()
    asyncio.set_event_loop(loop)
    server = Server(app, loop)
    try:
        try:
            loop.run_until_complete(server.start(host, port))
        except OSError as exc:
            print(f"robyn_fast: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        stop = server.stopping
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        bound = ", ".join(f"http://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
        _announce(f"robyn_fast: serving on {bound}")
        loop.run_until_complete(stop.wait())
        _announce("robyn_fast: shutting down")
        loop.run_until_complete(server.shutdown())
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _announce(message: str) -> None:
    """Say ``message`` once: as a log record when logging will show it,
    otherwise on stderr."""
    if log.isEnabledFor(logging.INFO) and logging.getLogger().hasHandlers():
        log.info("%s", message)
    else:
        print(message, file=sys.stderr, flush=True)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
