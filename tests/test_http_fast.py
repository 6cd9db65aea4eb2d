"""The fast path of a plain route (issue 22 item 6).

A route whose handler takes no parameter and around which nothing runs (no
middleware, global header, exception handler, authentication, sessions, no
``status_code``/``response_model``) is answered without a ``Request``, its
``str``/``dict``/``bytes`` value serialised by the compiled
``robyn_fast._core.http1.build_response``. These tests show the path is taken
exactly then (a middleware registered after the route takes it away), that
the compiled builder writes what the Python serializer (its oracle) writes,
and that on the wire, on both loops, the fast and the general path answer
byte for byte alike: status line, fields, body, keep-alive, HEAD, pipelining
and HTTP/1.0.
"""

from __future__ import annotations

import email.utils
import re
import socket
import time
from typing import Any

import pytest

from robyn_fast import Request, Response, Robyn
from robyn_fast._core import http1
from robyn_fast.http import routes as routes_module
from robyn_fast.http.types import (
    APPLICATION_JSON,
    OCTET_STREAM,
    TEXT_PLAIN,
    fast_response,
    render,
    serialize_response,
)

from .loops import LOOPS
from .server_helpers import connect, running

# -- the compiled builder against its oracle ----------------------------------------------------------------

BODIES = [b"", b"x", b"Hello, World!", bytes(range(256)) * 40, "h\u00e9llo \u2603".encode()]


def same_second(make: Any) -> tuple[bytes, bytes]:
    """Two outputs made within one second (the Date field may tick between them otherwise)."""
    for _ in range(5):
        before = int(time.time())
        pair = make()
        if int(time.time()) == before:
            return pair  # type: ignore[no-any-return]
    raise AssertionError("the clock kept ticking between two calls")


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("ctype", [TEXT_PLAIN, APPLICATION_JSON, OCTET_STREAM])
def test_build_response_is_the_serializers_output(body: bytes, keep_alive: bool, head: bool, ctype: str) -> None:
    prefix = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\n" % ctype.encode()
    fast, reference = same_second(lambda: (
        http1.build_response(prefix, body, keep_alive, head),
        serialize_response(200, [("content-type", ctype)], body, keep_alive=keep_alive, head=head),
    ))
    assert fast == reference


def test_date_line_is_the_imf_fixdate_of_now() -> None:
    line, expected = same_second(lambda: (
        http1.date_line(),
        b"date: " + email.utils.formatdate(time.time(), usegmt=True).encode() + b"\r\n",
    ))
    assert line == expected
    assert re.fullmatch(rb"date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n", line)


class Text(str):
    pass


@pytest.mark.parametrize("value", [
    "Hello, World!", "", "<!doctype html><p>hi</p>", "  <html>", "caf\u00e9", {"message": "Hello, World!"}, {},
    {"n": [1, 2.5, None, True], "s": "\u2603"}, b"\x00\x01", b"",
])
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("head", [False, True])
def test_fast_response_is_render_then_serialize(value: Any, keep_alive: bool, head: bool) -> None:
    def both() -> tuple[bytes | None, bytes]:
        status, fields, body = render(value)
        return (fast_response(value, keep_alive=keep_alive, head=head),
                serialize_response(status, fields, body, keep_alive=keep_alive, head=head))

    fast, reference = same_second(both)
    assert fast == reference


@pytest.mark.parametrize("value", [None, [1, 2], ("x", {}, 201), Response(201, {}, "x"), Text("sub"), 3,
                                   bytearray(b"x")])
def test_fast_response_leaves_other_values_to_the_general_path(value: Any) -> None:
    assert fast_response(value, keep_alive=True) is None


def test_fast_response_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(ValueError):
        fast_response({"x": float("nan")}, keep_alive=True)
    with pytest.raises(TypeError):
        fast_response({"x": object()}, keep_alive=True)
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="Circular reference"):
        fast_response(cycle, keep_alive=True)


# -- when the fast path is taken ----------------------------------------------------------------------------


def plain() -> str:
    return "Hello, World!"


def route_of(app: Robyn, path: str = "/p") -> Any:
    app.routes.resolve()  # as the server does when it starts
    (route,) = [r for r in app.routes.all() if r.path == path]
    return route


def test_a_parameterless_handler_with_nothing_around_it_takes_the_fast_path() -> None:
    app = Robyn(__file__)
    app.get("/p")(plain)
    assert route_of(app).bare is plain


@pytest.mark.parametrize("change", [
    "before", "after", "endpoint_before", "endpoint_after", "auth", "header", "exception", "sessions",
])
def test_anything_registered_around_the_route_later_takes_the_fast_path_away(change: str) -> None:
    app = Robyn(__file__)
    app.get("/p", auth_required=change == "auth")(plain)
    assert change == "auth" or route_of(app).bare is plain
    if change == "before":
        app.before_request()(lambda request: request)
    elif change == "after":
        app.after_request()(lambda response: response)
    elif change == "endpoint_before":
        app.before_request("/p")(lambda request: request)
    elif change == "endpoint_after":
        app.after_request("/p")(lambda response: response)
    elif change == "header":
        app.add_response_header("x-extra", "1")
    elif change == "exception":
        app.exception(lambda exc: Response(500, {}, "x"))
    elif change == "sessions":
        app.configure_sessions("a secret of sufficient length for the test")
    route = route_of(app)
    assert route.bare is None and route.chain is not None


def test_a_handler_that_reads_the_request_takes_the_general_path() -> None:
    app = Robyn(__file__)
    app.inject(db="the db")

    @app.get("/request")
    def with_request(request: Request) -> str:
        return request.path

    @app.get("/typed")
    def typed(n: int = 1) -> str:
        return str(n)

    @app.get("/injected")
    def injected(db: str) -> str:
        return db

    @app.get("/status", status_code=201)
    def created() -> str:
        return "made"

    for path in ("/request", "/typed", "/injected", "/status"):
        assert route_of(app, path).bare is None, path


def test_removing_what_ran_around_the_route_gives_the_fast_path_back() -> None:
    app = Robyn(__file__)
    app.get("/p")(plain)
    app.add_response_header("x-extra", "1")
    assert route_of(app).bare is None
    app.routes.middlewares.response_headers.remove("x-extra")
    assert route_of(app).bare is plain


def test_the_fast_path_builds_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Robyn(__file__)
    app.get("/p")(plain)
    app.routes.resolve()
    built: list[str] = []
    real = routes_module.Request.from_target
    monkeypatch.setattr(routes_module.Request, "from_target",
                        classmethod(lambda cls, *a, **k: built.append("x") or real(*a, **k)))
    out = app.routes.handle("GET", "/p", [(b"host", b"x")], b"", True, None)
    assert isinstance(out, bytes) and out.endswith(b"\r\n\r\nHello, World!")
    assert built == []


# -- byte for byte on the wire ------------------------------------------------------------------------------


def make_app(general: bool) -> Robyn:
    """The same routes; ``general``: a do-nothing before-request middleware
    sends every request through the chain (the general path)."""
    app = Robyn(__file__)
    app.get("/text")(plain)
    app.get("/json")(lambda: {"message": "Hello, World!"})
    app.get("/bytes")(lambda: b"\x00\xff")
    app.get("/html")(lambda: "<!DOCTYPE html><p>x</p>")
    app.get("/other")(lambda: [1, 2])  # a list: the general serializer, even without a chain

    async def later() -> str:
        return "async"

    app.get("/async")(later)
    if general:
        app.before_request()(lambda request: None)
    return app


def exchange(port: int, data: bytes, until_close: bool = False, replies: int = 1) -> bytes:
    """Send ``data``; read until the connection closes or ``replies`` responses ended."""
    with connect(port) as sock:
        sock.sendall(data)
        got = b""
        sock.settimeout(5.0)
        while True:
            if not until_close and _complete(got, replies):
                return got
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"no complete answer within 5 s: {got!r}") from None
            if not chunk:
                return got
            got += chunk


def _complete(data: bytes, replies: int) -> bool:
    for _ in range(replies):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return False
        m = re.search(rb"content-length: (\d+)", head)
        size = int(m.group(1)) if m else 0  # (HEAD is read until the close)
        if len(rest) < size:
            return False
        data = rest[size:]
    return True


def undated(data: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", data)


REQUESTS = [
    (b"GET /text HTTP/1.1\r\nHost: x\r\n\r\n", 1, False),
    (b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n", 1, False),
    (b"GET /bytes HTTP/1.1\r\nHost: x\r\n\r\n", 1, False),
    (b"GET /html HTTP/1.1\r\nHost: x\r\n\r\n", 1, False),
    (b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 1, False),
    (b"GET /async HTTP/1.1\r\nHost: x\r\n\r\n", 1, False),
    (b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, True),
    (b"GET /text HTTP/1.0\r\n\r\n", 1, True),
    (b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, False),
    (b"GET /text?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
     b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
     b"GET /bytes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3, True),
]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_the_fast_path_answers_as_the_general_path_byte_for_byte(loop_kind: str) -> None:
    fast_app, general_app = make_app(False), make_app(True)
    with running(fast_app, loop_kind) as fast, running(general_app, loop_kind) as general:
        assert route_of(fast_app, "/text").bare is plain and route_of(general_app, "/text").bare is None
        for data, replies, closes in REQUESTS:
            got_fast = exchange(fast.port, data, closes, replies)
            got_general = exchange(general.port, data, closes, replies)
            assert got_fast.startswith(b"HTTP/1.1 200 OK\r\n"), got_fast
            assert got_fast.count(b"HTTP/1.1 200 OK\r\n") == replies
            assert undated(got_fast) == undated(got_general), data
            assert (b"connection: close\r\n" in got_fast) is closes, data
        # HEAD: the GET's fields and content-length, no body; the connection stays open for the next one.
        for path in (b"/text", b"/json", b"/bytes"):
            data = b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (
                path, path)
            got_fast = exchange(fast.port, data, until_close=True)
            got_general = exchange(general.port, data, until_close=True)
            assert undated(got_fast) == undated(got_general)
            head_reply, _, get_reply = got_fast.partition(b"\r\n\r\n")
            assert b"content-length:" in head_reply and get_reply.startswith(b"HTTP/1.1 200 OK\r\n")
