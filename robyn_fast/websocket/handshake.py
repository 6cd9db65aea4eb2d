"""The server side of the WebSocket opening handshake (RFC 6455 §4.2), sans-I/O.

Pure functions over what httptools hands the server: the method, the HTTP
version and the raw ``(name, value)`` header pairs, as bytes, in the order and
case they were sent (a field may appear several times). Nothing here touches a
socket: :func:`accept_handshake` either returns the exact bytes of the
``101 Switching Protocols`` response to write, or raises
:class:`~robyn_fast.exceptions.HandshakeError` carrying the status, reason and
header fields of the response to send instead.

Header values are decoded as latin-1 (RFC 9110 §5.5: a field value is octets;
latin-1 maps each octet to one character and never fails), so no input,
however malformed, makes these functions crash: a bad request always ends in a
``HandshakeError`` with a clear reason.

Status codes chosen for refusals:

* method other than ``GET`` -> **405** with ``Allow: GET`` (RFC 6455 §4.2.1
  item 1, RFC 9110 §15.5.6);
* HTTP version below 1.1 -> **400**, saying HTTP/1.1 is required (RFC 6455
  §4.1 item 2, §4.2.1 item 1);
* no ``Host``, several, or an empty one -> **400** (RFC 6455 §4.1 item 4,
  §4.2.1 item 2; RFC 9112 §3.2 requires 400 for a missing or repeated Host);
* ``Upgrade`` without the ``websocket`` token, or ``Connection`` without the
  ``upgrade`` token -> **426** with ``Upgrade: websocket`` and
  ``Connection: Upgrade``. Both mean the same thing: the request reached a
  WebSocket endpoint without (validly) asking to switch protocols. The
  ``Connection`` case is most often an intermediary that dropped the
  hop-by-hop ``Connection: Upgrade``, and 426 plus ``Upgrade: websocket``
  (RFC 9110 §15.5.22, §7.8) tells the client exactly what is needed, where a
  400 would only say "something is wrong". One status for both keeps the
  rule simple to document and to test;
* ``Sec-WebSocket-Version`` missing, repeated or not exactly ``13`` -> **426**
  with ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.2 step 4, §4.4) and, as
  every 426 must, ``Upgrade: websocket`` / ``Connection: Upgrade``;
* ``Sec-WebSocket-Key`` missing, repeated, not base64 or not 16 bytes once
  decoded -> **400** (RFC 6455 §4.2.1 item 5, §11.3.1);
* ``Origin`` missing, repeated or not allowed, when an allowlist is configured
  -> **403** (RFC 6455 §4.2.2 step 4, §10.2).

The checks run in that order, so a request with several faults gets the first
one's answer.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Collection, Sequence
from typing import Final, NamedTuple

from .._core.handshake import accept_key as _accept
from .._core.handshake import handshake_fields as _fields
from ..exceptions import ArgumentTypeError, HandshakeError
from .extensions import DeflateParams, ExtensionsError, negotiate_deflate

__all__ = [
    "Agreement",
    "WS_GUID",
    "HandshakeError",
    "accept_key",
    "header_tokens",
    "is_upgrade_request",
    "accept_handshake",
    "negotiate_compression",
]

WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The GUID RFC 6455 §1.3 appends to the client's key to derive the accept value."""

# Optional whitespace around field values and list elements (RFC 9110 §5.6.3).
# Not str.strip(): in latin-1 text that would also eat \x85 and \xa0.
_OWS: Final = b" \t"

_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# tchar (RFC 9110 §5.6.2): a subprotocol name must be a token (RFC 6455 §4.1 item 10).
_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_RESPONSE_HEAD: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)

_UPGRADE_HEADERS: Final = (("Upgrade", "websocket"), ("Connection", "Upgrade"))


class Agreement(NamedTuple):
    """What an accepted handshake agreed with the client."""

    deflate: DeflateParams | None  # permessage-deflate (RFC 7692), or None
    subprotocol: str | None  # the Sec-WebSocket-Protocol chosen (RFC 6455 §4.2.2 step 5.5), or None


def accept_key(key: str | bytes) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``.

    ``base64(sha1(key + WS_GUID))`` (RFC 6455 §1.3, §4.2.2 step 5.4): the
    server proves it read the handshake by hashing the key exactly as sent.
    A ``str`` key is encoded as latin-1, so the raw header bytes and their
    latin-1 decoding give the same answer (real keys are ASCII base64, for
    which every encoding agrees). Raises :class:`ArgumentTypeError` (a
    ``TypeError``) for any other type and
    ``UnicodeEncodeError`` (a ``ValueError``) for a ``str`` with a character
    above U+00FF, which no header can carry.

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    if isinstance(key, str):
        raw = key.encode("latin-1")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
    else:
        raise ArgumentTypeError(f"accept_key() needs str or bytes, got {type(key).__name__}")
    return _accept(raw).decode("ascii")


def _has_token(value: bytes, token: bytes) -> bool:
    """Whether the comma-separated list ``value`` holds ``token`` (lowercase), ignoring case."""
    value = value.lower()
    if value == token:  # the common case: a single, bare token
        return True
    if token not in value:
        return False
    for part in value.split(b","):
        if part.strip(_OWS) == token:
            return True
    return False


def header_tokens(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Return every token of every ``name`` field, in order, stripped and lowercased.

    The field name is matched case-insensitively (RFC 9110 §5.1); each
    occurrence is split on commas, as a list-based field allows (RFC 9110
    §5.3, §5.6.1), optional whitespace (space, tab) is stripped and empty
    elements (``", upgrade,"``) are dropped. Values are decoded as latin-1 after
    ASCII-only lowercasing, so non-ASCII octets come back unchanged, never as
    an error.

    >>> header_tokens([(b"Connection", b"keep-alive, Upgrade")], b"connection")
    ['keep-alive', 'upgrade']
    """
    wanted = name.lower()
    tokens: list[str] = []
    for field_name, value in headers:
        if field_name.lower() == wanted:
            for part in value.lower().split(b","):
                part = part.strip(_OWS)
                if part:
                    tokens.append(part.decode("latin-1"))
    return tokens


def is_upgrade_request(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the request asks to switch to WebSocket: an ``Upgrade`` field holds ``websocket``.

    Case-insensitive, over comma lists and repeated ``Upgrade`` lines
    (``Upgrade: h2c, WebSocket`` counts). Only a cheap triage for each request
    on a WebSocket path; :func:`accept_handshake` does the real checks
    (RFC 6455 §4.2.1).
    """
    for name, value in headers:
        if name.lower() == b"upgrade" and _has_token(value, b"websocket"):
            return True
    return False


def _http_version_ok(http_version: str) -> bool:
    """Whether ``http_version`` (``"1.1"`` as httptools gives it, or ``"HTTP/1.1"``) is at least 1.1."""
    if not isinstance(http_version, str):
        raise ArgumentTypeError(f"http_version must be a str such as '1.1', got {type(http_version).__name__}")
    version = http_version[5:] if http_version.startswith("HTTP/") else http_version
    major, dot, minor = version.partition(".")
    if not (dot and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        return False
    return (int(major), int(minor)) >= (1, 1)


def _check_key(key: bytes) -> bytes:
    """Return the key, stripped of surrounding whitespace, or raise 400 (RFC 6455 §4.2.1 item 5).

    Sixteen bytes always encode to 22 base64 characters and ``==``, so a
    length, a suffix and an alphabet check prove validity without decoding.
    Non-zero pad bits in the 22nd character are accepted: the value still
    decodes to 16 bytes, which is all RFC 6455 asks (RFC 4648 §3.5 lets a
    decoder choose), and that is what websockets accepts too.
    """
    key = key.strip(_OWS)
    if len(key) == 24 and key[22:] == b"==" and not key[:22].translate(None, _B64_ALPHABET):
        return key
    # Slow path, only to say precisely what is wrong.
    try:
        size = len(b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key header is not valid base64") from None
    if size != 16:
        raise HandshakeError(
            400, f"Sec-WebSocket-Key header must decode to 16 bytes, got {size}"
        )
    raise HandshakeError(400, "Sec-WebSocket-Key header is not canonical base64")


def accept_handshake(
    method: str,
    http_version: str,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    subprotocols: Sequence[str] | None = None,
    allowed_origins: Collection[str] | None = None,
) -> tuple[bytes, str | None]:
    """Validate an opening handshake request and build the 101 response (RFC 6455 §4.2.1, §4.2.2).

    Returns ``(response, subprotocol)``: ``response`` is the complete
    ``HTTP/1.1 101 Switching Protocols`` head to write, ending with the blank
    line, with ``Upgrade: websocket``, ``Connection: Upgrade``,
    ``Sec-WebSocket-Accept`` and, when one was chosen, ``Sec-WebSocket-Protocol``;
    ``subprotocol`` is the chosen subprotocol or ``None``. Frames may follow on
    the wire right after these bytes.

    Raises :class:`HandshakeError` with the status, reason and header fields
    to answer instead; the module docstring lists which fault gives which
    status, in the order they are checked.

    ``subprotocols`` lists what the server speaks. The client's
    ``Sec-WebSocket-Protocol`` fields (comma lists, possibly several lines)
    are its choices "ordered by preference" (RFC 6455 §4.1 item 10), and the
    server answers with **the first protocol in the client's order that it
    supports**, echoed byte for byte (names are case-sensitive). This differs
    from websockets, which picks by the server's order: honouring the order
    the RFC defines as the client's preference gives the result a client
    author predicts from its own code, and a server that wants to force a
    protocol simply lists only that one. When nothing matches, or the client
    sent none, the handshake still succeeds without the header (RFC 6455
    §4.2.2 step 4: /subprotocol/ may be null, and step 5.5 makes the header
    optional; the client decides whether to go on). With ``subprotocols``
    ``None`` or empty the header is never sent.

    ``allowed_origins``, when given, is the collection of exact origins
    (``"https://example.com"``, ``"http://localhost:8080"``, ``"null"``)
    allowed to connect; the ``Origin`` field must be present, single and
    equal to one of them, ignoring case (RFC 6454 §4: scheme and host are
    case-insensitive, the port is digits), or the request gets a 403
    (RFC 6455 §4.2.2 step 4). No other normalisation happens: a default port
    or a trailing slash must be spelt as browsers send it. An empty
    collection refuses every request. ``None`` skips the check.

    ``Sec-WebSocket-Extensions`` is not looked at here: see
    :func:`negotiate_compression`, which adds its answer to this response.
    """
    if isinstance(subprotocols, (str, bytes)):
        raise ArgumentTypeError("subprotocols must be a sequence of names, not a single str")
    if isinstance(allowed_origins, (str, bytes)):
        # A str here would turn the membership test into a substring test.
        raise ArgumentTypeError("allowed_origins must be a collection of origins, not a single str")

    if method != "GET":
        raise HandshakeError(
            405, f"WebSocket handshake requires the GET method, got {method!r:.40}", [("Allow", "GET")]
        )
    if http_version != "1.1" and not _http_version_ok(http_version):
        raise HandshakeError(
            400, f"WebSocket handshake requires HTTP/1.1 or higher, got {http_version!r:.24}"
        )

    # One pass over the fields (compiled); each check below then uses what it collected.
    fields = _fields(headers)
    if fields is None:
        try:
            fields = _fields([(bytes(name), bytes(value)) for name, value in headers])
        except (TypeError, ValueError):
            raise ArgumentTypeError("headers must be (name, value) pairs of bytes") from None
    assert fields is not None
    (host_count, host, upgrade_seen, upgrade_ok, connection_seen, connection_ok, version_count, version,
     key_count, key, origin_count, origin, protocol_values) = fields

    if host_count != 1 or not host.strip(_OWS):
        if host_count == 0:
            reason = "missing Host header"
        elif host_count > 1:
            reason = "more than one Host header"
        else:
            reason = "empty Host header"
        raise HandshakeError(400, reason)

    if not upgrade_ok:
        if upgrade_seen:
            reason = "Upgrade header does not contain 'websocket'"
        else:
            reason = "missing Upgrade: websocket header"
        raise HandshakeError(426, reason, list(_UPGRADE_HEADERS))
    if not connection_ok:
        if connection_seen:
            reason = "Connection header does not contain 'upgrade'"
        else:
            reason = "missing Connection: Upgrade header"
        raise HandshakeError(426, reason, list(_UPGRADE_HEADERS))

    if version_count != 1 or version.strip(_OWS) != b"13":
        if version_count == 0:
            reason = "missing Sec-WebSocket-Version header"
        elif version_count > 1:
            reason = "more than one Sec-WebSocket-Version header"
        else:
            reason = "unsupported WebSocket version; only version 13 is supported"
        raise HandshakeError(426, reason, [*_UPGRADE_HEADERS, ("Sec-WebSocket-Version", "13")])

    if key_count != 1:
        if key_count == 0:
            raise HandshakeError(400, "missing Sec-WebSocket-Key header")
        raise HandshakeError(400, "more than one Sec-WebSocket-Key header")
    key = _check_key(key)

    if allowed_origins is not None:
        if origin_count != 1:
            raise HandshakeError(
                403, "missing Origin header" if origin_count == 0 else "more than one Origin header"
            )
        origin_str = origin.strip(_OWS).decode("latin-1")
        if origin_str not in allowed_origins:
            folded = origin_str.lower()
            if not any(folded == allowed.lower() for allowed in allowed_origins):
                raise HandshakeError(403, "Origin not allowed")

    chosen: bytes | None = None
    if subprotocols and protocol_values:
        for value in protocol_values:
            for part in value.split(b","):
                token = part.strip(_OWS)
                # A non-token can be no legitimate name, and must never be echoed.
                if token and not token.translate(None, _TCHAR) and token.decode("latin-1") in subprotocols:
                    chosen = token
                    break
            if chosen is not None:
                break

    if chosen is None:
        return _RESPONSE_HEAD + _accept(key) + b"\r\n\r\n", None
    return (
        _RESPONSE_HEAD + _accept(key) + b"\r\nSec-WebSocket-Protocol: " + chosen + b"\r\n\r\n",
        chosen.decode("latin-1"),
    )


def negotiate_compression(
    response: bytes, headers: Sequence[tuple[bytes, bytes]], mode: str, *, window_bits: int = 12
) -> tuple[bytes, DeflateParams | None]:
    """Answer the client's permessage-deflate offers (RFC 7692) in
    ``response`` (what :func:`accept_handshake` returned): returns the
    response, with a ``Sec-WebSocket-Extensions`` field when an offer was
    accepted, and the agreed :class:`DeflateParams` or None. ``mode`` is
    ``Config.compression`` ("off" declines everything and reads nothing).
    A ``Sec-WebSocket-Extensions`` value outside RFC 6455 §9.1's grammar is a
    :class:`HandshakeError` 400 (with compression off it is not read)."""
    if mode == "off":
        return response, None
    values: list[str] = []
    user_agent: str | None = None
    for name, value in headers:
        size = len(name)  # compared first: most fields are neither, and lower() makes a new object
        if size == 24 and name.lower() == b"sec-websocket-extensions":
            values.append(value.decode("latin-1"))
        elif size == 10 and name.lower() == b"user-agent":
            user_agent = value.decode("latin-1")
    if not values:
        return response, None
    try:
        params = negotiate_deflate(values, mode,  # type: ignore[arg-type]
                                   window_bits=window_bits, client_window_bits=window_bits, user_agent=user_agent)
    except ExtensionsError as exc:
        raise HandshakeError(400, f"invalid Sec-WebSocket-Extensions header: {exc}") from None
    if params is None:
        return response, None
    assert response.endswith(b"\r\n\r\n")
    return response[:-2] + b"Sec-WebSocket-Extensions: " + params.response.encode("latin-1") + b"\r\n\r\n", params
