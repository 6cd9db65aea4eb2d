"""Trusted proxies and the headers they set (robyn_fast.forwarded), and the
PROXY protocol header (robyn_fast.proxy_protocol): sans-I/O, literal bytes.
The same rules on a running server are in tests/test_proxies.py."""

from __future__ import annotations

import struct
import time

import pytest

from robyn_fast import Config
from robyn_fast.exceptions import ProxyProtocolError
from robyn_fast.forwarded import TrustedProxies, parse_allow_ips
from robyn_fast.proxy_protocol import V2_SIGNATURE, ProxyHeaderParser

PEER = ("127.0.0.1", 5555)


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode("latin-1")) for n, v in pairs]


# -- the list -------------------------------------------------------------------------------------------


def test_allow_list_parsing_normalizes_and_rejects() -> None:
    assert parse_allow_ips("127.0.0.1, 10.0.0.0/8 ,::1,*,unix:") == ("127.0.0.1", "10.0.0.0/8", "::1", "*", "unix:")
    assert parse_allow_ips(["10.1.2.3/8"]) == ("10.0.0.0/8",)
    assert parse_allow_ips("") == ()
    with pytest.raises(ValueError, match="'nginx' is not an IP address"):
        parse_allow_ips("127.0.0.1,nginx")
    with pytest.raises(TypeError):
        parse_allow_ips([1])  # type: ignore[list-item]
    assert Config().forwarded_allow_ips == ("127.0.0.1",)
    assert Config(forwarded_allow_ips="*").forwarded_allow_ips == ("*",)
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Config(forwarded_allow_ips="256.0.0.1")


def test_trust_by_address_network_star_and_unix() -> None:
    t = TrustedProxies(("127.0.0.1", "10.0.0.0/8"))
    assert t.trusts("127.0.0.1") and t.trusts("10.200.0.1") and t.trusts("::ffff:10.0.0.1")
    assert not t.trusts("192.0.2.1") and not t.trusts("::1") and not t.trusts(None) and not t.trusts("junk")
    assert TrustedProxies(("*",)).trusts("2001:db8::1") and TrustedProxies(("*",)).trusts(None)
    assert TrustedProxies(("unix:",)).trusts(None) and not TrustedProxies(("unix:",)).trusts("127.0.0.1")
    assert TrustedProxies(()).none


# -- X-Forwarded-For / X-Forwarded-Proto --------------------------------------------------------------------


def test_x_forwarded_for_takes_the_rightmost_untrusted_hop() -> None:
    t = TrustedProxies(("127.0.0.1", "10.0.0.0/8"))
    # a client-supplied (spoofed) first entry, then the real client, then a trusted inner proxy
    headers = h(("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.2"), ("X-Forwarded-Proto", "https"))
    assert t.resolve(PEER, headers) == (("203.0.113.7", 0), "https")
    # every hop trusted: the left-most
    assert t.resolve(PEER, h(("x-forwarded-for", "10.0.0.9, 10.0.0.2"))) == (("10.0.0.9", 0), None)
    # two header lines are one list
    assert t.resolve(PEER, h(("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "10.0.0.3")))[0] == (
        "198.51.100.1", 0)
    # ports and brackets
    assert t.resolve(PEER, h(("x-forwarded-for", "[2001:db8::5]:4711")))[0] == ("2001:db8::5", 4711)
    assert t.resolve(PEER, h(("x-forwarded-for", "198.51.100.2:80")))[0] == ("198.51.100.2", 80)
    assert t.resolve(PEER, h(("x-forwarded-for", "2001:db8::6")))[0] == ("2001:db8::6", 0)
    # the proto of the same hop when the lists line up, else the right-most
    assert t.resolve(PEER, h(("x-forwarded-for", "198.51.100.3, 10.0.0.1"), ("x-forwarded-proto", "wss, http"))) \
        == (("198.51.100.3", 0), "wss")
    assert t.resolve(PEER, h(("x-forwarded-proto", "HTTPS"))) == (PEER, "https")


@pytest.mark.parametrize("value", ["nginx", "1.2.3.4, ", "1.2.3.4:99999", "[::1", "::1]:80", "1.2.3.4:x", "300.1.1.1",
                                   "[1.2.3.4]", "\u00e9"])
def test_a_malformed_x_forwarded_for_is_ignored_whole(value: str) -> None:
    t = TrustedProxies(("127.0.0.1",))
    assert t.resolve(PEER, h(("x-forwarded-for", value), ("x-forwarded-proto", "https"))) == (PEER, "https")
    assert t.resolve(PEER, h(("x-forwarded-proto", "gopher"))) == (PEER, None)


# -- Forwarded (RFC 7239) ----------------------------------------------------------------------------------


def test_rfc7239_forwarded() -> None:
    t = TrustedProxies(("127.0.0.1", "10.0.0.0/8"))
    assert t.resolve(PEER, h(("Forwarded", 'for=192.0.2.60;proto=https;by=203.0.113.43'))) == (
        ("192.0.2.60", 0), "https")
    # RFC 7239 §4 examples: quoted IPv6 with a port, case-insensitive names, several elements
    assert t.resolve(PEER, h(("forwarded", 'For="[2001:db8:cafe::17]:4711"'))) == (("2001:db8:cafe::17", 4711), None)
    assert t.resolve(PEER, h(("forwarded", "for=192.0.2.43, for=198.51.100.17;proto=wss, for=10.0.0.1"))) == (
        ("198.51.100.17", 0), "wss")
    # obfuscated and unknown identifiers (§6) are the client as the proxy names it
    assert t.resolve(PEER, h(("forwarded", "for=_hidden, for=10.0.0.1"))) == (("_hidden", 0), None)
    assert t.resolve(PEER, h(("forwarded", "for=unknown;proto=https"))) == (("unknown", 0), "https")
    assert t.resolve(PEER, h(("forwarded", 'for="192.0.2.1:_port"')))[0] == ("192.0.2.1", 0)
    # a comma inside a quoted value is not a separator
    assert t.resolve(PEER, h(("forwarded", 'for=192.0.2.9;host="a,b"')))[0] == ("192.0.2.9", 0)
    # Forwarded wins over X-Forwarded-For
    assert t.resolve(PEER, h(("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=192.0.2.8")))[0] == ("192.0.2.8", 0)


@pytest.mark.parametrize("value", ['for=2001:db8::1', 'for="[2001:db8::1"', "for", "for=1.2.3.4;for=5.6.7.8",
                                   'for="1.2.3.4', "for=1.2.3.4;proto=gopher", "for=1.2.3.4,,", "=x", "for=@@"])
def test_a_malformed_forwarded_is_ignored_whole(value: str) -> None:
    t = TrustedProxies(("127.0.0.1",))
    assert t.resolve(PEER, h(("forwarded", value), ("x-forwarded-for", "6.6.6.6"))) == (PEER, None)


def test_resolving_costs_microseconds() -> None:
    """The per-request price of a trusted peer (measured; the bound is loose for loaded CI machines)."""
    t = TrustedProxies(("127.0.0.1",))
    plain = h(("host", "x"), ("user-agent", "y"), ("accept", "*/*"), ("accept-encoding", "gzip"))
    forwarded = plain + h(("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"))
    for headers in (plain, forwarded):
        n = 20000
        start = time.perf_counter()
        for _ in range(n):
            t.resolve(PEER, headers)
        assert (time.perf_counter() - start) / n < 50e-6


# -- PROXY protocol ----------------------------------------------------------------------------------------


def _v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V1_TCP4 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n"
V2_TCP4 = _v2(1, 0x11, bytes([203, 0, 113, 9, 10, 0, 0, 1]) + struct.pack("!HH", 40000, 8080)
              + b"\x04\x00\x03abc")  # a TLV (NOOP) that is skipped
V2_TCP6 = _v2(1, 0x21, bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack("!HH", 1, 2))
V2_LOCAL = _v2(0, 0x00, b"")
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("header, source", [
    (V1_TCP4, ("192.0.2.1", 56324)), (V1_TCP6, ("2001:db8::1", 4711)), (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
    (V2_TCP4, ("203.0.113.9", 40000)), (V2_TCP6, ("::1", 1)), (V2_LOCAL, None), (_v2(1, 0x00, b""), None),
])
def test_proxy_headers_at_every_split(header: bytes, source: tuple[str, int] | None) -> None:
    data = header + REQUEST
    for cut in range(len(data) + 1):
        parser = ProxyHeaderParser()
        got = parser.feed(data[:cut])
        after = data[cut:]  # the caller's, when the header was complete in the first piece
        if got is None:
            assert cut < len(header)
            got, after = parser.feed(data[cut:]), b""
        assert got is not None
        parsed, rest = got
        assert parsed.source == source and parsed.length == len(header)
        assert rest + after == data[len(header):]


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"PROXZ", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", b"PROXY TCP4 " + b"1" * 200, b"\r\n\r\n\x00\r\nQUIX",
    V2_SIGNATURE + b"\x11\x11\x00\x00", V2_SIGNATURE + b"\x22\x11\x00\x00", V2_SIGNATURE + b"\x21\x11\xff\xff",
    _v2(1, 0x11, b"\x01\x02"), _v2(1, 0x21, bytes(20)), b"\x16\x03\x01",  # a TLS ClientHello
])
def test_bad_proxy_headers_are_refused_as_soon_as_certain(data: bytes) -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        for i in range(len(data)):
            parser.feed(data[i:i + 1])


def test_proxy_header_parse_cost() -> None:
    """Once per connection: a few microseconds (measured; loose bound)."""
    for header in (V1_TCP4, V2_TCP6):
        n = 5000
        start = time.perf_counter()
        for _ in range(n):
            ProxyHeaderParser().feed(header + REQUEST)
        assert (time.perf_counter() - start) / n < 100e-6
