"""Middlewares, global headers, the exception handler and authentication of
an application: what runs around a route handler.

:class:`Middlewares` is the registry (one per app; a sub-router's merge into
its app's when it is included). For each route,
:meth:`Middlewares.chain_for` resolves once, at registration (and again
whenever a middleware or a global header is added), the :class:`Chain` that
applies to it, or ``None`` when nothing does: such a route is answered
exactly as if this module did not exist, at no cost per request.

Order for one request, as in Robyn: the global request headers are set on
the request; the before-request middlewares run, global ones first, then
the route's (auth first of those); one that returns a
:class:`~robyn_fast.http.types.Request` replaces the request; one that
returns a :class:`~robyn_fast.http.types.Response`, or any value a handler
may return (a dict, a ``(body, headers, status)`` tuple...), answers the
request: the handler does not run, the global response headers and the
after-request middlewares do (as in Robyn 0.80+). Then the
handler; an exception from it goes to the exception handler, whose return
value is the response. Then the global response headers are added (fields
the response already has are left as they are; not for an excluded path),
then the after-request middlewares, global first, each returning the
response (or ``None`` to keep it).

A middleware is bound by its number of parameters, once: a before-request
one takes ``()`` or ``(request)``; an after-request one ``()``,
``(response)`` or ``(request, response)``. Sync or async alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from .router import compile_path
from .types import Headers

__all__ = ["Middleware", "Chain", "Middlewares", "BEFORE", "AFTER"]

BEFORE = "before_request"
AFTER = "after_request"


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return len(required)


class Middleware(NamedTuple):
    """One middleware: ``fn`` and how many of (request, response) it takes."""

    fn: Callable[..., Any]
    kind: str  # BEFORE or AFTER
    nargs: int
    name: str

    @classmethod
    def of(cls, fn: Callable[..., Any], kind: str) -> Middleware:
        if not callable(fn):
            raise TypeError(f"a middleware must be callable, not {type(fn).__name__}")
        nargs = _arity(fn)
        limit = 1 if kind == BEFORE else 2
        if nargs > limit:
            takes = "() or (request)" if kind == BEFORE else "(), (response) or (request, response)"
            raise TypeError(
                f"{kind} middleware {getattr(fn, '__qualname__', fn)} takes {nargs} parameters; it takes {takes}"
            )
        return cls(fn, kind, nargs, str(getattr(fn, "__qualname__", fn)))


class Chain(NamedTuple):
    """What runs around one route, resolved at registration."""

    before: tuple[Middleware, ...]
    after: tuple[Middleware, ...]
    request_headers: Headers | None  # set on every request (None: nothing to set)
    response_headers: Headers | None  # added to every response (None: none, or an excluded path)
    exception_handler: Callable[[Exception], Any] | None


class Middlewares:
    """The middleware registry of one application.

    ``on_change()`` is called after every change, so the routes resolve
    their chains again (registration time, never per request).
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.global_before: list[Middleware] = []
        self.global_after: list[Middleware] = []
        #: (pattern key, method or None for any, middleware) for endpoint middlewares.
        self.endpoint: list[tuple[tuple[Any, ...], str | None, Middleware]] = []
        self.request_headers = Headers()
        self.response_headers = Headers()
        self.excluded_response_headers_paths: list[str] | None = None
        self.exception_handler: Callable[[Exception], Any] | None = None
        self.authentication_handler: Any = None
        #: (load, save): the first before-request and the last after-request
        #: step of every route, when sessions are configured.
        self.sessions: tuple[Middleware, Middleware] | None = None
        #: Robyn 0.77 hands its global *response* headers to every request too
        #: (its server registers both header maps under one type, so the request
        #: side receives the response map): the compat app sets this.
        self.response_headers_on_requests = False
        self._on_change = on_change

    def changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def add(self, kind: str, fn: Callable[..., Any], endpoint: str | None = None,
            method: str | None = None) -> Callable[..., Any]:
        """Register ``fn`` as a ``kind`` (:data:`BEFORE`/:data:`AFTER`)
        middleware of every route (``endpoint`` None) or of the routes at
        ``endpoint`` (a route pattern), for any method or only ``method``."""
        if kind not in (BEFORE, AFTER):
            raise ValueError(f"middleware kind must be {BEFORE!r} or {AFTER!r}, not {kind!r}")
        mw = Middleware.of(fn, kind)
        if endpoint is None:
            (self.global_before if kind == BEFORE else self.global_after).append(mw)
        else:
            if not isinstance(endpoint, str):
                raise TypeError(f"a middleware endpoint must be a str or None, not {type(endpoint).__name__}")
            self.endpoint.append((compile_path(_normalize(endpoint)).key, None if method is None else method.upper(),
                                  mw))
        self.changed()
        return fn

    def set_sessions(self, load: Callable[[Any], Any], save: Callable[[Any, Any], Any]) -> None:
        """``load(request)`` runs before every other middleware and
        ``save(request, response)`` after every other (sessions: the
        session is there for every middleware, and is saved on the final
        response)."""
        self.sessions = (Middleware.of(load, BEFORE), Middleware.of(save, AFTER))
        self.changed()

    def set_exception_handler(self, handler: Callable[[Exception], Any]) -> None:
        if not callable(handler):
            raise TypeError(f"an exception handler must be callable, not {type(handler).__name__}")
        self.exception_handler = handler
        self.changed()

    def exclude_response_headers_for(self, paths: list[str] | None) -> None:
        if paths is not None and (isinstance(paths, str) or not all(isinstance(p, str) for p in paths)):
            raise TypeError("exclude_response_headers_for() takes a list of paths or None")
        self.excluded_response_headers_paths = None if paths is None else list(paths)
        self.changed()

    def chain_for(self, method: str, path: str | None, auth: Middleware | None = None,
                  scopes: tuple[tuple[Middlewares, str], ...] = ()) -> Chain | None:
        """The chain of the route ``method path`` (None when nothing
        applies): this registry's global middlewares, then those of each
        of ``scopes`` (the sub-routers the route comes from, outermost
        first, each with the route's path there), then authentication,
        then the endpoint middlewares of this path in each registry;
        loading the session (this registry's, else the first scope's that
        has one) before all of them and saving it after all the
        after-request ones. ``path`` None: a request no route answers (the
        global middlewares and headers only)."""
        before = list(self.global_before)
        after = list(self.global_after)
        for scope, _ in scopes:
            before.extend(scope.global_before)
            after.extend(scope.global_after)
        sessions = next((r.sessions for r in (self, *(scope for scope, _ in scopes)) if r.sessions is not None), None)
        if sessions is not None:
            before.insert(0, sessions[0])
        if auth is not None:
            before.append(auth)
        key = compile_path(path).key if path is not None else None
        for registry, local in ((self, path), *scopes):
            if local is None:
                continue
            local_key = key if registry is self else compile_path(local).key
            for ep_key, ep_method, mw in registry.endpoint:
                if ep_key == local_key and (ep_method is None or ep_method == method):
                    (before if mw.kind == BEFORE else after).append(mw)
        if sessions is not None:
            after.append(sessions[1])
        request_headers = self.request_headers if not self.request_headers.is_empty() else None
        if self.response_headers_on_requests and not self.response_headers.is_empty():
            combined = Headers(self.request_headers)
            for name, value in self.response_headers.multi_items():
                if name not in self.request_headers:
                    combined.append(name, value)
            request_headers = combined
        response_headers: Headers | None = self.response_headers
        excluded = self.excluded_response_headers_paths
        if response_headers is not None and (response_headers.is_empty() or (
                excluded and any(compile_path(_normalize(p)).key == key for p in excluded if p.startswith("/")))):
            response_headers = None
        handler = self.exception_handler if path is not None else None
        if not before and not after and request_headers is None and response_headers is None and handler is None:
            return None
        return Chain(tuple(before), tuple(after), request_headers, response_headers, handler)


def _normalize(endpoint: str) -> str:
    """Robyn's endpoint forms: ``""`` is the root, a missing leading ``/`` is added."""
    endpoint = endpoint.strip()
    if not endpoint:
        return "/"
    return endpoint if endpoint.startswith("/") else "/" + endpoint
