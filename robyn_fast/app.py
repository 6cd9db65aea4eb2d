"""The application object, in Robyn's shape: ``app = Robyn(__file__)``, route
decorators, WebSocket endpoints, startup/shutdown hooks, ``app.start()``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Config
from .dependency_injection import DependencyMap
from .exceptions import InvalidHeader, MethodNotAllowed, NotFound
from .http_types import Headers, Request, error_response, render, serialize_response
from .router import Router, compile_path

if TYPE_CHECKING:
    from .ws import WebSocket

__all__ = ["Robyn"]

log = logging.getLogger("robyn_fast.app")

Handler = Callable[..., Any]

_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class _Route:
    """A route handler with its parameters resolved once, at registration."""

    __slots__ = ("handler", "call", "const", "cached")

    def __init__(self, handler: Handler, app: Robyn, const: bool, param_names: tuple[str, ...] = ()) -> None:
        self.handler = handler
        self.call = _bind_http(handler, app, param_names)
        self.const = const
        self.cached: dict[tuple[bool, bool], bytes] = {}


def _the_request(request: Request) -> Request:
    return request


def _path_param(name: str) -> Callable[[Request], Any]:
    return lambda request: request.path_params.get(name)


def _bind_http(handler: Handler, app: Robyn, param_names: tuple[str, ...] = ()) -> Callable[[Request], Any]:
    """``handler`` as a function of the request, resolved once.

    Parameters named ``path_params``, ``query_params``, ``headers``, ``body``,
    ``global_dependencies`` or ``router_dependencies`` get those; one named
    like a path parameter gets its value; the first other parameter gets the
    request. A handler of one request parameter is called directly.
    """
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return handler
    named: dict[str, Callable[[Request], Any]] = {
        "path_params": lambda r: r.path_params,
        "query_params": lambda r: r.query_params,
        "headers": lambda r: r.headers,
        "body": lambda r: r.body,
        "global_dependencies": lambda r: app.global_dependencies,
        "router_dependencies": lambda r: app.router_dependencies,
    }
    params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not params:
        return lambda _req: handler()
    if (
        len(params) == 1
        and params[0].name not in named
        and params[0].name not in param_names
        and params[0].kind is not params[0].KEYWORD_ONLY
    ):
        return handler
    positional: list[Callable[[Request], Any]] = []
    keywords: dict[str, Callable[[Request], Any]] = {}
    request_taken = False
    for p in params:
        getter: Callable[[Request], Any]
        if p.name in named:
            getter = named[p.name]
        elif p.name in param_names:
            getter = _path_param(p.name)
        elif not request_taken:
            getter, request_taken = _the_request, True
        elif p.default is not p.empty:
            continue
        else:
            getter = _path_param(p.name)
        if p.kind is p.POSITIONAL_ONLY:
            positional.append(getter)
        else:
            keywords[p.name] = getter
    return lambda r: handler(*[g(r) for g in positional], **{k: g(r) for k, g in keywords.items()})


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
        self.config: Config = config if config is not None else Config()
        self.router: Router[_Route] = Router()
        self._ws_router: Router[WebSocket] | None = None
        self._ws_by_path: dict[str, WebSocket] = {}
        self._startup_handlers: list[Callable[[], Any]] = []
        self._shutdown_handlers: list[Callable[[], Any]] = []
        self.dependencies = DependencyMap()

    # -- routes -----------------------------------------------------------------

    def add_route(self, route_type: str, endpoint: str, handler: Handler, const: bool = False) -> Handler:
        """Register ``handler`` for ``route_type`` (an HTTP method) at ``endpoint``."""
        if not callable(handler):
            raise TypeError("a route handler must be callable")
        params = compile_path(endpoint).param_names if isinstance(endpoint, str) else ()
        self.router.add(route_type.upper(), endpoint, _Route(handler, self, const, params))
        return handler

    def _decorator(
        self,
        method: str,
        endpoint: str,
        const: bool,
        auth_required: bool,
    ) -> Callable[[Handler], Handler]:
        if auth_required:
            raise NotImplementedError("robyn_fast does not support auth_required routes")

        def decorator(handler: Handler) -> Handler:
            return self.add_route(method, endpoint, handler, const)

        return decorator

    def get(self, endpoint: str, const: bool = False, auth_required: bool = False,
            openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("GET", endpoint, const, auth_required)

    def post(self, endpoint: str, const: bool = False, auth_required: bool = False,
             openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("POST", endpoint, const, auth_required)

    def put(self, endpoint: str, const: bool = False, auth_required: bool = False,
            openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("PUT", endpoint, const, auth_required)

    def patch(self, endpoint: str, const: bool = False, auth_required: bool = False,
              openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("PATCH", endpoint, const, auth_required)

    def delete(self, endpoint: str, const: bool = False, auth_required: bool = False,
               openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("DELETE", endpoint, const, auth_required)

    def head(self, endpoint: str, const: bool = False, auth_required: bool = False,
             openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("HEAD", endpoint, const, auth_required)

    def options(self, endpoint: str, const: bool = False, auth_required: bool = False,
                openapi_name: str = "", openapi_tags: list[str] | None = None) -> Callable[[Handler], Handler]:
        return self._decorator("OPTIONS", endpoint, const, auth_required)

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

    def add_web_socket(self, endpoint: str, ws: WebSocket) -> None:
        """Register a WebSocket endpoint (``WebSocket(app, path)`` calls this)."""
        existing = self._ws_by_path.get(endpoint)
        if existing is ws:
            return
        if self._ws_router is None:
            self._ws_router = Router()
        self._ws_router.add("GET", endpoint, ws)
        self._ws_by_path[endpoint] = ws

    def _websockets(self) -> list[WebSocket]:
        return list(self._ws_by_path.values())

    def startup_handler(self, handler: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``handler`` (sync or async) before the server accepts connections."""
        self._startup_handlers.append(handler)
        return handler

    def shutdown_handler(self, handler: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``handler`` (sync or async) after connections are closed at shutdown."""
        self._shutdown_handlers.append(handler)
        return handler

    # -- serving ------------------------------------------------------------------------

    def _handle_http(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        peer: str | None,
    ) -> bytes | Awaitable[bytes]:
        """The response bytes for one request, or an awaitable of them."""
        head = method == "HEAD"
        path = target.partition("?")[0]
        if not path.startswith("/") and "://" in path:
            # Absolute form, which a server must accept (RFC 9112 §3.2.2).
            path = urlsplit(target).path or "/"
        try:
            route, path_params = self.router.match(method, path)
        except MethodNotAllowed as exc:
            return error_response(405, None, exc.headers, keep_alive=keep_alive, head=head)
        except NotFound:
            if self._ws_router is not None:
                try:
                    self._ws_router.match("GET", path)
                except LookupError:
                    pass
                else:
                    return error_response(
                        426,
                        "this endpoint speaks WebSocket only",
                        [("upgrade", "websocket"), ("sec-websocket-version", "13")],
                        keep_alive=keep_alive,
                        head=head,
                    )
            return error_response(404, None, keep_alive=keep_alive, head=head)
        if route.const:
            cached = route.cached.get((keep_alive, head))
            if cached is not None:
                return cached
        request = Request.from_target(method, target, Headers(headers), body, ip_addr=peer)
        request.path_params = path_params
        try:
            result = route.call(request)
        except Exception:
            log.exception("%s %s: handler raised", method, path)
            return error_response(500, keep_alive=keep_alive, head=head)
        if inspect.isawaitable(result):
            return self._finish(route, result, keep_alive, head)
        return self._serialize(route, result, keep_alive, head)

    async def _finish(self, route: _Route, pending: Awaitable[Any], keep_alive: bool, head: bool) -> bytes:
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("async handler %s raised", getattr(route.handler, "__qualname__", route.handler))
            return error_response(500, keep_alive=keep_alive, head=head)
        return self._serialize(route, result, keep_alive, head)

    def _serialize(self, route: _Route, result: Any, keep_alive: bool, head: bool) -> bytes:
        try:
            status, fields, payload = render(result)
            response = serialize_response(status, fields, payload, keep_alive=keep_alive, head=head)
        except (InvalidHeader, TypeError, ValueError):
            log.exception("handler %s returned a response that cannot be sent",
                          getattr(route.handler, "__qualname__", route.handler))
            return error_response(500, keep_alive=keep_alive, head=head)
        if route.const:
            route.cached[(keep_alive, head)] = response
        return response

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        _check_port: bool = True,
        client_timeout: float | None = None,
        keep_alive_timeout: float | None = None,
    ) -> None:
        """Serve until SIGINT/SIGTERM, then close every WebSocket with 1001 and
        return. ``ROBYN_HOST`` and ``ROBYN_PORT`` override the arguments. A
        busy port prints one line and exits with status 1."""
        from .server import run

        host = os.environ.get("ROBYN_HOST", host)
        port_text = os.environ.get("ROBYN_PORT", str(port))
        try:
            port = int(port_text)
            if not 0 <= port <= 65535:
                raise ValueError
        except ValueError:
            print(f"robyn_fast: invalid port {port_text!r}", file=sys.stderr)
            raise SystemExit(2) from None
        if keep_alive_timeout is not None:
            self.config = replace(self.config, keep_alive_timeout=keep_alive_timeout)
        if client_timeout is not None:
            self.config = replace(self.config, header_timeout=client_timeout)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        code = run(self, host, port)
        if code:
            raise SystemExit(code)
