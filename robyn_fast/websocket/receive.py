"""Robyn's receive-loop WebSocket API (Robyn 0.78+): ``@app.websocket(path)``.

One handler per connection runs for the connection's whole life, in a Task
started when the handshake completes, and pulls messages::

    @app.websocket("/chat")
    async def chat(websocket, room: str = "lobby"):
        try:
            while True:
                msg = await websocket.receive_text()
                await websocket.broadcast(f"{room}: {msg}")
        except WebSocketDisconnect as exc:
            print("gone with", exc.code)

    @chat.on_connect
    def hello(websocket):
        return "welcome"        # sent, as the legacy API sends return values

It runs on the same compiled connection and event interface as the legacy
:class:`~robyn_fast.websocket.endpoint.WebSocket` class (it is one, with its
own connect/message/close handlers): messages go to the connection's
compiled :class:`~robyn_fast._core.connection.Inbox`, which hands each to a
waiting receive or queues it; when ``read_high_water`` messages wait unread,
the connection stops reading its socket until the handler has taken them
down to ``read_low_water``, so a handler that stops
receiving stops the client, and the connection's close still runs in order
(no message event waits on the handler). Sends go through the core's
``max_backpressure`` and its policy; ``broadcast``, ``send_to`` and the room
sends reach every client of the endpoint on every worker process and over
Redis, as the legacy ones do.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import threading
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Union

from .._core.connection import Inbox
from ..binding import CONVERTIBLE, Arg, Attr, Call, Converter, Dependency, Item, Source, bind_parameters, converter
from ..config import Config
from ..encoding import dumps
from ..exceptions import HandshakeError, WebSocketDisconnect
from ..http.types import Headers, QueryParams
from ..logs import get_logger
from .endpoint import DEFAULT_PRESENCE_TIMEOUT, ClusterPresence, EndpointOwner, WebSocket, WebSocketConnector

if TYPE_CHECKING:
    from .._core.connection import Connection
    from ..server import Server

__all__ = ["WebSocketAdapter", "ReceiveEndpoint", "WebSocketDisconnect", "websocket_decorator"]

log = get_logger("robyn_fast.websocket")
_get_ident = threading.get_ident

Kwargs = Callable[["WebSocketAdapter", QueryParams], dict[str, Any]]
Data = Union[str, bytes, dict[str, Any], list[Any]]

def _query_value(pname: str, conv: Converter, default: Any) -> Callable[[WebSocketAdapter], Any]:
    """The typed query parameter ``pname`` of a connection (checked before
    the upgrade, so a conversion here cannot fail)."""
    convert = conv.convert

    if conv.many:
        def every(ws: WebSocketAdapter) -> Any:
            texts = ws.query_params.get_all(pname)
            return default if texts is None else [convert(t) for t in texts]

        return every

    def get(ws: WebSocketAdapter) -> Any:
        raw = ws.query_params.get(pname)
        return default if raw is None else convert(raw)

    return get


class _Binder:
    """A handler's parameters, resolved when it is decorated and compiled by
    :func:`robyn_fast.binding.bind_parameters` into one function of the
    websocket: the first positional parameter is the websocket;
    ``global_dependencies``, ``router_dependencies``, ``query_params`` (or a
    ``QueryParams`` annotation), ``path_params``, ``headers`` (or a
    ``Headers`` annotation), a path parameter by name and an injected
    dependency by name get those; everything else is a typed query parameter
    (see :func:`robyn_fast.binding.converter`; ``T | None`` is None when absent, ``list[T]`` every value) with its
    default. ``check`` refuses a query that lacks a required one or holds a
    value of the wrong type."""

    def __init__(self, endpoint: ReceiveEndpoint, fn: Callable[..., Any], what: str) -> None:
        self.fn = fn
        name = getattr(fn, "__qualname__", repr(fn))
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an annotation naming what cannot be imported: keep the raw ones
            hints = {}
        params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        injected = endpoint._known_dependency_names()
        path_names = set(endpoint._path_param_names)
        sources: list[tuple[inspect.Parameter, Source]] = []
        # (parameter, converter, default or Parameter.empty)
        self.typed: list[tuple[str, Converter, Any]] = []
        for i, p in enumerate(params):
            annotation = hints.get(p.name, p.annotation)
            source: Source
            if i == 0 and p.kind is not p.KEYWORD_ONLY:
                source = Arg(0)
            elif p.name == "global_dependencies":
                source = Call(endpoint._global_getter)
            elif p.name == "router_dependencies":
                source = Call(endpoint._router_getter)
            elif p.name == "query_params" or annotation is QueryParams:
                source = Attr(0, "query_params")
            elif p.name == "path_params":
                source = Attr(0, "path_params")
            elif p.name == "headers" or annotation is Headers:
                source = Attr(0, "headers")
            elif p.name in path_names:
                source = Item(0, "path_params", p.name)
            elif p.name in injected:
                source = Dependency(p.name, endpoint._dependency_maps())
            else:
                conv = converter(annotation)
                if conv is None:
                    raise TypeError(
                        f"cannot bind parameter {p.name!r} of websocket {what} {name}: a query parameter is "
                        f"{CONVERTIBLE}, not {annotation!r}; other parameters are "
                        "global_dependencies, router_dependencies, query_params, path_params, headers, a path "
                        "parameter or an injected dependency"
                    )
                self.typed.append((p.name, conv, p.default))
                default = None if p.default is inspect.Parameter.empty else p.default
                source = Call(_query_value(p.name, conv, default))
            sources.append((p, source))
        self.call: Callable[[WebSocketAdapter], Any] = bind_parameters(fn, 1, sources)

    def check(self, query: QueryParams) -> dict[str, Any]:
        """The typed query parameters' values; HandshakeError(400) for a
        missing required one or a value of the wrong type."""
        values: dict[str, Any] = {}
        for pname, conv, default in self.typed:
            texts = query.get_all(pname)
            if not texts:
                if default is inspect.Parameter.empty and not conv.optional:
                    raise HandshakeError(400, f"missing required query parameter {pname!r}")
                values[pname] = None if default is inspect.Parameter.empty else default
                continue
            converted = []
            for raw in texts if conv.many else texts[-1:]:
                try:
                    converted.append(conv.convert(raw))
                except (ValueError, TypeError, ArithmeticError):
                    raise HandshakeError(
                        400, f"invalid value {raw!r} for query parameter {pname!r}: expected {conv.type_name}"
                    ) from None
            values[pname] = converted if conv.many else converted[0]
        return values


class WebSocketAdapter:
    """One connection of an ``@app.websocket`` endpoint, as its handler sees it.

    ``id``, ``query_params``, ``path_params``, ``headers`` (of the upgrade
    request) and ``remote_addr`` (the client's ``(host, port)``) describe
    it; ``receive_*`` pull the next message; ``send_*``, ``broadcast``,
    ``send_to`` and ``broadcast_to`` push; ``join``/``leave``/``rooms``
    manage its rooms (the legacy connector's names and semantics);
    ``connector`` is the legacy
    :class:`~robyn_fast.websocket.endpoint.WebSocketConnector` of the same
    connection.
    """

    __slots__ = ("connector", "_server", "_conn", "_thread", "_inbox", "_task", "__weakref__")

    def __init__(self, endpoint: ReceiveEndpoint, server: Server, connector: WebSocketConnector,
                 conn: Connection) -> None:
        self.connector = connector
        self._server = server
        self._conn = conn
        # The connection's thread (this runs there, at the upgrade): a send
        # from it goes straight to the connection.
        self._thread = threading.get_ident()
        # The messages not received yet, and what a waiting receive awaits
        # (it holds reading at read_high_water unread until read_low_water).
        config = endpoint.effective_config
        self._inbox = Inbox(conn, config.read_high_water, config.read_low_water)
        self._task: asyncio.Future[Any] | None = None                # the handler's Task

    # -- what describes the connection ---------------------------------------------

    @property
    def id(self) -> str:
        """The connection id (a uuid4 string)."""
        return self.connector.id

    @property
    def query_params(self) -> QueryParams:
        """The upgrade request's query parameters (percent-decoded)."""
        return self.connector.query_params

    @property
    def path_params(self) -> dict[str, str]:
        """The endpoint path's parameters (``/room/<name>``)."""
        return self.connector.path_params

    @property
    def headers(self) -> Headers:
        """The upgrade request's headers (case-insensitive)."""
        return self.connector.headers

    @property
    def remote_addr(self) -> tuple[str, int] | None:
        """The client's ``(host, port)`` (see ``Config.forwarded_allow_ips``)."""
        return self.connector.remote_addr

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's ``(host, port)`` (Starlette's name)."""
        return self.connector.remote_addr

    @property
    def closed(self) -> bool:
        """True once the connection has started closing."""
        return self.connector.closed

    # -- receiving -----------------------------------------------------------------------

    # A receive awaits the inbox: the oldest queued message without
    # suspending, or else the Task waits on the inbox itself until the next
    # message event hands it one (no Future, no other coroutine or object).

    async def receive_text(self) -> str:
        """The next message as text (a binary one decoded as UTF-8).
        Raises :class:`WebSocketDisconnect` with the close code once the
        connection has closed and every message received before was taken."""
        msg = await self._inbox
        return msg if isinstance(msg, str) else msg.decode("utf-8")

    async def receive_bytes(self) -> bytes:
        """The next message as bytes (a text one encoded as UTF-8)."""
        msg = await self._inbox
        return msg if isinstance(msg, bytes) else msg.encode("utf-8")

    async def receive_json(self) -> Any:
        """The next message (text or binary) decoded as JSON; ``ValueError``
        if it is not JSON (the connection stays open)."""
        return json.loads(await self._inbox)

    # -- sending ---------------------------------------------------------------------------

    async def send_text(self, data: str) -> bool:
        """Send a text frame. False if the connection is closing or the
        ``max_backpressure`` policy refused the message."""
        if not isinstance(data, str):
            raise TypeError(f"send_text() takes a str, not {type(data).__name__}")
        if _get_ident() == self._thread:  # _send(), inline
            return self._conn.send(data)
        return self.connector.send(data)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> bool:
        """Send a binary frame (see :meth:`send_text`)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_bytes() takes bytes, not {type(data).__name__}")
        return self._send(bytes(data))

    async def send_json(self, data: Any) -> bool:
        """Send ``data`` as JSON in a text frame (see :meth:`send_text`)."""
        return self._send(dumps(data))

    def _send(self, data: str | bytes) -> bool:
        # On the loop's thread (the handler's Task) straight to the
        # connection; from elsewhere through the connector, which hands the
        # send to the loop.
        if _get_ident() == self._thread:
            return self._conn.send(data)
        return self.connector.send(data)

    async def broadcast(self, data: Data) -> int:
        """Send ``data`` to every open connection of this endpoint, this one
        included, on every worker process and over Redis: ``str`` as a text
        frame, bytes as binary, ``dict``/``list`` as JSON text. Returns how
        many of this process's connections accepted it."""
        return self.connector.sync_broadcast(data)

    async def send_to(self, recipient_id: str, data: Data) -> bool:
        """Send ``data`` to the connection ``recipient_id`` of this endpoint,
        on any worker process or host (see
        :meth:`~robyn_fast.websocket.endpoint.WebSocket.send_to`: True once
        handed to the bus or Redis for another node's id, at most once)."""
        return self.connector.sync_send_to(recipient_id, data)

    # -- who is where, across the cluster ---------------------------------------------------------

    async def cluster_connections(self, timeout: float = DEFAULT_PRESENCE_TIMEOUT) -> ClusterPresence:
        """Every connection of this endpoint on every worker process and
        host: id -> node tag, with ``.complete`` False when some node did
        not answer within ``timeout`` seconds (see
        :meth:`~robyn_fast.websocket.endpoint.WebSocket.cluster_connections`)."""
        return await self.connector.cluster_connections(timeout)

    async def cluster_room_members(self, room: Any, timeout: float = DEFAULT_PRESENCE_TIMEOUT) -> ClusterPresence:
        """The members of ``room`` on every worker process and host (see
        :meth:`cluster_connections`)."""
        return await self.connector.cluster_room_members(room, timeout)

    # -- rooms (the legacy connector's, for this connection) ----------------------------------

    @property
    def rooms(self) -> frozenset[Any]:
        """The rooms this connection is in (a snapshot)."""
        return self.connector.rooms

    def join(self, room: Any) -> bool:
        """Join ``room`` of this endpoint: its members on every worker
        process and host get what is sent to the room. Any hashable name, a
        str or an int when the server has workers or a broker (``TypeError``
        otherwise). A connection leaves its rooms when it closes. False if
        the connection is closing."""
        return self.connector.join(room)

    def leave(self, room: Any) -> bool:
        """Leave ``room``; False if this connection was not in it."""
        return self.connector.leave(room)

    async def broadcast_to(self, room: Any, data: Data, exclude_self: bool = False) -> int:
        """Send ``data`` to every open connection in ``room`` (this one too,
        unless ``exclude_self``) on every worker process and over Redis;
        returns how many of this process's connections accepted it."""
        return self.connector.sync_broadcast_to(room, data, exclude_self)

    def sync_broadcast_to(self, room: Any, data: Data, exclude_self: bool = False) -> int:
        """:meth:`broadcast_to` without ``await`` (the legacy connector's name)."""
        return self.connector.sync_broadcast_to(room, data, exclude_self)

    async def async_broadcast_to(self, room: Any, data: Data, exclude_self: bool = False) -> int:
        """:meth:`broadcast_to` (the legacy connector's name)."""
        return self.connector.sync_broadcast_to(room, data, exclude_self)

    async def close(self, code: int = 1000, reason: str = "") -> bool:
        """Send a Close frame (RFC 6455 §5.5.1) at once, after the messages
        already queued; from then on ``receive_*`` raise
        :class:`WebSocketDisconnect` with ``code`` once the messages already
        received are taken. False if the connection was already closing."""
        sent = self.connector.close(code, reason)
        if self._inbox.gone is None:
            # Already closing by the peer's Close: its code is the one that counts.
            peer = None if sent else self.connector.close_code
            self._disconnected(code if peer is None else peer, reason if peer is None else self.connector.close_reason)
        return sent

    # -- driven by the endpoint -------------------------------------------------------------

    def _deliver(self, msg: str | bytes) -> None:
        # The message event, when a job of the connection's own handlers
        # (an async on_connect) kept the message from the inbox; it returns
        # at once, so the close runs in order even when the handler never
        # receives.
        self._inbox.put_message(msg)

    def _disconnected(self, code: int, reason: str) -> None:
        self._inbox.disconnect(WebSocketDisconnect(code, reason))

    def _handler_ended(self, _task: asyncio.Future[Any]) -> None:
        self._inbox.finish()

    def __repr__(self) -> str:
        return f"<WebSocketAdapter id={self.id} endpoint={self.connector.endpoint!r}>"


async def _run_handler(binder: _Binder, ws: WebSocketAdapter, endpoint: str) -> None:
    try:
        await binder.call(ws)
    except WebSocketDisconnect:
        pass
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("websocket handler %s for %s raised; closing the connection with 1011",
                      getattr(binder.fn, "__qualname__", binder.fn), endpoint)
        ws._conn.hub.count_handler_error()
        ws.connector.close(1011, "internal error")
        return
    # The handler returned: nothing reads this connection any more.
    ws.connector.close(1000, "")


class ReceiveEndpoint(WebSocket):
    """The endpoint ``@app.websocket(path)`` registers (a legacy endpoint
    whose connect, message and close handlers drive :class:`WebSocketAdapter`)."""

    def __init__(self, app: EndpointOwner, endpoint: str, handler: Callable[..., Any], config: Config | None = None) -> None:
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"@app.websocket({endpoint!r}) takes an async function, not {handler!r}")
        super().__init__(app, endpoint, config)
        self.handler = handler
        self._main = _Binder(self, handler, "handler")
        self._on_connect: _Binder | None = None
        self._on_close: _Binder | None = None
        # The message event calls the adapter's own method: one call per message.
        self._bound = {"connect": self._connect, "message": WebSocketAdapter._deliver, "close": self._close}

    def set_on_connect(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``fn(websocket, ...)`` when a client connects (its parameters
        bound like the handler's); its return value is sent (``""`` an empty
        message, None nothing) before anything the handler sends: the
        handler starts once ``fn`` has returned (or raised: logged)."""
        self._on_connect = _Binder(self, fn, "on_connect")
        return fn

    def set_on_close(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``fn(websocket, ...)`` once the connection has closed and the
        handler has returned (or was cancelled after ``close_timeout``)."""
        self._on_close = _Binder(self, fn, "on_close")
        return fn

    def check_upgrade(self, query: str) -> None:
        """Refuses the upgrade (400, naming the parameter) when a typed
        query parameter of a handler is missing or of the wrong type."""
        binders = [b for b in (self._main, self._on_connect, self._on_close) if b is not None and b.typed]
        if binders:
            params = QueryParams.from_query_string(query)
            for binder in binders:
                binder.check(params)

    def make_connector(self, server: Server, connector: WebSocketConnector, conn: Connection) -> WebSocketAdapter:
        return WebSocketAdapter(self, server, connector, conn)

    def _connect(self, ws: WebSocketAdapter) -> Any:
        greeting = None
        if self._on_connect is not None:
            try:
                greeting = self._on_connect.call(ws)
            except BaseException:
                self._start(ws)
                raise
            if inspect.isawaitable(greeting):
                return self._greet_later(ws, greeting)
        self._greet(ws, greeting)
        return None

    async def _greet_later(self, ws: WebSocketAdapter, pending: Awaitable[Any]) -> None:
        try:
            greeting = await pending
        except BaseException:
            self._start(ws)
            raise
        self._greet(ws, greeting)

    def _greet(self, ws: WebSocketAdapter, greeting: Any) -> None:
        """Send on_connect's return value, then start the handler (with an
        eager Task its first step would otherwise send before it). A value
        that cannot be sent raises here: logged as on_connect's error."""
        try:
            if greeting is not None:
                ws.connector.send(greeting)
        finally:
            self._start(ws)

    def _start(self, ws: WebSocketAdapter) -> None:
        task = ws._server.start_task(_run_handler(self._main, ws, self.endpoint), contextvars.copy_context())
        ws._task = task
        if task.done():
            ws._handler_ended(task)
        else:
            task.add_done_callback(ws._handler_ended)

    def _close(self, ws: WebSocketAdapter) -> Any:
        gone = ws._inbox.gone
        if gone is None or gone.code != ws.connector.close_code:
            ws._disconnected(ws.connector.close_code or 1006, ws.connector.close_reason)
        task = ws._task
        if task is not None and not task.done():
            return self._close_after(ws, task)
        return self._on_close.call(ws) if self._on_close is not None else None

    async def _close_after(self, ws: WebSocketAdapter, task: asyncio.Future[Any]) -> Any:
        timeout = self.effective_config.close_timeout
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            log.warning("websocket %s: the handler did not return within %.1fs of the close; cancelled",
                        ws.id, timeout)
            task.cancel()
            await asyncio.wait([task], timeout=timeout)
        if self._on_close is None:
            return None
        result = self._on_close.call(ws)
        if inspect.isawaitable(result):
            result = await result
        return result

    def __repr__(self) -> str:
        return f"<ReceiveEndpoint {self.endpoint!r} handler={getattr(self.handler, '__qualname__', self.handler)}>"


def websocket_decorator(app: EndpointOwner, endpoint: str, config: Config | None = None) -> Callable[[Any], Any]:
    """What ``app.websocket(endpoint)`` returns: registers the async handler
    at ``endpoint`` and gives it ``on_connect`` / ``on_close`` decorators,
    and ``before_upgrade`` (:meth:`~robyn_fast.websocket.endpoint.WebSocket.before_upgrade`:
    a hook that may refuse the upgrade request before the 101)."""

    def decorator(handler: Any) -> Any:
        ep = ReceiveEndpoint(app, endpoint, handler, config)
        handler.on_connect = ep.set_on_connect
        handler.on_close = ep.set_on_close
        handler.before_upgrade = ep.before_upgrade
        handler.endpoint = ep
        return handler

    return decorator
