"""HTTP routes: handlers bound once at registration, and the response bytes
for one request.

:class:`Routes` is what the application registers handlers in and what the
server asks for a response (:meth:`Routes.handle`): it matches the path,
builds the :class:`~robyn_fast.http.types.Request`, calls the handler (sync,
or async through an awaitable it returns) and serialises the result. Nothing
here touches a socket.

Errors become statuses: no route 404, wrong method 405 with ``Allow``, a path
that only speaks WebSocket 426, an :class:`~robyn_fast.exceptions.HTTPError`
raised by a handler its own status, any other exception (or a return value
that cannot become a response) 500, logged with the handler's name.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from ..binding import Arg, Attr, Call, Dependency, Item, Source, bind_parameters
from ..dependency_injection import DependencyMap
from ..exceptions import HTTPError, InvalidHeader, MethodNotAllowed, NotFound
from ..logs import get_logger
from .router import Router, compile_path
from .types import Headers, Request, error_response, render, serialize_response

__all__ = ["Route", "Routes", "bind_http"]

log = get_logger("robyn_fast.http")

Handler = Callable[..., Any]
#: Parameter names that receive that attribute of the request wherever they stand.
REQUEST_PARTS = frozenset({"path_params", "query_params", "headers", "body"})


def _handler_name(handler: Handler) -> str:
    return str(getattr(handler, "__qualname__", handler))


def bind_http(
    handler: Handler,
    dependencies: DependencyMap,
    owner: Any,
    path: str,
) -> Callable[[Request], Any]:
    """``handler`` as a function of the request, resolved once.

    Each parameter is bound by these rules, in order: ``path_params``,
    ``query_params``, ``headers`` and ``body`` get those parts of the request;
    ``global_dependencies`` and ``router_dependencies`` get those dicts (of
    ``dependencies``, ``owner`` being the router); a parameter named like a
    path parameter of ``path`` gets its value; one named like an injected
    dependency gets it (looked up at each call); one named ``request``, or
    else the first positional parameter, gets the
    :class:`~robyn_fast.http.types.Request`. A parameter with a default that
    matches none is left to its default; any other raises ``TypeError``
    naming the handler and the parameter, here, not when a request comes.
    """
    name = _handler_name(handler)
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return handler  # no signature to read (some builtins): call it with the request
    path_names = set(compile_path(path).param_names)
    injected = set(dependencies.get_global_dependencies()) | set(dependencies.get_router_dependencies(owner))

    router_deps = dependencies.get_router_dependencies(owner)
    global_deps = dependencies.get_global_dependencies()
    params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    sources: list[tuple[inspect.Parameter, Source]] = []
    request_taken = any(p.name == "request" for p in params)
    for p in params:
        source: Source | None
        if p.name in REQUEST_PARTS:
            source = Attr(0, p.name)
        elif p.name == "global_dependencies":
            source = Call(lambda _r: dependencies.get_global_dependencies())
        elif p.name == "router_dependencies":
            source = Call(lambda _r: dependencies.get_router_dependencies(owner))
        elif p.name in path_names:
            source = Item(0, "path_params", p.name)
        elif p.name in injected:
            source = Dependency(p.name, (router_deps, global_deps))
        elif p.name == "request":
            source = Arg(0)
        elif not request_taken and p.kind is not p.KEYWORD_ONLY:
            source, request_taken = Arg(0), True
        else:
            source = None
        if source is None:
            if p.default is not p.empty:
                continue
            raise TypeError(
                f"cannot bind parameter {p.name!r} of HTTP handler {name} for {path!r}: it is not the "
                f"request, path_params, query_params, headers, body, a path parameter of {path!r}, an "
                "injected dependency, global_dependencies or router_dependencies (inject dependencies "
                "before decorating the handler)"
            )
        sources.append((p, source))
    return bind_parameters(handler, 1, sources)


class Route:
    """A route handler with its parameters resolved once, at registration.

    ``const`` routes (Robyn's ``const=True``) have their response cached
    after the first request: the handler must not depend on the request.
    """

    __slots__ = ("handler", "name", "call", "const", "cached")

    def __init__(self, handler: Handler, call: Callable[[Request], Any], const: bool) -> None:
        self.handler = handler
        self.name = _handler_name(handler)
        self.call = call
        self.const = const
        self.cached: dict[tuple[bool, bool], bytes] = {}


class Routes:
    """The HTTP routes of an application and the answer to one request.

    ``dependencies`` and ``owner`` are what handlers' ``global_dependencies``
    and ``router_dependencies`` come from; ``is_websocket_path(path)`` says
    whether a WebSocket endpoint lives at ``path`` (a plain request there gets
    426 instead of 404).
    """

    def __init__(
        self,
        dependencies: DependencyMap,
        owner: Any,
        is_websocket_path: Callable[[str], bool] | None = None,
    ) -> None:
        self.router: Router[Route] = Router()
        self._dependencies = dependencies
        self._owner = owner
        self._is_websocket_path = is_websocket_path

    def add(self, method: str, path: str, handler: Handler, const: bool = False) -> Route:
        """Register ``handler`` for ``method`` at ``path``; its parameters are
        bound now (``TypeError`` for one that cannot be)."""
        if not callable(handler):
            raise TypeError(f"a route handler must be callable, not {type(handler).__name__}")
        if not isinstance(path, str):
            raise TypeError(f"a route path must be a str, not {type(path).__name__}")
        route = Route(handler, bind_http(handler, self._dependencies, self._owner, path), const)
        self.router.add(method.upper(), path, route)
        return route

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        peer: str | None,
        scheme: str = "http",
    ) -> bytes | Awaitable[bytes]:
        """The response bytes for one request, or an awaitable of them (the
        handler is async); ``scheme`` is the request's ``url.scheme``
        (``"https"`` over TLS). Never raises for anything a handler does."""
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
            if self._is_websocket_path is not None and self._is_websocket_path(path):
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
        request = Request.from_target(method, target, Headers(headers), body, scheme=scheme, ip_addr=peer)
        request.path_params = path_params
        try:
            result = route.call(request)
        except HTTPError as exc:
            return _http_error(exc, keep_alive, head)
        except Exception:
            log.exception("%s %s: handler %s raised", method, path, route.name)
            return error_response(500, keep_alive=keep_alive, head=head)
        if inspect.isawaitable(result):
            return self._finish(route, result, method, path, keep_alive, head)
        return _serialize(route, result, keep_alive, head)

    async def _finish(
        self, route: Route, pending: Awaitable[Any], method: str, path: str, keep_alive: bool, head: bool
    ) -> bytes:
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except HTTPError as exc:
            return _http_error(exc, keep_alive, head)
        except Exception:
            log.exception("%s %s: handler %s raised", method, path, route.name)
            return error_response(500, keep_alive=keep_alive, head=head)
        return _serialize(route, result, keep_alive, head)


def _http_error(exc: HTTPError, keep_alive: bool, head: bool) -> bytes:
    """The response an :class:`HTTPError` raised by a handler stands for."""
    try:
        return error_response(exc.status_code, exc.message, exc.headers, keep_alive=keep_alive, head=head)
    except (InvalidHeader, TypeError, ValueError):
        log.exception("HTTPError %s carries headers that cannot be sent", exc.status_code)
        return error_response(500, keep_alive=keep_alive, head=head)


def _serialize(route: Route, result: Any, keep_alive: bool, head: bool) -> bytes:
    try:
        status, fields, payload = render(result)
        response = serialize_response(status, fields, payload, keep_alive=keep_alive, head=head)
    except (InvalidHeader, TypeError, ValueError):
        log.exception("handler %s returned a response that cannot be sent", route.name)
        return error_response(500, keep_alive=keep_alive, head=head)
    if route.const:
        route.cached[(keep_alive, head)] = response
    return response
