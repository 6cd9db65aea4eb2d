"""Robyn's WebSocket API: endpoints (:class:`WebSocket`) and the per-connection
object handlers receive (:class:`WebSocketConnector`).

Handlers run on the event loop: a sync handler must not block (it stalls every
connection of the process); an async handler is awaited. Per connection,
messages are handled one at a time in arrival order, and replies leave in that
order. A handler's return value is sent to the client (``str`` as a text frame,
``bytes`` as binary, ``dict``/``list`` as JSON text, ``None`` sends nothing).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._core.codec import build_message
from .config import Config
from .http_types import Headers, QueryParams

if TYPE_CHECKING:
    from ._core.connection import Connection
    from .app import Robyn

__all__ = ["WebSocket", "WebSocketConnector", "EVENTS"]

EVENTS = ("connect", "message", "close")


class WebSocketConnector:
    """One WebSocket connection, as its handlers see it.

    ``id`` is a uuid4 string; ``query_params``, ``path_params`` and ``headers``
    come from the upgrade request; ``remote_addr`` is the client's address.
    """

    __slots__ = ("id", "endpoint", "query_params", "path_params", "headers", "remote_addr", "_conn", "_ws")

    def __init__(
        self,
        ws: WebSocket,
        conn: Connection,
        conn_id: str,
        query_params: QueryParams,
        path_params: dict[str, str],
        headers: Headers,
        remote_addr: tuple[str, int] | None,
    ) -> None:
        self.id: str = conn_id
        self.endpoint: str = ws.endpoint
        self.query_params: QueryParams = query_params
        self.path_params: dict[str, str] = path_params
        self.headers: Headers = headers
        self.remote_addr: tuple[str, int] | None = remote_addr
        self._conn = conn
        self._ws = ws

    @property
    def closed(self) -> bool:
        """True once this connection has started closing."""
        return bool(self._conn.state != 0)

    def sync_send_to(self, recipient_id: str, data: str | bytes) -> bool:
        """Send ``data`` to the connection ``recipient_id`` of this endpoint.

        ``str`` goes as a text frame, bytes-like as binary. Returns False for
        an unknown id or a connection that is closing."""
        return self._ws.send_to(recipient_id, data)

    async def async_send_to(self, recipient_id: str, data: str | bytes) -> bool:
        """Awaitable :meth:`sync_send_to`."""
        return self._ws.send_to(recipient_id, data)

    def sync_broadcast(self, data: str | bytes) -> int:
        """Send ``data`` to every open connection of this endpoint, this one
        included; returns how many accepted it."""
        return self._ws.broadcast(data)

    async def async_broadcast(self, data: str | bytes) -> int:
        """Awaitable :meth:`sync_broadcast`."""
        return self._ws.broadcast(data)

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Close this connection: queued messages (including the running
        handler's return value) are sent first, then a Close frame with
        ``code`` and ``reason`` (RFC 6455 §5.5.1). Idempotent: returns False
        if the connection was already closing."""
        return self._ws._call_in_loop(self._conn.close, code, reason)

    def __repr__(self) -> str:
        return f"<WebSocketConnector id={self.id} endpoint={self.endpoint!r}>"


def _bind(event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """A callable with the core's calling convention, ``(connector)`` for
    connect/close and ``(connector, message)`` for message handlers."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return handler
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    wanted = 2 if event == "message" else 1
    if varargs or len(positional) == wanted:
        return handler
    if len(positional) == 0:
        return lambda *_: handler()
    if len(positional) == 1 and event == "message":
        return lambda ws, _msg: handler(ws)
    name = getattr(handler, "__qualname__", repr(handler))
    raise TypeError(f"websocket {event} handler {name} takes {len(positional)} positional parameters; "
                    f"expected at most {wanted}")


class WebSocket:
    """A WebSocket endpoint of ``app`` at the path ``endpoint``.

    Register handlers with ``@ws.on("connect" | "message" | "close")``. The
    path may hold parameters (``/room/<room_id>`` or ``/room/:room_id``). A
    plain GET to the same path still reaches an HTTP route registered there.
    """

    def __init__(
        self,
        app: Robyn,
        endpoint: str,
        config: Config | None = None,
        dependencies: Any = None,
    ) -> None:
        if config is not None and not isinstance(config, Config):
            raise TypeError(f"config must be a robyn_fast.Config, not {type(config).__name__}")
        self.app = app
        self.endpoint = endpoint
        self.config: Config | None = config
        self.dependencies = dependencies
        self.handlers: dict[str, Callable[..., Any]] = {}
        self._bound: dict[str, Callable[..., Any]] = {}
        self.connections: dict[str, Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        app.add_web_socket(endpoint, self)

    def on(self, event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the handler for ``event``; returns it unchanged."""
        if event not in EVENTS:
            raise ValueError(f"unknown websocket event {event!r}; expected one of {', '.join(EVENTS)}")

        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(handler):
                raise TypeError(f"websocket {event} handler must be callable")
            self._bound[event] = _bind(event, handler)
            self.handlers[event] = handler
            return handler

        return decorator

    @property
    def effective_config(self) -> Config:
        return self.config if self.config is not None else self.app.config

    # -- sending from anywhere ---------------------------------------------------

    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the server's loop: at once when called on the loop's
        thread, else scheduled thread-safely (then the result is True)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return fn(*args)
        loop.call_soon_threadsafe(fn, *args)
        return True

    def send_to(self, recipient_id: str, data: str | bytes) -> bool:
        """Send ``data`` to one connection of this endpoint; False if the id is
        unknown or malformed or the connection is closing."""
        if not isinstance(recipient_id, str):
            return False
        conn = self.connections.get(recipient_id)
        if conn is None:
            return False
        return bool(self._call_in_loop(conn.send, data))

    def broadcast(self, data: str | bytes) -> int:
        """Send ``data`` to every open connection of this endpoint; the frame
        is built once. Returns how many connections accepted it (from another
        thread: how many it was scheduled for)."""
        frame = build_message(data)
        conns = list(self.connections.values())
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._broadcast_frame, frame)
            return len(conns)
        count = 0
        for conn in conns:
            if conn.send_frame_bytes(frame):
                count += 1
        return count

    def _broadcast_frame(self, frame: bytes) -> None:
        for conn in list(self.connections.values()):
            conn.send_frame_bytes(frame)

    # -- used by the server ---------------------------------------------------------

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def _accept(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        initial: bytes,
        query_params: QueryParams,
        path_params: dict[str, str],
        headers: Headers,
    ) -> Connection:
        """Install a Connection on ``transport`` after the 101 was written."""
        from ._core.connection import Connection

        conn_id = str(uuid.uuid4())
        config = self.effective_config
        conn = Connection(
            loop,
            config,
            self.connections,
            conn_id,
            self._bound.get("connect"),
            self._bound.get("message"),
            self._bound.get("close"),
        )
        peer = transport.get_extra_info("peername")
        conn.connector = WebSocketConnector(
            self, conn, conn_id, query_params, path_params, headers, peer[:2] if peer else None
        )
        self.connections[conn_id] = conn
        transport.set_protocol(conn)
        conn.start(transport, initial)
        return conn

    def __repr__(self) -> str:
        return f"<WebSocket {self.endpoint!r} handlers={sorted(self.handlers)}>"
