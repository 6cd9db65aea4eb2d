"""Requests to an app without a socket: :class:`InProcessClient`, for tests.

The client hands each request to the app's routes exactly as the server
does (:meth:`robyn_fast.http.routes.Routes.handle`: routing, parameter
binding, middlewares, authentication, sessions, the exception handler,
serialisation) and reads the response bytes they produce, on an event loop
of its own (uvloop when installed, as the server picks it; ``loop`` to
choose). Sync handlers run inside that loop, as they run in the server's.
What it does not exercise is the connection: the HTTP/1.1 parser, limits,
keep-alive, TLS, WebSockets; a test of those starts a server.

``keep_cookies=True`` (the default) makes it remember the cookies the app
sets (``Set-Cookie``; ``Max-Age=0`` or an empty value deletes one) and send
them back, as a browser on one site does, which is what a session test
needs. ``with InProcessClient(app) as client:`` also runs the app's
startup handlers on entry and its shutdown handlers on exit.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .exceptions import InvalidState
from .http.streaming import StreamedReply
from .http.types import Headers
from .server import new_event_loop

if TYPE_CHECKING:
    from .server import ServedApp

__all__ = ["InProcessClient", "InProcessResponse"]

#: The address a request seems to come from (``request.ip_addr``).
CLIENT_ADDRESS = "127.0.0.1"
#: The ``Host`` a request names unless its headers give one.
HOST = "testclient"


class InProcessResponse:
    """A response as the app sent it: ``status_code``, ``headers``
    (:class:`~robyn_fast.http.types.Headers`), ``content`` (the body
    bytes; a streamed body joined), ``text``, ``json()``, ``ok``."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not)."""
        return jsonlib.loads(self.content)

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300

    def __repr__(self) -> str:
        return f"<InProcessResponse {self.status_code} {len(self.content)} bytes>"


def parse_response(head: bytes) -> tuple[int, Headers, bytes]:
    """Status, fields and what follows the head, of the response bytes an
    app's routes produced (RFC 9112 §4)."""
    top, sep, rest = head.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise InvalidState(f"the app's routes produced no HTTP response: {head[:80]!r}")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise InvalidState(f"the app's routes produced a malformed header field: {line!r}")
        headers.append(name.strip(), value.strip())
    return int(parts[1]), headers, rest


def _form_body(form_data: Mapping[str, str], files: Mapping[str, bytes]) -> tuple[bytes, str]:
    if not files:
        return urlencode(list(form_data.items())).encode("ascii"), "application/x-www-form-urlencoded"
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in form_data.items():
        parts.append(f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode("utf-8") + b"\r\n")
    for filename, data in files.items():
        parts.append(f'--{boundary}\r\ncontent-disposition: form-data; name="{filename}"; '
                     f'filename="{filename}"\r\ncontent-type: application/octet-stream\r\n\r\n'.encode()
                     + bytes(data) + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class InProcessClient:
    """Sends requests to ``app`` (a :class:`~robyn_fast.Robyn`) in this
    process; see the module docstring."""

    def __init__(self, app: ServedApp, *, keep_cookies: bool = True,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        routes = getattr(app, "routes", None)
        if routes is None or not callable(getattr(routes, "handle", None)):
            raise TypeError(f"InProcessClient takes a robyn_fast app, not {type(app).__name__}")
        self.app = app
        self._routes = routes
        self._loop = loop if loop is not None else new_event_loop()
        self._own_loop = loop is None
        self._resolved = False
        self._started = False
        #: The cookies it sends (name to value), when ``keep_cookies``.
        self.cookies: dict[str, str] | None = {} if keep_cookies else None

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> InProcessClient:
        self._loop.run_until_complete(self._run_hooks(self.app.startup_handlers))
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._started:
                self._started = False
                self._loop.run_until_complete(self._run_hooks(self.app.shutdown_handlers))
        finally:
            self.close()

    def close(self) -> None:
        """Close the client's event loop (one it was given stays open)."""
        if self._own_loop and not self._loop.is_closed():
            self._loop.close()

    @staticmethod
    async def _run_hooks(hooks: Sequence[Any]) -> None:
        for hook in hooks:
            result = hook()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result

    # -- requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: str | bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | Headers | None = None,
        query_params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        form_data: Mapping[str, str] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> InProcessResponse:
        """Send one request and return the response. ``path`` may carry a
        query, ``query_params`` adds to it; the body is ``body``, or
        ``json`` as JSON, or ``form_data`` (and ``files``) as a form
        (``multipart/form-data`` when there are files)."""
        if self._loop.is_closed():
            raise InvalidState("this client is closed")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"the path of a request starts with '/', not {path!r}")
        fields = Headers(headers if isinstance(headers, (Mapping, Headers)) else list(headers or ()))
        raw: bytes
        if [body is not None, json is not None, form_data is not None or files is not None].count(True) > 1:
            raise ValueError("give one of body, json and form_data/files")
        if json is not None:
            raw = jsonlib.dumps(json).encode("utf-8")
            if "content-type" not in fields:
                fields.set("content-type", "application/json")
        elif form_data is not None or files is not None:
            raw, content_type = _form_body(form_data or {}, files or {})
            fields.set("content-type", content_type)
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = bytes(body or b"")
        if query_params:
            items = query_params.items() if isinstance(query_params, Mapping) else query_params
            path += ("&" if "?" in path else "?") + urlencode(list(items))
        if "host" not in fields:
            fields.set("host", HOST)
        if self.cookies and "cookie" not in fields:
            fields.set("cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if raw and "content-length" not in fields:
            fields.set("content-length", str(len(raw)))
        return self._loop.run_until_complete(self._exchange(method.upper(), path, fields, raw))

    async def _exchange(self, method: str, target: str, fields: Headers, body: bytes) -> InProcessResponse:
        if not self._resolved:
            self._routes.resolve()  # as the server does when it starts
            self._resolved = True
        wire = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields.multi_items()]
        reply = self._routes.handle(method, target, wire, body, True, CLIENT_ADDRESS)
        if not isinstance(reply, (bytes, StreamedReply)):
            reply = await reply
        if isinstance(reply, StreamedReply):
            status, headers, _ = parse_response(reply.head)
            content = b""
            if reply.body is not None:
                content = b"".join([chunk async for chunk in reply.body])
        else:
            status, headers, content = parse_response(reply)
            if method == "HEAD":
                content = b""
        if self.cookies is not None:
            self._remember(headers)
        return InProcessResponse(status, headers, content)

    def _remember(self, headers: Headers) -> None:
        assert self.cookies is not None
        for line in headers.get_all("set-cookie") or ():
            pair, *attrs = line.split(";")
            name, _, value = pair.strip().partition("=")
            ages = [a.strip().lower()[len("max-age="):] for a in attrs if a.strip().lower().startswith("max-age=")]
            expired = bool(ages) and (ages[-1].startswith("-") or ages[-1].strip() == "0")
            if expired or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def get(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("DELETE", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> InProcessResponse:
        return self.request("OPTIONS", path, **kwargs)
