"""The server side of the RFC 6455 opening handshake (robyn_fast.websocket.handshake), fed
literal header bytes as httptools delivers them; the 101 response is checked
byte for byte, parsed back by httptools and accepted by websockets' client."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Collection, Sequence

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri
from websockets.utils import accept_key as websockets_accept_key

from robyn_fast.exceptions import ArgumentTypeError, HandshakeError, RobynFastError
from robyn_fast.websocket.handshake import (
    WS_GUID,
    accept_handshake,
    accept_key,
    header_tokens,
    is_upgrade_request,
)

Headers = list[tuple[bytes, bytes]]

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

UPGRADE_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
VERSION_HEADERS = [*UPGRADE_HEADERS, ("Sec-WebSocket-Version", "13")]

RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def request(*extra: tuple[bytes, bytes], drop: Sequence[bytes] = ()) -> Headers:
    """A valid handshake request as in RFC 6455 §1.2, minus ``drop``, plus ``extra``."""
    base = [
        (b"Host", b"server.example.com"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", RFC_KEY),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    dropped = {d.lower() for d in drop}
    return [(n, v) for n, v in base if n.lower() not in dropped] + list(extra)


def refused(headers: Headers, method: str = "GET", version: str = "1.1", **kw: object) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        accept_handshake(method, version, headers, **kw)  # type: ignore[arg-type]
    return info.value


def key_for(raw: bytes) -> bytes:
    return base64.b64encode(raw)


# -- accept_key ---------------------------------------------------------------------


def test_guid_is_rfc_value() -> None:
    assert WS_GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key(RFC_KEY) == RFC_ACCEPT.decode()
    # Other buffers work too, though the signature promises only str | bytes.
    assert accept_key(bytearray(RFC_KEY)) == RFC_ACCEPT.decode()  # type: ignore[arg-type]
    assert accept_key(memoryview(RFC_KEY)) == RFC_ACCEPT.decode()  # type: ignore[arg-type]


def test_accept_key_matches_websockets() -> None:
    keys = [RFC_KEY.decode()] + [base64.b64encode(secrets.token_bytes(16)).decode() for _ in range(200)]
    for key in keys:
        assert accept_key(key) == websockets_accept_key(key)
        assert accept_key(key.encode()) == websockets_accept_key(key)


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_accept_key_matches_websockets_on_any_ascii(key: str) -> None:
    assert accept_key(key) == websockets_accept_key(key)


def test_accept_key_str_is_latin1_of_bytes() -> None:
    raw = b"\xe9\xff" + RFC_KEY
    assert accept_key(raw) == accept_key(raw.decode("latin-1"))


def test_accept_key_rejects_bad_arguments() -> None:
    with pytest.raises(ArgumentTypeError):
        accept_key(16)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        accept_key("\u20ac" * 24)


# -- the 101 response ---------------------------------------------------------------


def test_response_bytes_exact() -> None:
    assert accept_handshake("GET", "1.1", request()) == (RESPONSE, None)


def test_response_bytes_exact_with_subprotocol() -> None:
    response, chosen = accept_handshake(
        "GET", "1.1", request((b"Sec-WebSocket-Protocol", b"chat, superchat")), subprotocols=["chat"]
    )
    assert chosen == "chat"
    assert response == RESPONSE[:-2] + b"Sec-WebSocket-Protocol: chat\r\n\r\n"


def test_response_is_bytes() -> None:
    response, _ = accept_handshake("GET", "1.1", request())
    assert type(response) is bytes


def parse_response(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool]:
    class Collector:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.complete = False

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            self.complete = True

    collector = Collector()
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    return parser.get_status_code(), collector.headers, collector.complete


def test_response_parses_with_httptools() -> None:
    response, _ = accept_handshake(
        "GET", "1.1", request((b"Sec-WebSocket-Protocol", b"chat")), subprotocols=["chat"]
    )
    status, headers, complete = parse_response(response)
    assert status == 101
    assert complete
    assert headers == [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", RFC_ACCEPT),
        (b"Sec-WebSocket-Protocol", b"chat"),
    ]


def parse_request(raw: bytes) -> tuple[str, str, Headers]:
    """Collect what the server gets from httptools for a literal request."""

    class Collector:
        def __init__(self) -> None:
            self.headers: Headers = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

    collector = Collector()
    parser = httptools.HttpRequestParser(collector)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass
    return parser.get_method().decode(), parser.get_http_version(), collector.headers


def test_literal_rfc_request_through_httptools() -> None:
    raw = (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )
    method, version, headers = parse_request(raw)
    assert is_upgrade_request(headers)
    response, chosen = accept_handshake(
        method, version, headers, subprotocols=["superchat", "chat"], allowed_origins={"http://example.com"}
    )
    assert chosen == "chat"  # the client's first choice
    assert response == RESPONSE[:-2] + b"Sec-WebSocket-Protocol: chat\r\n\r\n"


def test_literal_http10_request_through_httptools() -> None:
    raw = b"GET /chat HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    method, version, headers = parse_request(raw)
    error = refused(headers, method, version)
    assert error.status == 400


@pytest.mark.parametrize(
    ("offered", "supported", "expected"),
    [
        (None, None, None),
        (["chat"], None, None),
        (["chat", "superchat"], ["superchat", "chat"], "chat"),
        (["v2", "v1"], ["v1"], "v1"),
        (["x"], ["chat"], None),
    ],
)
def test_websockets_client_accepts_response(
    offered: list[str] | None, supported: list[str] | None, expected: str | None
) -> None:
    offered_names = None if offered is None else [Subprotocol(p) for p in offered]
    client = ClientProtocol(parse_uri("ws://server.example.com/chat"), subprotocols=offered_names)
    client.send_request(client.connect())
    method, version, headers = parse_request(client.data_to_send()[0])
    response, chosen = accept_handshake(method, version, headers, subprotocols=supported)
    assert chosen == expected
    client.receive_data(response)
    assert client.handshake_exc is None
    assert client.state is State.OPEN
    assert client.subprotocol == expected


# -- method and HTTP version -------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "CONNECT", "get", "Get", ""])
def test_method_not_get_is_405(method: str) -> None:
    error = refused(request(), method=method)
    assert error.status == 405
    assert error.headers == [("Allow", "GET")]


@pytest.mark.parametrize(
    "version", ["1.0", "0.9", "HTTP/1.0", "", "1", "x.y", "1.x", "11", "\u00b2.1", "1.1 "]
)
def test_http_version_below_1_1_is_400(version: str) -> None:
    error = refused(request(), version=version)
    assert error.status == 400
    assert error.reason.startswith("WebSocket handshake requires HTTP/1.1 or higher, got ")
    assert error.headers == []


@pytest.mark.parametrize("version", ["1.1", "HTTP/1.1", "1.2", "2.0"])
def test_http_version_at_least_1_1_is_accepted(version: str) -> None:
    assert accept_handshake("GET", version, request())[0] == RESPONSE


def test_http_version_must_be_str() -> None:
    with pytest.raises(ArgumentTypeError):
        accept_handshake("GET", b"1.0", request())  # type: ignore[arg-type]


def test_method_is_checked_before_version() -> None:
    assert refused([], method="POST", version="1.0").status == 405


# -- Host -------------------------------------------------------------------------


def test_missing_host_is_400() -> None:
    error = refused(request(drop=[b"host"]))
    assert error.status == 400
    assert "Host" in error.reason


def test_repeated_host_is_400() -> None:
    error = refused(request((b"Host", b"other.example.com")))
    assert (error.status, error.reason) == (400, "more than one Host header")


@pytest.mark.parametrize("value", [b"", b"  ", b"\t"])
def test_empty_host_is_400(value: bytes) -> None:
    assert refused(request((b"Host", value), drop=[b"host"])).status == 400


def test_host_is_checked_before_upgrade() -> None:
    assert refused([(b"Sec-WebSocket-Version", b"13")]).status == 400


# -- Upgrade and Connection ----------------------------------------------------------


def test_missing_upgrade_is_426() -> None:
    error = refused(request(drop=[b"upgrade"]))
    assert error.status == 426
    assert error.headers == UPGRADE_HEADERS
    assert "Upgrade" in error.reason


@pytest.mark.parametrize(
    "value",
    [b"h2c", b"", b"websockets", b"web socket", b"websocket/13", b"notwebsocket", b"ws", b"\xffwebsocket"],
)
def test_upgrade_without_websocket_token_is_426(value: bytes) -> None:
    error = refused(request((b"Upgrade", value), drop=[b"upgrade"]))
    assert error.status == 426
    assert error.headers == UPGRADE_HEADERS


@pytest.mark.parametrize(
    "lines",
    [
        [b"WebSocket"],
        [b"WEBSOCKET"],
        [b"websocket, h2c"],
        [b"h2c, websocket"],
        [b"h2c,websocket"],
        [b"  websocket  "],
        [b"\twebsocket\t"],
        [b", websocket,"],
        [b",,websocket,,"],
        [b"h2c", b"websocket"],
        [b"websocket", b"h2c"],
    ],
)
def test_upgrade_token_variants_accepted(lines: list[bytes]) -> None:
    headers = request(*((b"upgrade", v) for v in lines), drop=[b"upgrade"])
    assert is_upgrade_request(headers)
    assert accept_handshake("GET", "1.1", headers)[0] == RESPONSE


def test_missing_connection_is_426() -> None:
    error = refused(request(drop=[b"connection"]))
    assert error.status == 426
    assert error.headers == UPGRADE_HEADERS
    assert error.reason == "missing Connection: Upgrade header"


@pytest.mark.parametrize(
    "value", [b"keep-alive", b"close", b"", b"upgraded", b"up grade", b"upgrade-insecure"]
)
def test_connection_without_upgrade_token_is_426(value: bytes) -> None:
    error = refused(request((b"Connection", value), drop=[b"connection"]))
    assert (error.status, error.reason) == (426, "Connection header does not contain 'upgrade'")
    assert error.headers == UPGRADE_HEADERS


@pytest.mark.parametrize(
    "lines",
    [
        [b"upgrade"],
        [b"UPGRADE"],
        [b"keep-alive, Upgrade"],
        [b"Upgrade, keep-alive"],
        [b"keep-alive,Upgrade"],
        [b"keep-alive ,\t Upgrade \t"],
        [b", upgrade,"],
        [b"keep-alive", b"Upgrade"],
        [b"Upgrade", b"close"],
        [b"", b"upgrade"],
    ],
)
def test_connection_token_variants_accepted(lines: list[bytes]) -> None:
    headers = request(*((b"Connection", v) for v in lines), drop=[b"connection"])
    assert accept_handshake("GET", "1.1", headers)[0] == RESPONSE


def test_upgrade_is_checked_before_connection() -> None:
    error = refused(request(drop=[b"upgrade", b"connection"]))
    assert error.reason == "missing Upgrade: websocket header"


def test_header_names_are_case_insensitive() -> None:
    headers = [(n.upper(), v) for n, v in request()] + [(b"sEC-wEBsOCKET-pROTOCOL", b"chat")]
    assert accept_handshake("GET", "1.1", headers, subprotocols=["chat"])[1] == "chat"
    headers = [(n.lower(), v) for n, v in request()]
    assert accept_handshake("GET", "1.1", headers)[0] == RESPONSE


# -- Sec-WebSocket-Version ------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"8", b"12", b"14", b"013", b"13.0", b"13, 8", b"8, 13", b"", b"thirteen", b"\xb113"]
)
def test_unsupported_version_is_426(value: bytes) -> None:
    error = refused(request((b"Sec-WebSocket-Version", value), drop=[b"sec-websocket-version"]))
    assert error.status == 426
    assert error.headers == VERSION_HEADERS


def test_missing_version_is_426() -> None:
    error = refused(request(drop=[b"sec-websocket-version"]))
    assert (error.status, error.reason) == (426, "missing Sec-WebSocket-Version header")
    assert ("Sec-WebSocket-Version", "13") in error.headers


def test_repeated_version_is_426_even_if_both_13() -> None:
    error = refused(request((b"Sec-WebSocket-Version", b"13")))
    assert (error.status, error.reason) == (426, "more than one Sec-WebSocket-Version header")
    assert error.headers == VERSION_HEADERS


@pytest.mark.parametrize("value", [b" 13", b"13 ", b"\t13\t"])
def test_version_with_surrounding_whitespace_is_accepted(value: bytes) -> None:
    headers = request((b"Sec-WebSocket-Version", value), drop=[b"sec-websocket-version"])
    assert accept_handshake("GET", "1.1", headers)[0] == RESPONSE


def test_version_is_checked_before_key() -> None:
    assert refused(request(drop=[b"sec-websocket-version", b"sec-websocket-key"])).status == 426


# -- Sec-WebSocket-Key ----------------------------------------------------------------


def with_key(*values: bytes) -> Headers:
    return request(*((b"Sec-WebSocket-Key", v) for v in values), drop=[b"sec-websocket-key"])


def test_missing_key_is_400() -> None:
    error = refused(with_key())
    assert (error.status, error.reason, error.headers) == (400, "missing Sec-WebSocket-Key header", [])


def test_repeated_key_is_400_even_if_equal() -> None:
    error = refused(with_key(RFC_KEY, RFC_KEY))
    assert (error.status, error.reason) == (400, "more than one Sec-WebSocket-Key header")


@pytest.mark.parametrize("size", [0, 1, 15, 17, 32])
def test_key_of_wrong_decoded_size_is_400(size: int) -> None:
    error = refused(with_key(key_for(bytes(range(size)))))
    assert error.status == 400
    assert error.reason == f"Sec-WebSocket-Key header must decode to 16 bytes, got {size}"


@pytest.mark.parametrize(
    "key",
    [
        RFC_KEY.rstrip(b"="),  # padding missing
        RFC_KEY[:-1],  # half the padding
        RFC_KEY + b"=",  # excess padding
        b"dGhlIHNhbXBsZSBub25jZQ!!",
        b"dGhlIHNhbXBs!SBub25jZQ==",
        b"dGhlIHNhbXBs ZSBub25jZQ==",  # inner whitespace
        b"dGhlIHNhbXBs\tZSBub25jZQ==",
        b"dGhlIHNhbXBsZSBub25jZQ=A",  # misplaced padding
        b"=GhlIHNhbXBsZSBub25jZQ==",  # leading padding
        b"-_-_-_-_-_-_-_-_-_-_-A==",  # URL-safe alphabet
        b"\xff" * 24,
        b"\xe9" + RFC_KEY[1:],
        b"dGhlIHNhbXBsZSBub25jZQ==\x00",
    ],
)
def test_key_not_valid_base64_is_400(key: bytes) -> None:
    error = refused(with_key(key))
    assert error.status == 400
    assert "Sec-WebSocket-Key" in error.reason


def test_empty_key_is_400() -> None:
    assert refused(with_key(b"")).status == 400
    assert refused(with_key(b"   ")).status == 400


@pytest.mark.parametrize("key", [b" " + RFC_KEY, RFC_KEY + b" ", b"\t" + RFC_KEY + b"\t"])
def test_key_surrounding_whitespace_is_ignored(key: bytes) -> None:
    # httptools already strips it; the accept value is computed on the key alone.
    assert accept_handshake("GET", "1.1", with_key(key))[0] == RESPONSE


def test_key_with_nonzero_pad_bits_is_accepted() -> None:
    # "...ZQ==" and "...ZR==" decode to the same 16 bytes (RFC 4648 §3.5 leaves
    # rejecting this to the decoder; websockets accepts it too). The accept
    # value hashes the key as sent.
    key = RFC_KEY[:21] + b"R=="
    assert base64.b64decode(key) == base64.b64decode(RFC_KEY)
    response, _ = accept_handshake("GET", "1.1", with_key(key))
    assert accept_key(key).encode() in response


def test_random_keys_are_accepted() -> None:
    for _ in range(100):
        key = key_for(secrets.token_bytes(16))
        response, _ = accept_handshake("GET", "1.1", with_key(key))
        assert b"Sec-WebSocket-Accept: " + websockets_accept_key(key.decode()).encode() + b"\r\n" in response


# -- Origin ---------------------------------------------------------------------------

ALLOWED = {"https://example.com", "http://localhost:8080", "null"}


def with_origin(*values: bytes) -> Headers:
    return request(*((b"Origin", v) for v in values))


def test_origin_ignored_without_allowlist() -> None:
    for headers in (request(), with_origin(b"https://evil.example"), with_origin(b"a", b"b")):
        assert accept_handshake("GET", "1.1", headers)[0] == RESPONSE


@pytest.mark.parametrize(
    "origin",
    [b"https://example.com", b"HTTPS://EXAMPLE.COM", b"https://Example.Com", b"http://localhost:8080", b"null"],
)
def test_allowed_origin_is_accepted(origin: bytes) -> None:
    assert accept_handshake("GET", "1.1", with_origin(origin), allowed_origins=ALLOWED)[0] == RESPONSE


def test_allowlist_entries_compare_case_insensitively() -> None:
    headers = with_origin(b"https://example.com")
    assert accept_handshake("GET", "1.1", headers, allowed_origins=["HTTPS://Example.COM"])[0] == RESPONSE


@pytest.mark.parametrize("allowed", [ALLOWED, sorted(ALLOWED), frozenset(ALLOWED), tuple(ALLOWED)])
def test_allowlist_collection_types(allowed: Collection[str]) -> None:
    assert accept_handshake("GET", "1.1", with_origin(b"null"), allowed_origins=allowed)[0] == RESPONSE


@pytest.mark.parametrize(
    "origin",
    [
        b"https://evil.example",
        b"http://example.com",  # scheme differs
        b"https://example.com:443",  # no port normalisation
        b"https://example.com/",  # no path normalisation
        b"https://example.com.evil.example",
        b"https://sub.example.com",
        b"http://localhost:8081",
        b"http://localhost",
        b"",
        b"nul",
        b"https://exampl\xe9.com",
        b"\xff\xfe",
    ],
)
def test_origin_not_allowed_is_403(origin: bytes) -> None:
    error = refused(with_origin(origin), allowed_origins=ALLOWED)
    assert (error.status, error.reason, error.headers) == (403, "Origin not allowed", [])


def test_missing_origin_with_allowlist_is_403() -> None:
    error = refused(request(), allowed_origins=ALLOWED)
    assert (error.status, error.reason) == (403, "missing Origin header")


def test_repeated_origin_with_allowlist_is_403() -> None:
    error = refused(with_origin(b"https://example.com", b"https://example.com"), allowed_origins=ALLOWED)
    assert (error.status, error.reason) == (403, "more than one Origin header")


def test_empty_allowlist_refuses_everything() -> None:
    assert refused(with_origin(b"https://example.com"), allowed_origins=set()).status == 403


def test_null_origin_is_only_a_string() -> None:
    assert refused(with_origin(b"null"), allowed_origins={"https://example.com"}).status == 403


def test_allowlist_as_single_str_is_rejected() -> None:
    # "https://example.com" as a str would make `in` a substring test.
    with pytest.raises(ArgumentTypeError):
        accept_handshake("GET", "1.1", with_origin(b"example"), allowed_origins="https://example.com")


def test_protocol_errors_come_before_origin() -> None:
    headers = request((b"Origin", b"https://evil.example"), drop=[b"sec-websocket-version"])
    assert refused(headers, allowed_origins=ALLOWED).status == 426
    headers = request((b"Origin", b"https://evil.example"), drop=[b"sec-websocket-key"])
    assert refused(headers, allowed_origins=ALLOWED).status == 400


# -- subprotocols ---------------------------------------------------------------------


def negotiate(*lines: bytes, supported: Sequence[str] | None) -> tuple[bytes, str | None]:
    return accept_handshake(
        "GET", "1.1", request(*((b"Sec-WebSocket-Protocol", v) for v in lines)), subprotocols=supported
    )


@pytest.mark.parametrize(
    ("lines", "supported", "expected"),
    [
        ([b"chat, superchat"], ["chat", "superchat"], "chat"),
        ([b"chat, superchat"], ["superchat", "chat"], "chat"),  # the client's order wins
        ([b"superchat, chat"], ["chat", "superchat"], "superchat"),
        ([b"v3, v2, v1"], ["v1", "v2"], "v2"),
        ([b"a", b"b"], ["b", "a"], "a"),  # several lines: one list, in order
        ([b"x, y", b"z, b"], ["b"], "b"),
        ([b"  chat  "], ["chat"], "chat"),
        ([b"\tchat\t,\tsuperchat"], ["superchat"], "superchat"),
        ([b", ,chat,"], ["chat"], "chat"),
        ([b",,"], ["chat"], None),
        ([b""], ["chat"], None),
        ([b"x, y"], ["chat"], None),  # no match: proceed without a subprotocol
        ([b"Chat"], ["chat"], None),  # names are case-sensitive
        ([b"graphql-transport-ws"], ["graphql-transport-ws"], "graphql-transport-ws"),
        ([b"v1.json.api"], ["v1.json.api"], "v1.json.api"),
        ([b"a b"], ["a b"], None),  # not a token: never echoed
        ([b"ch\xe9t"], ["ch\xe9t"], None),
        ([b"chat"], None, None),  # no server subprotocols: never the header
        ([b"chat"], [], None),
        ([b"chat"], (), None),
    ],
)
def test_subprotocol_selection(lines: list[bytes], supported: list[str] | None, expected: str | None) -> None:
    response, chosen = negotiate(*lines, supported=supported)
    assert chosen == expected
    if expected is None:
        assert response == RESPONSE
        assert b"Sec-WebSocket-Protocol" not in response
    else:
        assert response.endswith(b"\r\nSec-WebSocket-Protocol: " + expected.encode() + b"\r\n\r\n")


def test_client_offers_none_but_server_has_some() -> None:
    assert negotiate(supported=["chat"]) == (RESPONSE, None)


def test_subprotocols_as_single_str_is_rejected() -> None:
    with pytest.raises(ArgumentTypeError):
        negotiate(b"c", supported="chat")


def test_subprotocol_echoed_as_sent() -> None:
    # The selected name is the client's, byte for byte (RFC 6455 §4.2.2 step 4).
    response, chosen = negotiate(b"wamp.2.json", supported=("wamp.2.json",))
    assert chosen == "wamp.2.json"
    assert b"\r\nSec-WebSocket-Protocol: wamp.2.json\r\n" in response


# -- extensions -------------------------------------------------------------------------


def test_extensions_are_ignored() -> None:
    headers = request(
        (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
        (b"Sec-WebSocket-Extensions", b"x-webkit-deflate-frame"),
    )
    response, _ = accept_handshake("GET", "1.1", headers)
    assert response == RESPONSE
    assert b"Extensions" not in response


# -- header_tokens and is_upgrade_request -------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "name", "expected"),
    [
        ([], b"connection", []),
        ([(b"Connection", b"keep-alive, Upgrade")], b"connection", ["keep-alive", "upgrade"]),
        ([(b"CONNECTION", b"Upgrade")], b"Connection", ["upgrade"]),
        ([(b"connection", b"a"), (b"Host", b"h"), (b"Connection", b"B, c")], b"connection", ["a", "b", "c"]),
        ([(b"Connection", b" , upgrade ,\t")], b"connection", ["upgrade"]),
        ([(b"Connection", b"")], b"connection", []),
        ([(b"Connection", b",,, ,")], b"connection", []),
        ([(b"Connection", b"a\tb")], b"connection", ["a\tb"]),
        ([(b"X", b"\xc9T\xc9, \xa0x\xa0")], b"x", ["\xc9t\xc9", "\xa0x\xa0"]),  # only ASCII is lowercased
        ([(b"Upgrade", b"websocket")], b"connection", []),
    ],
)
def test_header_tokens(headers: Headers, name: bytes, expected: list[str]) -> None:
    assert header_tokens(headers, name) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], False),
        ([(b"Upgrade", b"websocket")], True),
        ([(b"upgrade", b"WebSocket")], True),
        ([(b"UPGRADE", b"websocket, h2c")], True),
        ([(b"Upgrade", b"h2c"), (b"Upgrade", b"websocket")], True),
        ([(b"Upgrade", b" ,\twebsocket , ")], True),
        ([(b"Upgrade", b"h2c")], False),
        ([(b"Upgrade", b"websockets")], False),
        ([(b"Upgrade", b"")], False),
        ([(b"X-Upgrade", b"websocket")], False),
        ([(b"Connection", b"websocket")], False),
        ([(b"Upgrade", b"\xffwebsocket\xff")], False),
    ],
)
def test_is_upgrade_request(headers: Headers, expected: bool) -> None:
    assert is_upgrade_request(headers) is expected


# -- the exception ----------------------------------------------------------------------


def test_handshake_error_categories() -> None:
    error = refused(request(drop=[b"sec-websocket-key"]))
    assert isinstance(error, RobynFastError)
    assert isinstance(error, ValueError)
    assert str(error) == "400 missing Sec-WebSocket-Key header"


def test_handshake_error_headers_are_not_shared() -> None:
    first = refused(request(drop=[b"upgrade"]))
    first.headers.append(("X", "y"))
    assert refused(request(drop=[b"upgrade"])).headers == UPGRADE_HEADERS


# -- robustness -------------------------------------------------------------------------

header_names = st.sampled_from(
    [b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version", b"Origin",
     b"Sec-WebSocket-Protocol", b"sec-websocket-extensions", b"X-Other"]
)  # fmt: skip


@settings(max_examples=500)
@given(
    st.lists(st.tuples(header_names, st.binary(max_size=40)), max_size=10),
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["1.1", "1.0", "", "9.9"]),
    st.booleans(),
)
def test_never_crashes(headers: Headers, method: str, version: str, check_origin: bool) -> None:
    """Any bytes in any field end in a 101 or a HandshakeError, nothing else."""
    try:
        response, chosen = accept_handshake(
            method,
            version,
            headers,
            subprotocols=["chat"],
            allowed_origins={"https://example.com"} if check_origin else None,
        )
    except HandshakeError as error:
        assert error.status in (400, 403, 405, 426)
        assert error.reason
    else:
        status, _, complete = parse_response(response)
        assert (status, complete) == (101, True)
        assert chosen in (None, "chat")
    header_tokens(headers, b"connection")
    is_upgrade_request(headers)


@given(st.binary(min_size=24, max_size=24))
def test_any_24_byte_key_is_accepted_or_400(key: bytes) -> None:
    try:
        response, _ = accept_handshake("GET", "1.1", with_key(key))
    except HandshakeError as error:
        assert error.status == 400
    else:
        assert len(base64.b64decode(key.strip(b" \t"), validate=True)) == 16
        assert accept_key(key.strip(b" \t")).encode() in response


# -- the compiled helpers (robyn_fast._core.handshake) against their oracles ----------------------------

def test_the_server_uses_the_compiled_accept_key() -> None:
    from robyn_fast._core import handshake as compiled
    from robyn_fast.websocket import handshake as module

    assert module._accept is compiled.accept_key
    assert type(compiled).__name__ == "module" and compiled.__file__.endswith((".so", ".pyd"))


@pytest.mark.parametrize("size", list(range(0, 130)) + [200, 1000])
def test_compiled_accept_key_equals_the_reference_at_every_length(size: int) -> None:
    # Every padding case of SHA-1's last block(s): key + GUID of 36..1036 bytes.
    from robyn_fast._core.handshake import accept_key as compiled
    from robyn_fast._reference.handshake import accept_key as reference

    for key in (secrets.token_bytes(size), bytes(range(256))[:size], b"\xff" * size):
        assert compiled(key) == reference(key)


@given(st.binary(max_size=300))
def test_compiled_accept_key_equals_the_reference(key: bytes) -> None:
    from robyn_fast._core.handshake import accept_key as compiled
    from robyn_fast._reference.handshake import accept_key as reference

    assert compiled(key) == reference(key)


def test_compiled_accept_key_takes_only_bytes() -> None:
    from robyn_fast._core.handshake import accept_key as compiled

    assert compiled(RFC_KEY) == RFC_ACCEPT
    for bad in ("dGhlIHNhbXBsZSBub25jZQ==", bytearray(RFC_KEY), None):
        with pytest.raises(TypeError):
            compiled(bad)  # type: ignore[arg-type]


LIMITS = (8190, 8190, 100, 65536)  # max_request_line, max_header_size, max_headers, max_head_size
PLAIN_HEAD = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def httptools_head(raw: bytes) -> tuple[int, str, Headers] | None:
    """What the server's httptools path makes of ``raw`` when it stops at an upgrade: (offset, target,
    headers), or None (an error, an incomplete head, or no upgrade)."""

    class Collector:
        def __init__(self) -> None:
            self.headers: Headers = []
            self.url = b""
            self.complete = False

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_message_complete(self) -> None:
            self.complete = True

    collector = Collector()
    parser = httptools.HttpRequestParser(collector)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade as exc:
        if not (collector.complete and parser.should_upgrade() and parser.get_method() == b"GET"
                and parser.get_http_version() == "1.1"):
            return None
        return exc.args[0], collector.url.decode("ascii"), collector.headers
    except httptools.HttpParserError:
        return None
    return None


def test_parse_upgrade_head_reads_a_plain_upgrade_as_httptools_does() -> None:
    from robyn_fast._core.handshake import parse_upgrade_head

    for behind in (b"", b"\x88\x82abcd\x00\x00"):
        got = parse_upgrade_head(PLAIN_HEAD + behind, *LIMITS)
        assert got is not None and got == httptools_head(PLAIN_HEAD + behind)
        assert got[0] == len(PLAIN_HEAD) and got[1] == "/chat?room=1"
        assert got[2][0] == (b"Host", b"server.example.com") and len(got[2]) == 6


@pytest.mark.parametrize("raw", [
    PLAIN_HEAD[:-2],                                                     # incomplete
    PLAIN_HEAD[:40],
    PLAIN_HEAD.replace(b"GET ", b"POST "),                                # not GET
    PLAIN_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),                          # not HTTP/1.1
    PLAIN_HEAD.replace(b"GET /chat", b"GET http://x/chat"),               # not origin-form
    PLAIN_HEAD.replace(b"/chat?", b"/ch\x7fat?"),                          # a byte outside the target grammar
    PLAIN_HEAD.replace(b"/chat?", b"/ch\xc3\xa9at?"),
    PLAIN_HEAD.replace(b"Upgrade: websocket\r\n", b""),                   # no upgrade asked
    PLAIN_HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
    PLAIN_HEAD.replace(b"Connection: Upgrade", b"Connection: keep-alive"),
    PLAIN_HEAD.replace(b"Host: server.example.com\r\n", b""),             # Host rules are the HTTP layer's
    PLAIN_HEAD.replace(b"Host: server.example.com\r\n", b"Host: a\r\nHost: b\r\n"),
    PLAIN_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),  # a body, or its framing
    PLAIN_HEAD.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
    PLAIN_HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"),
    PLAIN_HEAD.replace(b"\r\n\r\n", b"\r\nProxy-Connection: close\r\n\r\n"),
    PLAIN_HEAD.replace(b"Origin: http://example.com\r\n", b"Origin: http://example.com\r\n folded\r\n"),
    PLAIN_HEAD.replace(b"Origin: http://example.com\r\n", b"Origin: http://example.com\n"),  # bare LF
    PLAIN_HEAD.replace(b"Origin: http://example.com", b"Origin: http://example.com "),     # trailing OWS
    PLAIN_HEAD.replace(b"Origin: http://example.com", b"Origin:"),                         # empty value
    PLAIN_HEAD.replace(b"Origin: http://example.com", b"Origin: caf\xe9"),                 # obs-text
    PLAIN_HEAD.replace(b"Origin: http://example.com", b"Origin: a\x01b"),                  # a control byte
    PLAIN_HEAD.replace(b"Origin:", b"Origin :"),                                           # not a token
    PLAIN_HEAD.replace(b"Origin:", b"Or(gin:"),
])
def test_parse_upgrade_head_leaves_anything_else_to_httptools(raw: bytes) -> None:
    from robyn_fast._core.handshake import parse_upgrade_head

    assert parse_upgrade_head(raw, *LIMITS) is None


def test_parse_upgrade_head_leaves_heads_over_the_limits_to_httptools() -> None:
    from robyn_fast._core.handshake import parse_upgrade_head

    # The HTTP layer's rules (414, then 431 for a line, the count, the fields), and the whole head within
    # max_head_size, which is stricter than the layer (it counts the fields only for a head read at once).
    target = len(b"/chat?room=1")
    longest = max(len(n) + len(v) + 2 for n, v in httptools_head(PLAIN_HEAD)[2])  # type: ignore[index]
    head = len(PLAIN_HEAD)
    assert parse_upgrade_head(PLAIN_HEAD, target, longest, 6, head) is not None
    assert parse_upgrade_head(PLAIN_HEAD, target - 1, longest, 6, head) is None
    assert parse_upgrade_head(PLAIN_HEAD, target, longest - 1, 6, head) is None
    assert parse_upgrade_head(PLAIN_HEAD, target, longest, 5, head) is None
    assert parse_upgrade_head(PLAIN_HEAD, target, longest, 6, head - 1) is None


_NAMES = st.sampled_from([b"Host", b"host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Origin", b"X-A",
                          b"Content-Length", b"Expect", b"Sec-WebSocket-Version", b"Cookie"])
_VALUES = st.sampled_from([b"websocket", b"Upgrade", b"keep-alive, upgrade", b"h2c, WebSocket", b"13", b"a b",
                           b"x,\tupgrade ", b"", b"\xe9", b"v\x00", b"0", b"upgrade\r\n x"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, st.sampled_from([b": ", b":", b":\t", b" : "]), _VALUES), max_size=6),
       st.sampled_from([b"GET /ws", b"GET /a?b=c#d", b"GET *", b"HEAD /ws", b"GET /w s"]),
       st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]), st.binary(max_size=6), st.integers(0, 8),
       st.booleans())
def test_parse_upgrade_head_agrees_with_httptools(extra: list[tuple[bytes, bytes, bytes]], line: bytes,
                                                  version: bytes, behind: bytes, at: int, upgrade: bool) -> None:
    """Whatever the compiled scan accepts, httptools parses to the same target, fields and offset (half
    the examples carry the fields of an upgrade among the drawn ones, so both outcomes are exercised)."""
    from robyn_fast._core.handshake import parse_upgrade_head

    needed = [(b"Host", b": ", b"h"), (b"Upgrade", b": ", b"websocket"), (b"Connection", b": ", b"Upgrade")]
    fields = extra[:at] + needed + extra[at:] if upgrade else extra
    raw = line + b" " + version + b"\r\n" + b"".join(n + sep + v + b"\r\n" for n, sep, v in fields) + b"\r\n" + behind
    got = parse_upgrade_head(raw, *LIMITS)
    if got is not None:
        assert got == httptools_head(raw)


_FIELD_NAMES = st.sampled_from([b"Host", b"HOST", b"Upgrade", b"upgrade", b"Connection", b"Sec-WebSocket-Key",
                                b"sec-websocket-version", b"Origin", b"Sec-WebSocket-Protocol", b"X", b"Hos",
                                b"Sec-WebSocket-Extensions", b"Connectio\xe9"])
_FIELD_VALUES = st.one_of(st.sampled_from([b"websocket", b"Upgrade", b" keep-alive ,\tUPGRADE", b"h2c,websocket",
                                           b"13", b"", b",", b"websocket2", b"up grade"]), st.binary(max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES), max_size=10))
def test_compiled_handshake_fields_equal_the_reference(headers: Headers) -> None:
    from robyn_fast._core.handshake import handshake_fields as compiled
    from robyn_fast._reference.handshake import handshake_fields as reference

    assert compiled(headers) == reference(headers)
    assert compiled(tuple(headers)) == reference(headers)


def test_handshake_fields_leave_what_is_not_bytes_to_the_caller() -> None:
    from robyn_fast._core.handshake import handshake_fields as compiled

    for headers in ([("Host", "x")], [(b"Host", bytearray(b"x"))], [(b"Host",)], [[b"Host", b"x"]]):
        assert compiled(headers) is None
    # accept_handshake converts bytes-like pairs, and refuses anything else with a clear error.
    assert accept_handshake("GET", "1.1", [(bytearray(n), memoryview(v)) for n, v in request()])[0] == RESPONSE
    with pytest.raises(ArgumentTypeError):
        accept_handshake("GET", "1.1", [("Host", "x")])  # type: ignore[list-item]
