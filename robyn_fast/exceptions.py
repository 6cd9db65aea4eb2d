"""The one exception hierarchy of robyn_fast.

Every exception the library raises on purpose derives from
:class:`RobynFastError` and from the standard category that fits, so callers
can catch either. Protocol failures carry the WebSocket close code (RFC 6455
§7.4.1) and a reason to send in the Close frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

__all__ = [
    "RobynFastError",
    "ProtocolError",
    "MessageTooBig",
    "InvalidPayloadData",
    "InvalidState",
    "ServerNotRunning",
    "ConfigError",
    "HandshakeError",
    "ArgumentTypeError",
    "UnsupportedResponseType",
    "InvalidStatusCode",
    "InvalidHeader",
    "InvalidJSON",
    "InvalidRoute",
    "DuplicateRoute",
    "HTTPError",
    "NotFound",
    "MethodNotAllowed",
    "UnboundParameter",
    "AuthenticationNotConfigured",
    "WebSocketDisconnect",
    "ProxyProtocolError",
]


# RFC 9110 §15 names for the codes whose phrase the http module renamed in
# Python 3.13, so the server says the same on every Python.
_RFC9110_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}
_PHRASES: dict[int, str] = {s.value: _RFC9110_PHRASES.get(s.value, s.phrase) for s in HTTPStatus}


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (RFC 9110 §15), ``""`` for
    an unregistered code."""
    return _PHRASES.get(status, "")


class RobynFastError(Exception):
    """Root of every exception robyn_fast raises on purpose."""


class ProtocolError(RobynFastError, ValueError):
    """The peer broke RFC 6455: the connection must be failed (RFC 6455 §7.1.7).

    ``close_code`` is the code to send in the Close frame (1002 unless a
    subclass says otherwise) and ``reason`` a short text for it.
    ``messages`` holds the messages that were complete before the error was
    detected in the same ``feed()`` call, in order, so none is lost.
    """

    default_code = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason: str = reason
        self.close_code: int = self.default_code if close_code is None else close_code
        self.messages: list[Any] = []

    def __str__(self) -> str:
        return f"{self.reason} (close code {self.close_code})"


class MessageTooBig(ProtocolError):
    """A message exceeds the configured maximum size (close code 1009)."""

    default_code = 1009


class InvalidPayloadData(ProtocolError):
    """A text message or close reason is not valid UTF-8 (close code 1007)."""

    default_code = 1007


class InvalidState(RobynFastError, RuntimeError):
    """An operation is not allowed in the object's current state."""


class ServerNotRunning(InvalidState):
    """The server an operation needs has stopped (or never ran)."""


class ConfigError(RobynFastError, ValueError):
    """A setting the server cannot use (a TLS certificate or key that cannot
    be loaded, :mod:`robyn_fast.tls`); ``str()`` says which and why, in one
    line."""


# --------------------------------------------------------------------------
# HTTP layer (robyn_fast.http)
# --------------------------------------------------------------------------


class ArgumentTypeError(RobynFastError, TypeError):
    """A public function or constructor was given an argument of the wrong type."""


class UnsupportedResponseType(ArgumentTypeError):
    """A route handler returned a value that cannot become an HTTP response.

    ``value_type`` is the offending type, so the server can log it.
    """

    def __init__(self, message: str, value_type: type | None = None) -> None:
        super().__init__(message)
        self.value_type: type | None = value_type


class UnboundParameter(ArgumentTypeError):
    """A handler parameter that no binding rule binds (see
    :func:`robyn_fast.http.routes.bind_http`)."""


class AuthenticationNotConfigured(InvalidState):
    """A route requires authentication (``auth_required=True``) and the app
    has no authentication handler (``app.configure_authentication``)."""


class InvalidStatusCode(RobynFastError, ValueError):
    """A status code is not an integer in 100..599 (RFC 9110 §15)."""


class InvalidHeader(RobynFastError, ValueError):
    """A response header cannot be written safely.

    Raised instead of writing a field name that is not a token
    (RFC 9110 §5.1) or a field value holding CR, LF, NUL or another control
    character (RFC 9110 §5.5), which would allow response splitting.
    """


class InvalidJSON(RobynFastError, ValueError):
    """A request body is not valid JSON (``Request.json()``)."""


class InvalidRoute(RobynFastError, ValueError):
    """A route pattern or method given to the router is malformed."""


class DuplicateRoute(InvalidRoute):
    """A route with the same method and the same shape is already registered."""


class HTTPError(RobynFastError):
    """An HTTP error the server answers with ``status_code``.

    ``message`` is the plain-text body to send (the standard reason phrase
    when not given) and ``headers`` extra response fields, as
    ``(name, value)`` pairs, that the response must carry (``Allow`` for
    405, for instance).
    """

    default_status: int = 500

    def __init__(
        self,
        status_code: int | None = None,
        message: str | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        code = self.default_status if status_code is None else status_code
        if type(code) is not int or not 100 <= code <= 599:
            raise InvalidStatusCode(f"HTTP status code must be an int in 100..599, got {code!r}")
        if message is None:
            message = reason_phrase(code) or f"HTTP {code}"
        super().__init__(message)
        self.status_code: int = code
        self.message: str = message
        self.headers: list[tuple[str, str]] = [] if headers is None else list(headers)

    def __str__(self) -> str:
        return f"{self.status_code} {self.message}"


class NotFound(HTTPError, LookupError):
    """No route matches the request path (404)."""

    default_status = 404


class InvalidParameter(HTTPError, ValueError):
    """A typed handler parameter (a query or path parameter read by its
    annotation) is missing or its text is not of its type: 400, the message
    naming it (``Missing required parameter: 'q'``, ``Invalid value 'abc'
    for parameter 'id': expected int``, as Robyn words them)."""

    default_status = 400


class MethodNotAllowed(HTTPError, LookupError):
    """The path matches routes, but none for the request method (405).

    ``allow`` is the sorted list of methods that would match; the response
    must carry it in an ``Allow`` field (RFC 9110 §15.5.6), which
    ``headers`` already holds.
    """

    default_status = 405

    def __init__(self, allow: Iterable[str], message: str | None = None) -> None:
        allowed = sorted(set(allow))
        super().__init__(405, message, [("allow", ", ".join(allowed))])
        self.allow: list[str] = allowed


# --------------------------------------------------------------------------
# WebSocket opening handshake (robyn_fast.websocket.handshake)
# --------------------------------------------------------------------------


class HandshakeError(RobynFastError, ValueError):
    """A WebSocket opening handshake is refused (RFC 6455 §4.2.1, §4.2.2).

    The server answers with HTTP ``status`` instead of ``101 Switching
    Protocols``: ``reason`` is a short plain-text explanation (fit for the
    response body) and ``headers`` the ``(name, value)`` fields the response
    must carry (``Allow: GET`` with 405; ``Upgrade: websocket`` with 426, as
    RFC 9110 §15.5.22 requires; ``Sec-WebSocket-Version: 13`` when the client
    asked for another version, RFC 6455 §4.4).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status: int = status
        self.reason: str = reason
        self.headers: list[tuple[str, str]] = [] if headers is None else list(headers)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class WebSocketDisconnect(RobynFastError, ConnectionError):
    """The WebSocket connection closed: raised by ``receive_text()``,
    ``receive_bytes()`` and ``receive_json()`` of an ``@app.websocket``
    handler (Robyn's name and constructor). ``code`` and ``reason`` are those
    of the closing handshake (RFC 6455 §7.1.5, §7.1.6): the client's Close
    frame, ours if the server closed first, 1006 if TCP went without one.
    """

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        super().__init__(f"WebSocket disconnected with code {code}: {reason}")
        self.code: int = code
        self.reason: str = reason


class ProxyProtocolError(RobynFastError, ValueError):
    """A connection that should start with a PROXY protocol header
    (``--proxy-protocol``) does not: the connection is closed without an
    answer (:mod:`robyn_fast.proxy_protocol`)."""
