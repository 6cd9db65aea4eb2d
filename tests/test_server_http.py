"""The HTTP side of the server, end to end: a real server on 127.0.0.1 (both
uvloop and asyncio), spoken to with raw sockets (exact bytes in, exact status
lines and fields out) and with ``http.client``.

Covers the Robyn-compatible API (decorators, path parameters, ``Request``,
return values), HTTP/1.1 keep-alive and pipelining, HEAD, 404/405/426, the
limits of :class:`~robyn_fast.config.Config` (414, 431, 413, 400, each
followed by a close), the header and keep-alive timeouts, response-splitting
protection, handler errors, and ``app.start()`` in a subprocess (environment
overrides, busy port, SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import signal
import socket
import textwrap
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from robyn_fast import Config, Headers, Request, Response, Robyn, WebSocket, jsonify

from .process_helpers import ServerProcess
from .server_helpers import Running, connect, running, upgrade_request, wait_for

# Generous bound for anything that should happen "at once"; tests only wait
# this long when they are about to fail.
WAIT = 5.0


# --------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP response as read off the wire."""

    status_line: bytes
    status: int
    fields: list[tuple[str, str]]
    body: bytes
    raw: bytes
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {}
        for name, value in self.fields:
            self.headers[name] = value


class Receiver(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...


def read_reply(sock: Receiver, buffered: bytes = b"", *, head: bool = False) -> tuple[Reply, bytes]:
    """Read one response (framed by ``content-length``) from ``sock``; returns
    it and whatever was read past it. ``head``: the request was HEAD, so no
    body follows whatever ``content-length`` says."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed inside a response head: {data!r}")
        data += chunk
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    lines = raw_head.split(b"\r\n")
    status_line = lines[0]
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split(b" ", 2)[1])
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep, f"malformed field line {line!r}"
        fields.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    names = [n for n, _ in fields]
    assert "transfer-encoding" not in names
    length = 0
    if "content-length" in names:
        assert names.count("content-length") == 1
        length = int(dict(fields)["content-length"])
    if head or status < 200 or status in (204, 304):
        length = 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed after {len(rest)} of {length} body bytes")
        rest += chunk
    body, rest = rest[:length], rest[length:]
    return Reply(status_line, status, fields, body, raw_head + b"\r\n\r\n" + body), rest


class _Replay:
    """A socket stand-in holding bytes already received (after a close)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


def exchange(port: int, request: bytes, *, head: bool = False) -> Reply:
    """One request on a fresh connection, one response."""
    with connect(port) as sock:
        sock.sendall(request)
        reply, rest = read_reply(sock, head=head)
        assert rest == b""
        return reply


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def req(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
    if body or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def wait_closed(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes the connection; fails if it
    is still open after ``timeout`` seconds. A reset counts as closed."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s; got {data!r}") from None
        if not chunk:
            return data
        data += chunk
        sock.settimeout(max(0.01, deadline - time.monotonic()))


def still_open(sock: socket.socket, quiet: float = 0.05) -> bool:
    """True when nothing arrives and the connection stays open for ``quiet`` seconds."""
    sock.settimeout(quiet)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except socket.timeout:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(WAIT)
    return data != b""


# --------------------------------------------------------------------------
# The application under test
# --------------------------------------------------------------------------

HTML_DOCTYPE = "<!DOCTYPE html><html><body>hi</body></html>"
HTML_PLAIN = "<html><body>hi</body></html>"
BIG = bytes(range(256)) * 4096  # 1 MiB


class Unsupported:
    pass


def make_app(config: Config | None = None) -> Robyn:
    app = Robyn(__file__, config=config)

    @app.get("/")
    def index() -> str:
        return "hello world"

    @app.get("/method")
    def m_get(request: Request) -> str:
        return "GET " + request.method

    @app.post("/method")
    def m_post(request: Request) -> str:
        return "POST " + request.method

    @app.put("/method")
    def m_put(request: Request) -> str:
        return "PUT " + request.method

    @app.patch("/method")
    async def m_patch(request: Request) -> str:
        return "PATCH " + request.method

    @app.delete("/method")
    def m_delete(request: Request) -> str:
        return "DELETE " + request.method

    @app.head("/method")
    def m_head(request: Request) -> str:
        return "HEAD " + request.method

    @app.options("/method")
    def m_options(request: Request) -> Response:
        return Response(204, {"allow": "GET, POST"}, "")

    @app.get("/users/<user_id>")
    def user(request: Request) -> dict[str, object]:
        return {"user_id": request.path_params["user_id"], "style": "angle"}

    @app.get("/items/:name/detail")
    async def item(request: Request) -> dict[str, object]:
        return {"name": request.path_params["name"], "style": "colon"}

    @app.get("/pair/<a>/:b")
    def pair(a: str, b: str) -> dict[str, str]:
        return {"a": a, "b": b}

    def inspect_request(request: Request) -> dict[str, object]:
        q = request.query_params
        h = request.headers
        return {
            "method": request.method,
            "path": request.path,
            "url_path": request.url.path,
            "url_host": request.url.host,
            "url_scheme": request.url.scheme,
            "q_get": q.get("a"),
            "q_get_default": q.get("nope", "dflt"),
            "q_first": q.get_first("a"),
            "q_all": q.get_all("a"),
            "q_contains": q.contains("a"),
            "q_in": "b" in q,
            "q_missing": q.contains("zzz") or "zzz" in q,
            "q_dict": q.to_dict(),
            "q_empty": q.empty(),
            "h_lower": h.get("x-custom"),
            "h_upper": h.get("X-CUSTOM"),
            "h_item": h["X-Custom"],
            "h_in": "x-CUSTOM" in h,
            "h_absent": h["x-absent"],
            "h_multi": h.get_all("x-multi"),
            "body": request.body if isinstance(request.body, str) else None,
            "ip": request.ip_addr,
        }

    app.add_route("GET", "/inspect", inspect_request)
    app.add_route("POST", "/inspect", inspect_request)

    @app.post("/json")
    def echo_json(request: Request) -> dict[str, object]:
        data = request.json()
        return {"got": data, "type": type(data).__name__}

    @app.post("/echo")
    def echo(request: Request) -> bytes:
        body = request.body
        return body.encode("utf-8") if isinstance(body, str) else body

    # Return values.
    @app.get("/ret/text")
    def ret_text() -> str:
        return "plain text é"

    @app.get("/ret/doctype")
    def ret_doctype() -> str:
        return HTML_DOCTYPE

    @app.get("/ret/html")
    def ret_html() -> str:
        return HTML_PLAIN

    @app.get("/ret/dict")
    def ret_dict() -> dict[str, object]:
        return {"a": 1, "b": [True, None], "c": "é"}

    @app.get("/ret/list")
    async def ret_list() -> list[object]:
        return [1, "two", {"three": 3}]

    @app.get("/ret/bytes")
    def ret_bytes() -> bytes:
        return b"\x00\x01\xfe\xff"

    @app.get("/ret/response")
    def ret_response() -> Response:
        return Response(201, {"X-Custom": "yes"}, "created")

    @app.get("/ret/response-headers")
    async def ret_response_headers() -> Response:
        headers = Headers({"content-type": "application/xml"})
        headers.append("set-cookie", "a=1")
        headers.append("set-cookie", "b=2")
        return Response(418, headers, b"<teapot/>")

    @app.get("/ret/jsonify")
    def ret_jsonify() -> str:
        return jsonify({"k": [1, 2], "s": "é"})

    @app.get("/ret/jsonify-response")
    def ret_jsonify_response() -> Response:
        return Response(200, {"content-type": "application/json"}, jsonify({"k": "v"}))

    # Sync and async, for pipelining.
    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(0.15)
        return "slow"

    @app.get("/fast")
    def fast() -> str:
        return "fast"

    @app.get("/sleep")
    async def sleep(request: Request) -> str:
        await asyncio.sleep(float(request.query_params.get("s") or "0"))
        return "slept " + (request.query_params.get("n") or "")

    @app.get("/big")
    def big() -> bytes:
        return BIG

    @app.get("/only")
    def only_get() -> str:
        return "only"

    @app.post("/only")
    def only_post() -> str:
        return "only"

    # Failures.
    @app.get("/inject/value")
    def inject_value() -> Response:
        return Response(200, {"x": "a\r\nInjected: 1"}, "x")

    @app.get("/inject/lf")
    def inject_lf() -> Response:
        return Response(200, {"x": "a\nInjected: 1"}, "x")

    @app.get("/inject/cr")
    async def inject_cr() -> Response:
        return Response(200, {"x": "a\rInjected: 1"}, "x")

    @app.get("/inject/name")
    def inject_name() -> Response:
        return Response(200, {"x\r\nInjected": "1"}, "x")

    @app.get("/inject/tuple")
    def inject_tuple() -> tuple[str, dict[str, str], int]:
        return ("x", {"x": "a\r\n\r\nInjected"}, 200)

    @app.get("/raise")
    def raises() -> str:
        raise RuntimeError("handler blew up")

    @app.get("/raise-async")
    async def raises_async() -> str:
        await asyncio.sleep(0)
        raise RuntimeError("async handler blew up")

    @app.get("/unsupported")
    def unsupported() -> object:
        return Unsupported()

    @app.get("/unsupported-async")
    async def unsupported_async() -> object:
        return 42

    # WebSocket paths.
    WebSocket(app, "/ws")

    @app.get("/ws")
    def ws_http() -> str:
        return "plain http on a websocket path"

    WebSocket(app, "/ws-only")

    return app


@pytest.fixture
def server(loop_kind: str) -> Iterator[Running]:
    with running(make_app(), loop_kind) as srv:
        yield srv


# --------------------------------------------------------------------------
# Routing and the Request object
# --------------------------------------------------------------------------


def test_exact_response_bytes_for_a_str(server: Running) -> None:
    reply = exchange(server.port, get("/"))
    assert reply.status_line == b"HTTP/1.1 200 OK"
    assert [n for n, _ in reply.fields] == ["content-type", "date", "content-length"]
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.headers["content-length"] == "11"
    assert reply.headers["date"].endswith(" GMT")
    assert reply.body == b"hello world"


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [
        ("GET", 200, b"GET GET"),
        ("POST", 200, b"POST POST"),
        ("PUT", 200, b"PUT PUT"),
        ("PATCH", 200, b"PATCH PATCH"),
        ("DELETE", 200, b"DELETE DELETE"),
        ("HEAD", 200, b""),
        ("OPTIONS", 204, b""),
    ],
)
def test_every_method_decorator(server: Running, method: str, status: int, body: bytes) -> None:
    reply = exchange(server.port, req(method, "/method"), head=method == "HEAD")
    assert reply.status == status
    assert reply.body == body
    if method == "HEAD":
        assert reply.headers["content-length"] == str(len(b"HEAD HEAD"))
    if method == "OPTIONS":
        assert reply.headers["allow"] == "GET, POST"
        assert "content-length" not in reply.headers


def test_every_method_on_one_keep_alive_connection(server: Running) -> None:
    with connect(server.port) as sock:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "GET"):
            sock.sendall(req(method, "/method"))
            reply, rest = read_reply(sock, head=method == "HEAD")
            assert rest == b""
            assert reply.status in (200, 204)
            assert "connection" not in reply.headers
            if method not in ("HEAD", "OPTIONS"):
                assert reply.body == f"{method} {method}".encode()
        assert still_open(sock)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users/42", {"user_id": "42", "style": "angle"}),
        ("/users/a%20b", {"user_id": "a b", "style": "angle"}),
        ("/users/caf%C3%A9", {"user_id": "café", "style": "angle"}),
        ("/items/widget/detail", {"name": "widget", "style": "colon"}),
        ("/items/a%2Fb/detail", {"name": "a/b", "style": "colon"}),
        ("/pair/x/y", {"a": "x", "b": "y"}),
    ],
)
def test_path_params_both_syntaxes(server: Running, path: str, expected: dict[str, str]) -> None:
    reply = exchange(server.port, get(path))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body) == expected


def test_request_attributes(server: Running) -> None:
    body = "name=é&x=1".encode()
    request = (
        b"POST /inspect?a=1&b=hello%20world&a=2&c=%C3%A9&d=x+y&flag HTTP/1.1\r\n"
        b"Host: example.test:8080\r\n"
        b"X-Custom: Value One\r\n"
        b"x-multi: 1\r\n"
        b"X-MULTI: 2\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    reply = exchange(server.port, request)
    assert reply.status == 200
    got = json.loads(reply.body)
    assert got == {
        "method": "POST",
        "path": "/inspect",
        "url_path": "/inspect",
        "url_host": "example.test:8080",
        "url_scheme": "http",
        "q_get": "2",
        "q_get_default": "dflt",
        "q_first": "1",
        "q_all": ["1", "2"],
        "q_contains": True,
        "q_in": True,
        "q_missing": False,
        "q_dict": {"a": ["1", "2"], "b": ["hello world"], "c": ["é"], "d": ["x y"], "flag": [""]},
        "q_empty": False,
        "h_lower": "Value One",
        "h_upper": "Value One",
        "h_item": "Value One",
        "h_in": True,
        "h_absent": None,
        "h_multi": ["1", "2"],
        "body": "name=é&x=1",
        "ip": "127.0.0.1",
    }


def test_request_without_query(server: Running) -> None:
    got = json.loads(exchange(server.port, get("/inspect")).body)
    assert got["q_empty"] is True
    assert got["q_dict"] == {}
    assert got["q_get"] is None
    assert got["q_all"] is None
    assert got["q_contains"] is False
    assert got["h_lower"] is None
    assert got["body"] == ""
    assert got["ip"] == "127.0.0.1"


def test_request_json(server: Running) -> None:
    payload = {"x": [1, 2, {"y": "é"}], "n": None}
    reply = exchange(
        server.port,
        req("POST", "/json", json.dumps(payload).encode(), "Content-Type: application/json\r\n"),
    )
    assert reply.status == 200
    assert json.loads(reply.body) == {"got": payload, "type": "dict"}


def test_request_json_invalid_is_500_and_server_keeps_serving(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/json", b"{not json"))
        reply, _ = read_reply(sock)
        assert reply.status == 500
        sock.sendall(req("POST", "/json", b"[1]"))
        reply, _ = read_reply(sock)
        assert reply.status == 200
        assert json.loads(reply.body) == {"got": [1], "type": "list"}


def test_http_client_json_round_trip(server: Running) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        conn.request("POST", "/json", body=json.dumps({"a": 1}), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/json"
        assert json.loads(resp.read()) == {"got": {"a": 1}, "type": "dict"}
        # Same connection, reused by http.client (it would reconnect if closed).
        sock_before = conn.sock
        conn.request("GET", "/users/7?x=1")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {"user_id": "7", "style": "angle"}
        assert conn.sock is sock_before
        conn.request("HEAD", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length") == "11"
        assert resp.read() == b""
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Return values
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body"),
    [
        ("/ret/text", 200, "text/plain; charset=utf-8", "plain text é".encode()),
        ("/ret/doctype", 200, "text/html; charset=utf-8", HTML_DOCTYPE.encode()),
        ("/ret/html", 200, "text/html; charset=utf-8", HTML_PLAIN.encode()),
        ("/ret/dict", 200, "application/json", '{"a":1,"b":[true,null],"c":"é"}'.encode()),
        ("/ret/list", 200, "application/json", b'[1,"two",{"three":3}]'),
        ("/ret/bytes", 200, "application/octet-stream", b"\x00\x01\xfe\xff"),
        ("/ret/response", 201, "text/plain; charset=utf-8", b"created"),
        ("/ret/response-headers", 418, "application/xml", b"<teapot/>"),
        ("/ret/jsonify", 200, "text/plain; charset=utf-8", '{"k":[1,2],"s":"é"}'.encode()),
        ("/ret/jsonify-response", 200, "application/json", b'{"k":"v"}'),
    ],
)
def test_return_values(server: Running, path: str, status: int, content_type: str, body: bytes) -> None:
    reply = exchange(server.port, get(path))
    assert reply.status == status
    assert reply.headers["content-type"] == content_type
    assert reply.headers["content-length"] == str(len(body))
    assert reply.body == body


def test_response_fields_are_written(server: Running) -> None:
    reply = exchange(server.port, get("/ret/response"))
    assert reply.status_line == b"HTTP/1.1 201 Created"
    assert reply.headers["x-custom"] == "yes"
    reply = exchange(server.port, get("/ret/response-headers"))
    assert reply.status == 418
    assert [v for n, v in reply.fields if n == "set-cookie"] == ["a=1", "b=2"]


# --------------------------------------------------------------------------
# Keep-alive, pipelining, HEAD, 404, 405, HTTP/1.0
# --------------------------------------------------------------------------


def test_keep_alive_many_requests_one_socket(server: Running) -> None:
    with connect(server.port) as sock:
        for i in range(20):
            path = f"/users/{i}" if i % 2 else "/fast"
            sock.sendall(get(path))
            reply, rest = read_reply(sock)
            assert rest == b""
            assert reply.status == 200
            if i % 2:
                assert json.loads(reply.body) == {"user_id": str(i), "style": "angle"}
            else:
                assert reply.body == b"fast"
        assert still_open(sock)


def test_pipelining_responses_in_order(server: Running) -> None:
    body = b"pipelined body"
    batch = get("/slow") + get("/fast") + req("POST", "/echo", body) + get("/nope") + get("/slow") + get("/")
    with connect(server.port) as sock:
        sock.sendall(batch)  # one write
        rest = b""
        bodies = []
        for _ in range(6):
            reply, rest = read_reply(sock, rest)
            bodies.append((reply.status, reply.body))
        assert rest == b""
        assert bodies == [
            (200, b"slow"),
            (200, b"fast"),
            (200, body),
            (404, b"Not Found"),
            (200, b"slow"),
            (200, b"hello world"),
        ]
        assert still_open(sock)


def test_pipelining_async_first_sync_second_in_one_segment(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/slow") + get("/fast"))
        data = b""
        while data.count(b"HTTP/1.1 ") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        # The sync answer must not overtake the async one.
        assert data.index(b"slow") < data.index(b"fast")
        first, rest = read_reply(sock, data)
        second, rest = read_reply(sock, rest)
        assert (first.body, second.body, rest) == (b"slow", b"fast", b"")


def test_pipelining_split_across_writes(server: Running) -> None:
    batch = get("/fast") + req("POST", "/echo", b"0123456789") + get("/")
    with connect(server.port) as sock:
        for i in range(0, len(batch), 7):
            sock.sendall(batch[i : i + 7])
        rest = b""
        got = []
        for _ in range(3):
            reply, rest = read_reply(sock, rest)
            got.append(reply.body)
        assert got == [b"fast", b"0123456789", b"hello world"]


def test_many_pipelined_requests_beyond_the_queue_limit(server: Running) -> None:
    # More than max_pipelined_requests (32) in one write, mixing sync and
    # async handlers: every one is answered, in order.
    n = 200
    batch = b"".join(get(f"/sleep?n={i}") if i % 3 == 0 else get(f"/users/{i}") for i in range(n))
    with connect(server.port) as sock:
        sock.sendall(batch)
        rest = b""
        for i in range(n):
            reply, rest = read_reply(sock, rest)
            assert reply.status == 200
            if i % 3 == 0:
                assert reply.body == f"slept {i}".encode()
            else:
                assert json.loads(reply.body)["user_id"] == str(i)
        assert rest == b""
        assert still_open(sock)


def test_large_request_and_response_bodies(server: Running) -> None:
    body = bytes(range(256)) * 1000  # 256000 bytes, many parser slices
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/echo", body) + get("/big") + req("POST", "/echo", b"\xff\xfe\x00"))
        first, rest = read_reply(sock)
        second, rest = read_reply(sock, rest)
        third, rest = read_reply(sock, rest)
    assert first.body == body
    assert first.headers["content-type"] == "application/octet-stream"
    assert second.body == BIG
    assert third.body == b"\xff\xfe\x00"  # not UTF-8: request.body is bytes


def test_absolute_form_target(server: Running) -> None:
    # RFC 9112 §3.2.2: a server MUST accept the absolute form.
    reply = exchange(server.port, b"GET http://127.0.0.1/users/5?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.status == 200
    assert json.loads(reply.body) == {"user_id": "5", "style": "angle"}


def test_upgrade_to_an_unknown_protocol_is_answered_then_closed(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"))
        data = wait_closed(sock)
    reply, rest = read_reply(_Replay(data))
    assert (reply.status, reply.body) == (200, b"hello world")
    assert "close" in reply.headers["connection"]
    assert rest == b""


def test_client_half_close_still_gets_its_responses(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/sleep?s=0.05&n=a") + get("/fast"))
        sock.shutdown(socket.SHUT_WR)
        data = wait_closed(sock)
    first, rest = read_reply(_Replay(data))
    second, rest = read_reply(_Replay(rest))
    assert (first.body, second.body, rest) == (b"slept a", b"fast", b"")


def test_response_buffer_is_bounded_for_a_client_that_does_not_read(server: Running) -> None:
    # A client pipelines requests for 1 MiB responses and never reads: the
    # server must stop reading (TCP backpressure) instead of queuing every
    # response in memory.
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(0.2)
        request = get("/big")
        sent = 0
        deadline = time.monotonic() + 3.0
        try:
            while sent < 400 and time.monotonic() < deadline:
                sock.sendall(request)
                sent += 1
        except socket.timeout:
            pass  # the server stopped reading: what we want

        def stalled() -> bool:
            protocols = list(server.server.http_connections)
            return bool(protocols) and all(p.writing_paused and p.reading_paused for p in protocols)

        assert wait_for(lambda: server.call(stalled))

        def buffered() -> int:
            return sum(
                p.transport.get_write_buffer_size()
                for p in server.server.http_connections
                if p.transport is not None
            )

        size = server.call(buffered)
        assert size < 8 * len(BIG), f"{sent} requests queued {size} bytes of responses"
        # Reading now gets every answered response intact, in order.
        sock.settimeout(WAIT)
        reply, rest = read_reply(sock)
        assert reply.body == BIG


def test_stalled_head_behind_a_slow_handler_gets_408(loop_kind: str) -> None:
    with limited_app(loop_kind, header_timeout=0.2) as srv, connect(srv.port) as sock:
        sock.sendall(get("/sleep?s=0.5&n=x") + b"GET /fast HTTP/1.1\r\nHost: x\r\n")  # second head unfinished
        start = time.monotonic()
        data = wait_closed(sock, timeout=3.0)
        assert time.monotonic() - start < 2.0
        first, rest = read_reply(_Replay(data))
        second, rest = read_reply(_Replay(rest))
        assert (first.status, first.body) == (200, b"slept x")
        assert second.status == 408
        assert rest == b""


def test_in_flight_request_completes_during_graceful_shutdown(loop_kind: str) -> None:
    with running(make_app(), loop_kind) as srv, connect(srv.port) as sock:
        sock.sendall(get("/sleep?s=0.3&n=late"))
        assert wait_for(lambda: srv.call(lambda: srv.server.live_tasks) == 1)  # in flight
        srv.loop.call_soon_threadsafe(srv.server.stopping.set)
        data = wait_closed(sock)
        reply, rest = read_reply(_Replay(data))
        assert (reply.status, reply.body, rest) == (200, b"slept late", b"")


def test_404_keeps_the_connection(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/does/not/exist"))
        reply, _ = read_reply(sock)
        assert reply.status_line == b"HTTP/1.1 404 Not Found"
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert reply.body == b"Not Found"
        assert "connection" not in reply.headers
        sock.sendall(get("/"))
        reply, _ = read_reply(sock)
        assert reply.body == b"hello world"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/only", "GET, HEAD, POST"),
        ("PUT", "/only", "GET, HEAD, POST"),
        ("POST", "/", "GET, HEAD"),
        ("DELETE", "/users/3", "GET, HEAD"),
    ],
)
def test_405_with_allow(server: Running, method: str, path: str, allow: str) -> None:
    reply = exchange(server.port, req(method, path))
    assert reply.status_line == b"HTTP/1.1 405 Method Not Allowed"
    assert reply.headers["allow"] == allow
    assert reply.body == b"Method Not Allowed"


def test_head_has_no_body_and_the_get_length(server: Running) -> None:
    get_reply = exchange(server.port, get("/ret/dict"))
    with connect(server.port) as sock:
        # A GET pipelined behind the HEAD proves no body bytes were written.
        sock.sendall(req("HEAD", "/ret/dict") + get("/fast"))
        head_reply, rest = read_reply(sock, head=True)
        assert head_reply.status == 200
        assert head_reply.headers["content-length"] == str(len(get_reply.body))
        assert head_reply.headers["content-type"] == "application/json"
        assert head_reply.body == b""
        nxt, rest = read_reply(sock, rest)
        assert nxt.status_line == b"HTTP/1.1 200 OK"
        assert nxt.body == b"fast"
        assert rest == b""
        # HEAD of a 404 has no body either.
        sock.sendall(req("HEAD", "/missing") + get("/fast"))
        head_reply, rest = read_reply(sock, head=True)
        assert head_reply.status == 404
        assert head_reply.headers["content-length"] == str(len(b"Not Found"))
        nxt, rest = read_reply(sock, rest)
        assert nxt.body == b"fast"
        # HEAD falls back to an async GET route.
        sock.sendall(req("HEAD", "/ret/list") + get("/fast"))
        head_reply, rest = read_reply(sock, head=True)
        assert head_reply.headers["content-length"] == str(len(b'[1,"two",{"three":3}]'))
        nxt, rest = read_reply(sock, rest)
        assert (nxt.body, rest) == (b"fast", b"")


def test_http_1_0_without_keep_alive_closes(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = wait_closed(sock)
    reply, rest = read_reply(_Replay(data))
    assert reply.status == 200
    assert reply.body == b"hello world"
    assert reply.headers["connection"] == "close"
    assert rest == b""


def test_http_1_0_with_keep_alive_stays_open(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply, _ = read_reply(sock)
        assert reply.body == b"hello world"
        assert "close" not in reply.headers.get("connection", "")
        sock.sendall(b"GET /fast HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply, _ = read_reply(sock)
        assert reply.body == b"fast"


def test_connection_close_on_http_1_1(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/fast", "Connection: close\r\n") + get("/"))
        data = wait_closed(sock)
    reply, rest = read_reply(_Replay(data))
    assert reply.body == b"fast"
    assert reply.headers["connection"] == "close"
    assert rest == b""  # the request behind it is not answered


# --------------------------------------------------------------------------
# Limits: each answered clearly, then the connection closes
# --------------------------------------------------------------------------


def limited_app(loop_kind: str, **config: Any) -> AbstractContextManager[Running]:
    return running(make_app(Config(**config)), loop_kind)


def reject(port: int, request: bytes, status: int) -> Reply:
    """Send ``request``; expect ``status`` with ``connection: close``, then EOF."""
    with connect(port) as sock:
        sock.sendall(request)
        data = wait_closed(sock)
    reply, rest = read_reply(_Replay(data))
    assert reply.status == status, reply.raw
    assert reply.headers["connection"] == "close"
    assert rest == b""
    return reply


def test_request_line_too_long_is_414(server: Running) -> None:
    reply = reject(server.port, get("/" + "a" * (8 * 1024 + 1)), 414)
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"


def test_request_line_at_the_limit_is_served(server: Running) -> None:
    target = "/inspect?a=" + "x" * (8 * 1024 - len("/inspect?a="))
    assert len(target) == 8 * 1024
    reply = exchange(server.port, get(target))
    assert reply.status == 200
    assert json.loads(reply.body)["q_get"] == "x" * (8 * 1024 - len("/inspect?a="))


def test_header_too_large_is_431(server: Running) -> None:
    reject(server.port, get("/", "X-Big: " + "a" * (8 * 1024) + "\r\n"), 431)


def test_header_name_too_large_is_431(server: Running) -> None:
    reject(server.port, get("/", "X-" + "n" * (8 * 1024) + ": v\r\n"), 431)


def test_too_many_headers_is_431(server: Running) -> None:
    extra = "".join(f"X-H{i}: {i}\r\n" for i in range(100))  # + Host = 101
    reject(server.port, get("/", extra), 431)


def test_100_headers_are_served(server: Running) -> None:
    extra = "".join(f"X-H{i}: {i}\r\n" for i in range(99))  # + Host = 100
    assert exchange(server.port, get("/", extra)).status == 200


def test_head_too_large_is_431(loop_kind: str) -> None:
    with limited_app(loop_kind, max_head_size=4096) as srv:
        extra = "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(60))
        reject(srv.port, get("/", extra), 431)


def test_limit_after_good_pipelined_request(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/fast") + get("/" + "a" * 9000))
        data = wait_closed(sock)
    first, rest = read_reply(_Replay(data))
    second, rest = read_reply(_Replay(rest))
    assert (first.status, first.body) == (200, b"fast")
    assert second.status == 414
    assert rest == b""


def test_content_length_over_max_is_413_before_the_body(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        # No body byte sent: the answer must come from the head alone.
        sock.settimeout(WAIT)
        reply, rest = read_reply(sock)
        assert reply.status == 413
        assert reply.headers["connection"] == "close"
        assert wait_closed(sock) == b""


def test_content_length_over_max_with_expect_continue_gets_no_100(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv, connect(srv.port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        data = wait_closed(sock)
        assert b"100 Continue" not in data
        reply, _ = read_reply(_Replay(data))
        assert reply.status == 413


def test_expect_continue_within_limit(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        reply, _ = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"hello")


def test_body_at_max_is_served_and_one_more_byte_is_413(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv:
        reply = exchange(srv.port, req("POST", "/echo", b"b" * 1024))
        assert (reply.status, len(reply.body)) == (200, 1024)
        reject(srv.port, req("POST", "/echo", b"b" * 1025), 413)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_chunked_body_is_served(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv:
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        reply = exchange(srv.port, head + chunked(b"a" * 500, b"b" * 524))
        assert reply.status == 200
        assert reply.body == b"a" * 500 + b"b" * 524


def test_chunked_body_over_max_is_413(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (800, b"a" * 800))
        assert still_open(sock)
        sock.sendall(b"%x\r\n%s\r\n" % (800, b"a" * 800))  # 1600 > 1024, unfinished
        data = wait_closed(sock)
        reply, rest = read_reply(_Replay(data))
        assert reply.status == 413
        assert reply.headers["connection"] == "close"
        assert rest == b""


def test_chunked_single_huge_chunk_is_413(loop_kind: str) -> None:
    with limited_app(loop_kind, max_body_size=1024) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n" % (10**9) + b"a" * 2000)
        data = wait_closed(sock)
        reply, _ = read_reply(_Replay(data))
        assert reply.status == 413


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded: continuation\r\n\r\n",
    ],
    ids=["garbage", "bad-length", "space-in-name", "version", "two-lengths", "bad-chunk", "nul", "tls", "cl-and-te", "obs-fold"],
)
def test_malformed_request_is_400(server: Running, request_bytes: bytes) -> None:
    reply = reject(server.port, request_bytes, 400)
    assert reply.status_line == b"HTTP/1.1 400 Bad Request"
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"


def test_content_length_overflow_is_rejected(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n")
        data = wait_closed(sock)
    reply, _ = read_reply(_Replay(data))
    assert reply.status in (400, 413)


def test_malformed_after_good_pipelined_request(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/fast") + b"NOT HTTP AT ALL\r\n\r\n")
        data = wait_closed(sock)
    first, rest = read_reply(_Replay(data))
    second, rest = read_reply(_Replay(rest))
    assert (first.status, second.status, rest) == (200, 400, b"")


# --------------------------------------------------------------------------
# Timeouts
# --------------------------------------------------------------------------


def test_silent_client_is_disconnected_after_header_timeout(loop_kind: str) -> None:
    with limited_app(loop_kind, header_timeout=0.3) as srv, connect(srv.port) as sock:
        start = time.monotonic()
        data = wait_closed(sock, timeout=3.0)
        elapsed = time.monotonic() - start
        assert data == b""  # nothing was sent, so no 408 either
        assert 0.2 <= elapsed < 2.0


def test_unfinished_head_gets_408_then_close(loop_kind: str) -> None:
    with limited_app(loop_kind, header_timeout=0.3) as srv, connect(srv.port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line
        data = wait_closed(sock, timeout=3.0)
        elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 2.0
        reply, rest = read_reply(_Replay(data))
        assert reply.status_line == b"HTTP/1.1 408 Request Timeout"
        assert reply.headers["connection"] == "close"
        assert rest == b""


def test_slowloris_does_not_extend_the_header_timeout(loop_kind: str) -> None:
    with limited_app(loop_kind, header_timeout=0.3) as srv, connect(srv.port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        closed_at = None
        for i in range(40):
            time.sleep(0.05)
            try:
                sock.sendall(b"X-%d: y\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            if not still_open(sock, 0.001):
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "a client trickling header bytes was never disconnected"
        assert closed_at - start < 1.5


def test_header_timeout_applies_to_the_second_request(loop_kind: str) -> None:
    with limited_app(loop_kind, header_timeout=0.3, keep_alive_timeout=5.0) as srv, connect(srv.port) as sock:
        sock.sendall(get("/fast"))
        reply, _ = read_reply(sock)
        assert reply.body == b"fast"
        start = time.monotonic()
        sock.sendall(b"GET /fast HTTP/1.1\r\n")  # starts a head, never ends it
        data = wait_closed(sock, timeout=3.0)
        assert time.monotonic() - start < 2.0
        assert read_reply(_Replay(data))[0].status == 408


def test_idle_keep_alive_connection_is_closed(loop_kind: str) -> None:
    with limited_app(loop_kind, keep_alive_timeout=0.3) as srv, connect(srv.port) as sock:
        sock.sendall(get("/fast"))
        reply, _ = read_reply(sock)
        assert reply.body == b"fast"
        # Activity before the timeout keeps it alive...
        time.sleep(0.15)
        sock.sendall(get("/fast"))
        reply, _ = read_reply(sock)
        assert reply.body == b"fast"
        start = time.monotonic()
        # ...idleness past it ends the connection, without a response.
        assert wait_closed(sock, timeout=3.0) == b""
        assert 0.2 <= time.monotonic() - start < 2.0


def test_keep_alive_timeout_does_not_cut_a_slow_handler(loop_kind: str) -> None:
    with limited_app(loop_kind, keep_alive_timeout=0.1) as srv, connect(srv.port) as sock:
        sock.sendall(get("/slow"))  # sleeps 0.15 s, longer than the idle timeout
        reply, _ = read_reply(sock)
        assert reply.body == b"slow"


def test_body_arriving_steadily_is_not_cut_by_the_idle_timeout(loop_kind: str) -> None:
    # The request head is complete, the body arrives in pieces, each well
    # within the timeouts, but all of it takes longer than either.
    with limited_app(loop_kind, keep_alive_timeout=0.3, header_timeout=0.3) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        for piece in (b"ab", b"cd", b"ef", b"gh"):
            time.sleep(0.12)
            sock.sendall(piece)
        reply, _ = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"abcdefgh")


def test_stalled_body_is_disconnected(loop_kind: str) -> None:
    with limited_app(loop_kind, keep_alive_timeout=0.3, header_timeout=0.3) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nab")
        start = time.monotonic()
        data = wait_closed(sock, timeout=3.0)
        assert 0.2 <= time.monotonic() - start < 2.0
        reply, rest = read_reply(_Replay(data))
        assert reply.status_line == b"HTTP/1.1 408 Request Timeout"
        assert rest == b""


# --------------------------------------------------------------------------
# Response splitting, handler failures
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/inject/value", "/inject/lf", "/inject/cr", "/inject/name", "/inject/tuple"])
def test_cr_lf_in_a_response_field_is_never_written(server: Running, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="robyn_fast.http")
    with connect(server.port) as sock:
        sock.sendall(get(path) + get("/fast"))
        reply, rest = read_reply(sock)
        nxt, rest = read_reply(sock, rest)
        assert reply.status_line == b"HTTP/1.1 500 Internal Server Error"
        assert b"Injected" not in reply.raw and b"Injected" not in nxt.raw and b"Injected" not in rest
        assert (nxt.status, nxt.body) == (200, b"fast")
    assert any(r.name == "robyn_fast.http" and r.levelno >= logging.ERROR for r in caplog.records)
    assert exchange(server.port, get("/")).body == b"hello world"


@pytest.mark.parametrize("path", ["/raise", "/raise-async"])
def test_handler_that_raises_is_500_and_server_keeps_serving(server: Running, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="robyn_fast.http")
    with connect(server.port) as sock:
        sock.sendall(get(path))
        reply, _ = read_reply(sock)
        assert reply.status == 500
        assert reply.body == b"Internal Server Error"
        assert b"blew up" not in reply.raw  # no traceback leaks to the client
        sock.sendall(get("/fast"))
        assert read_reply(sock)[0].body == b"fast"
    assert exchange(server.port, get("/")).status == 200
    assert any("blew up" in (r.exc_text or "") or (r.exc_info and "blew up" in str(r.exc_info[1])) for r in caplog.records)


@pytest.mark.parametrize(("path", "type_name"), [("/unsupported", "Unsupported"), ("/unsupported-async", "int")])
def test_unsupported_return_type_is_500_and_logged(server: Running, path: str, type_name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="robyn_fast.http")
    reply = exchange(server.port, get(path))
    assert reply.status == 500
    records = [r for r in caplog.records if r.name == "robyn_fast.http" and r.levelno >= logging.ERROR]
    assert records, "the unsupported return value was not logged"
    text = "\n".join(r.getMessage() + (r.exc_text or "") + str(r.exc_info[1] if r.exc_info else "") for r in records)
    assert type_name in text
    assert exchange(server.port, get("/")).status == 200


# --------------------------------------------------------------------------
# WebSocket paths seen by plain HTTP
# --------------------------------------------------------------------------


def test_plain_get_on_websocket_path_with_http_route(server: Running) -> None:
    reply = exchange(server.port, get("/ws"))
    assert reply.status == 200
    assert reply.body == b"plain http on a websocket path"


def test_upgrade_on_websocket_path_with_http_route_still_upgrades(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(upgrade_request("/ws"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 101 ")


def test_plain_get_on_websocket_only_path_is_426(server: Running) -> None:
    with connect(server.port) as sock:
        sock.sendall(get("/ws-only") + get("/fast"))
        reply, rest = read_reply(sock)
        assert reply.status_line == b"HTTP/1.1 426 Upgrade Required"
        assert reply.headers["upgrade"] == "websocket"
        assert reply.headers["sec-websocket-version"] == "13"
        nxt, _ = read_reply(sock, rest)
        assert nxt.body == b"fast"


# --------------------------------------------------------------------------
# app.start() in a subprocess
# --------------------------------------------------------------------------

APP_SOURCE = """
import asyncio

from robyn_fast import Robyn

app = Robyn(__file__)


@app.startup_handler
async def started():
    loop = type(asyncio.get_running_loop()).__module__
    print("STARTUP-RAN", loop, flush=True)


@app.shutdown_handler
def stopped():
    print("SHUTDOWN-RAN", flush=True)


@app.get("/")
def index():
    return "from subprocess"


app.start(host="203.0.113.1", port=1)  # ROBYN_HOST / ROBYN_PORT override both
"""


def spawn(tmp_path: Path, loop_kind: str, port: int = 0) -> ServerProcess:
    app_file = tmp_path / "tiny_app.py"
    app_file.write_text(textwrap.dedent(APP_SOURCE))
    return ServerProcess([str(app_file)], loop_kind, port=port, cwd=tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_start_env_override_and_graceful_signal(tmp_path: Path, loop_kind: str, sig: signal.Signals) -> None:
    server = spawn(tmp_path, loop_kind)
    try:
        port = server.wait_listening()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"from subprocess")
        finally:
            conn.close()
    finally:
        code = server.stop(sig)
    out = server.output()
    assert code == 0, out
    expected_loop = "uvloop" if loop_kind == "uvloop" else "asyncio"
    lines = out.splitlines()
    startup = [line for line in lines if line.startswith("STARTUP-RAN ")]
    assert len(startup) == 1 and startup[0].split()[1].startswith(expected_loop)
    assert "SHUTDOWN-RAN" in lines
    assert lines.index("SHUTDOWN-RAN") > lines.index(startup[0])
    assert "Traceback" not in out
    assert f"127.0.0.1:{port}" in out


def test_start_on_a_busy_port_fails_with_one_line(tmp_path: Path, loop_kind: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = spawn(tmp_path, loop_kind, port)
        code = server.wait(15)
    out = server.output()
    assert code not in (0, None)
    err_lines = [line for line in out.splitlines() if line.strip() and not line.startswith("STARTUP-RAN")]
    assert len(err_lines) == 1, out
    assert str(port) in err_lines[0]
    assert "Traceback" not in out
    assert "?" not in out  # never a prompt
    assert "SHUTDOWN-RAN" not in out