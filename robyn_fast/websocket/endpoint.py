"""Robyn's WebSocket API: endpoints (:class:`WebSocket`) and the per-connection
object handlers receive (:class:`WebSocketConnector`).

Handlers run on the event loop: a sync handler must not block (it stalls every
connection of the process; ``threaded=True`` runs it in a thread pool); an
async handler runs in an asyncio Task from its first line. Per connection,
messages are handled one at a time in arrival order, each handler call in its
own copy of the context (a ``ContextVar`` set while handling one message is
not seen by the next), and replies leave in that order. A handler's return
value is sent to the client (``str`` as a text frame, ``bytes`` as binary,
``dict``/``list`` as JSON text, ``None`` sends nothing).

Everything that sends, joins, leaves or closes may be called from any thread:
arguments are checked in the caller (``TypeError``/``ValueError`` there), the
work runs on the server's event loop, and the caller gets the same answer it
would get on the loop's thread (the calling thread waits for it). Do not call
them from another thread while the loop's thread waits for that thread.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._core.codec import build_close
from ..broker.presence import ClusterPresence
from .._core.connection import BufferedConnection, Hub, message_frame
from ..binding import Arg, Attr, Call, Dependency, Item, Source, bind_parameters
from ..config import Config
from ..dependency_injection import DependencyMap
from ..encoding import dumps
from ..exceptions import ServerNotRunning
from ..http.router import compile_path
from ..exceptions import HTTPError
from ..http.types import Headers, QueryParams, Request, Response, error_response, render, serialize_response
from ..logs import field, get_logger
from .extensions import DeflateParams
from .ids import new_id

if TYPE_CHECKING:
    from .._core.connection import Connection
    from ..server import Server

__all__ = ["WebSocket", "WebSocketConnector", "EVENTS", "UpgradeHook", "ClusterPresence", "DEFAULT_PRESENCE_TIMEOUT"]

EVENTS = ("connect", "message", "close")
#: Seconds a presence query waits for the other nodes by default.
DEFAULT_PRESENCE_TIMEOUT = 1.0

log = get_logger("robyn_fast.websocket")

#: A ``before_upgrade`` hook: ``hook(request)``, sync or async; returns None (or True) to accept, or a refusal
#: (see :meth:`WebSocket.before_upgrade`).
UpgradeHook = Callable[[Request], Any]


class EndpointOwner(Protocol):
    """What an endpoint needs of the app (or SubRouter) it belongs to."""

    config: Config
    dependencies: DependencyMap

    @property
    def server(self) -> Server | None: ...

    def add_web_socket(self, endpoint: str, ws: Any) -> None: ...


def _frame(data: Any) -> bytes:
    """The frame for a message value, built in the caller's thread, so a value
    that cannot be sent raises there."""
    return message_frame(data, dumps)


def _check_room(room: Any) -> None:
    try:
        hash(room)
    except TypeError:
        raise TypeError(f"a room name must be hashable, not {type(room).__name__}") from None


def _pack_headers(raw: list[tuple[bytes, bytes]]) -> bytes | list[tuple[bytes, bytes]]:
    """The upgrade request's header fields as one bytes object, ``name:value``
    lines joined by LF (a pair costs ~200 bytes as a tuple of two bytes objects
    in a list; this, its characters). Names are tokens (no ``:``); values
    with a line feed (none a parser passes) are kept as they came."""
    packed = b"\n".join([name + b":" + value for name, value in raw])
    if packed.count(b"\n") != (len(raw) - 1 if raw else 0):
        return raw
    return packed


def _unpack_headers(packed: bytes | list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if not isinstance(packed, bytes):
        return packed
    if not packed:
        return []
    pairs = []
    for line in packed.split(b"\n"):
        name, _, value = line.partition(b":")
        pairs.append((name, value))
    return pairs


class WebSocketConnector:
    """One WebSocket connection, as its handlers see it.

    ``id`` is a uuid4 string; ``query_params`` (percent-decoded),
    ``path_params`` and ``headers`` come from the upgrade request;
    ``remote_addr`` is the client's ``(host, port)`` (named by a proxy in
    ``Config.forwarded_allow_ips``: port 0 when it gives none); ``endpoint`` the
    endpoint's path pattern; ``subprotocol`` the ``Sec-WebSocket-Protocol``
    agreed (one of ``Config.subprotocols``) or None; ``compression`` what
    permessage-deflate agreed.
    """

    # Eight slots and no dict per idle connection: the id is the connection's
    # key and the endpoint pattern the endpoint's; path parameters (usually
    # none), the query and the headers are kept as they came and made into
    # their objects on first use.
    __slots__ = ("remote_addr", "subprotocol", "_conn", "_ws", "_server", "_path_params", "_headers", "_query")

    def __init__(
        self,
        ws: WebSocket,
        server: Server,
        conn: Connection,
        conn_id: str,
        query: str,
        path_params: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        remote_addr: tuple[str, int] | None,
        subprotocol: str | None = None,
    ) -> None:
        if conn_id != conn.key:
            raise ValueError(f"the connector's id {conn_id!r} is not its connection's ({conn.key!r})")
        self.subprotocol: str | None = subprotocol
        self.remote_addr: tuple[str, int] | None = remote_addr
        self._conn = conn
        self._ws = ws
        self._server = server
        self._path_params: dict[str, str] | None = path_params or None
        self._headers: Headers | bytes | list[tuple[bytes, bytes]] = _pack_headers(raw_headers)
        self._query: QueryParams | str = query

    @property
    def id(self) -> str:
        """The connection's id (a uuid4 string)."""
        key: str = self._conn.key
        return key

    @property
    def endpoint(self) -> str:
        """The endpoint's path pattern."""
        return self._ws.endpoint

    @property
    def path_params(self) -> dict[str, str]:
        if self._path_params is None:
            self._path_params = {}
        return self._path_params

    @property
    def query_params(self) -> QueryParams:
        query = self._query
        if isinstance(query, str):
            query = self._query = QueryParams.from_query_string(query)
        return query

    @property
    def headers(self) -> Headers:
        """The upgrade request's headers (case-insensitive)."""
        headers = self._headers
        if not isinstance(headers, Headers):
            headers = self._headers = Headers(_unpack_headers(headers))
        return headers

    @property
    def compression(self) -> DeflateParams | None:
        """What permessage-deflate agreed with this client (window sizes,
        context takeover, the response header sent), or None if nothing was."""
        params: DeflateParams | None = self._conn.deflate_params
        return params

    @property
    def closed(self) -> bool:
        """True once this connection has started closing."""
        return bool(self._conn.state != 0)

    @property
    def close_code(self) -> int | None:
        """The close code of the closing handshake (the peer's, or ours if we
        closed first; 1006 when TCP went without one), None while open."""
        code: int | None = self._conn.close_code
        return code

    @property
    def close_reason(self) -> str:
        """The close reason that goes with :attr:`close_code`."""
        return str(self._conn.close_reason)

    def send(self, data: str | bytes | dict[str, Any] | list[Any]) -> bool:
        """Send ``data`` to this connection (``str`` as a text frame,
        bytes-like as binary, ``dict``/``list`` as JSON text), under the
        endpoint's ``max_backpressure`` and its policy. False if the
        connection is closing or the policy refused it; ``TypeError`` for a
        value that cannot be sent."""
        frame = _frame(data)
        return bool(self._on_loop(self._conn.send_frame_bytes, frame))

    def _on_loop(self, fn: Callable[..., Any], *args: Any, closed: Any = False) -> Any:
        """``fn(*args)`` on the server's loop; ``closed`` if the server has stopped."""
        try:
            return self._server.call(fn, *args)
        except ServerNotRunning:
            return closed

    @property
    def rooms(self) -> frozenset[Any]:
        """The rooms this connection is in (a snapshot)."""
        rooms = self._on_loop(_rooms_of, self._conn, closed=None)
        return frozenset() if rooms is None else frozenset(rooms)

    def join(self, room: Any) -> bool:
        """Join ``room`` of this endpoint: any hashable name, or a str or an
        int when the server runs worker processes (rooms span them). A
        connection leaves its rooms when it closes. False if the connection
        is closing."""
        _check_room(room)
        self._server.check_room(room)
        return bool(self._on_loop(self._conn.join, room))

    def leave(self, room: Any) -> bool:
        """Leave ``room``; False if this connection was not in it."""
        _check_room(room)
        return bool(self._on_loop(self._conn.leave, room))

    async def cluster_connections(self, timeout: float = DEFAULT_PRESENCE_TIMEOUT) -> ClusterPresence:
        """Every connection of this endpoint on every worker process and
        host (:meth:`WebSocket.cluster_connections`)."""
        return await self._ws.cluster_connections(timeout)

    async def cluster_room_members(self, room: Any, timeout: float = DEFAULT_PRESENCE_TIMEOUT) -> ClusterPresence:
        """The members of ``room`` on every worker process and host
        (:meth:`WebSocket.cluster_room_members`)."""
        return await self._ws.cluster_room_members(room, timeout)

    def sync_send_to(self, recipient_id: str, data: str | bytes | dict[str, Any] | list[Any]) -> bool:
        """Send ``data`` to the connection ``recipient_id`` of this endpoint.

        ``str`` goes as a text frame, bytes-like as binary, ``dict``/``list``
        as JSON text. Returns False for an unknown id or a connection that is
        closing; raises ``TypeError`` for a non-str id or a value that cannot
        be sent (``ValueError`` for JSON with NaN)."""
        if recipient_id == self.id:
            # To itself (the common case: a handler answering its client): this
            # connector holds its connection, so no lookup by id is needed.
            return bool(self._on_loop(self._conn.send_frame_bytes, _frame(data)))
        return self._ws.send_to(recipient_id, data)

    async def async_send_to(self, recipient_id: str, data: str | bytes | dict[str, Any] | list[Any]) -> bool:
        """Awaitable :meth:`sync_send_to`."""
        return self.sync_send_to(recipient_id, data)

    def sync_broadcast(self, data: str | bytes | dict[str, Any] | list[Any]) -> int:
        """Send ``data`` to every open connection of this endpoint, this one
        included, on every worker process; returns how many of this
        process's connections accepted it."""
        return self._ws.broadcast(data)

    async def async_broadcast(self, data: str | bytes | dict[str, Any] | list[Any]) -> int:
        """Awaitable :meth:`sync_broadcast`."""
        return self._ws.broadcast(data)

    def sync_broadcast_to(
        self, room: Any, data: str | bytes | dict[str, Any] | list[Any], exclude_self: bool = False
    ) -> int:
        """Send ``data`` to every open connection in ``room`` (this one too,
        unless ``exclude_self``) on every worker process; returns how many
        of this process's connections accepted it."""
        return self._ws.broadcast_to(room, data, exclude=self if exclude_self else None)

    async def async_broadcast_to(
        self, room: Any, data: str | bytes | dict[str, Any] | list[Any], exclude_self: bool = False
    ) -> int:
        """Awaitable :meth:`sync_broadcast_to`."""
        return self.sync_broadcast_to(room, data, exclude_self)

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Close this connection: a Close frame with ``code`` and ``reason``
        (RFC 6455 §5.5.1) goes out at once, after the messages already
        queued, even while this connection's handler is suspended. Called by
        this connection's own handler while it runs, the Close follows that
        handler's return value (or goes when it next awaits something that
        suspends it). Afterwards sends to this connection are dropped and
        return False; the close handler runs once the client answers (or
        after ``close_timeout``). Returns False if the connection was already
        closing; raises ``ValueError`` for a code or reason a peer would
        reject (RFC 6455 §7.4), before anything is sent."""
        build_close(code, reason)
        return bool(self._on_loop(self._conn.close, code, reason))

    def __repr__(self) -> str:
        return f"<WebSocketConnector id={self.id} endpoint={self.endpoint!r}>"


def _rooms_of(conn: Connection) -> set[Any]:
    return set(conn.rooms) if conn.rooms else set()


# Parameter names that mean "the connector" or "the message" wherever they stand.
CONNECTOR_NAMES = frozenset(
    {"ws", "websocket", "websocket_connector", "connector", "conn", "connection", "socket", "client", "sock"}
)
MESSAGE_NAMES = frozenset({"msg", "message", "data", "payload", "text"})

# What a first-time user may write for an event, and the event meant.
_EVENT_HINTS = {"open": "connect", "opened": "connect", "connected": "connect", "disconnect": "close",
                "disconnected": "close", "closed": "close", "receive": "message", "messages": "message",
                "recv": "message", "connect": "connect", "message": "message", "close": "close"}


def _in_thread(bound: Callable[..., Any]) -> Callable[..., Any]:
    """Run a sync handler in the loop's default thread pool; the connection
    still handles its messages one at a time, in order."""

    async def run(*args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, bound, *args)

    return run


def _named_like(wrapper: Callable[..., Any], handler: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` carrying ``handler``'s name, for log lines about it."""
    if wrapper is not handler:
        try:
            wrapper.__qualname__ = getattr(handler, "__qualname__", repr(handler))
            wrapper.__name__ = getattr(handler, "__name__", wrapper.__qualname__)
        except (AttributeError, TypeError):
            pass
    return wrapper


class WebSocket:
    """A WebSocket endpoint of ``app`` at the path ``endpoint``.

    Register handlers with ``@ws.on("connect" | "message" | "close")``. The
    path may hold parameters (``/room/<room_id>`` or ``/room/:room_id``). A
    plain GET to the same path still reaches an HTTP route registered there.

    The connection table lives in the server that serves the app (one per
    event loop); :attr:`connections`, :meth:`rooms` and
    :meth:`room_members` are snapshots of it, and every send goes through it.
    """

    def __init__(
        self,
        app: EndpointOwner,
        endpoint: str,
        config: Config | None = None,
        dependencies: DependencyMap | None = None,
    ) -> None:
        if config is not None and not isinstance(config, Config):
            raise TypeError(f"config must be a robyn_fast.Config, not {type(config).__name__}")
        if config is not None and config.ssl is not None and config.ssl is not app.config.ssl:
            raise ValueError("Config.ssl is the server's (one listening socket): set it on the app's Config or "
                             "with app.start(ssl=...), not on one WebSocket endpoint")
        if dependencies is not None and not isinstance(dependencies, DependencyMap):
            raise TypeError(f"dependencies must be a DependencyMap, not {type(dependencies).__name__}")
        self.app = app
        self.endpoint = endpoint
        self.config: Config | None = config
        self.dependencies: DependencyMap = dependencies if dependencies is not None else app.dependencies
        self._path_param_names: tuple[str, ...] = tuple(compile_path(endpoint).param_names)
        self.handlers: dict[str, Callable[..., Any]] = {}
        self._bound: dict[str, Callable[..., Any]] = {}
        self._before_upgrade: UpgradeHook | None = None
        app.add_web_socket(endpoint, self)

    def before_upgrade(self, hook: UpgradeHook) -> UpgradeHook:
        """Register ``hook(request)`` (a decorator; it returns the hook), run
        for every upgrade request of this endpoint that passed the handshake
        checks (version, key, ``allowed_origins``, typed query parameters),
        before any ``101`` is sent: reading from the connection waits
        meanwhile, so no frame is read before the hook has accepted.

        ``request`` is a :class:`~robyn_fast.Request`: ``method``, ``url``
        (scheme ``ws``/``wss``, path), ``query_params``, ``path_params``,
        ``headers`` and ``ip_addr`` (the client, after ``forwarded_allow_ips``).
        The hook (sync, or async and then bounded by ``handshake_timeout``:
        503 when it takes longer) returns ``None`` or ``True`` to accept;
        ``False`` refuses with 403; an ``int`` with that status; a
        :class:`~robyn_fast.Response` (or a handler's other return values) is
        sent as it is, with its headers and body (a status below 300 is a
        mistake: 500). Raising :class:`~robyn_fast.exceptions.HTTPError` (or
        anything with an int ``status_code``, Robyn's ``HTTPException``)
        refuses with its status; any other exception is logged and answered
        with 500. A refusal closes the connection."""
        if not callable(hook):
            raise TypeError(f"before_upgrade takes a callable, not {type(hook).__name__}")
        self._before_upgrade = hook
        return hook

    def vet_upgrade(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], path_params: dict[str, str],
        client: str | None, scheme: str,
    ) -> bytes | None | Awaitable[bytes | None]:
        """What the server asks before the ``101``: None (accept), the refusal's
        response bytes, or an awaitable of one of them (the hook is async)."""
        hook = self._before_upgrade
        if hook is None:
            return None
        request = Request.from_target(method, target, Headers(headers), b"", scheme=scheme, ip_addr=client)
        request.path_params = dict(path_params)
        try:
            result = hook(request)
        except Exception as exc:
            return _hook_raised(hook, self.endpoint, exc)
        if inspect.isawaitable(result):
            return _awaited_verdict(hook, self.endpoint, result, self.effective_config.handshake_timeout)
        return _verdict(hook, self.endpoint, result)

    def on(self, event: str, *, threaded: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the handler for ``event`` ("connect", "message" or
        "close"); the decorator returns the handler unchanged.

        The handler's parameters are bound now, once (see :meth:`bind`); a
        parameter that cannot be bound raises ``TypeError`` here, never at
        run time. ``threaded=True`` runs a sync handler in a thread pool
        instead of on the event loop (for handlers that block). Connections
        opened before the decoration keep the handlers they started with.
        """
        if callable(event):
            raise TypeError(f"ws.on() takes the event name, not the handler: write @ws.on(\"message\") (or "
                            f"\"connect\", \"close\") above {getattr(event, '__qualname__', event)}(), not @ws.on")
        if event not in EVENTS:
            hint = _EVENT_HINTS.get(event.lower() if isinstance(event, str) else "")
            raise ValueError(f"unknown websocket event {event!r}; expected one of {', '.join(EVENTS)}"
                             + (f" (did you mean {hint!r}?)" if hint else ""))

        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(handler):
                raise TypeError(f"websocket {event} handler must be callable, not {type(handler).__name__}")
            bound = self.bind(event, handler)
            if threaded:
                if inspect.iscoroutinefunction(handler):
                    raise ValueError("threaded=True is for sync handlers; an async handler already yields")
                bound = _in_thread(bound)
            self._bound[event] = _named_like(bound, handler)
            self.handlers[event] = handler
            return handler

        return decorator

    def bind(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` as a function of ``(connector)`` (connect, close) or
        ``(connector, message)`` (message), the core's calling convention.

        Each parameter is resolved by these rules, in order: ``global_dependencies``
        and ``router_dependencies`` get those dicts; ``query_params`` the
        connector's QueryParams, ``path_params`` its dict; a parameter named
        like a path parameter of the endpoint gets its value; one named like an
        injected dependency gets that dependency (looked up at each call);
        ``ws``/``websocket``/``websocket_connector``/... get the connector and
        ``msg``/``message``/... the message; otherwise the first positional
        parameter is the connector and, for message handlers, the second the
        message. A parameter with a default that matches none is left to its
        default; any other raises ``TypeError`` naming the handler and the
        parameter.
        """
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            params = list(inspect.signature(handler).parameters.values())
        except (TypeError, ValueError):
            # No signature to read (some builtins): use the calling convention.
            return handler
        injected = self._known_dependency_names()
        path_names = set(self._path_param_names)
        sources: list[tuple[inspect.Parameter, Source]] = []
        taken_connector = taken_message = False
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            source: Source | None
            if p.name == "global_dependencies":
                source = Call(self._global_getter)
            elif p.name == "router_dependencies":
                source = Call(self._router_getter)
            elif p.name in ("query_params", "path_params"):
                source = Attr(0, p.name)
            elif p.name in path_names:
                source = Item(0, "path_params", p.name)
            elif p.name in injected:
                source = Dependency(p.name, self._dependency_maps())
            elif p.name in CONNECTOR_NAMES and not taken_connector:
                source, taken_connector = Arg(0), True
            elif p.name in MESSAGE_NAMES and event == "message" and not taken_message:
                source, taken_message = Arg(1), True
            elif p.kind is not p.KEYWORD_ONLY and not taken_connector:
                source, taken_connector = Arg(0), True
            elif p.kind is not p.KEYWORD_ONLY and event == "message" and not taken_message:
                source, taken_message = Arg(1), True
            else:
                source = None
            if source is None:
                if p.default is not p.empty:
                    continue
                if p.name in MESSAGE_NAMES and event != "message":
                    raise TypeError(
                        f"websocket {event} handler {name} has a parameter {p.name!r}, but {event} handlers "
                        "receive no message (only message handlers do): drop the parameter, or register the "
                        "handler with @ws.on(\"message\")"
                    )
                raise TypeError(
                    f"cannot bind parameter {p.name!r} of websocket {event} handler {name}: it is not the "
                    f"connector, the message, an injected dependency, a path parameter of {self.endpoint!r}, "
                    "global_dependencies, router_dependencies or query_params (inject dependencies before "
                    "decorating the handler)"
                )
            sources.append((p, source))
        return bind_parameters(handler, 2 if event == "message" else 1, sources)

    # -- dependency injection --------------------------------------------------------

    def inject(self, **kwargs: Any) -> None:
        """Dependencies for this endpoint's handlers only."""
        self.dependencies.add_router_dependency(self, **kwargs)

    def inject_global(self, **kwargs: Any) -> None:
        """Dependencies for every handler of the app."""
        self.app.dependencies.add_global_dependency(**kwargs)
        if self.dependencies is not self.app.dependencies:
            self.dependencies.add_global_dependency(**kwargs)

    def _global_getter(self, *_args: Any) -> dict[str, Any]:
        app_map = self.app.dependencies
        if self.dependencies is app_map:
            return app_map.get_global_dependencies()
        return {**app_map.get_global_dependencies(), **self.dependencies.get_global_dependencies()}

    def _router_getter(self, *_args: Any) -> dict[str, Any]:
        return {
            **self.app.dependencies.get_router_dependencies(self.app),
            **self.dependencies.get_router_dependencies(self),
        }

    def _known_dependency_names(self) -> set[str]:
        return set(self._global_getter()) | set(self._router_getter())

    def _dependency_maps(self) -> tuple[dict[str, Any], ...]:
        """Where an injected dependency is looked up, highest precedence first
        (live dicts: a later injection is seen)."""
        return (
            self.dependencies.get_router_dependencies(self),
            self.app.dependencies.get_router_dependencies(self.app),
            self.dependencies.get_global_dependencies(),
            self.app.dependencies.get_global_dependencies(),
        )

    @property
    def effective_config(self) -> Config:
        return self.config if self.config is not None else self.app.config

    # -- sending from anywhere ---------------------------------------------------

    def _server(self) -> Server | None:
        return self.app.server

    @property
    def connections(self) -> dict[str, WebSocketConnector]:
        """A snapshot of the open (and closing) connections of this endpoint
        in this process, by id (empty when the app is not being served)."""
        server = self._server()
        if server is None:
            return {}
        return server.inspect(self, _connectors, {})

    def send_to(self, recipient_id: str, data: str | bytes | dict[str, Any] | list[Any]) -> bool:
        """Send ``data`` to one connection of this endpoint; False if the id is
        unknown or the connection is closing. With worker processes, an id of
        another worker goes to that worker alone: True once handed to the bus
        (at-most-once; that worker drops it if the connection is gone), False
        when no live worker owns the id. Raises ``TypeError`` for a non-str id
        or a value that cannot be sent. Safe from any thread."""
        if not isinstance(recipient_id, str):
            raise TypeError(f"a connection id is a str, not {type(recipient_id).__name__}")
        frame = _frame(data)
        server = self._server()
        if server is None:
            return False
        return server.send_to(self, recipient_id, frame)

    def broadcast(self, data: str | bytes | dict[str, Any] | list[Any]) -> int:
        """Send ``data`` to every open connection of this endpoint: the frame
        is built once and the compiled loop queues the same bytes object to
        each; other worker processes get it over the bus. Returns how many of
        this process's connections accepted it. Safe from any thread."""
        frame = _frame(data)
        server = self._server()
        if server is None:
            return 0
        return server.broadcast(self, frame)

    def broadcast_to(
        self, room: Any, data: str | bytes | dict[str, Any] | list[Any], exclude: WebSocketConnector | None = None
    ) -> int:
        """Send ``data`` to every open connection in ``room``, but ``exclude``
        (a connector) if given, on every worker process; returns how many of
        this process's connections accepted it."""
        _check_room(room)
        if exclude is not None and not isinstance(exclude, WebSocketConnector):
            raise TypeError(f"exclude must be a WebSocketConnector, not {type(exclude).__name__}")
        frame = _frame(data)
        server = self._server()
        if server is None:
            return 0
        server.check_room(room)
        return server.broadcast(self, frame, room, exclude._conn if exclude is not None else None)

    def rooms(self) -> dict[Any, int]:
        """Room name -> number of connections in it (rooms with nobody in them vanish)."""
        server = self._server()
        if server is None:
            return {}
        return server.inspect(self, _room_sizes, {})

    def room_members(self, room: Any) -> list[str]:
        """The ids of the connections in ``room``, in the order they joined."""
        _check_room(room)
        server = self._server()
        if server is None:
            return []
        return server.inspect(self, lambda hub: list(hub.rooms.get(room, ())), [])

    async def cluster_connections(self, timeout: float = DEFAULT_PRESENCE_TIMEOUT) -> ClusterPresence:
        """The connections of this endpoint on every worker process and
        every host (over Redis): a mapping of id -> the node tag of the
        process that holds it. Asks every node once and waits at most
        ``timeout`` seconds for their answers; ``.complete`` is False (and
        ``.missing``, ``.silent`` say who) when some did not answer in
        time. Each node's part is a snapshot taken when the query reached
        it: a connection that comes or goes meanwhile may show or not.
        Without worker processes or a broker: this process's connections.
        Raises :class:`~robyn_fast.exceptions.ServerNotRunning` when the
        app is not being served."""
        return await self._cluster(None, timeout)

    async def cluster_room_members(self, room: Any, timeout: float = DEFAULT_PRESENCE_TIMEOUT) -> ClusterPresence:
        """The members of ``room`` on every worker process and host (see
        :meth:`cluster_connections`), each node's in the order they joined."""
        _check_room(room)
        return await self._cluster(room, timeout)

    async def _cluster(self, room: Any, timeout: float) -> ClusterPresence:
        if type(timeout) not in (int, float) or not 0 <= timeout <= 3600:
            raise ValueError(f"a presence timeout is a number of seconds from 0 to 3600, not {timeout!r}")
        server = self._server()
        if server is None:
            raise ServerNotRunning("the app is not being served")
        if room is not None:
            server.check_room(room)
        return await server.cluster_presence(self, room, float(timeout))

    # -- used by the server ---------------------------------------------------------

    def check_upgrade(self, query: str) -> None:
        """Called before the ``101``: raise
        :class:`~robyn_fast.exceptions.HandshakeError` to refuse the upgrade
        for this query string. Legacy endpoints accept every query."""

    def make_connector(self, server: Server, connector: WebSocketConnector, conn: Connection) -> Any:
        """The object the core hands this endpoint's handlers for the new
        connection ``conn``: the connector itself for legacy endpoints."""
        return connector

    def open_connection(
        self,
        server: Server,
        hub: Hub,
        transport: asyncio.Transport,
        initial: bytes,
        query: str,
        path_params: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        remote_addr: tuple[str, int] | None = None,
        deflate: DeflateParams | None = None,
        subprotocol: str | None = None,
    ) -> Connection:
        """Install a connection of this endpoint on ``transport`` (after the
        101 was written), in ``hub``, with permessage-deflate as agreed in
        ``deflate``, and run its connect handler."""
        conn_id = new_id()
        on_close = self._bound.get("close")
        if server.config.access_log or server.log_connections:
            on_close = _logged(on_close, self.endpoint, conn_id, remote_addr, lambda: conn.close_code,
                               access=server.config.access_log, debug=server.log_connections,
                               subprotocol=subprotocol, deflate=deflate is not None)
        conn = BufferedConnection(
            hub,
            conn_id,
            self._bound.get("connect"),
            self._bound.get("message"),
            on_close,
        )
        if deflate is not None:
            conn.enable_deflate(deflate)
        connector = WebSocketConnector(self, server, conn, conn_id, query, path_params, raw_headers, remote_addr,
                                       subprotocol)
        conn.connector = self.make_connector(server, connector, conn)
        transport.set_protocol(conn)
        conn.start(transport, initial)
        return conn

    def __repr__(self) -> str:
        return f"<WebSocket {self.endpoint!r} handlers={sorted(self.handlers)}>"


# Config.access_log: a line per WebSocket open and close; SafeRecords escapes every argument.
_access = get_logger("robyn_fast.access")
# At DEBUG (when the server started): a record per WebSocket accepted and closed.
_debug = get_logger("robyn_fast.websocket")


def _logged(
    on_close: Callable[..., Any] | None, path: str, conn_id: str,
    peer: tuple[str, int] | None, close_code: Callable[[], Any], *, access: bool, debug: bool,
    subprotocol: str | None, deflate: bool,
) -> Callable[..., Any]:
    """Logs the open now, and the close (with its duration and final close
    code) when the close job runs, before ``on_close``: as access-log lines
    (``access``) and as DEBUG records of ``robyn_fast.websocket`` (``debug``)."""
    started = time.perf_counter()
    where = f"{peer[0]}:{peer[1]}" if peer else "-"
    if access:
        _access.info("%s WS open %s id=%s", field(where), field(path), field(conn_id))
    if debug:
        _debug.debug("%s: WebSocket handshake for %s accepted: id=%s subprotocol=%s permessage-deflate=%s", where,
                     path, conn_id, subprotocol, "on" if deflate else "off")

    def logged(connector: Any) -> Any:
        took = time.perf_counter() - started
        if access:
            _access.info("%s WS close %s id=%s code=%s %.3fms", field(where), field(path), field(conn_id),
                         close_code(), took * 1000.0)
        if debug:
            _debug.debug("%s: WebSocket %s id=%s closed with code %s after %.3f s", where, path, conn_id,
                         close_code(), took)
        return on_close(connector) if on_close is not None else None

    return logged


def _connectors(hub: Hub) -> dict[str, WebSocketConnector]:
    return {key: conn.connector for key, conn in hub.connections.items()}


def _room_sizes(hub: Hub) -> dict[Any, int]:
    return {room: len(members) for room, members in hub.rooms.items()}


def _hook_name(hook: Any) -> str:
    return str(getattr(hook, "__qualname__", repr(hook)))


def _verdict(hook: Any, path: str, result: Any) -> bytes | None:
    """A before_upgrade hook's return value as None (accept) or a refusal's bytes."""
    if result is None or result is True:
        return None
    if result is False:
        return error_response(403, "the WebSocket upgrade was refused")
    if type(result) is int:
        if 300 <= result <= 599:
            return error_response(result)
    else:
        try:
            status, fields, body = render(result)
        except (TypeError, ValueError):
            pass
        else:
            if status >= 300:
                return serialize_response(status, fields, body, keep_alive=False)
    log.error("websocket %s: before_upgrade hook %s returned %r: expected None/True (accept), False, an HTTP "
              "status of 300 or more, or a Response with one (refuse); answered 500", path, _hook_name(hook),
              result if not isinstance(result, Response) else f"a Response with status {result.status_code}")
    return error_response(500)


def _hook_raised(hook: Any, path: str, exc: BaseException) -> bytes:
    status = getattr(exc, "status_code", None)
    if type(status) is int and 300 <= status <= 599:
        message = exc.message if isinstance(exc, HTTPError) else getattr(exc, "detail", None)
        headers = exc.headers if isinstance(exc, HTTPError) else None
        return error_response(status, message if isinstance(message, str) else None, headers)
    log.error("websocket %s: before_upgrade hook %s raised; upgrade refused with 500", path, _hook_name(hook),
              exc_info=exc)
    return error_response(500)


async def _awaited_verdict(hook: Any, path: str, pending: Awaitable[Any], timeout: float) -> bytes | None:
    try:
        result = await asyncio.wait_for(pending, timeout)
    except asyncio.TimeoutError:
        log.warning("websocket %s: before_upgrade hook %s did not finish within handshake_timeout (%.1fs); "
                    "upgrade refused with 503", path, _hook_name(hook), timeout)
        return error_response(503, "the WebSocket upgrade check did not finish in time", [("retry-after", "1")])
    except Exception as exc:
        return _hook_raised(hook, path, exc)
    return _verdict(hook, path, result)
