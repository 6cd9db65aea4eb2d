"""The application object, in Robyn's shape: ``app = Robyn(__file__)``, route
decorators, WebSocket endpoints, startup/shutdown hooks, ``app.start()``.

The app is a registry: it holds routes, endpoints, hooks and dependencies,
and the server reads them through a small public surface
(:attr:`Robyn.routes`, :meth:`Robyn.websocket_endpoints`,
:meth:`Robyn.match_websocket`, :attr:`Robyn.startup_handlers`,
:attr:`Robyn.shutdown_handlers`). While a server serves it, :attr:`Robyn.server`
is that server; WebSocket endpoints send through it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from ssl import SSLContext
from typing import TYPE_CHECKING, Any, TypedDict

from .config import Config
from .dependency_injection import DependencyMap
from .exceptions import ConfigError, InvalidState
from .logs import AUTO, LogConfig, configure_logging, get_logger
from .http.files import directory_handler
from .http.middleware import AFTER, BEFORE, Middlewares
from .http.router import Router, join_prefix
from .http.routes import Routes
from .http.types import Headers, Response
from .openapi import SWAGGER_UI_FILES, OpenAPI, RouteDoc, local_swagger_ui
from . import cli, metrics
from .server import ServedEndpoint, Server
from .sessions import DEFAULT_MAX_AGE, SessionManager
from .websocket.receive import websocket_decorator
from .workers.launch import launch, serve as serve_on_this_loop

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Robyn", "RouteOptions", "starts"]

log = get_logger("robyn_fast.app")

Handler = Callable[..., Any]


class RouteOptions(TypedDict, total=False):
    """The keyword-only arguments of :meth:`Robyn.add_route` that the route
    decorators (``@app.get(...)``...) pass on."""

    status_code: int | None
    response_model: Any
    responses: dict[int | str, Any] | None
    deprecated: bool
    include_in_schema: bool


class Robyn:
    """A web application: HTTP routes and WebSocket endpoints.

    ``file_object`` is the calling script's ``__file__`` (as in Robyn).
    ``config`` holds every limit and timeout (see :class:`~robyn_fast.config.Config`).
    """

    def __init__(self, file_object: str, config: Config | None = None) -> None:
        if config is not None and not isinstance(config, Config):
            raise TypeError(f"config must be a robyn_fast.Config, not {type(config).__name__}")
        self.file_path = file_object
        self.directory_path = os.path.dirname(os.path.abspath(file_object))
        self._env_file_names: list[str] = []
        self._env_file_error: cli.UsageError | None = None
        self._read_env_file()
        self.config: Config = config if config is not None else Config()
        self.dependencies = DependencyMap()
        self.routes = Routes(self.dependencies, self, self._is_websocket_path)
        self._ws_router: Router[ServedEndpoint] = Router()
        self._ws_by_path: dict[str, ServedEndpoint] = {}
        self._startup_handlers: list[Callable[[], Any]] = []
        self._shutdown_handlers: list[Callable[[], Any]] = []
        self._server: Server | None = None
        self._server_lock = threading.Lock()
        self._included_routers: list[Robyn] = []
        #: (method, path, handler, openapi_name, openapi_tags) of each route, for the OpenAPI document.
        self._described: list[RouteDoc] = []
        self.openapi = OpenAPI()
        self._session_manager: SessionManager | None = None

    def _read_env_file(self) -> None:
        """As Robyn: robyn.env next to the app fills in variables not set yet."""
        try:
            self._env_file_names = cli.load_env_file(self.directory_path)
        except cli.UsageError as exc:  # reported by start(), as every other usage error
            self._env_file_error = exc

    @property
    def router(self) -> Router[Any]:
        """The HTTP router (method and path to route)."""
        return self.routes.router

    # -- routes -----------------------------------------------------------------

    def add_route(self, route_type: str, endpoint: str, handler: Handler, const: bool = False,
                  auth_required: bool = False, openapi_name: str = "", openapi_tags: list[str] | None = None,
                  *, status_code: int | None = None, response_model: Any = None,
                  responses: dict[int | str, Any] | None = None, deprecated: bool = False,
                  include_in_schema: bool = True) -> Handler:
        """Register ``handler`` for ``route_type`` (an HTTP method) at
        ``endpoint``. Its parameters are bound now: ``TypeError`` for one
        that cannot be (see :func:`robyn_fast.http.routes.bind_http`).
        ``auth_required``: the request goes through the authentication
        handler first (:meth:`configure_authentication`). ``status_code``:
        the status of a response made from the handler's return value (a
        ``Response`` it returns keeps its own). ``response_model``: the
        success response's schema in the OpenAPI document (instead of the
        return annotation's); a pydantic 2 model (anything with
        ``model_validate`` and ``model_dump_json``) also validates a returned
        ``dict`` and sends the model's JSON, as in Robyn 0.88 (a dict that
        does not validate is the handler's error: 500, or ``@app.exception``).
        The rest is for the OpenAPI document (:meth:`serve_openapi`):
        ``openapi_name`` (the summary), ``openapi_tags``, ``responses`` (more responses
        by status: a description, or a Response Object whose ``model`` gives
        its schema), ``deprecated``, and ``include_in_schema=False`` to leave
        the route out."""
        if status_code is not None and (isinstance(status_code, bool) or not isinstance(status_code, int)
                                        or not 100 <= status_code <= 599):
            raise ValueError(f"status_code must be an HTTP status (100-599), not {status_code!r}")
        if responses is not None and not isinstance(responses, dict):
            raise TypeError(f"responses must be a dict of status to response, not {type(responses).__name__}")
        model = response_model if callable(getattr(response_model, "model_validate", None)) else None
        self.routes.add(route_type, endpoint, handler, const, auth_required, status=status_code, model=model)
        self._described.append(RouteDoc(
            route_type.upper(), endpoint, handler, openapi_name,
            list(openapi_tags) if openapi_tags else [route_type.lower()], auth_required, status_code,
            response_model, responses, bool(deprecated), bool(include_in_schema)))
        return handler

    def _decorator(self, method: str, endpoint: str, const: bool, auth_required: bool, openapi_name: str,
                   openapi_tags: list[str] | None, details: RouteOptions) -> Callable[[Handler], Handler]:
        _path_given(method.lower(), endpoint)

        def decorator(handler: Handler) -> Handler:
            return self.add_route(method, endpoint, handler, const, auth_required, openapi_name, openapi_tags,
                                  **details)

        return decorator

    def get(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for GET (``details``: its keyword-only arguments)."""
        return self._decorator("GET", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def post(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for POST (``details``: its keyword-only arguments)."""
        return self._decorator("POST", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def put(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for PUT (``details``: its keyword-only arguments)."""
        return self._decorator("PUT", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def patch(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for PATCH (``details``: its keyword-only arguments)."""
        return self._decorator("PATCH", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def delete(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for DELETE (``details``: its keyword-only arguments)."""
        return self._decorator("DELETE", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def head(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for HEAD (``details``: its keyword-only arguments)."""
        return self._decorator("HEAD", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def options(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for OPTIONS (``details``: its keyword-only arguments)."""
        return self._decorator("OPTIONS", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def trace(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for TRACE (``details``: its keyword-only arguments)."""
        return self._decorator("TRACE", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    def connect(self, endpoint: str, const: bool = False, auth_required: bool = False, openapi_name: str = "",
            openapi_tags: list[str] | None = None, **details: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Decorator: :meth:`add_route` for CONNECT (``details``: its keyword-only arguments)."""
        return self._decorator("CONNECT", endpoint, const, auth_required, openapi_name, openapi_tags, details)

    # -- middlewares, global headers, exceptions, authentication -----------------------

    @property
    def middlewares(self) -> Middlewares:
        """The middleware registry (:mod:`robyn_fast.http.middleware`)."""
        return self.routes.middlewares

    #: The method an endpoint middleware is for (None: every method of the path).
    endpoint_middleware_method: str | None = None

    def before_request(self, endpoint: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: run the function before the handler of every route
        (``endpoint`` None) or of the routes at ``endpoint``. It takes
        ``()`` or ``(request)`` and returns the request (or a new one), or
        a :class:`~robyn_fast.http.types.Response` that answers at once."""
        def decorator(handler: Handler) -> Handler:
            return self.routes.middlewares.add(BEFORE, handler, endpoint, self.endpoint_middleware_method)

        return decorator

    def after_request(self, endpoint: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: run the function after the handler of every route
        (``endpoint`` None) or of the routes at ``endpoint``. It takes
        ``()``, ``(response)`` or ``(request, response)`` and returns the
        response (or a new one)."""
        def decorator(handler: Handler) -> Handler:
            return self.routes.middlewares.add(AFTER, handler, endpoint, self.endpoint_middleware_method)

        return decorator

    @property
    def request_headers(self) -> Headers:
        """Fields set on every request before the middlewares run."""
        return self.routes.middlewares.request_headers

    @property
    def response_headers(self) -> Headers:
        """Fields added to every response that lacks them (see
        :meth:`exclude_response_headers_for`)."""
        return self.routes.middlewares.response_headers

    def add_request_header(self, key: str, value: str) -> None:
        self.routes.middlewares.request_headers.append(key, value)
        self.routes.middlewares.changed()

    def set_request_header(self, key: str, value: str) -> None:
        self.routes.middlewares.request_headers.set(key, value)
        self.routes.middlewares.changed()

    def add_response_header(self, key: str, value: str) -> None:
        self.routes.middlewares.response_headers.append(key, value)
        self.routes.middlewares.changed()

    def set_response_header(self, key: str, value: str) -> None:
        self.routes.middlewares.response_headers.set(key, value)
        self.routes.middlewares.changed()

    def exclude_response_headers_for(self, excluded_response_headers_paths: list[str] | None) -> None:
        """Routes at these paths get no global response headers."""
        self.routes.middlewares.exclude_response_headers_for(excluded_response_headers_paths)

    @property
    def excluded_response_headers_paths(self) -> list[str] | None:
        return self.routes.middlewares.excluded_response_headers_paths

    def exception(self, exception_handler: Handler) -> Handler:
        """Decorator: ``exception_handler(error)`` answers for any handler
        that raises (its return value is the response)."""
        self.routes.middlewares.set_exception_handler(exception_handler)
        return exception_handler

    @property
    def exception_handler(self) -> Handler | None:
        return self.routes.middlewares.exception_handler

    def configure_authentication(self, authentication_handler: Any) -> None:
        """The handler that authenticates requests to ``auth_required``
        routes: its ``authenticate(request)`` (a plain method or ``async
        def``) returns an identity (set on ``request.identity``) or None,
        answered with its ``unauthorized_response`` (see
        :mod:`robyn_fast.auth`). On a sub-router: the handler of its own
        routes (and of the sub-routers it includes that have none)."""
        if not callable(getattr(authentication_handler, "authenticate", None)):
            raise TypeError("configure_authentication() takes an object with an authenticate(request) method")
        self.routes.middlewares.authentication_handler = authentication_handler
        # The OpenAPI document names the scheme, so Swagger UI's "Authorize" works for auth_required routes.
        scheme = str(getattr(getattr(authentication_handler, "token_getter", None), "scheme", "") or "")
        if scheme.lower().startswith("bearer"):
            self.openapi.add_security_scheme("BearerAuth", {"type": "http", "scheme": "bearer"})
        else:
            self.openapi.add_security_scheme("ApiKeyAuth", {"type": "apiKey", "in": "header", "name": "Authorization"})

    @property
    def authentication_handler(self) -> Any:
        return self.routes.middlewares.authentication_handler

    def configure_sessions(
        self,
        secret_key: str | bytes,
        *,
        cookie_name: str = "session",
        max_age: int | None = DEFAULT_MAX_AGE,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        http_only: bool = True,
        same_site: str | None = "Lax",
    ) -> SessionManager:
        """Signed-cookie sessions (:mod:`robyn_fast.sessions`): every request
        gets ``request.session``, read from the cookie ``cookie_name`` before
        the middlewares run and written back after them when it changed.
        ``secret_key`` signs the cookies: the same in every worker process
        and host, stable across restarts. Once per app
        (:class:`~robyn_fast.exceptions.InvalidState` the second time)."""
        if self.routes.middlewares.sessions is not None:
            raise InvalidState("sessions are already configured on this app: configure_sessions() is called once")
        manager = SessionManager(secret_key, cookie_name=cookie_name, max_age=max_age, path=path, domain=domain,
                                 secure=secure, http_only=http_only, same_site=same_site)
        self.routes.middlewares.set_sessions(manager.load_middleware, manager.save_middleware)
        self._session_manager = manager
        return manager

    @property
    def session_manager(self) -> SessionManager | None:
        """The :class:`~robyn_fast.sessions.SessionManager` of
        :meth:`configure_sessions`, or None."""
        return self._session_manager

    def serve_directory(self, route: str, directory_path: str, index_file: str | None = None,
                        show_files_listing: bool = False) -> None:
        """Serve the files under ``directory_path`` at ``route`` (GET and
        HEAD): ``index_file`` for a directory, else a listing when
        ``show_files_listing``; routes registered at paths below ``route``
        win over the files (see :func:`robyn_fast.http.files.directory_handler`)."""
        handler = directory_handler(directory_path, index_file, show_files_listing)
        self.add_route("GET", join_prefix(route, "/"), handler)
        self.add_route("GET", join_prefix(route, "/*path"), handler)

    # -- sub-routers -------------------------------------------------------------------

    def include_router(self, router: Any) -> None:
        """Merge a :class:`~robyn_fast.subrouter.SubRouter` into this app (or
        into a sub-router, whose prefix the routes then take too): its
        routes join this app's one route registry, with their own
        middlewares around them; its WebSocket endpoints are served here;
        its global dependencies fill in names this app lacks, its router
        dependencies stay its own; its ``tags`` go first in the OpenAPI tags
        of its routes; its ``auth_required`` routes are authenticated by its
        own authentication handler, or, if it has none, by the nearest
        including router's (looked up per request). What the router holds
        when it is included is merged: include it once its routes are
        registered."""
        attach = getattr(router, "attach_parent", None)
        if not isinstance(router, Robyn) or not callable(attach):
            raise TypeError(f"include_router() takes a SubRouter, not {type(router).__name__}")
        if router is self:
            raise ValueError("a router cannot include itself")
        attach(self)
        for key, value in router.dependencies.get_global_dependencies().items():
            self.dependencies.get_global_dependencies().setdefault(key, value)
        self.dependencies.share_router(router, router.dependencies)
        own = router.routes.middlewares
        for route in router.routes.all():
            owner = router if route.owner is None else route.owner
            self.dependencies.share_router(owner, owner.dependencies)
            self.routes.add(route.method, self._full(route.path), route.handler, route.const, route.auth_required,
                            owner=owner, scopes=((own, route.path), *route.scopes), status=route.status,
                            model=route.model)
        tags: list[str] = list(getattr(router, "tags", None) or [])
        for doc in router.described_routes():
            self._described.append(doc._replace(path=self._full(doc.path),
                                                tags=tags + [t for t in doc.tags if t not in tags]))
        for ws in router.websocket_endpoints():
            self.add_web_socket(ws.endpoint, ws)
        self._included_routers.append(router)

    def _full(self, endpoint: str) -> str:
        """``endpoint`` as this router serves it (a sub-router adds its prefix)."""
        return endpoint

    def described_routes(self) -> list[RouteDoc]:
        """What the OpenAPI document says of every route, in registration order."""
        return list(self._described)

    def serve_openapi(self, json_path: str = "/openapi.json", docs_path: str = "/docs") -> None:
        """Serve the OpenAPI 3.1 document of every route registered (now and
        later: it is built at the first request) at ``json_path``, and a
        Swagger UI page at ``docs_path`` (:mod:`robyn_fast.openapi`); the
        global response headers are left off both, as Robyn does."""
        described = self._described
        openapi = self.openapi
        built: list[bytes] = []

        def spec() -> Response:
            if not built:
                for doc in described:
                    if doc.path not in (json_path, docs_path):
                        openapi.describe(doc)
                built.append(openapi.json().encode("utf-8"))
            return Response(200, {"Content-Type": "application/json"}, built[0])

        self.routes.add("GET", json_path, spec)
        served = [json_path, docs_path]
        local = local_swagger_ui()
        if local is None:
            self.routes.add("GET", docs_path, openapi.docs_page)
        else:  # Swagger UI from the docs extra: the page works offline
            assets = docs_path.rstrip("/") + "/"
            self.routes.add("GET", docs_path, lambda: openapi.docs_page(assets))
            for name, media_type in SWAGGER_UI_FILES.items():
                self.routes.add("GET", assets + name, _asset(local / name, media_type))
                served.append(assets + name)
        excluded = list(self.excluded_response_headers_paths or [])
        self.exclude_response_headers_for(excluded + served)

    @property
    def included_routers(self) -> list[Robyn]:
        return list(self._included_routers)

    # -- dependency injection ---------------------------------------------------------

    def inject(self, **kwargs: Any) -> None:
        """Dependencies for this app's HTTP routes and WebSocket endpoints
        (``router_dependencies``, or a parameter of the same name)."""
        self.dependencies.add_router_dependency(self, **kwargs)

    def inject_global(self, **kwargs: Any) -> None:
        """Dependencies for every handler (``global_dependencies``, or a
        parameter of the same name)."""
        self.dependencies.add_global_dependency(**kwargs)

    @property
    def global_dependencies(self) -> dict[str, Any]:
        return self.dependencies.get_global_dependencies()

    @property
    def router_dependencies(self) -> dict[str, Any]:
        return self.dependencies.get_router_dependencies(self)

    # -- websockets and hooks -------------------------------------------------------

    def websocket(self, endpoint: str, *, config: Config | None = None) -> Callable[[Any], Any]:
        """Robyn's receive-loop API: ``@app.websocket(path)`` on an async
        ``handler(websocket, <typed query parameters>)`` run once per
        connection (:mod:`robyn_fast.websocket.receive`); the handler gets
        ``on_connect`` and ``on_close`` decorators. ``config`` overrides the
        app's settings for this endpoint, as ``WebSocket(app, path, config)``
        does."""
        _path_given("websocket", endpoint)
        return websocket_decorator(self, endpoint, config)

    def add_web_socket(self, endpoint: str, ws: ServedEndpoint) -> None:
        """Register a WebSocket endpoint (``WebSocket(app, path)`` calls this)."""
        existing = self._ws_by_path.get(endpoint)
        if existing is ws:
            return
        self._ws_router.add("GET", endpoint, ws)
        self._ws_by_path[endpoint] = ws

    def websocket_endpoints(self) -> list[ServedEndpoint]:
        """The WebSocket endpoints, in registration order."""
        return list(self._ws_by_path.values())

    def match_websocket(self, path: str) -> tuple[ServedEndpoint, dict[str, str]] | None:
        """The WebSocket endpoint at ``path`` and its path parameters, or None."""
        if not self._ws_by_path:
            return None
        try:
            return self._ws_router.match("GET", path)
        except LookupError:
            return None

    def _is_websocket_path(self, path: str) -> bool:
        return self.match_websocket(path) is not None

    def startup_handler(self, handler: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``handler`` (sync or async) before the server accepts connections."""
        self._startup_handlers.append(handler)
        return handler

    def shutdown_handler(self, handler: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``handler`` (sync or async) after connections are closed at shutdown."""
        self._shutdown_handlers.append(handler)
        return handler

    @property
    def startup_handlers(self) -> tuple[Callable[[], Any], ...]:
        return tuple(self._startup_handlers)

    @property
    def shutdown_handlers(self) -> tuple[Callable[[], Any], ...]:
        return tuple(self._shutdown_handlers)

    # -- serving ------------------------------------------------------------------------

    @property
    def server(self) -> Server | None:
        """The server serving this app right now, or None."""
        return self._server

    def stats(self) -> dict[str, Any]:
        """This process's figures while it serves: ``pid``, live WebSocket
        ``connections`` and handler ``tasks``, ``compressions`` (messages
        compressed for permessage-deflate), and ``broker`` (None without
        one): the local bus's or Redis broker's state and counters
        (``connected``/``peers``, ``published``, ``received``, ``dropped``...),
        and ``counters``: this process's WebSocket counters
        (:func:`robyn_fast.metrics.counters`: connections ``opened``,
        ``closed`` by close code, ``messages_in``/``_out``, wire
        ``bytes_in``/``_out``, ``backpressure_drops``/``_closes``, pings,
        pongs, ``handler_errors``). Empty when the app is not being served.
        Safe from any thread."""
        server = self._server
        return {} if server is None else server.stats()

    def stats_all_workers(self) -> dict[str, Any]:
        """The WebSocket counters of ``stats()["counters"]`` summed over every
        worker process of this server (read from shared memory, no message to
        the other workers), with ``workers``: how many were summed (1 when this
        process serves alone). What ``Config.metrics_path`` exposes."""
        return metrics.totals()

    def attach_server(self, server: Server) -> None:
        """Called by a server as it starts. One server at a time serves an
        app: :class:`~robyn_fast.exceptions.InvalidState` otherwise."""
        with self._server_lock:
            if self._server is not None and self._server is not server:
                raise InvalidState(
                    "this app is already being served by another server (one event loop per app per process; "
                    "use worker processes to use more cores)"
                )
            self._server = server

    def detach_server(self, server: Server) -> None:
        """Called by a server once it has stopped."""
        with self._server_lock:
            if self._server is server:
                self._server = None

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        _check_port: bool = True,
        client_timeout: float | None = None,
        keep_alive_timeout: float | None = None,
        *,
        processes: int | None = None,
        workers: int | None = None,
        argv: Sequence[str] | None = None,
        broker: str | None = None,
        ssl: SSLContext | None = None,
        log_config: LogConfig = AUTO,
    ) -> None:
        """Serve until SIGINT/SIGTERM, then close every WebSocket with 1001
        and return. Blocks, in an event loop of its own: inside a running
        loop use :meth:`serve` (:class:`~robyn_fast.exceptions.InvalidState` says so).

        Reads Robyn's command line from ``argv`` (default ``sys.argv[1:]``;
        pass ``[]`` when the script has flags of its own) and Robyn's
        environment variables (:mod:`robyn_fast.cli`): a flag wins over the
        environment, which wins over these arguments. ``processes`` x
        ``workers`` worker processes serve the app when that is more than one
        (:mod:`robyn_fast.workers.supervisor`); ``--dev`` serves one process
        restarted on source changes. ``broker`` (or ``--broker``,
        ``ROBYN_FAST_BROKER``): a Redis URL that makes every worker process a
        node joined to the servers of other hosts naming the same Redis
        (:mod:`robyn_fast.broker.redis`). ``ssl`` (or ``--ssl-certfile`` and
        ``--ssl-keyfile``, or ``Config(ssl=...)``): a server-side
        ``ssl.SSLContext`` to serve HTTPS and WSS with
        (:func:`robyn_fast.tls.server_context` makes one from PEM files). A
        busy port prints one line and exits with status 1; a bad flag or
        variable, or TLS files that cannot be used, exit with status 2.

        Logging (:func:`robyn_fast.logs.configure_logging`): with
        ``log_config="auto"`` (or ``--log-config``), robyn_fast configures
        logging only when the app has not; ``None`` never; a dict or a file
        configures it so. Every line, "serving on" and "shutting down"
        included, is a record of a ``robyn_fast.*`` logger.
        """
        _not_in_a_running_loop("app.start()", "await app.serve(host, port)")
        _record_start()
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "app"
        options = cli.parse(sys.argv[1:] if argv is None else argv, prog)
        try:
            if self._env_file_error is not None:
                raise self._env_file_error
            settings = cli.resolve(options, os.environ, host, port, processes, workers, client_timeout,
                                   keep_alive_timeout, broker, ssl, log_config)
            try:
                configure_logging(settings.log_config, settings.log_level, level_given=settings.log_level_given,
                                  processes=settings.processes)
            except ValueError as exc:
                raise cli.UsageError(f"cannot configure logging: {exc}") from None
        except cli.UsageError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if settings.config:  # the Config fields that flags, the environment or app.start() set
            try:
                self.config = replace(self.config, **settings.config)
            except ValueError as exc:  # a combination the app's own Config rules out (proxy_protocol and ssl)
                print(f"{prog}: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        self._before_serving()
        on_serving = _open_browser if settings.open_browser else None
        close_timeout = max([self.config.close_timeout] + [ws.effective_config.close_timeout
                                                           for ws in self.websocket_endpoints()])
        code = launch(self, settings.host, settings.port, processes=settings.processes, dev=settings.dev,
                      broker=settings.broker, close_timeout=close_timeout, on_serving=on_serving,
                      argv=sys.orig_argv, root=self.directory_path, env_file_names=self._env_file_names,
                      uds=settings.uds, fd=settings.fd)
        if code:
            raise SystemExit(code)

    def _before_serving(self) -> None:
        """Called by :meth:`start` once the settings are final, before the
        server starts (the compat app applies ``robyn_version`` here)."""

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        sock: socket.socket | None = None,
        handle_signals: bool = False,
        log_config: LogConfig = AUTO,
    ) -> None:
        """Serve on the running event loop (embedded in an asyncio program,
        a notebook, a test) until stopped, then shut down as :meth:`start`
        does (Close 1001, close handlers, shutdown hooks) and return.

        Listens on ``host:port`` (port 0: any free one; :attr:`server`'s
        ``sockets`` say which) or on ``sock``, a listening socket. Stops when
        :meth:`stop` is called (from any thread), or when the awaiting Task is
        cancelled (``asyncio.run()`` does that on Ctrl+C): the shutdown then
        runs before the ``CancelledError`` goes on. ``handle_signals=True``:
        SIGINT and SIGTERM stop it too (main thread only). One process; the
        command line and the environment are not read (that is
        :meth:`start`'s job); ``log_config`` as :meth:`start`'s. Raises
        ``OSError`` ("cannot listen on HOST:PORT: REASON") when the address
        cannot be bound, and what a startup hook raises."""
        _record_start()
        try:
            configure_logging(log_config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._before_serving()
        await serve_on_this_loop(self, host, port, sock=sock, handle_signals=handle_signals)

    def stop(self) -> bool:
        """Ask the server serving this app to shut down gracefully (from any
        thread; :meth:`start` and :meth:`serve` then return). False when no
        server serves it."""
        server = self._server
        if server is None:
            return False
        server.stop()
        return True


_starts = 0  # app.start() and app.serve() calls in this process


def _record_start() -> None:
    global _starts
    _starts += 1


def starts() -> int:
    """How many times ``app.start()`` or ``app.serve()`` was called in this
    process, whichever app (``python -m robyn_fast`` says when a script
    ends without having served)."""
    return _starts


def _path_given(decorator: str, endpoint: object) -> None:
    """``TypeError`` saying what to write when ``@app.<decorator>`` got
    something other than a path: above a function without parentheses, the
    route would silently never exist."""
    if callable(endpoint):
        raise TypeError(f"app.{decorator}() takes the route's path, not the handler: write "
                        f"@app.{decorator}(\"/path\") above {getattr(endpoint, '__qualname__', endpoint)}(), "
                        f"not @app.{decorator}")
    if not isinstance(endpoint, str):
        raise TypeError(f"a route's path is a str such as \"/items/:id\", not {type(endpoint).__name__}")


def _not_in_a_running_loop(what: str, instead: str) -> None:
    """:class:`InvalidState` when called from a running event loop, where a
    blocking call that makes its own loop cannot run."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise InvalidState(f"{what} blocks and runs its own event loop, and this thread is running one already "
                       f"(an async function, Jupyter): use `{instead}` there")


def _open_browser(url: str) -> None:
    """``--open-browser``: the served URL in the user's browser ($BROWSER)."""
    import webbrowser

    try:
        webbrowser.open(url)
    except Exception:  # a missing browser is no reason to stop serving
        log.warning("could not open a browser on %s", url, exc_info=True)


def _asset(path: Any, media_type: str) -> Callable[[], Response]:
    """A handler answering the file at ``path`` (read at the first request, then kept)."""
    kept: list[bytes] = []

    def asset() -> Response:
        if not kept:
            kept.append(path.read_bytes())
        return Response(200, {"Content-Type": media_type, "Cache-Control": "public, max-age=86400"}, kept[0])

    return asset
