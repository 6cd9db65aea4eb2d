"""Who the client is behind a reverse proxy: trusted proxies and the headers they set.

``--forwarded-allow-ips`` (``ROBYN_FORWARDED_ALLOW_IPS``, ``Config.forwarded_allow_ips``)
has uvicorn's name and meaning: the addresses allowed to say who the client
is. A request whose peer (the TCP peer, or the source of a PROXY protocol
header) is one of them is believed about:

- ``Forwarded`` (RFC 7239 §4): ``for=`` gives the client (a quoted IPv6
  address in brackets with or without a port, ``unknown``, or an obfuscated
  identifier such as ``_hidden``, RFC 7239 §6), ``proto=`` the scheme it
  used. When the request has it, ``X-Forwarded-*`` are not read.
- ``X-Forwarded-For``: the client is the right-most hop that is not itself
  trusted (each proxy appends the address it saw; only the trusted ones can
  be believed), or the left-most when every hop is trusted. The port is 0
  (the header has none) unless the hop carries one (``[::1]:4711``).
- ``X-Forwarded-Proto``: ``http``/``https``/``ws``/``wss``; the one set by
  the same hop when the lists line up, else the right-most.

A header that cannot be parsed (not an address, bad RFC 7239 syntax, an
unknown scheme) is ignored whole and the peer's own address kept: never a
500. The peer of a Unix socket has no address: it is trusted when the list
holds ``*`` or ``unix:``.

This module is sans-I/O: :meth:`TrustedProxies.resolve` takes the peer and
the header list and returns the client and the scheme.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Union

__all__ = ["TrustedProxies", "parse_allow_ips", "Client", "UNIX"]

#: What ``forwarded_allow_ips`` calls the peer of a Unix socket (uvicorn's literal).
UNIX = "unix:"

#: A client: ``(host, port)``; the host an IP address or an RFC 7239 identifier.
Client = tuple[str, int]

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=([!#$%&\'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\]|\\.)*")\s*')


def parse_allow_ips(value: str | Iterable[str], where: str = "forwarded_allow_ips") -> tuple[str, ...]:
    """``value`` (comma-separated text, or strings) checked and normalized:
    each an IP address, a network in CIDR notation, ``*`` (every peer) or
    ``unix:`` (the peer of a Unix socket). ``ValueError`` naming ``where``
    and the entry for anything else; ``TypeError`` for a value that is no
    text."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    else:
        try:
            items = list(value)
        except TypeError:
            raise TypeError(f"{where} must be a comma-separated str or a collection of str, not "
                            f"{type(value).__name__}") from None
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{where} must hold str entries, not {type(item).__name__}")
        item = item.strip()
        if not item:
            continue
        if item not in ("*", UNIX):
            try:
                item = str(ipaddress.ip_network(item, strict=False)) if "/" in item else str(ipaddress.ip_address(item))
            except ValueError:
                raise ValueError(f"{where}: {item!r} is not an IP address, a network (10.0.0.0/8), '*' or "
                                 f"'{UNIX}'") from None
        if item not in out:
            out.append(item)
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket's IPv4 peer
    return ip


def normal_address(text: str) -> str | None:
    """``text`` as the canonical text of an IP address (an IPv4-mapped IPv6
    address as IPv4), or None if it is none (``inet_pton``: a tenth of
    ``ipaddress``'s cost)."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed)


@functools.lru_cache(maxsize=1024)
def _node(text: str) -> Client | None:
    """An address with an optional port: ``1.2.3.4``, ``1.2.3.4:80``,
    ``2001:db8::1``, ``[2001:db8::1]``, ``[2001:db8::1]:80``; None if it is
    none of them."""
    port = 0
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or ":" not in host:
            return None
        if rest:
            if not rest.startswith(":") or not _PORT.match(rest[1:]):
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        if not _PORT.match(rest) or "." not in host:
            return None
        port = int(rest)
    else:
        host = text
    address = normal_address(host)
    if address is None or port > 65535:
        return None
    return address, port


def _split(value: str, separator: str) -> list[str] | None:
    """The ``separator``-separated parts of an RFC 7239 field value or
    element (a separator inside a quoted string is none); None for an
    unterminated quote."""
    out: list[str] = []
    start = 0
    quoted = escaped = False
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == separator and not quoted:
            out.append(value[start:i])
            start = i + 1
    if quoted:
        return None
    out.append(value[start:])
    return out


def _forwarded_element(element: str) -> dict[str, str] | None:
    """One ``for=...;proto=...`` element's pairs (names lower-cased, quotes
    removed); None when it is not RFC 7239 syntax."""
    pairs: dict[str, str] = {}
    pos = 0
    for part in _split(element, ";") or ():
        m = _PAIR.fullmatch(part)
        if m is None:
            return None
        name, value = m.group(1).lower(), m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name in pairs:
            return None  # RFC 7239 §4: each parameter at most once per element
        pairs[name] = value
        pos += 1
    return pairs if pos else None


def _forwarded_node(value: str) -> Client | None:
    """RFC 7239 §6: an address (IPv6 in brackets), ``unknown`` or an
    obfuscated identifier, each with an optional port (a number or an
    obfuscated one, which gives port 0)."""
    if value.lower() == "unknown" or _OBFUSCATED.match(value):
        return value, 0
    if value.startswith("["):
        host, sep, rest = value.partition("]")
        if sep and rest.startswith(":") and _OBFUSCATED.match(rest[1:]):
            value = host + "]"
        return _node(value) if ":" in host else None
    host, sep, port = value.partition(":")
    if sep and _OBFUSCATED.match(port):
        value = host
    node = _node(value)
    if node is not None and ":" in node[0] and not value.startswith("["):
        return None  # RFC 7239 §6: an IPv6 address is in brackets (and so quoted)
    return node


class TrustedProxies:
    """The peers whose forwarding headers are believed (see the module
    docstring). ``TrustedProxies(("127.0.0.1", "10.0.0.0/8"))``; ``"*"``
    trusts every peer."""

    __slots__ = ("everyone", "unix", "_addresses", "_networks", "_known")

    def __init__(self, allow: Sequence[str]) -> None:
        entries = parse_allow_ips(allow)
        self.everyone = "*" in entries
        self.unix = self.everyone or UNIX in entries
        self._addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._networks: list[_Network] = []
        for entry in entries:
            if entry in ("*", UNIX):
                continue
            if "/" in entry:
                self._networks.append(ipaddress.ip_network(entry))
            else:
                self._addresses.add(ipaddress.ip_address(entry))
        self._known: dict[str, bool] = {}  # peer host -> trusted (a connection asks once)

    @property
    def none(self) -> bool:
        """True when no peer is trusted (the headers are never read)."""
        return not (self.everyone or self.unix or self._addresses or self._networks)

    def trusts(self, host: str | None) -> bool:
        """Whether the peer ``host`` (None: a Unix socket's) may set the headers."""
        if host is None:
            return self.unix
        if self.everyone:
            return True
        known = self._known.get(host)
        if known is None:
            ip = _ip(host) if normal_address(host) is not None else None
            known = ip is not None and (ip in self._addresses or any(ip in net for net in self._networks))
            if len(self._known) < 4096:  # peers seen: bounded, so random sources cannot grow it
                self._known[host] = known
        return known

    def resolve(self, peer: Client | None, headers: Sequence[tuple[bytes, bytes]]) -> tuple[Client | None, str | None]:
        """The client and the scheme (``None``: the connection's own) that the
        forwarding headers of a request from the trusted ``peer`` name; the
        peer itself and None when they name nothing usable."""
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        proto: list[bytes] = []
        for name, value in headers:
            n = len(name)
            if n == 9 and name.lower() == b"forwarded":
                forwarded.append(value)
            elif n == 15 and name.lower() == b"x-forwarded-for":
                xff.append(value)
            elif n == 17 and name.lower() == b"x-forwarded-proto":
                proto.append(value)
        if forwarded:
            elements = _rfc7239(b",".join(forwarded).decode("latin-1"))
            if elements is None:
                return peer, None
            named, index = self._rightmost_untrusted([node for node, _ in elements])
            return named, elements[index][1]
        client = peer
        index = -1
        hops: tuple[Client | None, ...] = ()
        if xff:
            hops = _xff(b",".join(xff).decode("latin-1"))
            if all(n is not None for n in hops):
                client, index = self._rightmost_untrusted(hops)  # type: ignore[arg-type]
        scheme = None
        if proto:
            schemes = [p.strip().lower() for p in b",".join(proto).decode("latin-1").split(",")]
            if all(s in _SCHEMES for s in schemes):
                scheme = schemes[index] if index >= 0 and len(schemes) == len(hops) else schemes[-1]
        return client, scheme

    def _rightmost_untrusted(self, nodes: Sequence[Client]) -> tuple[Client, int]:
        for i in range(len(nodes) - 1, -1, -1):
            if not self.trusts(nodes[i][0]):
                return nodes[i], i
        return nodes[0], 0


@functools.lru_cache(maxsize=1024)
def _xff(value: str) -> tuple[Client | None, ...]:
    """Each hop of an X-Forwarded-For value (None: not an address). Cached:
    a proxy's connection brings the same client's value again and again."""
    return tuple(_node(hop.strip()) for hop in value.split(","))


@functools.lru_cache(maxsize=1024)
def _rfc7239(value: str) -> tuple[tuple[Client, str | None], ...] | None:
    """Each element of a Forwarded value as (node, proto); None when the
    value is not RFC 7239 syntax, or names a node or a scheme that is none."""
    elements = _split(value, ",")
    if elements is None:
        return None
    out: list[tuple[Client, str | None]] = []
    for element in elements:
        pairs = _forwarded_element(element)
        if pairs is None:
            return None
        node = _forwarded_node(pairs["for"]) if "for" in pairs else ("unknown", 0)
        if node is None:
            return None
        scheme = pairs.get("proto")
        if scheme is not None:
            scheme = scheme.lower()
            if scheme not in _SCHEMES:
                return None
        out.append((node, scheme))
    return tuple(out)
