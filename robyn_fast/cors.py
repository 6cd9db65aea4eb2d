"""``allow_cors(app, origins)`` (Robyn's ``ALLOW_CORS``): Cross-Origin
Resource Sharing headers on every response, preflight requests answered.

A before-request middleware refuses (403, empty body) a request whose
``Origin`` is not allowed, and answers a preflight ``OPTIONS`` request with
204 and the ``Access-Control-*`` fields (Fetch standard, §3.2); every other
response gets ``Access-Control-Allow-Origin`` (the one origin, or ``*`` when
several are allowed, as Robyn sends it), ``-Methods``, ``-Headers`` and
``-Credentials: true`` through the app's global response headers.
"""

from __future__ import annotations

from typing import Any

from .http.types import Request, Response

__all__ = ["allow_cors", "CORS_METHODS"]

CORS_METHODS = "GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS"
_DEFAULT_HEADERS = ["Content-Type", "Authorization"]


def allow_cors(app: Any, origins: list[str] | str, headers: list[str] | str | None = None) -> None:
    """Allow cross-origin requests from ``origins`` (a list, or one origin,
    ``"*"`` for any) with the request ``headers`` named (a list added to
    ``Content-Type`` and ``Authorization``, or one string sent as it is)."""
    if isinstance(origins, str):
        origins = [origins]
    if not isinstance(origins, (list, tuple)) or not all(isinstance(o, str) for o in origins):
        raise TypeError("allow_cors() takes an origin or a list of origins (str)")
    allowed = list(origins)
    if isinstance(headers, (list, tuple)):
        names = list(_DEFAULT_HEADERS)
        names += [h for h in headers if h not in names]
        allow_headers = ", ".join(names)
    elif isinstance(headers, str):
        allow_headers = headers
    elif headers is None:
        allow_headers = ", ".join(_DEFAULT_HEADERS)
    else:
        raise TypeError("allow_cors() headers are a list of names, one string or None")
    any_origin = "*" in allowed

    def cors(request: Request) -> Request | Response:
        origin = request.headers.get("origin")
        if origin and not any_origin and origin not in allowed:
            return Response(403, {}, "")
        if request.method == "OPTIONS":
            return Response(204, {
                "Access-Control-Allow-Origin": origin or (allowed[0] if allowed else "*"),
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": allow_headers,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Max-Age": "3600",
            }, "")
        return request

    app.before_request()(cors)
    app.set_response_header("Access-Control-Allow-Origin", allowed[0] if len(allowed) == 1 else "*")
    app.set_response_header("Access-Control-Allow-Methods", CORS_METHODS)
    app.set_response_header("Access-Control-Allow-Headers", allow_headers)
    app.set_response_header("Access-Control-Allow-Credentials", "true")
