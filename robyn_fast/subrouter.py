"""``SubRouter("/api")``: routes, middlewares, dependencies and WebSocket
endpoints written apart from the app, under a path prefix, and merged into
the app's one route registry by ``app.include_router(router)``.

Every route decorator, ``add_route``, the route-specific middlewares and
``WebSocket(router, path)`` take paths relative to the prefix. A sub-router
is not served by itself: its routes are answered once it is included, with
its global middlewares around its own routes only (Robyn applies them to
every route of the app once included; scoping them is what a sub-router is
for), its router dependencies its own, and its global dependencies filling
in the names the app lacks. A sub-router may include another: prefixes add
up (``/api`` + ``/v1`` + ``/users``), and each router's middlewares wrap the
routes it holds, the outer ones first.

Including a router takes what it holds then: a route, a WebSocket endpoint
or a router added to it afterwards would never be served, so it raises
:class:`~robyn_fast.exceptions.InvalidState` (the compat ``SubRouter`` logs
it instead: a Robyn app that does so loads, as on Robyn). Its middlewares
and dependencies may still change: they are read when the server starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .app import Handler, Robyn
from .config import Config
from .exceptions import InvalidState
from .http.router import join_prefix

if TYPE_CHECKING:
    from .server import Server, ServedEndpoint

__all__ = ["SubRouter", "join_prefix", "subrouter_arguments"]


def _is_module_reference(value: str) -> bool:
    """Whether a lone positional argument is a module's ``__name__`` or
    ``__file__`` (the older ``SubRouter(__file__)``) rather than a prefix:
    ``"__main__"``, a dotted name, or the path of an existing ``.py`` file.
    A prefix (``"/users"``, ``"users"``) is none of these; the rule is
    Robyn 0.80's."""
    if value.startswith("/"):
        return value.endswith(".py") and os.path.isfile(value)
    return value == "__main__" or "." in value


def subrouter_arguments(args: tuple[Any, ...], prefix: str | None,
                        file_object: str | None) -> tuple[str | None, str, Any]:
    """``(file_object, prefix, config)`` from a ``SubRouter(...)`` call, in
    every shape Robyn has accepted: ``SubRouter("/users")``,
    ``SubRouter(prefix="/users")``, ``SubRouter(__file__, "/users"[,
    config])``, ``SubRouter(__name__, prefix="/users")``,
    ``SubRouter(__file__)``; config is ``None`` unless given third.
    ``TypeError`` for anything else, naming what is wrong."""
    config: Any = None
    if len(args) > 3:
        raise TypeError(f"SubRouter() takes at most 3 positional arguments (file, prefix, config), "
                        f"{len(args)} were given")
    for what, value in zip(("first", "second"), args[:2]):
        if not isinstance(value, str):
            raise TypeError(f"SubRouter()'s {what} argument must be a str (the prefix, or the module's "
                            f"__file__ / __name__ followed by the prefix), not {type(value).__name__}")
    if len(args) == 3:
        config = args[2]
    if len(args) >= 2:
        if prefix is not None:
            raise TypeError("SubRouter() got the prefix twice (second positional argument and prefix=)")
        if file_object is not None:
            raise TypeError("SubRouter() got the file twice (first positional argument and file_object=)")
        return args[0], args[1], config
    if args:
        if prefix is not None or _is_module_reference(args[0]):
            if file_object is not None:
                raise TypeError("SubRouter() got the file twice (positional argument and file_object=)")
            file_object = args[0]
        else:
            prefix = args[0]
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"a SubRouter prefix must be a str, not {type(prefix).__name__}")
    if file_object is not None and not isinstance(file_object, str):
        raise TypeError(f"SubRouter()'s file_object must be a str (__file__ or __name__), not "
                        f"{type(file_object).__name__}")
    return file_object, prefix or "", config


class SubRouter(Robyn):
    """Routes under ``prefix``, included in an app with ``app.include_router``.

    ``SubRouter("/api")`` or ``SubRouter(prefix="/api")``; the older form
    with the module's ``__file__`` first (``SubRouter(__file__, "/api")``,
    ``SubRouter(__file__, prefix="/api")``) works too (see
    :func:`subrouter_arguments`; a wrong argument is a ``TypeError``).
    ``tags``: OpenAPI tags put first on every route of this router.
    """

    def __init__(self, *args: Any, prefix: str | None = None, config: Config | None = None,
                 file_object: str | None = None, tags: list[str] | None = None) -> None:
        file_object, prefix, positional_config = subrouter_arguments(args, prefix, file_object)
        if positional_config is not None:
            if config is not None:
                raise TypeError("SubRouter() got the config twice (third positional argument and config=)")
            config = positional_config
        if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
            raise TypeError("SubRouter tags must be a list of str")
        self._from_file = file_object is not None
        super().__init__(file_object if file_object is not None else "", config)
        if file_object is None:
            self.directory_path = os.getcwd()
        self.prefix = prefix
        self.tags: list[str] = list(tags) if tags else []
        self._parent: Robyn | None = None

    def _read_env_file(self) -> None:
        # Only the legacy form names a file; without one there is no directory of the router's own.
        if self._from_file:
            super()._read_env_file()

    def _full(self, endpoint: str) -> str:
        return join_prefix(self.prefix, endpoint)

    def _late(self, what: str) -> None:
        """``what`` is registered after this router was included: it would
        never be served (the including router took what it held then)."""
        raise InvalidState(f"{what}: this SubRouter is already included, so it would never be served; "
                           "register a router's routes (and include its own routers) before including it")

    def include_router(self, router: Any) -> None:
        if self._parent is not None:
            self._late(f"include_router({type(router).__name__} {getattr(router, 'prefix', '')!r})")
        super().include_router(router)

    def add_route(self, route_type: str, endpoint: str, handler: Handler, const: bool = False,
                  auth_required: bool = False, openapi_name: str = "", openapi_tags: list[str] | None = None,
                  *, status_code: int | None = None, response_model: Any = None,
                  responses: dict[int | str, Any] | None = None, deprecated: bool = False,
                  include_in_schema: bool = True) -> Handler:
        if self._parent is not None:
            self._late(f"route {route_type.upper()} {self._full(endpoint)!r}")
        return super().add_route(route_type, self._full(endpoint), handler, const, auth_required, openapi_name,
                                 openapi_tags, status_code=status_code, response_model=response_model,
                                 responses=responses, deprecated=deprecated, include_in_schema=include_in_schema)

    def before_request(self, endpoint: str | None = None) -> Callable[[Handler], Handler]:
        return super().before_request(None if endpoint is None else self._full(endpoint))

    def after_request(self, endpoint: str | None = None) -> Callable[[Handler], Handler]:
        return super().after_request(None if endpoint is None else self._full(endpoint))

    def add_web_socket(self, endpoint: str, ws: ServedEndpoint) -> None:
        full = self._full(endpoint)
        if self._parent is not None:
            self._late(f"WebSocket endpoint {full!r}")
        ws.endpoint = full  # the path it is served at, once included
        super().add_web_socket(full, ws)

    def attach_parent(self, app: Robyn) -> None:
        """Called by ``app.include_router(self)``: one app per sub-router."""
        if self._parent is not None and self._parent is not app:
            raise ValueError("this SubRouter is already included in another app or router")
        self._parent = app
        self.config = app.config

    @property
    def parent(self) -> Robyn | None:
        """The app (or sub-router) that included this router, or None."""
        return self._parent

    @property
    def server(self) -> Server | None:
        """The server serving the app that included this router."""
        return None if self._parent is None else self._parent.server

    def start(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a SubRouter is not served by itself: app.include_router(router), then app.start()")
