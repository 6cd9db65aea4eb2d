"""The PROXY protocol header (HAProxy's, versions 1 and 2), sans-I/O.

With ``--proxy-protocol`` (``ROBYN_PROXY_PROTOCOL``, ``Config.proxy_protocol``)
every connection starts with the header a load balancer (HAProxy, AWS NLB,
nginx's ``proxy_protocol on``...) sends before anything else, naming the
client it accepted; the HTTP request follows. :class:`ProxyHeaderParser` is
fed the connection's first bytes and returns the header and the bytes after
it once it is complete, or raises :class:`ProxyProtocolError`.

- Version 1 (text): ``PROXY TCP4|TCP6 src dst sport dport\\r\\n`` or
  ``PROXY UNKNOWN ...\\r\\n`` (the peer's own address stands), at most 107
  bytes.
- Version 2 (binary): the 12-byte signature, version/command (``LOCAL``: a
  health check of the proxy itself, the peer's own address stands;
  ``PROXY``), family (TCP over IPv4 or IPv6; ``UNSPEC`` and the others keep
  the peer's address), the addresses, and TLVs, which are skipped. At most
  :data:`MAX_V2_LENGTH` bytes of addresses and TLVs.

The specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .exceptions import ProxyProtocolError
from .forwarded import normal_address

__all__ = ["ProxyHeader", "ProxyHeaderParser", "ProxyProtocolError", "V2_SIGNATURE", "MAX_V2_LENGTH"]

V1_MAX = 107  # the longest version 1 line, CRLF included (spec §2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_V2_LENGTH = 4096  # addresses and TLVs after the 16-byte v2 head (the spec allows 65535; nobody sends that)
_V1_PREFIX = b"PROXY "


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header: ``source`` is the client the proxy accepted
    (``None``: ``LOCAL``/``UNKNOWN``/another family, the connection's own
    peer stands), ``destination`` the address it was accepted on."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int  # bytes of the header


class ProxyHeaderParser:
    """Feed the first bytes of a connection; :meth:`feed` returns ``None``
    while the header is incomplete, then ``(header, rest)``. A connection
    that does not start with a valid header raises
    :class:`ProxyProtocolError` as soon as that is certain (the first byte
    that does not fit)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        buf = self._buffer + data if self._buffer else bytes(data)
        self._buffer = buf
        if not buf:
            return None
        if buf[0] == 0x50:  # "P"
            return self._v1(buf)
        if buf[0] == 0x0D:  # "\r"
            return self._v2(buf)
        raise ProxyProtocolError("the connection does not start with a PROXY protocol header")

    def _v1(self, buf: bytes) -> tuple[ProxyHeader, bytes] | None:
        n = min(len(buf), len(_V1_PREFIX))
        if buf[:n] != _V1_PREFIX[:n]:
            raise ProxyProtocolError("the connection does not start with a PROXY protocol header")
        end = buf.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(buf) >= V1_MAX:
                raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX} bytes")
            return None
        line = buf[:end]
        try:
            parts = line.decode("ascii").split(" ")
        except UnicodeDecodeError:
            raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
        length = end + 2
        if len(parts) >= 2 and parts[1] == "UNKNOWN":
            return ProxyHeader(1, None, None, length), buf[length:]
        if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
            raise ProxyProtocolError(f"malformed PROXY v1 header {line[:V1_MAX]!r}")
        version = 4 if parts[1] == "TCP4" else 6
        source = (_v1_address(parts[2], version), _v1_port(parts[4]))
        destination = (_v1_address(parts[3], version), _v1_port(parts[5]))
        return ProxyHeader(1, source, destination, length), buf[length:]

    def _v2(self, buf: bytes) -> tuple[ProxyHeader, bytes] | None:
        n = min(len(buf), len(V2_SIGNATURE))
        if buf[:n] != V2_SIGNATURE[:n]:
            raise ProxyProtocolError("the connection does not start with a PROXY protocol header")
        if len(buf) < 16:
            return None
        version_command, family, size = buf[12], buf[13], struct.unpack_from("!H", buf, 14)[0]
        if version_command >> 4 != 2:
            raise ProxyProtocolError(f"PROXY v2 header with version {version_command >> 4}")
        command = version_command & 0x0F
        if command > 1:
            raise ProxyProtocolError(f"PROXY v2 header with unknown command {command}")
        if size > MAX_V2_LENGTH:
            raise ProxyProtocolError(f"PROXY v2 header of {size} bytes; at most {MAX_V2_LENGTH}")
        length = 16 + size
        if len(buf) < length:
            return None
        rest = buf[length:]
        if command == 0:  # LOCAL: the proxy's own connection (a health check)
            return ProxyHeader(2, None, None, length), rest
        if family == 0x11:  # TCP over IPv4
            if size < 12:
                raise ProxyProtocolError("PROXY v2 TCP4 header too short for its addresses")
            src, dst, sport, dport = struct.unpack_from("!4s4sHH", buf, 16)
            return ProxyHeader(2, (socket.inet_ntop(socket.AF_INET, src), sport),
                               (socket.inet_ntop(socket.AF_INET, dst), dport), length), rest
        if family == 0x21:  # TCP over IPv6
            if size < 36:
                raise ProxyProtocolError("PROXY v2 TCP6 header too short for its addresses")
            src, dst, sport, dport = struct.unpack_from("!16s16sHH", buf, 16)
            return ProxyHeader(2, (_v6(src), sport), (_v6(dst), dport), length), rest
        # UNSPEC, UDP, Unix: nothing an HTTP client address can be; the peer stands.
        return ProxyHeader(2, None, None, length), rest


def _v6(packed: bytes) -> str:
    if packed[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed)


def _v1_address(text: str, version: int) -> str:
    address = normal_address(text)
    if address is None:
        raise ProxyProtocolError(f"PROXY v1 header with a bad address {text!r}")
    if (":" in text) != (version == 6):
        raise ProxyProtocolError(f"PROXY v1 header: {text!r} is not an IPv{version} address")
    return address


def _v1_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"PROXY v1 header with a bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 header with a bad port {text!r}")
    return port
