"""``SubRouter(__file__, prefix="/api")``: routes, middlewares, dependencies
and WebSocket endpoints written apart from the app, under a path prefix, and
merged into the app's one route registry by ``app.include_router(router)``.

Every route decorator, ``add_route``, the route-specific middlewares and
``WebSocket(router, path)`` take paths relative to the prefix. A sub-router
is not served by itself: its routes are answered once it is included, with
its global middlewares around its own routes only (Robyn 0.77 applies them
to every route of the app once included; scoping them is what a sub-router
is for), its router dependencies its own, and its global dependencies
filling in the names the app lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .app import Handler, Robyn
from .config import Config
from .http.router import join_prefix

if TYPE_CHECKING:
    from .server import Server, ServedEndpoint

__all__ = ["SubRouter", "join_prefix"]


class SubRouter(Robyn):
    """Routes under ``prefix``, included in an app with ``app.include_router``."""

    def __init__(self, file_object: str, prefix: str = "", config: Config | None = None) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"a SubRouter prefix must be a str, not {type(prefix).__name__}")
        super().__init__(file_object, config)
        self.prefix = prefix
        self._parent: Robyn | None = None

    def _full(self, endpoint: str) -> str:
        return join_prefix(self.prefix, endpoint)

    def add_route(self, route_type: str, endpoint: str, handler: Handler, const: bool = False,
                  auth_required: bool = False, openapi_name: str = "",
                  openapi_tags: list[str] | None = None) -> Handler:
        return super().add_route(route_type, self._full(endpoint), handler, const, auth_required, openapi_name,
                                 openapi_tags)

    def before_request(self, endpoint: str | None = None) -> Callable[[Handler], Handler]:
        return super().before_request(None if endpoint is None else self._full(endpoint))

    def after_request(self, endpoint: str | None = None) -> Callable[[Handler], Handler]:
        return super().after_request(None if endpoint is None else self._full(endpoint))

    def add_web_socket(self, endpoint: str, ws: ServedEndpoint) -> None:
        full = self._full(endpoint)
        ws.endpoint = full  # the path it is served at, once included
        super().add_web_socket(full, ws)

    def attach_parent(self, app: Robyn) -> None:
        """Called by ``app.include_router(self)``: one app per sub-router."""
        if self._parent is not None and self._parent is not app:
            raise ValueError("this SubRouter is already included in another app")
        self._parent = app
        self.config = app.config

    @property
    def parent(self) -> Robyn | None:
        """The app that included this router, or None."""
        return self._parent

    @property
    def server(self) -> Server | None:
        """The server serving the app that included this router."""
        return None if self._parent is None else self._parent.server

    def start(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a SubRouter is not served by itself: app.include_router(router), then app.start()")
