"""Signed-cookie sessions (robyn_fast.sessions): a real server on both loops
spoken to with http.client (cookies sent by hand, so what goes over the wire
is what is checked), the signing and expiry rules, and the errors of a
misconfiguration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from robyn_fast import Robyn
from robyn_fast.exceptions import ArgumentTypeError, ConfigError, InvalidState
from robyn_fast.http.types import Headers, Request, Response
from robyn_fast.sessions import Session, SessionManager

from .server_helpers import LOOPS, running

SECRET = "test-secret-0123456789"


def make_app(secret: str = SECRET, **options: Any) -> Robyn:
    app = Robyn(__file__)
    app.configure_sessions(secret, cookie_name="sid", **options)
    seen_in_middleware: list[Any] = []
    app.state = seen_in_middleware  # type: ignore[attr-defined]

    @app.before_request()
    def peek(request: Request) -> Request:
        seen_in_middleware.append(dict(request.session))
        return request

    @app.get("/get")
    def get(request: Request) -> dict[str, Any]:
        return {"value": request.session.get("value")}

    @app.post("/set")
    def put(request: Request) -> dict[str, Any]:
        request.session["value"] = request.json()["value"]
        return {"stored": request.session["value"]}

    @app.get("/counter")
    async def counter(request: Request) -> dict[str, Any]:
        request.session["count"] = request.session.get("count", 0) + 1
        return {"count": request.session["count"]}

    @app.get("/append")
    def append(request: Request) -> dict[str, Any]:
        request.session.setdefault("items", [])
        request.session["items"].append(len(request.session["items"]))
        return {"items": request.session["items"]}

    @app.get("/clear")
    def clear(request: Request) -> str:
        request.session.clear()
        return "cleared"

    @app.get("/replaced")
    def replaced(request: Request) -> Response:
        request.session["by"] = "replaced"
        return Response(201, {}, "made")

    @app.after_request("/replaced")
    def replace(response: Response) -> Response:
        return Response(202, {}, "replaced by a middleware")

    @app.get("/boom")
    def boom(request: Request) -> str:
        request.session["value"] = object()
        return "unreachable cookie"

    return app


@pytest.fixture(scope="module", params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running(make_app(), request.param) as srv:
        yield srv


def call(port: int, method: str, path: str, cookie: str | None = None,
         body: Any = None) -> tuple[int, list[str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Cookie": cookie} if cookie is not None else {}
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers.get_all("set-cookie") or [], resp.read()
    finally:
        conn.close()


def sid_of(set_cookies: list[str]) -> str:
    (line,) = [c for c in set_cookies if c.startswith("sid=")]
    return line.split(";")[0]


def test_nothing_stored_sets_no_cookie(server: Any) -> None:
    status, cookies, body = call(server.port, "GET", "/get")
    assert status == 200 and json.loads(body) == {"value": None} and cookies == []


def test_a_session_lives_in_the_cookie_with_its_attributes(server: Any) -> None:
    status, cookies, body = call(server.port, "POST", "/set", body={"value": "hello"})
    assert status == 200 and json.loads(body) == {"stored": "hello"}
    (line,) = cookies
    attrs = [a.strip() for a in line.split(";")[1:]]
    assert attrs == [f"Path=/", f"Max-Age={14 * 24 * 3600}", "HttpOnly", "SameSite=Lax"]
    cookie = sid_of(cookies)
    status, cookies, body = call(server.port, "GET", "/get", cookie=f"other=1; {cookie}; last=2")
    assert json.loads(body) == {"value": "hello"}
    assert cookies == []  # read, not changed: no new cookie
    assert {"value": "hello"} in server.app.state  # the before-request middlewares see it too


def test_each_client_counts_on_its_own(server: Any) -> None:
    cookie = None
    counts = []
    for _ in range(3):
        _, cookies, body = call(server.port, "GET", "/counter", cookie=cookie)
        cookie = sid_of(cookies)
        counts.append(json.loads(body)["count"])
    assert counts == [1, 2, 3]
    assert json.loads(call(server.port, "GET", "/counter")[2])["count"] == 1


def test_a_change_inside_a_value_is_saved(server: Any) -> None:
    _, cookies, _ = call(server.port, "GET", "/append")
    _, cookies, body = call(server.port, "GET", "/append", cookie=sid_of(cookies))
    assert json.loads(body) == {"items": [0, 1]} and cookies


@pytest.mark.parametrize("forge", [
    lambda v: v[:-3] + ("aaa" if not v.endswith("aaa") else "bbb"),   # signature changed
    lambda v: "e30" + v[3:],                                           # payload changed
    lambda v: v.replace(".", ""),                                      # no signature at all
    lambda v: "",                                                      # empty
    lambda v: "\u00e9\u00e9.\u00e9",                                   # not ASCII (sent as latin-1)
    lambda v: "a.b.c.d",
    lambda v: v + "=",
])
def test_a_tampered_cookie_is_an_empty_session(server: Any, forge: Any) -> None:
    _, cookies, _ = call(server.port, "GET", "/counter")
    value = sid_of(cookies).partition("=")[2]
    forged = forge(value)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("GET", "/counter")
        conn.putheader("Cookie", f"sid={forged}".encode("latin-1"))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {"count": 1}
    finally:
        conn.close()


def _signed(secret: str, envelope: Any) -> str:
    """A cookie value signed as the format says (independently of the module)."""
    key = hashlib.sha256(b"robyn.session" + secret.encode()).digest()
    payload = base64.urlsafe_b64encode(json.dumps(envelope).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).rstrip(b"=")
    return (payload + b"." + sig).decode()


@pytest.mark.parametrize("exp", [int(time.time()) - 1, "never", True, None])
def test_an_expired_or_odd_expiry_is_refused_and_a_valid_one_read(server: Any, exp: Any) -> None:
    envelope: dict[str, Any] = {"d": {"value": "kept"}}
    if exp is not None:
        envelope["exp"] = exp
    _, _, body = call(server.port, "GET", "/get", cookie=f"sid={_signed(SECRET, envelope)}")
    assert json.loads(body) == {"value": "kept" if exp is None else None}
    fresh = {"d": {"value": "fresh"}, "exp": time.time() + 60}
    _, _, body = call(server.port, "GET", "/get", cookie=f"sid={_signed(SECRET, fresh)}")
    assert json.loads(body) == {"value": "fresh"}
    odd = ["not an object", {"d": ["no", "dict"]}, {"no": "d"}]
    for envelope in odd:
        status, _, body = call(server.port, "GET", "/get", cookie=f"sid={_signed(SECRET, envelope)}")
        assert (status, json.loads(body)) == (200, {"value": None})


def test_clearing_deletes_the_cookie(server: Any) -> None:
    _, cookies, _ = call(server.port, "POST", "/set", body={"value": "x"})
    _, cookies, body = call(server.port, "GET", "/clear", cookie=sid_of(cookies))
    assert body == b"cleared"
    (line,) = cookies
    assert line.startswith("sid=;") and "Max-Age=0" in line


def test_saved_on_the_response_an_after_middleware_made(server: Any) -> None:
    status, cookies, body = call(server.port, "GET", "/replaced")
    assert (status, body) == (202, b"replaced by a middleware")
    value = sid_of(cookies).partition("=")[2]
    assert dict(SessionManager(SECRET).loads(value)) == {"by": "replaced"}


def test_data_that_is_not_json_is_a_500_not_a_bad_cookie(server: Any) -> None:
    status, cookies, _ = call(server.port, "GET", "/boom")
    assert status == 500 and cookies == []


@pytest.mark.parametrize("loop", LOOPS)
def test_every_worker_with_the_secret_reads_the_session(loop: str) -> None:
    """What --processes N and several hosts need: a cookie one process
    signed is read by another with the same secret, and only by it."""
    with running(make_app(), loop) as one, running(make_app(), loop) as two, \
            running(make_app("another-secret"), loop) as other:
        _, cookies, _ = call(one.port, "POST", "/set", body={"value": "shared"})
        assert json.loads(call(two.port, "GET", "/get", cookie=sid_of(cookies))[2]) == {"value": "shared"}
        assert json.loads(call(other.port, "GET", "/get", cookie=sid_of(cookies))[2]) == {"value": None}


def test_the_cookie_attributes_follow_the_configuration() -> None:
    manager = SessionManager(b"k", cookie_name="s", max_age=None, path="/app", domain="example.com",
                             secure=True, http_only=False, same_site="none")
    response = Response(200)
    session = Session()
    session["a"] = 1
    manager.save(session, response)
    (line,) = response.headers.get_all("set-cookie")
    value, *attrs = [part.strip() for part in line.split(";")]
    assert attrs == ["Path=/app", "Domain=example.com", "Secure", "SameSite=None"]
    assert dict(manager.loads(value.partition("=")[2])) == {"a": 1}  # max_age None: no expiry


def test_load_reads_the_named_cookie_among_several_fields() -> None:
    manager = SessionManager("k")
    value = manager.dumps({"x": 1})
    request = Request.from_target("GET", "/", Headers([("cookie", "a=1"), ("cookie", f"b=2; session={value}")]))
    assert dict(manager.load(request)) == {"x": 1}
    assert dict(manager.load(Request.from_target("GET", "/"))) == {}


@pytest.mark.parametrize("kwargs, error", [
    ({"secret_key": ""}, ConfigError),
    ({"secret_key": b""}, ConfigError),
    ({"secret_key": None}, ArgumentTypeError),
    ({"secret_key": "k", "same_site": "None"}, ConfigError),
    ({"secret_key": "k", "same_site": "sometimes"}, ConfigError),
    ({"secret_key": "k", "max_age": 0}, ConfigError),
    ({"secret_key": "k", "max_age": 1.5}, ConfigError),
    ({"secret_key": "k", "cookie_name": "bad name"}, ConfigError),
    ({"secret_key": "k", "path": "/a;b"}, ConfigError),
])
def test_a_misconfiguration_is_a_clear_error(kwargs: dict[str, Any], error: type[Exception]) -> None:
    secret = kwargs.pop("secret_key")
    with pytest.raises(error, match="secret_key|same_site|SameSite|max_age|cookie|Path"):
        Robyn(__file__).configure_sessions(secret, **kwargs)


def test_sessions_are_configured_once() -> None:
    app = Robyn(__file__)
    manager = app.configure_sessions("k")
    assert app.session_manager is manager
    with pytest.raises(InvalidState, match="once"):
        app.configure_sessions("k")


def test_without_sessions_request_session_is_none_and_routes_have_no_chain() -> None:
    app = Robyn(__file__)

    @app.get("/")
    def index(request: Request) -> str:
        return repr(request.session)

    (route,) = app.routes.all()
    assert route.chain is None
    app.configure_sessions("k")
    assert route.chain is not None
