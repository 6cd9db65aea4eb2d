"""``authenticate()`` as ``async def``, and which handler authenticates a
sub-router's routes (its own, else the nearest including router's), against
a real server on both loops."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from robyn_fast import Robyn
from robyn_fast.auth import AuthenticationHandler, BearerGetter
from robyn_fast.http.params import Identity
from robyn_fast.http.types import Request
from robyn_fast.subrouter import SubRouter

from .server_helpers import LOOPS, running


class AsyncAuth(AuthenticationHandler):
    def __init__(self, who: str) -> None:
        super().__init__(BearerGetter())
        self.who = who

    async def authenticate(self, request: Request) -> Identity | None:
        await asyncio.sleep(0.001)  # really suspends: an async database, an identity provider
        token = self.token_getter.get_token(request)
        if token == "boom":
            raise RuntimeError("the identity provider is down")
        return Identity({"by": self.who, "task": str(asyncio.current_task() is not None)}) \
            if token == self.who else None


class SyncAuth(AuthenticationHandler):
    def authenticate(self, request: Request) -> Identity | None:
        return Identity({"by": "app"}) if self.token_getter.get_token(request) == "app" else None


def make_app() -> Robyn:
    app = Robyn(__file__)

    @app.get("/app", auth_required=True)
    def on_app(request: Request) -> dict[str, Any]:
        return request.identity.claims

    own = SubRouter(__file__, prefix="/own")
    own.configure_authentication(AsyncAuth("own"))

    @own.get("/p", auth_required=True)
    async def own_p(request: Request) -> dict[str, Any]:
        return request.identity.claims

    @own.get("/open")
    def own_open() -> str:
        return "open"

    inherited = SubRouter(__file__, prefix="/inherited")

    @inherited.get("/p", auth_required=True)
    def inherited_p(request: Request) -> dict[str, Any]:
        return request.identity.claims

    outer = SubRouter(__file__, prefix="/outer")
    outer.configure_authentication(AsyncAuth("outer"))
    inner = SubRouter(__file__, prefix="/inner")

    @inner.get("/p", auth_required=True)
    def inner_p(request: Request) -> dict[str, Any]:
        return request.identity.claims

    @app.after_request("/own/p")
    def after(response: Any) -> Any:
        response.headers.set("x-after", "ran")
        return response

    outer.include_router(inner)
    app.include_router(own)
    app.include_router(inherited)
    app.include_router(outer)
    # configured after the includes: the sub-routers without a handler still get it
    app.configure_authentication(SyncAuth(BearerGetter()))
    # where the nested route is served (whether prefixes accumulate is not the point here)
    (app.nested_path,) = [r.path for r in app.routes.all() if r.name.endswith("inner_p")]  # type: ignore[attr-defined]
    return app


@pytest.fixture(scope="module", params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running(make_app(), request.param) as srv:
        yield srv


def call(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path, token, claims", [
    ("/app", "app", b'{"by":"app"}'),
    ("/own/p", "own", b'{"by":"own","task":"True"}'),
    ("/inherited/p", "app", b'{"by":"app"}'),
    ("nested", "outer", b'{"by":"outer","task":"True"}'),
])
def test_the_handler_that_applies_admits_its_token(server: Any, path: str, token: str, claims: bytes) -> None:
    status, _, body = call(server.port, server.app.nested_path if path == "nested" else path, token)
    assert (status, body) == (200, claims)


@pytest.mark.parametrize("path, token", [
    ("/own/p", None), ("/own/p", "app"), ("/own/p", "wrong"),
    ("/inherited/p", None), ("/inherited/p", "own"),
    ("nested", "app"), ("/app", "own"),
])
def test_any_other_token_is_401(server: Any, path: str, token: str | None) -> None:
    status, headers, body = call(server.port, server.app.nested_path if path == "nested" else path, token)
    assert (status, body) == (401, b"Unauthorized")
    assert headers["www-authenticate"] == "BearerGetter"


def test_the_route_middlewares_run_after_an_async_authentication(server: Any) -> None:
    status, headers, _ = call(server.port, "/own/p", "own")
    assert status == 200 and headers["x-after"] == "ran"
    assert call(server.port, "/own/open")[2] == b"open"


def test_an_async_authenticate_that_raises_is_a_500(server: Any) -> None:
    assert call(server.port, "/own/p", "boom")[0] == 500
    assert call(server.port, "/own/p", "own")[0] == 200  # and the server goes on


def test_without_any_handler_an_auth_route_is_a_500() -> None:
    from robyn_fast.inprocess import InProcessClient

    app = Robyn(__file__)
    sub = SubRouter(__file__, prefix="/s")

    @sub.get("/p", auth_required=True)
    def p() -> str:
        return "never"

    app.include_router(sub)
    with InProcessClient(app) as client:
        assert client.get("/s/p").status_code == 500
