"""One server: one event loop in one process, serving one app.

:class:`Server` listens (on a host and port, or on a socket bound before it
starts), answers HTTP through :class:`~robyn_fast.http.protocol.HttpProtocol`,
and owns the WebSocket connection tables: one compiled
:class:`~robyn_fast._core.connection.Hub` per endpoint, which endpoints reach
through :meth:`Server.send_to`, :meth:`Server.broadcast` and
:meth:`Server.inspect` from any thread. It keeps every Task it starts
referenced until it is done, and shuts down gracefully
(:meth:`Server.shutdown`).

The app is read through :class:`ServedApp`, the small surface this module
needs; nothing here imports the app or the endpoints.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from ._core.connection import Hub, LoopResources, start_task
from ._core.protocol import Settings
from .broker import ALL, ROOM, TO, Broker, Key
from .broker.presence import ClusterPresence
from .config import Config
from .encoding import dumps
from .forwarded import TrustedProxies
from .logs import Throttle, get_logger, more_since
from .exceptions import ServerNotRunning
from .http.protocol import HttpHandler, HttpProtocol
from .http.routes import Routes
from .http.streaming import StreamedReply
from . import metrics
from .http.types import error_response, serialize_response
from .listener import Listener, listen
from .tls import transport_maker
from .websocket.extensions import DeflateParams
from .websocket.handshake import Agreement, accept_handshake, is_upgrade_request, negotiate_compression
from .websocket.ids import node_of, node_tag

__all__ = [
    "Server", "ServedApp", "ServedEndpoint", "ServerNotRunning", "run", "serve_until_stopped", "new_event_loop",
    "url_of", "base_url", "websocket_urls", "announce",
]

log = get_logger("robyn_fast.server")

T = TypeVar("T")

#: How long one client whose writes back up may hold back what other nodes
#: publish (see ``Server._congestion``). A client that reads keeps up again
#: within milliseconds; one that takes nothing for this long is left to its
#: endpoint's backpressure policy and no longer holds the bus.
BUS_HOLD_GRACE = 1.0


class ServedEndpoint(Protocol):
    """What the server needs of a WebSocket endpoint."""

    endpoint: str

    @property
    def effective_config(self) -> Config: ...

    def check_upgrade(self, query: str) -> None: ...

    def vet_upgrade(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], path_params: dict[str, str],
        client: str | None, scheme: str,
    ) -> bytes | None | Awaitable[bytes | None]: ...

    def open_connection(
        self, server: Server, hub: Hub, transport: asyncio.Transport, initial: bytes, query: str,
        path_params: dict[str, str], raw_headers: list[tuple[bytes, bytes]], remote_addr: tuple[str, int] | None,
        deflate: DeflateParams | None = None, subprotocol: str | None = None,
    ) -> Any: ...


class ServedApp(Protocol):
    """What the server needs of an application (``robyn_fast.Robyn``)."""

    config: Config

    @property
    def startup_handlers(self) -> Sequence[Callable[[], Any]]: ...

    @property
    def shutdown_handlers(self) -> Sequence[Callable[[], Any]]: ...

    def websocket_endpoints(self) -> Sequence[ServedEndpoint]: ...

    def match_websocket(self, path: str) -> tuple[ServedEndpoint, dict[str, str]] | None: ...

    @property
    def routes(self) -> Routes: ...

    def attach_server(self, server: Server) -> None: ...

    def detach_server(self, server: Server) -> None: ...


class Server:
    """A running server: the listening socket, every live connection, the
    connection tables of the app's WebSocket endpoints, and the Tasks it
    started.

    Create it, then ``await start(...)`` on ``loop`` (its thread becomes the
    server's thread), ``await stopping.wait()`` or set it, ``await
    shutdown()``.
    """

    def __init__(self, app: ServedApp, loop: asyncio.AbstractEventLoop, *, broker: Broker | None = None) -> None:
        self.app = app
        self.loop = loop
        self.broker = broker
        self.config: Config = app.config
        # Middleware chains were resolved as they were registered; once more
        # for the global header collections, which an app may edit directly.
        app.routes.resolve()
        self.handle_http: HttpHandler = app.routes.handle
        # what _handle_with_metrics passes other requests to
        self._route_request: HttpHandler = self.handle_http
        # Config.forwarded_allow_ips: the peers whose forwarding headers (and PROXY headers) are believed.
        self.proxies = TrustedProxies(self.config.forwarded_allow_ips)
        if self.config.metrics_path is not None:
            self.handle_http = self._handle_with_metrics
        self._broker_timer: asyncio.TimerHandle | None = None
        # Clients whose transport is over its write high-water mark -> loop time it got there
        # (those that hold back the broker's deliveries; see _congestion).
        self._backed_up: dict[Any, float] = {}
        self._delivery_held = False
        self._hold_timer: asyncio.TimerHandle | None = None
        self.context: contextvars.Context = contextvars.copy_context()
        #: DEBUG records of each WebSocket accepted and closed (robyn_fast.websocket at DEBUG when the
        #: server was made: the check is made once, not per connection).
        self.log_connections: bool = get_logger("robyn_fast.websocket").isEnabledFor(logging.DEBUG)
        self.hubs: dict[ServedEndpoint, Hub] = {}
        # The flush, read buffer and deadline sweep every endpoint of this loop shares.
        self.ws_resources: LoopResources | None = None
        self._by_path: dict[str, ServedEndpoint] = {}
        self._unknown_endpoint = Throttle(10.0)  # broker messages for an endpoint this app lacks
        self.http_connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Future[Any]] = set()
        self.listeners: list[Listener] = []
        self.stopping = asyncio.Event()
        self._thread: int | None = None
        self._running = False
        self._shutting_down = False
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._calls_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None,
                    sockets: Sequence[socket.socket] = ()) -> None:
        """Run the startup hooks, then listen on ``host:port`` (every address
        ``host`` resolves to: :func:`robyn_fast.listener.listen`) or accept on
        ``sock`` or ``sockets`` (listening already, e.g. bound by the launch
        path; ``ValueError`` for one that is not). Raises ``OSError``
        when the address cannot be bound and
        :class:`~robyn_fast.exceptions.InvalidState` when another server
        already serves the app."""
        given = [sock] if sock is not None else list(sockets)
        if sock is not None and sockets:
            raise TypeError("Server.start() takes sock or sockets, not both")
        if not given and port is None:
            raise TypeError("Server.start() needs a port (with a host) or bound sockets")
        if given and (host is not None or port is not None):
            raise TypeError("Server.start() takes a host and port or sockets, not both")
        self.app.attach_server(self)
        self._thread = threading.get_ident()
        self._running = True
        self.context = contextvars.copy_context()
        listening: list[socket.socket] = []
        try:
            for endpoint in self.app.websocket_endpoints():
                self.hub(endpoint)
            if self.broker is not None:
                await self.broker.start(self.loop, self._deliver, self._answer)
                if self.config.metrics_path is not None:
                    self._record_broker()
            for hook in self.app.startup_handlers:
                await _maybe_await(hook())
            tls = self._tls_arguments()
            connect = None
            if self.config.ssl is not None:
                connect, how = transport_maker(self.loop, self.config.ssl, self.config.tls_transport)
                log.info("TLS through %s", how)
            if given:
                listening = given
                for one in given:
                    if not one.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                        raise ValueError(f"socket {one.getsockname()!r} is not listening (robyn_fast.listener.listen "
                                         "makes listening sockets)")
            elif port is not None:
                listening = listen(host, port, self.config.backlog)
            # Our own accept(), on uvloop and asyncio alike: robyn_fast.listener
            # says why (running out of file descriptors).
            # (On a TLS port a refused connection is closed without a word: a
            # cleartext 503 would mean nothing to a TLS client.)
            refusal = b"" if tls else error_response(
                503, "the server has no file descriptor left for a connection; retry later", [("retry-after", "1")])
            for one in listening:
                self.listeners.append(Listener(self.loop, one, lambda: HttpProtocol(self), refusal, tls, connect))
            for listener in self.listeners:
                listener.start()
        except BaseException:
            for listener in self.listeners:
                listener.close()
            for one in listening[len(self.listeners):]:
                one.close()
            if self.broker is not None:
                with contextlib.suppress(Exception):  # its tasks and connections go too; the first error stands
                    await self.broker.close()
            self._stopped()
            raise

    def stop(self) -> None:
        """Ask the server to shut down gracefully: sets :attr:`stopping` on its
        loop, from any thread (whoever awaits it, :func:`serve_until_stopped`,
        runs :meth:`shutdown`)."""
        if threading.get_ident() == self._thread:
            self.stopping.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
            self.loop.call_soon_threadsafe(self.stopping.set)

    def _tls_arguments(self) -> dict[str, Any]:
        """``connect_accepted_socket``'s TLS arguments: the context, the handshake
        bounded by ``handshake_timeout`` (it comes before the HTTP request the
        HTTP timers watch) and the close_notify exchange by ``close_timeout``."""
        context = self.config.ssl
        if context is None:
            return {}
        return {"ssl": context, "ssl_handshake_timeout": self.config.handshake_timeout,
                "ssl_shutdown_timeout": self.config.close_timeout}

    @property
    def tls(self) -> bool:
        """True when this server speaks TLS (https, wss)."""
        return self.config.ssl is not None

    @property
    def sockets(self) -> list[socket.socket]:
        return [listener.sock for listener in self.listeners]

    async def shutdown(self) -> None:
        """Stop accepting; send Close 1001 to every WebSocket at once
        (whatever its handler is doing) and close idle HTTP connections; wait
        up to the longest ``close_timeout`` for every connection to close and
        every close handler (sync or async) and HTTP request to finish; then
        drop what is left, cancel the handler Tasks still running and give
        their close handlers a moment; run the shutdown hooks."""
        self._shutting_down = True
        try:
            for listener in self.listeners:
                listener.close()
            hubs = list(self.hubs.items())
            timeout = max((ep.effective_config.close_timeout for ep, _ in hubs), default=self.config.close_timeout)
            for _, hub in hubs:
                hub.close_all(1001, "server shutting down")
            for proto in list(self.http_connections):
                proto.close_idle()
            if not await self._settled(timeout):
                cancelled = sum(hub.abort_all() for hub in list(self.hubs.values()))
                for proto in list(self.http_connections):
                    proto.abort()
                for task in list(self.tasks):
                    cancelled += task.cancel()
                if cancelled:
                    log.warning("shutdown: %d handler(s) still running after %.1fs were cancelled",
                                cancelled, timeout)
                if not await self._settled(min(timeout, 1.0)):
                    log.warning("shutdown: close handlers still running after the grace period: %s",
                                ", ".join(f"{ep.endpoint}: {hub.live}" for ep, hub in self.hubs.items() if hub.live))
            for hook in self.app.shutdown_handlers:
                try:
                    await _maybe_await(hook())
                except Exception:
                    log.exception("shutdown handler failed")
            if self.broker is not None:
                # Last: close handlers and hooks may still publish to other workers.
                await self.broker.close()
        finally:
            self._stopped()

    async def _settled(self, timeout: float) -> bool:
        """Wait until no WebSocket is live, no HTTP request is in progress and
        no Task of ours runs; False if ``timeout`` passed first."""
        waiters = [hub.wait_idle() for hub in self.hubs.values()]
        deadline = self.loop.time() + timeout
        try:
            if waiters:
                await asyncio.wait(waiters, timeout=timeout)
            while True:
                busy = [p for p in self.http_connections if not p.close_idle()]
                pending = [t for t in self.tasks if not t.done()]
                if not busy and not pending and all(hub.live == 0 for hub in self.hubs.values()):
                    return True
                left = deadline - self.loop.time()
                if left <= 0:
                    return False
                if pending:
                    await asyncio.wait(pending, timeout=left)
                else:
                    # HTTP requests in progress with nothing of ours to wait on
                    # (their handlers are sync, or their bodies still arrive).
                    await asyncio.sleep(min(0.02, left))
        finally:
            for fut in waiters:
                fut.cancel()

    def _stopped(self) -> None:
        if self._broker_timer is not None:
            self._broker_timer.cancel()
            self._broker_timer = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._backed_up.clear()
        self._delivery_held = False
        self.app.detach_server(self)
        with self._calls_lock:
            self._running = False
            calls, self._calls = self._calls, set()
        for fut in calls:
            fut.cancel()

    # -- WebSocket connection tables ---------------------------------------------------

    def hub(self, endpoint: ServedEndpoint) -> Hub:
        """``endpoint``'s connection table on this server (created on first use)."""
        hub = self.hubs.get(endpoint)
        if hub is None:
            config = endpoint.effective_config
            if self.ws_resources is None:
                self.ws_resources = LoopResources(self.loop)
            hub = self.hubs[endpoint] = Hub(self.loop, Settings.from_config(config), json_dumps=dumps,
                                            context=self.context, resources=self.ws_resources)
            if self.broker is not None:
                hub.on_congestion = self._congestion
                # This node serves the endpoint; its rooms reach it while it has members in them.
                self.broker.watch(endpoint.endpoint, None)
                hub.on_room = _room_watcher(self.broker, endpoint.endpoint)
            if config.max_message_size is None and config.compression != "off":
                log.warning("websocket %s: max_message_size=None, so permessage-deflate is declined (nothing would "
                            "bound what a compressed message inflates to); set a max_message_size to compress",
                            endpoint.endpoint)
            self._by_path[endpoint.endpoint] = endpoint
        return hub

    def check_room(self, room: Any) -> None:
        """TypeError for a room name the broker cannot carry to other
        workers (with one, room names are str or int)."""
        if self.broker is not None and type(room) is not str and type(room) is not int:
            raise TypeError(
                f"with worker processes a room name is a str or an int (it travels between them), "
                f"not {type(room).__name__}"
            )

    def stats(self) -> dict[str, Any]:
        """Live WebSocket connections and handler Tasks of this server, the
        messages it compressed (permessage-deflate: a broadcast counts once
        per window size), its broker's counters (``None`` without one), and
        the messages other nodes sent for an endpoint this app does not have
        (``unknown_endpoint``, ignored)."""
        return {
            "pid": os.getpid(),
            "connections": self.live_connections,
            "tasks": self.live_tasks,
            "compressions": sum(hub.compressions for hub in self.hubs.values()),
            "broker": self.broker.stats() if self.broker is not None else None,
            "unknown_endpoint": self._unknown_endpoint.count,
            "counters": metrics.counters(),
        }

    # -- metrics ------------------------------------------------------------------------

    def _record_broker(self) -> None:
        """Copy the broker's figures into this process's counters, where the
        worker serving a scrape sums them; again every second."""
        self._broker_timer = None
        if self.broker is None or not self._running:
            return
        metrics.record_broker(self.broker.stats())
        self._broker_timer = self.loop.call_later(1.0, self._record_broker)

    def _handle_with_metrics(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool,
        peer: str | None, scheme: str = "http",
    ) -> bytes | StreamedReply | Awaitable[bytes | StreamedReply]:
        """Config.metrics_path answers the Prometheus text of every worker's
        counters; every other request goes to the app's routes."""
        if target.partition("?")[0] != self.config.metrics_path:
            return self._route_request(method, target, headers, body, keep_alive, peer, scheme)
        if method not in ("GET", "HEAD"):
            return error_response(405, None, [("allow", "GET, HEAD")], keep_alive=keep_alive)
        if self.broker is not None:
            metrics.record_broker(self.broker.stats())
        text = metrics.exposition(metrics.totals(), self.broker is not None)
        return serialize_response(200, [("content-type", metrics.CONTENT_TYPE), ("cache-control", "no-store")],
                                  text.encode("utf-8"), keep_alive=keep_alive, head=method == "HEAD")

    @property
    def live_connections(self) -> int:
        """WebSocket connections started whose close handler has not finished."""
        return sum(hub.live for hub in self.hubs.values())

    @property
    def live_tasks(self) -> int:
        """Handler Tasks (WebSocket and HTTP) started and not yet done."""
        return sum(hub.live_tasks for hub in self.hubs.values()) + len(self.tasks)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the server's loop, and its result (or exception).

        On the loop's thread it runs at once; from another thread the caller
        waits until the loop has run it. Raises :class:`ServerNotRunning` if
        the server has stopped, or stops before running it."""
        if threading.get_ident() == self._thread:
            return fn(*args)
        if not self._running:
            raise ServerNotRunning("the server is not running")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

        with self._calls_lock:
            if not self._running:
                raise ServerNotRunning("the server is not running")
            self._calls.add(fut)
        try:
            self.loop.call_soon_threadsafe(run)
            return fut.result()
        except concurrent.futures.CancelledError:
            raise ServerNotRunning("the server stopped before the call ran") from None
        except RuntimeError as exc:
            if self.loop.is_closed():
                raise ServerNotRunning("the server's event loop is closed") from exc
            raise
        finally:
            with self._calls_lock:
                self._calls.discard(fut)

    def inspect(self, endpoint: ServedEndpoint, fn: Callable[[Hub], T], default: T) -> T:
        """``fn(hub)`` on the loop for ``endpoint``'s hub (a snapshot taken
        there); ``default`` when the server is not running."""
        try:
            return self.call(lambda: fn(self.hub(endpoint)))
        except ServerNotRunning:
            return default

    def send_to(self, endpoint: ServedEndpoint, conn_id: str, frame: bytes) -> bool:
        """Queue ``frame`` to the connection ``conn_id`` of ``endpoint``;
        False if there is none or it is closing."""
        try:
            return self.call(self._send_to, endpoint, conn_id, frame)
        except ServerNotRunning:
            return False

    def broadcast(self, endpoint: ServedEndpoint, frame: bytes, room: Any = None, exclude: Any = None) -> int:
        """Queue ``frame`` to every open connection of ``endpoint`` (of
        ``room`` if given), but ``exclude``; how many accepted it."""
        try:
            return self.call(self._broadcast, endpoint, frame, room, exclude)
        except ServerNotRunning:
            return 0

    def _send_to(self, endpoint: ServedEndpoint, conn_id: str, frame: bytes) -> bool:
        conn = self.hub(endpoint).connections.get(conn_id)
        if conn is not None:
            return bool(conn.send_frame_bytes(frame))
        broker = self.broker
        if broker is None:
            return False
        node = node_of(conn_id)
        if node is None or node == broker.node:
            return False
        return broker.publish_to(node, endpoint.endpoint, conn_id, frame)

    def _broadcast(self, endpoint: ServedEndpoint, frame: bytes, room: Any, exclude: Any) -> int:
        hub = self.hub(endpoint)
        # Local recipients first, then one message per other node.
        if room is None:
            count = hub.broadcast_frame(frame, exclude)
        else:
            count = hub.broadcast_room(room, frame, exclude)
        if self.broker is not None:
            self.broker.publish(ALL if room is None else ROOM, endpoint.endpoint, room, frame)
        return count

    def _congestion(self, conn: Any, backed_up: bool) -> None:
        """A client's transport went over its write high-water mark
        (``backed_up``), or back under its low mark, or the connection is gone.

        While any client is backed up, the broker holds back what other
        nodes publish (:meth:`Broker.pause_delivery`: they keep it, within
        their bounds, and count what they drop), so a burst from the bus (a
        worker that resumes after a stall reads megabytes at once) reaches
        the clients at the pace they take it instead of piling up past
        ``max_backpressure``. One client holds the bus for at most
        ``BUS_HOLD_GRACE`` seconds per episode: one that reads nothing must
        not stop delivery to the others."""
        if backed_up:
            self._backed_up.setdefault(conn, self.loop.time())
        elif self._backed_up.pop(conn, None) is None:
            return  # no longer holding (its grace ran out), or never was
        self._hold_delivery()

    def _hold_delivery(self) -> None:
        held = bool(self._backed_up)
        broker = self.broker
        if held != self._delivery_held and broker is not None:
            self._delivery_held = held
            if held:
                broker.pause_delivery()
            else:
                broker.resume_delivery()
        if held and self._hold_timer is None:
            first = min(self._backed_up.values())
            self._hold_timer = self.loop.call_at(first + BUS_HOLD_GRACE, self._hold_expired)

    def _hold_expired(self) -> None:
        self._hold_timer = None
        cutoff = self.loop.time() - BUS_HOLD_GRACE
        for conn, since in list(self._backed_up.items()):
            if since <= cutoff:
                del self._backed_up[conn]
        self._hold_delivery()

    def _answer(self, path: str, room: Key) -> list[str] | None:
        """This node's part of a presence query: the ids of the connections
        of the endpoint at ``path`` (``room`` None) or of its room ``room``
        (None: no such endpoint here)."""
        endpoint = self._by_path.get(path)
        if endpoint is None:
            return None
        hub = self.hub(endpoint)
        return list(hub.connections if room is None else hub.rooms.get(room, ()))

    async def cluster_presence(self, endpoint: ServedEndpoint, room: Key, timeout: float) -> ClusterPresence:
        """Who is connected to ``endpoint`` (``room`` None) or in its room
        ``room`` on every node (:meth:`Broker.presence`); this process's
        connections alone, complete, without a broker. Runs on the
        server's loop (awaited from another loop, it runs there)."""
        if not self._running:
            raise ServerNotRunning("the server is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            future = asyncio.run_coroutine_threadsafe(self.cluster_presence(endpoint, room, timeout), self.loop)
            return await asyncio.wrap_future(future)
        local = self._answer(endpoint.endpoint, room) or []
        broker = self.broker
        if broker is None:
            tag = node_tag() or 0
            return ClusterPresence(dict.fromkeys(local, tag), (tag,))
        return await broker.presence(endpoint.endpoint, room, local, timeout)

    def _deliver(self, kind: int, path: str, key: Any, frame: bytes) -> None:
        """What another node published, for this node's connections."""
        endpoint = self._by_path.get(path)
        if endpoint is None:
            # Another app on the same broker prefix, or a forged message: counted, one line per 10 s at most.
            unreported = self._unknown_endpoint.hit()
            if unreported is not None:
                log.warning("bus: a message for %r, which is not a WebSocket endpoint of this app (another app "
                            "on the same broker prefix?); ignored%s", path, more_since(unreported))
            return
        hub = self.hub(endpoint)
        if kind == ALL:
            hub.broadcast_frame(frame)
        elif kind == ROOM:
            hub.broadcast_room(key, frame)
        elif kind == TO:
            conn = hub.connections.get(key)
            if conn is not None:
                conn.send_frame_bytes(frame)

    # -- HttpHost (what each HttpProtocol asks of the server) ---------------------------

    def websocket_upgrade(
        self, path: str, parser_upgrade: bool, headers: list[tuple[bytes, bytes]]
    ) -> tuple[ServedEndpoint, dict[str, str]] | None:
        match = self.app.match_websocket(path)
        if match is None or not (parser_upgrade or is_upgrade_request(headers)):
            return None
        return match

    def accept_websocket(
        self, endpoint: ServedEndpoint, method: str, version: str, headers: list[tuple[bytes, bytes]],
        query: str = "",
    ) -> tuple[bytes, Agreement]:
        config = endpoint.effective_config
        response, subprotocol = accept_handshake(
            method, version, headers, subprotocols=config.subprotocols or None, allowed_origins=config.allowed_origins
        )
        endpoint.check_upgrade(query)
        # Without a message size limit nothing would bound what a small compressed frame
        # inflates to (a decompression bomb): compression is declined then.
        mode = config.compression if config.max_message_size is not None else "off"
        response, deflate = negotiate_compression(response, headers, mode, window_bits=config.compression_window_bits)
        return response, Agreement(deflate, subprotocol)

    def vet_websocket(
        self, endpoint: ServedEndpoint, method: str, target: str, headers: list[tuple[bytes, bytes]],
        path_params: dict[str, str], client: str | None, scheme: str,
    ) -> bytes | None | Awaitable[bytes | None]:
        return endpoint.vet_upgrade(method, target, headers, path_params, client, scheme)

    def open_websocket(
        self, endpoint: ServedEndpoint, transport: asyncio.Transport, initial: bytes, query: str,
        path_params: dict[str, str], headers: list[tuple[bytes, bytes]], peer: tuple[str, int] | None,
        agreed: Agreement | None = None,
    ) -> None:
        hub = self.hub(endpoint)
        deflate, subprotocol = agreed if agreed is not None else (None, None)
        endpoint.open_connection(self, hub, transport, initial, query, path_params, headers, peer, deflate,
                                 subprotocol)
        if self._shutting_down:
            # A handshake that completed while shutdown was under way.
            hub.close_all(1001, "server shutting down")

    def start_task(self, coro: Awaitable[Any], context: contextvars.Context) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = start_task(self.loop, coro, context)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return task

    def connection_opened(self, protocol: HttpProtocol) -> None:
        self.http_connections.add(protocol)

    def connection_closed(self, protocol: HttpProtocol) -> None:
        self.http_connections.discard(protocol)


def _room_watcher(broker: Broker, path: str) -> Callable[[Any, bool], None]:
    """A hub's ``on_room``: a room of the endpoint at ``path`` got its first
    member on this node, or lost its last: the broker subscribes or lets go."""
    watch, unwatch = broker.watch, broker.unwatch

    def on_room(room: Any, occupied: bool) -> None:
        if type(room) is str or type(room) is int:  # what check_room lets in with a broker
            (watch if occupied else unwatch)(path, room)

    return on_room


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


def new_event_loop(choice: str | None = None) -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's otherwise.

    ``choice`` (by default ``ROBYN_FAST_LOOP``): ``"asyncio"`` forces
    asyncio's loop, ``"uvloop"`` uvloop's (ImportError if it is missing)."""
    if choice is None:
        choice = os.environ.get("ROBYN_FAST_LOOP", "")
    elif choice not in ("asyncio", "uvloop"):
        raise ValueError(f"expected 'asyncio' or 'uvloop', not {choice!r}")
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


async def serve_until_stopped(
    server: Server,
    sockets: Sequence[socket.socket],
    *,
    handle_signals: bool = True,
    on_ready: Callable[[Server], Awaitable[None]] | None = None,
    on_serving: Callable[[str], None] | None = None,
) -> None:
    """Start ``server`` on ``sockets`` (listening, from
    :func:`robyn_fast.listener.listen`), serve until :meth:`Server.stop`
    (``handle_signals``: SIGINT and SIGTERM too, where this thread may
    handle them) or until the awaiting Task is cancelled, then shut down
    gracefully; the cancellation goes on after the shutdown.

    ``on_ready`` (a worker's, a test's) is awaited once the server accepts,
    instead of the "serving on" record; ``on_serving(url)`` is called after
    that record. Both records ("serving on", "shutting down") are INFO
    records of ``robyn_fast.server``: what logging shows is the user's
    choice."""
    loop = server.loop
    await server.start(sockets=sockets)
    installed: list[signal.Signals] = []
    try:
        # In one run of the loop: uvloop listens for signals only while its
        # loop runs, so a SIGTERM arriving between two run_until_complete()
        # calls (just after the announcement) was lost.
        for sig in (signal.SIGINT, signal.SIGTERM) if handle_signals else ():
            try:
                loop.add_signal_handler(sig, server.stopping.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        try:
            if on_ready is not None:
                await on_ready(server)
            else:
                urls = [url_of(s, tls=server.tls) for s in server.sockets]
                log.info("robyn_fast: serving on %s%s", ", ".join(urls), websocket_urls(server.app, urls[:1]))
                if on_serving is not None and urls:
                    on_serving(urls[0])
            await server.stopping.wait()
        finally:
            if on_ready is None:
                log.info("robyn_fast: shutting down")
            await server.shutdown()
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


def run(
    app: ServedApp,
    sockets: Sequence[socket.socket],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    broker: Broker | None = None,
    on_ready: Callable[[Server], Awaitable[None]] | None = None,
    on_serving: Callable[[str], None] | None = None,
    handle_signals: bool = True,
) -> int:
    """Serve ``app`` on ``sockets`` on a new event loop of this thread
    (:func:`serve_until_stopped`) until SIGINT or SIGTERM or
    :meth:`Server.stop`, then close the loop (cancelling the Tasks the app
    left); returns the process exit code (0).

    ``broker`` joins this server to the other nodes (a worker's
    :class:`~robyn_fast.broker.local.LocalBus`, or a Redis node). Binding,
    and saying that an address cannot be bound, is the launch path's
    (:mod:`robyn_fast.workers.launch`).
    """
    loop = (loop_factory or new_event_loop)()
    asyncio.set_event_loop(loop)
    server = Server(app, loop, broker=broker)
    try:
        loop.run_until_complete(serve_until_stopped(server, sockets, handle_signals=handle_signals,
                                                    on_ready=on_ready, on_serving=on_serving))
        return 0
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def url_of(sock: socket.socket, *, tls: bool = False) -> str:
    """The URL a listening socket serves: ``http://`` or, with ``tls``, ``https://``."""
    name = sock.getsockname()
    if isinstance(name, tuple):
        return base_url(name[0], name[1], tls=tls)
    return f"unix:{name}"


def base_url(host: str, port: int, *, tls: bool = False) -> str:
    """``http://host:port`` (``https://`` with ``tls``; IPv6 hosts in brackets)."""
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def websocket_urls(app: ServedApp, urls: Sequence[str]) -> str:
    """For the start-up line: ``; WebSocket: ws://.../path, ...`` for the app's
    endpoints at the first of ``urls`` (``wss://`` over TLS); empty when
    there is none."""
    if not urls or not urls[0].startswith("http"):
        return ""
    base = "ws" + urls[0][len("http"):]
    paths = [ep.endpoint for ep in app.websocket_endpoints()]
    return f"; WebSocket: {', '.join(base + p for p in paths)}" if paths else ""


def announce(message: str) -> None:
    """Say ``message`` as an INFO record of ``robyn_fast.server`` (the
    supervisor's "serving on ... with N worker processes")."""
    log.info("%s", message)


def _cancel_all(loop: asyncio.AbstractEventLoop, grace: float = 1.0) -> None:
    """Cancel the Tasks still on ``loop`` (the app's own, after shutdown) and
    give them ``grace`` seconds to finish; one that ignores cancellation is
    left behind with a log line instead of hanging the exit."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
        if pending:
            log.warning("exit: %d task(s) ignored cancellation: %s", len(pending),
                        ", ".join(sorted({str(getattr(t.get_coro(), "__qualname__", t)) for t in pending})))
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" at exit
