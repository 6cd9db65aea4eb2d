"""``Sec-WebSocket-Extensions`` and permessage-deflate negotiation, sans-I/O.

:func:`parse_extensions` reads the header's values by RFC 6455 §9.1::

    extension-list = 1#extension
    extension      = extension-token *( ";" extension-param )
    extension-param = token [ "=" ( token / quoted-string ) ]   ; a quoted value must be a token once unquoted

and :func:`negotiate_deflate` picks the first acceptable permessage-deflate
offer (RFC 7692 §5-7) and builds the one response element, or declines
(no header). An offer is declined, never the handshake: a client whose every
offer is unusable gets a connection without compression.

Modes (``Config.compression``):

- ``"shared"``: no context takeover either way (``server_no_context_takeover;
  client_no_context_takeover`` in every response), so one compressor and one
  decompressor per loop serve every connection and nothing is kept per
  connection; ``server_max_window_bits`` is echoed when the client asks for it.
- ``"dedicated"``: each connection keeps its contexts (they are created when
  first needed), with ``server_max_window_bits=window_bits`` (or the client's
  smaller request) and ``client_max_window_bits`` when the client offered it;
  a client that asks for ``server_no_context_takeover`` gets it.

Offers are declined when a parameter is unknown, repeated, or has a value
where none is allowed or a bad one (RFC 7692 §7: "MUST decline"), and when
``server_max_window_bits`` is 8: zlib's raw deflate cannot make an 8-bit
window (it uses 9), which a client asking for 8 would not be able to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..exceptions import RobynFastError

__all__ = ["Extension", "ExtensionsError", "parse_extensions", "DeflateParams", "negotiate_deflate",
           "is_broken_safari", "Mode"]

Mode = Literal["shared", "dedicated"]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SPACE = " \t"


class ExtensionsError(RobynFastError, ValueError):
    """A header value that does not follow RFC 6455 §9.1's grammar."""


@dataclass(frozen=True)
class Extension:
    """One element of the list: a name and its parameters, in order
    (a parameter without a value has None)."""

    name: str
    params: tuple[tuple[str, str | None], ...]


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def _token(text: str, pos: int, what: str) -> tuple[str, int]:
    m = _TOKEN_RE.match(text, pos)
    if not m:
        raise ExtensionsError(f"expected {what} at {pos} in {text!r}")
    return m.group(0), m.end()


def parse_extensions(values: list[str]) -> list[Extension]:
    """Every extension element of every ``Sec-WebSocket-Extensions`` value,
    in order; ExtensionsError for anything outside the grammar."""
    out: list[Extension] = []
    for text in values:
        pos = _skip(text, 0)
        expect_element = True
        while pos < len(text):
            if text[pos] == ",":  # empty list elements are allowed (RFC 9110 §5.6.1)
                pos = _skip(text, pos + 1)
                expect_element = True
                continue
            if not expect_element:
                raise ExtensionsError(f"expected ',' at {pos} in {text!r}")
            name, pos = _token(text, pos, "an extension name")
            params: list[tuple[str, str | None]] = []
            pos = _skip(text, pos)
            while pos < len(text) and text[pos] == ";":
                pos = _skip(text, pos + 1)
                key, pos = _token(text, pos, "a parameter name")
                pos = _skip(text, pos)
                value: str | None = None
                if pos < len(text) and text[pos] == "=":
                    pos = _skip(text, pos + 1)
                    if pos < len(text) and text[pos] == '"':
                        m = _QUOTED_RE.match(text, pos)
                        if not m:
                            raise ExtensionsError(f"an unterminated quoted value at {pos} in {text!r}")
                        value = re.sub(r"\\(.)", r"\1", m.group(1))
                        if not _TOKEN_RE.fullmatch(value):
                            raise ExtensionsError(f"a quoted value that is not a token: {value!r}")
                        pos = m.end()
                    else:
                        value, pos = _token(text, pos, "a parameter value")
                    pos = _skip(text, pos)
                params.append((key.lower(), value))
            out.append(Extension(name.lower(), tuple(params)))
            expect_element = False
    return out


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What was agreed for one connection (RFC 7692 §7.1)."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int  # the window our compressor uses (9..15)
    client_max_window_bits: int  # the largest window the client may use (our decompressor's, 8..15)
    response: str  # the Sec-WebSocket-Extensions value to send

    @property
    def shared(self) -> bool:
        """No context takeover either way: one compressor/decompressor per loop serves it."""
        return self.server_no_context_takeover and self.client_no_context_takeover


_WINDOW = re.compile(r"[89]|1[0-5]")  # 8..15 without leading zeros (RFC 7692 §7.1.2.1)


def _offer(ext: Extension) -> dict[str, str | None] | None:
    """The parameters of an acceptable offer, or None to decline it."""
    seen: dict[str, str | None] = {}
    for key, value in ext.params:
        if key in seen:
            return None
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
        elif key == "server_max_window_bits":
            if value is None or not _WINDOW.fullmatch(value) or value == "8":
                return None
        elif key == "client_max_window_bits":
            if value is not None and not _WINDOW.fullmatch(value):
                return None
        else:
            return None
        seen[key] = value
    return seen


_SAFARI_15_BROKEN = re.compile(r"Version/15\.[0-3](?:\.\d+)* (?:Mobile/\S+ )?Safari/")


def is_broken_safari(user_agent: str | None) -> bool:
    """Safari 15.0-15.3 announces permessage-deflate and cannot decode it
    (WebKit bug 228296): compression is declined for it."""
    return bool(user_agent) and _SAFARI_15_BROKEN.search(user_agent or "") is not None \
        and "Chrome/" not in (user_agent or "")


def negotiate_deflate(values: list[str], mode: Mode, *, window_bits: int = 12, client_window_bits: int = 12,
                      user_agent: str | None = None) -> DeflateParams | None:
    """The first acceptable permessage-deflate offer among the
    ``Sec-WebSocket-Extensions`` header ``values``, answered for ``mode``;
    None when there is none (no header is sent). ``window_bits`` and
    ``client_window_bits`` apply in dedicated mode (9..15 and 8..15).
    ExtensionsError for a header outside the grammar (the caller declines
    compression or refuses the handshake)."""
    if mode not in ("shared", "dedicated"):
        raise ValueError(f"mode must be 'shared' or 'dedicated', not {mode!r}")
    if not 9 <= window_bits <= 15 or not 8 <= client_window_bits <= 15:
        raise ValueError("window_bits is 9..15 and client_window_bits 8..15")
    if is_broken_safari(user_agent):
        return None
    for ext in parse_extensions(values):
        if ext.name != "permessage-deflate":
            continue
        offer = _offer(ext)
        if offer is None:
            continue
        requested = offer.get("server_max_window_bits")
        parts = ["permessage-deflate"]
        if mode == "shared":
            server_nct = client_nct = True
            server_bits = int(requested) if requested else 15
            client_bits = 15
            parts += ["server_no_context_takeover", "client_no_context_takeover"]
            if requested:
                parts.append(f"server_max_window_bits={server_bits}")
        else:
            server_nct = "server_no_context_takeover" in offer
            client_nct = "client_no_context_takeover" in offer
            server_bits = min(window_bits, int(requested)) if requested else window_bits
            if server_nct:
                parts.append("server_no_context_takeover")
            if client_nct:
                parts.append("client_no_context_takeover")
            parts.append(f"server_max_window_bits={server_bits}")
            if "client_max_window_bits" in offer:
                offered = offer["client_max_window_bits"]
                client_bits = min(client_window_bits, int(offered)) if offered else client_window_bits
                parts.append(f"client_max_window_bits={client_bits}")
            else:
                client_bits = 15  # the client did not say it can limit its window: it may use 15
        return _agreed(server_nct, client_nct, server_bits, client_bits, "; ".join(parts))
    return None


# Every DeflateParams made, by value: connections that agreed alike share one object (at most
# 2 x 2 x 7 x 8 combinations, each with one response text), so none costs memory of its own.
_AGREED: dict[tuple[bool, bool, int, int, str], DeflateParams] = {}


def _agreed(server_nct: bool, client_nct: bool, server_bits: int, client_bits: int, response: str) -> DeflateParams:
    key = (server_nct, client_nct, server_bits, client_bits, response)
    params = _AGREED.get(key)
    if params is None:
        params = _AGREED[key] = DeflateParams(*key)
    return params
