"""``robyn.responses``: file and HTML responses; streaming responses and
server-sent events are named here but not provided yet: building one raises
:class:`~robyn_fast.compat.UnsupportedRobynFeature` at that line."""

from __future__ import annotations

from typing import Any, NoReturn

from robyn_fast.compat import UnsupportedRobynFeature, module_getattr
from robyn_fast.http.files import FileResponse, serve_file, serve_html
from robyn_fast.http.types import Headers, Response

__all__ = ["FileResponse", "serve_file", "serve_html", "html", "StreamingResponse", "SSEResponse", "SSEMessage"]

def html(html: str | bytes) -> Response:
    """Robyn's ``robyn.html(html)``: a 200 response with ``Content-Type: text/html``
    (no charset parameter, as Robyn sends it) and ``html`` as its body, sent UTF-8 encoded.

    For a string of HTML (``bytes`` are sent as they are, as Robyn's ``Response``
    does); :func:`serve_html` serves a file. Anything else raises ``TypeError``.
    """
    if not isinstance(html, (str, bytes)):
        raise TypeError(f"html() takes the HTML as a str, not {type(html).__name__}")
    return Response(200, Headers({"Content-Type": "text/html"}), html)


class StreamingResponse:
    """Not provided yet: constructing one raises UnsupportedRobynFeature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedRobynFeature("robyn.responses.StreamingResponse", "streaming responses", name="robyn")


class SSEMessage:
    """Not provided yet: constructing one raises UnsupportedRobynFeature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedRobynFeature("robyn.responses.SSEMessage", "server-sent events", name="robyn")


def SSEResponse(*args: Any, **kwargs: Any) -> NoReturn:  # noqa: N802  # Robyn's name
    """Not provided yet: calling it raises UnsupportedRobynFeature."""
    raise UnsupportedRobynFeature("robyn.responses.SSEResponse", "server-sent events", name="robyn")


__getattr__ = module_getattr("robyn.responses")
