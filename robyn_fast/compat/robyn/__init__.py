"""``robyn``, as robyn_fast provides it: the names of Robyn 0.77's top-level
package that robyn_fast implements.

Loaded under the name ``robyn`` by :func:`robyn_fast.compat.install`. Every
object here is robyn_fast's own (``robyn.WebSocket is robyn_fast.WebSocket``),
except :class:`Robyn` and :class:`SubRouter`, subclasses that behave as
Robyn's apps do where robyn_fast's native API chooses otherwise (a handler
parameter that cannot be bound answers 500 instead of stopping the app; a
return value of another type is sent as its ``str()``; ``event_handlers``)
and name the Robyn method an app calls when robyn_fast has no such method.
A Robyn name missing here raises
:class:`~robyn_fast.compat.UnsupportedRobynFeature` (an ``ImportError``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, NoReturn

import robyn_fast
from robyn_fast.compat import UNSUPPORTED_APP_METHODS, UnsupportedRobynMethod, module_getattr
from robyn_fast.config import Config as _Config
from robyn_fast.config import robyn_before_080
from robyn_fast.cors import allow_cors
from robyn_fast.logs import get_logger
from robyn_fast.subrouter import SubRouter as _SubRouter, subrouter_arguments

from . import status_codes
from .authentication import AuthenticationHandler
from .dependency_injection import DependencyMap
from .events import Events
from .exceptions import HTTPException, WebSocketException
from .jsonify import jsonify
from .openapi import OpenAPI
from .responses import SSEMessage, SSEResponse, StreamingResponse, html, serve_file, serve_html
from .robyn import Headers, Request, Response, WebSocketConnector
from .session import Session, SessionManager
from .types import JsonBody, RequestBody, RequestMethod, RequestURL
from .ws import WebSocket, WebSocketAdapter, WebSocketDisconnect

__all__ = [
    "Robyn",
    "SubRouter",
    "Request",
    "Response",
    "Headers",
    "jsonify",
    "WebSocket",
    "WebSocketConnector",
    "WebSocketAdapter",
    "WebSocketDisconnect",
    "DependencyMap",
    "status_codes",
    "html",
    "serve_file",
    "serve_html",
    "ALLOW_CORS",
    "AuthenticationHandler",
    "Events",
    "StreamingResponse",
    "SSEResponse",
    "SSEMessage",
    "JsonBody",
    "RequestMethod",
    "RequestBody",
    "RequestURL",
    "OpenAPI",
    "HTTPException",
    "WebSocketException",
    "Session",
    "SessionManager",
]


_log = get_logger("robyn_fast.compat")

class FunctionInfo(NamedTuple):
    """What ``app.event_handlers`` holds for one event, as Robyn shows it."""

    handler: Any
    is_async: bool
    number_of_params: int
    args: dict[str, Any]
    kwargs: dict[str, Any]


def _robyn_mode(app: robyn_fast.Robyn) -> None:
    app.routes.strict = False
    app.routes.stringify = True
    app.routes.not_found_text = "Not found"
    app.routes.middlewares.response_headers_on_requests = True
    # Robyn registers @app.before_request("/x") / after_request("/x") for GET /x only.
    app.endpoint_middleware_method = "GET"


def _event_handlers(app: robyn_fast.Robyn) -> dict[Events, FunctionInfo]:
    import inspect

    found: dict[Events, FunctionInfo] = {}
    for event, handlers in ((Events.STARTUP, app.startup_handlers), (Events.SHUTDOWN, app.shutdown_handlers)):
        if handlers:
            handler = handlers[-1]
            found[event] = FunctionInfo(handler, inspect.iscoroutinefunction(handler), 0, {}, {})
    return found


def _unsupported(self: Any, name: str) -> NoReturn:
    what = UNSUPPORTED_APP_METHODS.get(name)
    if what is not None:
        raise UnsupportedRobynMethod(f"Robyn.{name}", what)
    raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}", name=name, obj=self)


class Robyn(robyn_fast.Robyn):
    """robyn_fast's application class under Robyn's name.

    Calling a method of Robyn's app that robyn_fast does not have
    (``app.mcp``, ``app.view``...) raises
    :class:`~robyn_fast.compat.UnsupportedRobynMethod` (an
    ``AttributeError``) that names it.
    """

    def __init__(self, file_object: str, config: Any = None, openapi_file_path: str | None = None,
                 openapi: OpenAPI | None = None, dependencies: DependencyMap | None = None,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(file_object, config if isinstance(config, _Config) else None)
        _robyn_mode(self)
        self.routes.robyn_079 = robyn_before_080(self.config)
        if dependencies is not None:
            if not isinstance(dependencies, DependencyMap):
                raise TypeError(f"dependencies must be a DependencyMap, not {type(dependencies).__name__}")
            # Robyn's map given to the app: its global dependencies are the app's.
            self.dependencies.add_global_dependency(**dependencies.get_global_dependencies())
        self._disable_openapi = bool(getattr(config, "disable_openapi", False))
        if openapi is not None and not isinstance(openapi, OpenAPI):
            raise TypeError(f"openapi must be a robyn.openapi.OpenAPI, not {type(openapi).__name__}")
        self.openapi: OpenAPI = openapi if openapi is not None else OpenAPI()
        self.init_openapi(openapi_file_path)

    def init_openapi(self, openapi_file_path: str | None) -> None:
        """As Robyn: the document becomes the JSON file ``openapi_file_path``
        (relative to the app's directory), or else an ``openapi.json`` next to
        the app if there is one; nothing when the config disables OpenAPI."""
        if self._disable_openapi:
            return
        import os

        if openapi_file_path:
            self.openapi.override_openapi(os.path.join(self.directory_path, openapi_file_path))
        elif os.path.exists(os.path.join(self.directory_path, "openapi.json")):
            self.openapi.override_openapi(os.path.join(self.directory_path, "openapi.json"))

    def add_route(self, route_type: Any, endpoint: str, handler: Any, const: bool = False,
                  auth_required: bool = False, openapi_name: str = "", openapi_tags: list[str] | None = None,
                  *, is_const: bool | None = None, **details: Any) -> Any:
        """Robyn's ``add_route`` (its ``is_const`` is robyn_fast's ``const``;
        ``status_code``, ``response_model``, ``responses``, ``deprecated``,
        ``include_in_schema`` as robyn_fast's)."""
        return super().add_route(str(route_type), endpoint, handler, const if is_const is None else is_const,
                                 auth_required, openapi_name, openapi_tags, **details)

    def start(self, *args: Any, **kwargs: Any) -> None:
        """Robyn's ``start``: serves ``/openapi.json`` and ``/docs`` first (unless
        the config says ``disable_openapi`` or the command line
        ``--disable-openapi``), then robyn_fast's ``start``."""
        import sys

        argv = kwargs.get("argv")
        flags = sys.argv[1:] if argv is None else list(argv)
        if not self._disable_openapi and "--disable-openapi" not in flags:
            self.serve_openapi()
        super().start(*args, **kwargs)

    def _before_serving(self) -> None:
        # The settings are final now (flags, environment): the server's resolve() applies it.
        self.routes.robyn_079 = robyn_before_080(self.config)

    @property
    def event_handlers(self) -> dict[Events, FunctionInfo]:
        """The startup and shutdown handlers (the last one of each), keyed by :class:`Events`."""
        return _event_handlers(self)

    __getattr__ = _unsupported


class SubRouter(_SubRouter):
    """robyn_fast's :class:`~robyn_fast.subrouter.SubRouter` under Robyn's name."""

    def _late(self, what: str) -> None:
        # Robyn takes a router's routes when it is included and drops later ones without a word: say so.
        _log.error(
            "%s is registered on a SubRouter already included: it is not served (register it before "
            "include_router)", what)

    def __init__(self, *args: Any, prefix: str | None = None, tags: list[str] | None = None, config: Any = None,
                 openapi: Any = None, file_object: str | None = None) -> None:
        # Robyn's config (an argument_parser.Config) and openapi are its own objects; robyn_fast's Config is taken.
        file_object, prefix, positional_config = subrouter_arguments(args, prefix, file_object)
        config = positional_config if config is None else config
        super().__init__(prefix=prefix, config=config if isinstance(config, _Config) else None,
                         file_object=file_object, tags=tags)
        _robyn_mode(self)

    __getattr__ = _unsupported


def ALLOW_CORS(app: robyn_fast.Robyn, origins: list[str] | str, headers: list[str] | str | None = None) -> None:  # noqa: N802
    """Robyn's CORS helper: :func:`robyn_fast.cors.allow_cors`."""
    allow_cors(app, origins, headers)


__getattr__ = module_getattr("robyn")
