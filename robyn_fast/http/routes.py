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
import functools
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Union
from urllib.parse import urlsplit

from ..binding import CONVERTIBLE, Arg, Attr, Call, Converter, Dependency, Item, Source, bind_parameters, converter
from ..dependency_injection import DependencyMap
from .. import models
from ..exceptions import (
    ArgumentTypeError,
    AuthenticationNotConfigured,
    HTTPError,
    InvalidHeader,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    UnboundParameter,
    UnsupportedResponseType,
)
from ..logs import get_logger
from . import params
from .middleware import AFTER, BEFORE, Chain, Middleware, Middlewares
from .router import Router, compile_path
from .streaming import StreamedReply, StreamingResponse, body_chunks
from .types import (
    APPLICATION_JSON,
    TEXT_PLAIN,
    Headers,
    QueryParams,
    Request,
    Response,
    Url,
    error_response,
    fast_response,
    reason_phrase,
    render,
    serialize_response,
    to_response,
)

__all__ = ["Route", "Routes", "bind_http"]

log = get_logger("robyn_fast.http")

Handler = Callable[..., Any]
#: What answers one request: the response bytes, or a streamed response.
Reply = Union[bytes, StreamedReply]

#: Parameter names that receive the request (None) or that attribute of it,
#: wherever they stand (Robyn's names).
REQUEST_PARTS: dict[str, str | None] = {
    "request": None,
    "req": None,
    "r": None,
    **{part: part for part in ("path_params", "query_params", "headers", "body", "method", "url", "ip_addr",
                               "identity", "form_data", "files")},
}

#: Annotations that receive the request (None) or that attribute of it,
#: whatever the parameter's name (Robyn's types); a subclass of QueryParams
#: or Body counts too.
REQUEST_TYPES: dict[Any, str | None] = {
    Request: None,
    QueryParams: "query_params",
    Headers: "headers",
    Url: "url",
    params.PathParams: "path_params",
    params.Method: "method",
    params.FormData: "form_data",
    params.Files: "files",
    params.IPAddress: "ip_addr",
    params.Identity: "identity",
}



def _part(attr: str | None) -> Source:
    return Arg(0) if attr is None else Attr(0, attr)


def _json_body(request: Request) -> Any:
    try:
        return request.json()
    except ValueError as exc:
        raise HTTPError(400, json.dumps({"error": f"Invalid JSON body: {exc}"}),
                        [("Content-Type", "application/json")]) from exc


def _typed(name: str, conv: Converter, default: Any, in_path: bool) -> Callable[[Request], Any]:
    """The value of typed parameter ``name`` for a request: its path
    parameter (``in_path``) or query parameter converted by ``conv``; when
    absent, ``default``, else None if optional, else
    :class:`InvalidParameter` (as every conversion error)."""
    convert, type_name, many, optional = conv

    def value(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError, ArithmeticError):
            raise InvalidParameter(400, f"Invalid value '{text}' for parameter '{name}': expected {type_name}") \
                from None

    def absent() -> Any:
        if default is not inspect.Parameter.empty:
            return default
        if optional:
            return None
        raise InvalidParameter(400, f"Missing required parameter: '{name}'")

    if many:
        def every(request: Request) -> Any:
            texts = request.query_params.get_all(name)
            return absent() if texts is None else [value(t) for t in texts]

        return every
    source = "path_params" if in_path else "query_params"

    def one(request: Request) -> Any:
        text = getattr(request, source).get(name)
        return absent() if text is None else value(text)

    return one


def _by_annotation(annotation: Any) -> Source | None:
    if annotation is inspect.Parameter.empty:
        return None
    try:
        if annotation in REQUEST_TYPES:
            return _part(REQUEST_TYPES[annotation])
    except TypeError:  # unhashable annotation
        return None
    if inspect.isclass(annotation):
        if issubclass(annotation, params.JsonBody):
            return Call(_json_body)
        if issubclass(annotation, params.Body):
            return Attr(0, "body")
        if issubclass(annotation, QueryParams):
            return Attr(0, "query_params")
        if typing.is_typeddict(annotation):
            return Call(_json_body)
    return None


def _annotations(handler: Handler, parameters: list[inspect.Parameter]) -> dict[str, Any]:
    """The parameters' annotations, string annotations resolved where they can be."""
    found = {p.name: p.annotation for p in parameters}
    if any(isinstance(a, str) for a in found.values()):
        try:
            hints = typing.get_type_hints(handler)
        except Exception:  # an annotation naming what cannot be imported: leave it unresolved
            hints = {}
        found.update({k: v for k, v in hints.items() if k in found})
    return found


def _handler_name(handler: Handler) -> str:
    return str(getattr(handler, "__qualname__", handler))


def bind_http(
    handler: Handler,
    dependencies: DependencyMap,
    owner: Any,
    path: str,
    *,
    legacy: bool = False,
) -> Callable[[Request], Any]:
    """``handler`` as a function of the request, resolved once.

    Each parameter is bound by these rules, in order (Robyn's, then ours):
    its annotation (``Request``, ``QueryParams`` or a subclass, ``Headers``,
    ``PathParams``, ``Body`` or a subclass, ``Method``, ``Url``,
    ``FormData``, ``Files``, ``IPAddress``, ``Identity``: that part of the
    request; ``JsonBody`` or a subclass, or a ``TypedDict``: the body parsed
    as JSON, 400 if it is not; a pydantic model: the body validated into it, or 422
    with the errors, see :mod:`robyn_fast.models`); its name (``request``/``req``/``r``,
    ``path_params``, ``query_params``, ``headers``, ``body``, ``method``,
    ``url``, ``ip_addr``, ``identity``, ``form_data``, ``files``;
    ``global_dependencies`` and ``router_dependencies`` get those dicts of
    ``dependencies``, ``owner`` being the router); a parameter named like
    an injected dependency gets it (looked up at each call). Any other is a
    typed parameter, as in Robyn 0.80+: the path parameter of that name, or
    else the query parameter, converted to its annotation (none: ``str``;
    see :func:`robyn_fast.binding.converter`; ``list[T]`` takes every value
    of a repeated one), its default when absent (None for ``T | None``);
    a request that lacks a required one or holds text of another type is
    answered 400 naming it (:class:`InvalidParameter`). An annotation that
    no rule takes raises :class:`UnboundParameter` (a ``TypeError``) naming
    the handler and the parameter, here, not when a request comes.

    A parameter no rule takes that has a default is left to it.

    ``legacy``: Robyn 0.77-0.79's rules instead, for the compat app: no
    query parameter by name (such a parameter without a default cannot be
    bound).
    """
    name = _handler_name(handler)
    try:
        parameters = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return handler  # no signature to read (some builtins): call it with the request
    path_names = set(compile_path(path).param_names)
    router_deps = dependencies.get_router_dependencies(owner)
    global_deps = dependencies.get_global_dependencies()
    injected = router_deps.keys() | global_deps.keys()
    parameters = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    annotations = _annotations(handler, parameters)
    sources: list[tuple[inspect.Parameter, Source]] = []
    bodies: list[str] = []
    for p in parameters:
        annotation = annotations[p.name]
        source = _by_annotation(annotation)
        if source is not None:
            pass
        elif models.is_model_class(annotations[p.name]):
            bodies.append(p.name)
            source = Call(models.body_reader(annotations[p.name], name, p.name))
        elif p.name in REQUEST_PARTS:
            source = _part(REQUEST_PARTS[p.name])
        elif p.name == "global_dependencies":
            source = Call(lambda _r: dependencies.get_global_dependencies())
        elif p.name == "router_dependencies":
            source = Call(lambda _r: dependencies.get_router_dependencies(owner))
        elif p.name in path_names and annotation in (p.empty, str):
            source = Item(0, "path_params", p.name)
        elif p.name in injected:
            source = Dependency(p.name, (router_deps, global_deps))
        if source is None:
            conv = None if legacy and p.name not in path_names else converter(annotation)
            if conv is None:
                if p.default is not p.empty:
                    continue  # left to its default
                why = ("Robyn 0.77-0.79 reads no query parameter by name" if legacy
                       else f"its annotation {annotation!r} is none of {CONVERTIBLE}")
                raise UnboundParameter(
                    f"cannot bind parameter {p.name!r} of HTTP handler {name} for {path!r}: it is not the "
                    f"request, path_params, query_params, headers, body, method, url, ip_addr, identity, "
                    f"form_data, files, an injected dependency, global_dependencies or router_dependencies, by "
                    f"name or by type annotation, and as a query or path parameter {why}"
                )
            source = Call(_typed(p.name, conv, p.default, p.name in path_names))
        sources.append((p, source))
    if not sources:
        return _Bare(handler)
    if len(bodies) > 1:
        raise ArgumentTypeError(
            f"HTTP handler {name} for {path!r} has {len(bodies)} pydantic body parameters ({', '.join(bodies)}); "
            "the body is validated into one model: make one model that holds the others")
    return bind_parameters(handler, 1, sources)


class _Bare:
    """A handler that takes nothing of the request, bound: the fast path of
    :meth:`Routes.handle` calls ``handler()`` without building a
    :class:`Request`; anything else calls this with one."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, _request: Request) -> Any:
        return self.handler()


class Route:
    """A route handler with its parameters resolved once, at registration.

    ``const`` routes (Robyn's ``const=True``) have their response cached
    after the first request: the handler must not depend on the request.
    ``chain`` is what runs around the handler (middlewares, global headers,
    the exception handler, authentication), or None when nothing does.
    ``bare``: the handler itself when it takes no parameter and nothing
    runs around it (no chain, no status or model to reshape its value):
    such a route takes the fast path, no :class:`Request` built.
    """

    __slots__ = ("method", "path", "handler", "name", "call", "const", "cached", "auth_required", "chain",
                 "unbound", "owner", "scopes", "status", "model", "legacy", "bare")

    def __init__(self, handler: Handler, call: Callable[[Request], Any], const: bool, method: str = "GET",
                 path: str = "/", auth_required: bool = False) -> None:
        self.method = method
        self.path = path
        self.handler = handler
        self.name = _handler_name(handler)
        self.call = call
        self.const = const
        self.cached: dict[tuple[bool, bool], bytes] = {}
        self.auth_required = auth_required
        self.chain: Chain | None = None
        #: Why the handler's parameters cannot be bound (lenient registration), else None.
        self.unbound: str | None = None
        #: (call, unbound) under Robyn 0.77-0.79's binding rules (Robyn apps only), else None.
        self.legacy: tuple[Callable[[Request], Any], str | None] | None = None
        #: The status of a response made from the handler's return value (None: render()'s).
        self.status: int | None = None
        #: The pydantic model a returned dict is validated into (``response_model``), or None.
        self.model: Any = None
        #: The router whose ``router_dependencies`` the handler gets (None: the registry's owner).
        self.owner: Any = None
        #: The middleware registries of the sub-routers this route came through, outermost first,
        #: each with the route's path there (a sub-router's endpoint middlewares use its own paths).
        self.scopes: tuple[tuple[Middlewares, str], ...] = ()
        self.bare: Handler | None = None

    def settle(self, chain: Chain | None) -> None:
        """Take ``chain`` (resolved again after any middleware, global
        header, exception handler or authentication change) and decide
        whether the route takes the fast path."""
        self.chain = chain
        call = self.call
        self.bare = call.handler if chain is None and isinstance(call, _Bare) else None


class _Raised:
    """An exception a step of a chain raised, as a value."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class _Pending(NamedTuple):
    pos: int
    awaitable: Awaitable[Any]


class _Exchange:
    """One request going through a chain."""

    __slots__ = ("route", "chain", "request", "response", "keep_alive", "head", "handled", "error")

    def __init__(self, route: Route, chain: Chain, request: Request, keep_alive: bool, head: bool) -> None:
        self.route = route
        self.chain = chain
        self.request = request
        self.response: Response | None = None
        self.keep_alive = keep_alive
        self.head = head
        self.handled = False  # the exception handler has answered
        self.error: HTTPError | None = None  # no route: the 404/405 that stands for the handler


_NOTHING: Any = object()
# Return values that are never awaitable: fast_response's.
_PLAIN = frozenset({str, dict, bytes})
_ANSWERED: Any = object()  # a before-request middleware answered: on to the after-request ones


class Routes:
    """The HTTP routes of an application and the answer to one request.

    ``dependencies`` and ``owner`` are what handlers' ``global_dependencies``
    and ``router_dependencies`` come from; ``is_websocket_path(path)`` says
    whether a WebSocket endpoint lives at ``path`` (a plain request there gets
    426 instead of 404). :attr:`middlewares` is the app's middleware
    registry (:mod:`robyn_fast.http.middleware`).

    ``strict`` (the default): a handler parameter that cannot be bound raises
    at registration. Not strict (Robyn apps): the app still starts, the
    problem is logged once at registration and the route answers 500, as
    Robyn answers it. ``stringify``: a handler's return value of another type
    than those :func:`~robyn_fast.http.types.render` takes is sent as its
    ``str()`` (``None`` as ``"None"``), as Robyn does; otherwise it is a 500.
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
        self._routes: list[Route] = []
        self.middlewares = Middlewares(self.resolve)
        self.strict = True
        self.stringify = False
        #: Not strict only: bind parameters by Robyn 0.77-0.79's rules, from the next :meth:`resolve` on
        #: (the compat app's ``Config.robyn_version`` before 0.80).
        self.robyn_079 = False
        #: The body of a 404 (Robyn sends "Not found"); None: the reason phrase.
        self.not_found_text: str | None = None
        # What answers a path no route has (404) or a method it lacks (405)
        # when global middlewares or headers exist; None otherwise.
        self._fallback: Route | None = None

    def add(self, method: str, path: str, handler: Handler, const: bool = False, auth_required: bool = False,
            owner: Any = _NOTHING, scopes: tuple[tuple[Middlewares, str], ...] = (),
            status: int | None = None, model: Any = None) -> Route:
        """Register ``handler`` for ``method`` at ``path``; its parameters are
        bound now (``TypeError`` for one that cannot be, when strict).
        ``owner``: the router whose ``router_dependencies`` the handler gets
        (this app's by default; a sub-router's for its routes); ``scopes``:
        the middlewares of the sub-routers the route comes from, outermost
        first, with the route's path in each, which run around this route
        only. ``status``: the status of a response made from what the
        handler returns (a ``Response``, a stream or a tuple keep their own);
        ``model``: a pydantic 2 model that a returned ``dict`` is validated
        into and sent as (the route's ``response_model``)."""
        if not callable(handler):
            raise TypeError(f"a route handler must be callable, not {type(handler).__name__}")
        if not isinstance(path, str):
            raise TypeError(f"a route path must be a str, not {type(path).__name__}")
        method = method.upper()
        router = self._owner if owner is _NOTHING else owner
        call, unbound = self._bind(handler, router, method, path, status, model, legacy=False)
        route = Route(handler, call, const, method, path, auth_required)
        route.status = status
        route.model = model
        route.unbound = unbound
        if not self.strict:  # Robyn apps: the binding of Robyn 0.77-0.79 too, should they ask for it
            route.legacy = self._bind(handler, router, method, path, status, model, legacy=True)
        route.owner = None if owner is _NOTHING else owner
        route.scopes = scopes
        self.router.add(method, path, route)
        self._routes.append(route)
        route.settle(self._chain(route))
        return route

    def _bind(self, handler: Handler, router: Any, method: str, path: str, status: int | None, model: Any,
              legacy: bool) -> tuple[Callable[[Request], Any], str | None]:
        """The route's call, and why its parameters cannot be bound (None
        when they can): when not strict, such a route answers 500."""
        unbound: str | None = None
        try:
            call = bind_http(handler, self._dependencies, router, path, legacy=legacy)
        except UnboundParameter as exc:
            if self.strict:
                raise
            if not legacy:
                log.error("%s %s: %s; the route answers 500", method, path, exc)
            unbound = str(exc)
            call = _refuse(unbound)
        if status is not None or model is not None:
            call = _reshaped(call, status, model, self.stringify)
        return call, unbound

    def _bind_as_robyn_079(self) -> None:
        """Robyn 0.77-0.79's parameter binding for every route: a parameter
        that only Robyn 0.80+ reads from the query makes its route answer
        500, as there; logged once per route."""
        for route in self._routes:
            if route.legacy is None:
                continue
            route.call, route.unbound = route.legacy
            route.legacy = None
            route.settle(route.chain)
            if route.unbound is not None:
                log.error("%s %s: %s; the route answers 500", route.method, route.path, route.unbound)

    def all(self) -> list[Route]:
        """Every route, in registration order."""
        return list(self._routes)

    def _chain(self, route: Route) -> Chain | None:
        auth = Middleware(functools.partial(self._authenticate, route), BEFORE, 1, "authentication") \
            if route.auth_required else None
        return self.middlewares.chain_for(route.method, route.path, auth, route.scopes)

    def resolve(self) -> None:
        """Resolve every route's chain again (after a middleware, a global
        header or the exception handler changed; the server calls it as it
        starts, for changes made to the header collections directly)."""
        if self.robyn_079:
            self._bind_as_robyn_079()
        for route in self._routes:
            route.settle(self._chain(route))
        chain = self.middlewares.chain_for("*", None)
        if chain is None:
            self._fallback = None
        else:
            fallback = Route(_no_route, _no_route, False, "*", "/")
            fallback.chain = chain
            self._fallback = fallback

    def _authenticate(self, route: Route, request: Request) -> Request | Response | Awaitable[Request | Response]:
        """The authentication step of an ``auth_required`` route: the
        handler of the innermost sub-router that has one, else this app's;
        its ``authenticate(request)`` may be ``async def`` (awaited then)."""
        handler = None
        for registry, _ in reversed(route.scopes):  # the innermost sub-router first
            handler = registry.authentication_handler
            if handler is not None:
                break
        else:
            handler = self.middlewares.authentication_handler
        if handler is None:
            raise AuthenticationNotConfigured(
                "a route has auth_required=True but no authentication handler is configured "
                "(app.configure_authentication(...))"
            )
        identity = handler.authenticate(request)
        if inspect.isawaitable(identity):
            return self._identified(handler, request, identity)
        return _identify(handler, request, identity)

    @staticmethod
    async def _identified(handler: Any, request: Request, pending: Awaitable[Any]) -> Request | Response:
        return _identify(handler, request, await pending)

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        peer: str | None,
        scheme: str = "http",
    ) -> Reply | Awaitable[Reply]:
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
        except (MethodNotAllowed, NotFound) as exc:
            if self._fallback is not None and not (
                    self._is_websocket_path is not None and self._is_websocket_path(path)):
                if isinstance(exc, NotFound) and self.not_found_text is not None:
                    exc = NotFound(message=self.not_found_text)
                return self._no_route(exc, method, target, headers, body, keep_alive, peer, scheme)
            if isinstance(exc, MethodNotAllowed):
                return error_response(405, None, exc.headers, keep_alive=keep_alive, head=head)
            if self._is_websocket_path is not None and self._is_websocket_path(path):
                return error_response(
                    426,
                    "this endpoint speaks WebSocket only",
                    [("upgrade", "websocket"), ("sec-websocket-version", "13")],
                    keep_alive=keep_alive,
                    head=head,
                )
            return error_response(404, self.not_found_text, keep_alive=keep_alive, head=head)
        chain = route.chain
        if chain is not None:
            request = Request.from_target(method, target, Headers(headers), body, scheme=scheme, ip_addr=peer)
            request.path_params = path_params
            return self._through_chain(_Exchange(route, chain, request, keep_alive, head))
        if route.const:
            cached = route.cached.get((keep_alive, head))
            if cached is not None:
                return cached
        bare = route.bare
        try:
            if bare is not None:
                result = bare()  # the fast path: the handler reads nothing of the request
            else:
                request = Request.from_target(method, target, Headers(headers), body, scheme=scheme, ip_addr=peer)
                request.path_params = path_params
                result = route.call(request)
        except HTTPError as exc:
            return _http_error(exc, keep_alive, head)
        except Exception:
            log.exception("%s %s: handler %s raised", method, path, route.name)
            return error_response(500, keep_alive=keep_alive, head=head)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            return self._finish(route, result, method, path, keep_alive, head)
        return self._serialize(route, result, keep_alive, head)

    async def _finish(
        self, route: Route, pending: Awaitable[Any], method: str, path: str, keep_alive: bool, head: bool
    ) -> Reply:
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except HTTPError as exc:
            return _http_error(exc, keep_alive, head)
        except Exception:
            log.exception("%s %s: handler %s raised", method, path, route.name)
            return error_response(500, keep_alive=keep_alive, head=head)
        return self._serialize(route, result, keep_alive, head)

    def _serialize(self, route: Route, result: Any, keep_alive: bool, head: bool) -> bytes | StreamedReply:
        try:
            fast = fast_response(result, keep_alive=keep_alive, head=head)
            if fast is not None:
                if route.const:
                    route.cached[(keep_alive, head)] = fast
                return fast
            if result is None and self.stringify:
                result = to_response(None, stringify=True)
            try:
                status, fields, payload = render(result)
            except UnsupportedResponseType:
                # Off the common path: a stream, or Robyn's str() of anything else.
                if isinstance(result, StreamingResponse):
                    return _streamed(route.name, result, keep_alive, head)
                if not self.stringify:
                    raise
                status, fields, payload = render(to_response(result, stringify=True))
            response = serialize_response(status, fields, payload, keep_alive=keep_alive, head=head)
        except (InvalidHeader, TypeError, ValueError):
            log.exception("handler %s returned a response that cannot be sent", route.name)
            return error_response(500, keep_alive=keep_alive, head=head)
        if route.const:
            route.cached[(keep_alive, head)] = response
        return response

    def _no_route(self, exc: HTTPError, method: str, target: str, headers: list[tuple[bytes, bytes]],
                  body: bytes, keep_alive: bool, peer: str | None, scheme: str) -> Reply | Awaitable[Reply]:
        """404 or 405 through the global middlewares and headers (as Robyn
        answers a path it has no route for)."""
        fallback = self._fallback
        assert fallback is not None and fallback.chain is not None
        request = Request.from_target(method, target, Headers(headers), body, scheme=scheme, ip_addr=peer)
        ex = _Exchange(fallback, fallback.chain, request, keep_alive, method == "HEAD")
        ex.error = exc
        return self._through_chain(ex)

    # -- the chain -------------------------------------------------------------------

    def _through_chain(self, ex: _Exchange) -> Reply | Awaitable[Reply]:
        request_headers = ex.chain.request_headers
        if request_headers is not None:
            seen: set[str] = set()
            for name, value in request_headers.multi_items():
                if name in seen:
                    ex.request.headers.append(name, value)
                else:
                    seen.add(name)
                    ex.request.headers.set(name, value)
        out = self._drive(ex, 0)
        if isinstance(out, _Pending):
            return self._drive_async(ex, out)
        return out

    async def _drive_async(self, ex: _Exchange, pending: _Pending) -> Reply:
        while True:
            try:
                result = await pending.awaitable
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result = _Raised(exc)
            out = self._drive(ex, pending.pos, result)
            if not isinstance(out, _Pending):
                return out
            pending = out

    def _drive(self, ex: _Exchange, pos: int, result: Any = _NOTHING) -> Reply | _Pending:
        """Run the chain from step ``pos`` (``result``: that step's outcome,
        when it was awaited) until it answers or must wait."""
        n_before = len(ex.chain.before)
        end = n_before + len(ex.chain.after)
        while True:
            if result is _NOTHING:
                try:
                    result = self._invoke(ex, pos, n_before)
                except Exception as exc:
                    result = _Raised(exc)
                else:
                    if inspect.isawaitable(result):
                        return _Pending(pos, result)
            done = self._absorb(ex, pos, n_before, result)
            if done is _ANSWERED:
                pos = n_before  # the handler is skipped; the after-request middlewares run
            elif done is not None:
                return done
            if pos == end:
                return self._send(ex)
            pos += 1
            result = _NOTHING

    @staticmethod
    def _invoke(ex: _Exchange, pos: int, n_before: int) -> Any:
        if pos < n_before:
            mw = ex.chain.before[pos]
            return mw.fn(ex.request) if mw.nargs else mw.fn()
        if pos == n_before:
            if ex.error is not None:
                raise ex.error
            return ex.route.call(ex.request)
        mw = ex.chain.after[pos - n_before - 1]
        if mw.nargs == 0:
            return mw.fn()
        if mw.nargs == 1:
            return mw.fn(ex.response)
        return mw.fn(ex.request, ex.response)

    def _absorb(self, ex: _Exchange, pos: int, n_before: int, result: Any) -> Reply | _Pending | None:
        """Take step ``pos``'s outcome; the response bytes when the exchange
        ends here, a step to wait for, :data:`_ANSWERED` when a
        before-request middleware answered, or None to go on."""
        if pos < n_before:
            mw = ex.chain.before[pos]
            if isinstance(result, _Raised):
                return self._failed(ex, f"before_request middleware {mw.name} raised", result.exc)
            if isinstance(result, Request):
                ex.request = result
                return None
            if result is None:
                return None
            # Anything else answers at once, as a handler's return value would (Robyn 0.80+).
            try:
                ex.response = to_response(result, stringify=self.stringify)
            except (InvalidHeader, TypeError, ValueError) as unusable:
                return self._failed(ex, f"before_request middleware {mw.name} returned {type(result).__name__}, "
                                        "which is not a Request nor a response", unusable)
            self._add_response_headers(ex)
            answered: Reply | _Pending | None = _ANSWERED
            return answered
        if pos == n_before:
            if isinstance(result, _Raised):
                exc = result.exc
                if isinstance(exc, HTTPError):
                    result = Response(exc.status_code, Headers(list(exc.headers)), exc.message)
                elif ex.chain.exception_handler is not None and not ex.handled:
                    ex.handled = True
                    try:
                        result = ex.chain.exception_handler(exc)
                    except Exception as handler_exc:
                        return self._failed(ex, "the exception handler raised", handler_exc)
                    if inspect.isawaitable(result):
                        return _Pending(pos, result)
                else:
                    # As for a handler's 500 in Robyn: still through the global
                    # headers and the after-request middlewares.
                    what = "the exception handler raised" if ex.handled else f"handler {ex.route.name} raised"
                    log.error("%s %s: %s", ex.request.method, ex.request.path, what, exc_info=exc)
                    result = Response(500, Headers([("content-type", TEXT_PLAIN)]), reason_phrase(500))
            if isinstance(result, StreamingResponse):
                extra = ex.chain.response_headers
                if extra is not None:
                    missing = [(n, v) for n, v in extra.multi_items() if n not in result.headers]
                    for name, value in missing:
                        result.headers.append(name, value)
                return _streamed(ex.route.name, result, ex.keep_alive, ex.head)  # no after-request middlewares
            try:
                ex.response = to_response(result, stringify=self.stringify)
            except (InvalidHeader, TypeError, ValueError) as exc:
                return self._failed(ex, f"handler {ex.route.name} returned a response that cannot be sent", exc)
            self._add_response_headers(ex)
            return None
        mw = ex.chain.after[pos - n_before - 1]
        if isinstance(result, _Raised):
            return self._failed(ex, f"after_request middleware {mw.name} raised", result.exc)
        if isinstance(result, Response):
            ex.response = result
        elif result is not None:
            return self._failed(ex, f"after_request middleware {mw.name} returned {type(result).__name__}, "
                                    "not a Response", None)
        return None

    @staticmethod
    def _add_response_headers(ex: _Exchange) -> None:
        extra = ex.chain.response_headers
        response = ex.response
        if extra is None or response is None:
            return
        have = response.headers
        # Computed first: several values of one global name all go in, but
        # never over a field the response has itself.
        missing = [(name, value) for name, value in extra.multi_items() if name not in have]
        for name, value in missing:
            have.append(name, value)

    def _send(self, ex: _Exchange) -> bytes:
        response = ex.response
        assert response is not None
        try:
            status, fields, payload = render(response)
            return serialize_response(status, fields, payload, keep_alive=ex.keep_alive, head=ex.head)
        except (InvalidHeader, TypeError, ValueError):
            log.exception("%s %s: the response of handler %s cannot be sent", ex.request.method,
                          ex.request.path, ex.route.name)
            return error_response(500, keep_alive=ex.keep_alive, head=ex.head)

    @staticmethod
    def _failed(ex: _Exchange, what: str, exc: BaseException | None) -> bytes:
        log.error("%s %s: %s", ex.request.method, ex.request.path, what, exc_info=exc)
        return error_response(500, keep_alive=ex.keep_alive, head=ex.head)


def _streamed(name: str, response: StreamingResponse, keep_alive: bool, head: bool) -> bytes | StreamedReply:
    """The head of a streamed response and its chunks (RFC 9112 §7.1)."""
    try:
        head_bytes = serialize_response(response.status_code, response.headers.multi_items(), b"",
                                        keep_alive=keep_alive, head=head, chunked=True)
    except (InvalidHeader, TypeError, ValueError):
        log.exception("handler %s returned a streamed response that cannot be sent", name)
        return error_response(500, keep_alive=keep_alive, head=head)
    if head:
        close = getattr(response.content, "close", None)
        if close is not None:
            close()
        return StreamedReply(head_bytes, None)
    return StreamedReply(head_bytes, body_chunks(response.content))


def _identify(handler: Any, request: Request, identity: Any) -> Request | Response:
    """The request with its identity, or the handler's 401 for None."""
    if identity is None:
        refused: Response = handler.unauthorized_response
        return refused
    request.identity = identity
    return request


def _no_route(_request: Request) -> Any:
    raise NotFound()


def _reshaped(call: Callable[[Request], Any], status: int | None, model: Any,
              stringify: bool) -> Callable[[Request], Any]:
    """``call`` whose plain return values (not a ``Response``, a stream or a
    tuple, which carry their own status) become a response of ``status``;
    a ``dict`` goes through ``model`` first (validated with its
    ``model_validate``, sent as its ``model_dump_json()``: a pydantic 2
    model's methods), as Robyn 0.88 applies a route's ``response_model``."""

    def restatus(result: Any) -> Any:
        if isinstance(result, (Response, StreamingResponse, tuple)):
            return result
        if model is not None and isinstance(result, dict):
            return Response(status or 200, Headers([("content-type", APPLICATION_JSON)]),
                            model.model_validate(result).model_dump_json())
        if status is None:
            return result
        try:
            response = to_response(result, stringify=stringify)
        except UnsupportedResponseType:
            return result  # answered as any value of this type is (a 500, logged)
        response.status_code = status
        return response

    async def finish(pending: Awaitable[Any]) -> Any:
        return restatus(await pending)

    def with_status(request: Request) -> Any:
        result = call(request)
        if inspect.isawaitable(result):
            return finish(result)
        return restatus(result)

    return with_status


def _refuse(reason: str) -> Callable[[Request], Any]:
    def refuse(_request: Request) -> Any:
        raise UnboundParameter(reason)

    return refuse


def _http_error(exc: HTTPError, keep_alive: bool, head: bool) -> bytes:
    """The response an :class:`HTTPError` raised by a handler stands for."""
    try:
        return error_response(exc.status_code, exc.message, exc.headers, keep_alive=keep_alive, head=head)
    except (InvalidHeader, TypeError, ValueError):
        log.exception("HTTPError %s carries headers that cannot be sent", exc.status_code)
        return error_response(500, keep_alive=keep_alive, head=head)
