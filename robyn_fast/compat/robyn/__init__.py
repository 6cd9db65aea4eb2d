"""``robyn``, as robyn_fast provides it: the names of Robyn 0.77's top-level
package that robyn_fast implements.

Loaded under the name ``robyn`` by :func:`robyn_fast.compat.install`. Every
object here is robyn_fast's own (``robyn.WebSocket is robyn_fast.WebSocket``),
except :class:`Robyn`, a subclass that names the Robyn method an app calls
when robyn_fast has no such method. A Robyn name missing here raises
:class:`~robyn_fast.compat.UnsupportedRobynFeature` (an ``ImportError``).
"""

from __future__ import annotations

from typing import NoReturn

import robyn_fast
from robyn_fast.compat import UNSUPPORTED_APP_METHODS, UnsupportedRobynMethod, module_getattr

from . import status_codes
from .dependency_injection import DependencyMap
from .jsonify import jsonify
from .robyn import Headers, Request, Response, WebSocketConnector
from .ws import WebSocket

__all__ = [
    "Robyn",
    "Request",
    "Response",
    "Headers",
    "jsonify",
    "WebSocket",
    "WebSocketConnector",
    "DependencyMap",
    "status_codes",
    "html",
]


class Robyn(robyn_fast.Robyn):
    """robyn_fast's application class under Robyn's name.

    Calling a method of Robyn's app that robyn_fast does not have
    (``app.before_request``, ``app.include_router``...) raises
    :class:`~robyn_fast.compat.UnsupportedRobynMethod` (an
    ``AttributeError``) that names it.
    """

    def __getattr__(self, name: str) -> NoReturn:
        what = UNSUPPORTED_APP_METHODS.get(name)
        if what is not None:
            raise UnsupportedRobynMethod(f"Robyn.{name}", what)
        raise AttributeError(f"'Robyn' object has no attribute {name!r}", name=name, obj=self)


def html(html: str | bytes) -> Response:
    """Robyn's ``robyn.html(html)``: a 200 response with ``Content-Type: text/html``
    (no charset parameter, as Robyn sends it) and ``html`` as its body, sent UTF-8 encoded.

    As in Robyn, this is for a string of HTML (``bytes`` are sent as they are, as Robyn's
    ``Response`` does); ``serve_html(path)`` (a file) is not provided. Anything else raises
    ``TypeError``.
    """
    if not isinstance(html, (str, bytes)):
        raise TypeError(f"html() takes the HTML as a str, not {type(html).__name__}")
    return Response(200, Headers({"Content-Type": "text/html"}), html)


__getattr__ = module_getattr("robyn")
