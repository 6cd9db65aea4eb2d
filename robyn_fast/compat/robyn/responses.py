"""``robyn.responses``: file and HTML responses, streamed responses and
server-sent events (:mod:`robyn_fast.http.streaming`)."""

from __future__ import annotations

from robyn_fast.compat import module_getattr
from robyn_fast.http.files import FileResponse, serve_file, serve_html
from robyn_fast.http.streaming import SSEMessage, SSEResponse, StreamingResponse
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


__getattr__ = module_getattr("robyn.responses")
