"""Middlewares, global headers, the exception handler, authentication and
CORS, against a real server on both loops, spoken to with http.client.

Also: a route nothing applies to has no chain at all (what keeps it at
today's cost), and the chain is resolved at registration, not per request.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from robyn_fast import Robyn
from robyn_fast.auth import AuthenticationHandler, BearerGetter
from robyn_fast.cors import allow_cors
from robyn_fast.http.params import Identity
from robyn_fast.http.types import Headers, Request, Response

from .server_helpers import LOOPS, running


def fetch(port: int, method: str, path: str, headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def make_app() -> Robyn:
    app = Robyn(__file__)
    seen: list[str] = []
    app.state = seen  # type: ignore[attr-defined]

    @app.before_request()
    def mark(request: Request) -> Request:
        request.headers.set("x-global-before", "1")
        seen.append("global-before")
        return request

    @app.after_request()
    async def stamp(response: Response) -> Response:
        await asyncio.sleep(0)
        response.headers.set("x-global-after", "1")
        return response

    @app.before_request("/sync")
    def sync_before(request: Request) -> Request:
        request.headers.set("x-before", "sync")
        return request

    @app.after_request("/sync")
    def sync_after(response: Response) -> Response:
        response.description = response.description + " after"
        return response

    @app.get("/sync")
    def sync_route(request: Request) -> str:
        return f"{request.headers.get('x-global-before')} {request.headers.get('x-before')}"

    @app.before_request("/async")
    async def async_before(request: Request) -> Request:
        await asyncio.sleep(0)
        request.headers.set("x-before", "async")
        return request

    @app.after_request("/async")
    async def async_after(request: Request, response: Response) -> Response:
        response.headers.set("x-path", request.url.path)
        return response

    @app.get("/async")
    async def async_route(request: Request) -> str:
        await asyncio.sleep(0)
        return f"async {request.headers.get('x-before')}"

    @app.before_request("/early")
    def early() -> Response:
        return Response(401, {"x-early": "yes"}, "no entry")

    @app.get("/early")
    def never() -> str:
        raise AssertionError("the handler must not run after an early answer")

    @app.post("/early")
    def never_post() -> str:
        raise AssertionError("the handler must not run after an early answer")

    @app.before_request("/early-dict")
    def early_dict() -> dict[str, bool]:
        return {"blocked": True}

    @app.before_request("/early-tuple")
    def early_tuple() -> tuple[str, dict[str, str], int]:
        return ("denied", {"x-why": "tuple"}, 403)

    @app.get("/early-dict")
    @app.get("/early-tuple")
    def never_either() -> str:
        raise AssertionError("the handler must not run after an early answer")

    @app.after_request("/none")
    def keeps(response: Response) -> None:
        response.headers.set("x-kept", "yes")

    @app.get("/none")
    def none_route() -> dict[str, int]:
        return {"a": 1}

    @app.before_request("/bad")
    def bad_before(request: Request) -> int:
        return 42

    @app.get("/bad")
    def bad_route() -> str:
        return "unreachable"

    @app.get("/raise")
    def raises() -> str:
        raise ValueError("boom")

    @app.post("/echo")
    def echo(body: str, method: str) -> str:
        return f"{method} {body}"

    app.set_response_header("server", "robyn_fast-test")
    app.add_response_header("x-multi", "1")
    app.add_response_header("x-multi", "2")
    app.set_request_header("x-from-app", "yes")

    @app.get("/request-header")
    def request_header(headers: Headers) -> str:
        return f"{headers.get('x-from-app')} {headers.get('server')}"

    @app.get("/own-server")
    def own_server() -> Response:
        return Response(200, {"server": "mine"}, "own")

    @app.get("/excluded")
    def excluded() -> str:
        return "bare"

    app.exclude_response_headers_for(["/excluded"])
    return app


@pytest.fixture(params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running(make_app(), request.param) as srv:
        yield srv


def test_sync_middlewares_change_request_and_response(server: Any) -> None:
    status, headers, body = fetch(server.port, "GET", "/sync")
    assert status == 200
    assert body == b"1 sync after"
    assert headers["x-global-after"] == "1"
    assert "x-before" not in headers  # request headers stay on the request


def test_async_middlewares_and_after_with_request(server: Any) -> None:
    status, headers, body = fetch(server.port, "GET", "/async")
    assert (status, body) == (200, b"async async")
    assert headers["x-path"] == "/async"
    assert headers["x-global-after"] == "1"


def test_before_middleware_answers_early(server: Any) -> None:
    assert fetch(server.port, "POST", "/early")[0] == 401  # natively, every method of the path
    status, headers, body = fetch(server.port, "GET", "/early")
    assert (status, body) == (401, b"no entry")
    assert headers["x-early"] == "yes"
    assert headers["x-global-after"] == "1"  # the after-request middlewares still run (Robyn 0.80+)
    assert headers["server"] == "robyn_fast-test"


def test_before_middleware_answers_with_a_plain_value(server: Any) -> None:
    status, headers, body = fetch(server.port, "GET", "/early-dict")
    assert (status, body) == (200, b'{"blocked":true}')
    assert headers["content-type"] == "application/json"
    assert headers["x-global-after"] == "1"
    status, headers, body = fetch(server.port, "GET", "/early-tuple")
    assert (status, body, headers["x-why"]) == (403, b"denied", "tuple")
    assert headers["x-global-after"] == "1"


def test_after_middleware_returning_none_keeps_the_response(server: Any) -> None:
    status, headers, body = fetch(server.port, "GET", "/none")
    assert (status, body) == (200, b'{"a":1}')
    assert headers["x-kept"] == "yes"
    assert headers["content-type"] == "application/json"


def test_middleware_returning_something_else_is_a_500(server: Any) -> None:
    status, _, _ = fetch(server.port, "GET", "/bad")
    assert status == 500


def test_handler_exception_without_exception_handler_is_a_500(server: Any) -> None:
    status, headers, _ = fetch(server.port, "GET", "/raise")
    assert status == 500
    assert headers["x-global-after"] == "1"  # as in Robyn: the 500 still goes through the after-request chain


def test_global_response_headers(server: Any) -> None:
    _, headers, _ = fetch(server.port, "POST", "/echo", body=b"hi")
    assert headers["server"] == "robyn_fast-test"
    assert headers.get_all("x-multi") == ["1", "2"]
    _, headers, body = fetch(server.port, "GET", "/own-server")
    assert headers.get_all("server") == ["mine"]  # the response's own field wins
    _, headers, body = fetch(server.port, "GET", "/excluded")
    assert body == b"bare" and "server" not in headers and "x-multi" not in headers


def test_global_request_headers(server: Any) -> None:
    # The global response headers stay off the request (only the compat app mimics Robyn 0.77 there).
    assert fetch(server.port, "GET", "/request-header")[2] == b"yes None"


def test_no_route_goes_through_global_middlewares(server: Any) -> None:
    status, headers, _ = fetch(server.port, "GET", "/nowhere")
    assert status == 404
    assert headers["x-global-after"] == "1" and headers["server"] == "robyn_fast-test"
    status, headers, _ = fetch(server.port, "DELETE", "/sync")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert headers["x-global-after"] == "1"


def test_parameters_by_name_and_annotation(server: Any) -> None:
    assert fetch(server.port, "POST", "/echo", body=b"payload")[2] == b"POST payload"


# -- registration-time resolution ----------------------------------------------------


def test_a_route_nothing_applies_to_has_no_chain() -> None:
    app = Robyn(__file__)

    @app.get("/plain")
    def plain() -> str:
        return "x"

    (route,) = app.routes.all()
    assert route.chain is None
    app.set_response_header("server", "x")
    assert route.chain is not None and route.chain.response_headers is not None
    app.exclude_response_headers_for(["/plain"])
    assert route.chain is None


def test_middleware_arity_is_checked_at_registration() -> None:
    app = Robyn(__file__)
    with pytest.raises(TypeError, match="takes 2 parameters"):
        app.before_request()(lambda a, b: a)
    with pytest.raises(TypeError, match="takes 3 parameters"):
        app.after_request()(lambda a, b, c: a)


# -- exception handler, authentication, CORS -------------------------------------------


def make_guarded_app() -> Robyn:
    app = Robyn(__file__)

    @app.exception
    def handle(error: Exception) -> Response:
        return Response(418, {}, f"handled: {error}")

    @app.get("/raise")
    def raises() -> str:
        raise ValueError("sync")

    @app.get("/araise")
    async def araises() -> str:
        await asyncio.sleep(0)
        raise KeyError("async")

    class Tokens(AuthenticationHandler):
        def authenticate(self, request: Request) -> Identity | None:
            token = self.token_getter.get_token(request)
            return Identity({"user": "ann"}) if token == "good" else None

    @app.get("/me", auth_required=True)
    def me(identity: Identity) -> str:
        return identity.claims["user"]

    app.configure_authentication(Tokens(BearerGetter()))
    return app


@pytest.mark.parametrize("loop", LOOPS)
def test_exception_handler_answers_sync_and_async(loop: str) -> None:
    with running(make_guarded_app(), loop) as srv:
        assert fetch(srv.port, "GET", "/raise")[::2] == (418, b"handled: sync")
        assert fetch(srv.port, "GET", "/araise")[::2] == (418, b"handled: 'async'")


@pytest.mark.parametrize("loop", LOOPS)
def test_auth_required(loop: str) -> None:
    with running(make_guarded_app(), loop) as srv:
        assert fetch(srv.port, "GET", "/me", {"Authorization": "Bearer good"})[::2] == (200, b"ann")
        for headers in ({}, {"Authorization": "Bearer bad"}, {"Authorization": "Basic good"}):
            status, got, body = fetch(srv.port, "GET", "/me", headers)
            assert (status, body) == (401, b"Unauthorized")
            assert got["www-authenticate"] == "BearerGetter"


@pytest.mark.parametrize("loop", LOOPS)
def test_auth_required_without_a_handler_is_a_500(loop: str) -> None:
    app = Robyn(__file__)

    @app.get("/me", auth_required=True)
    def me() -> str:
        return "never"

    with running(app, loop) as srv:
        assert fetch(srv.port, "GET", "/me")[0] == 500


@pytest.mark.parametrize("loop", LOOPS)
def test_cors(loop: str) -> None:
    app = Robyn(__file__)

    @app.get("/data")
    def data() -> str:
        return "d"

    @app.options("/data")
    def data_options() -> str:
        return "unreachable: preflight answered by CORS"

    allow_cors(app, ["https://a.example"])
    with running(app, loop) as srv:
        status, headers, _ = fetch(srv.port, "GET", "/data", {"Origin": "https://a.example"})
        assert status == 200 and headers["access-control-allow-origin"] == "https://a.example"
        assert fetch(srv.port, "GET", "/data", {"Origin": "https://evil.example"})[0] == 403
        status, headers, body = fetch(srv.port, "OPTIONS", "/data", {"Origin": "https://a.example"})
        assert (status, body) == (204, b"")
        assert headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS"
        assert headers["access-control-max-age"] == "3600"


@pytest.mark.parametrize("loop", LOOPS)
def test_a_return_value_that_cannot_be_sent_is_a_500_inside_a_chain(loop: str) -> None:
    app = Robyn(__file__)
    app.set_response_header("server", "x")

    @app.get("/bad-json")
    def bad_json() -> dict[str, object]:
        return {"x": object()}

    @app.get("/after")
    def after() -> str:
        return "still serving"

    with running(app, loop) as srv:
        assert fetch(srv.port, "GET", "/bad-json")[0] == 500
        assert fetch(srv.port, "GET", "/after")[::2] == (200, b"still serving")
