"""SubRouter: prefixed routes for every verb merged into the app's one route
registry, its own middlewares and dependencies, a WebSocket endpoint on it;
against a real server on both loops (http.client, websocket-client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from websocket import create_connection

from robyn_fast import Robyn, WebSocket
from robyn_fast.http.router import join_prefix
from robyn_fast.http.types import Request, Response
from robyn_fast.subrouter import SubRouter

from .server_helpers import LOOPS, running
from .test_middlewares import fetch

VERBS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]


def make_app() -> Robyn:
    app = Robyn(__file__)
    sub = SubRouter(__file__, prefix="/api")
    def answer(verb: str) -> Any:
        return lambda: {"verb": verb}

    for verb in VERBS + ["HEAD"]:
        sub.add_route(verb, "/foo", answer(verb))

    @sub.get("/")
    def root() -> str:
        return "api root"

    @sub.before_request()
    def tag(request: Request) -> Request:
        request.headers.set("x-sub", "yes")
        return request

    @sub.after_request("/foo")
    def foo_after(response: Response) -> Response:
        response.headers.set("x-foo-after", "yes")
        return response

    sub.inject(SUB_DEP="sub")
    sub.inject_global(SHARED="from sub", ONLY_SUB="only sub")

    @sub.get("/deps")
    def deps(router_dependencies: dict[str, Any], global_dependencies: dict[str, Any]) -> dict[str, Any]:
        return {"router": router_dependencies, "global": global_dependencies}

    @sub.get("/seen")
    def seen(request: Request) -> str:
        return request.headers.get("x-sub") or "none"

    ws = WebSocket(sub, "/ws")

    @ws.on("connect")
    def connect() -> str:
        return "hello from the sub-router"

    @ws.on("message")
    def message(ws_conn: Any, msg: str) -> str:
        return f"echo {msg}"

    app.inject_global(SHARED="from app")

    @app.get("/top")
    def top(request: Request) -> str:
        return request.headers.get("x-sub") or "none"

    app.include_router(sub)
    return app


@pytest.fixture(params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running(make_app(), request.param) as srv:
        yield srv


def test_every_verb_under_the_prefix(server: Any) -> None:
    import json

    for verb in VERBS:
        status, headers, body = fetch(server.port, verb, "/api/foo")
        assert status == 200, verb
        assert json.loads(body) == {"verb": verb}
        assert headers["x-foo-after"] == "yes"
    status, headers, body = fetch(server.port, "HEAD", "/api/foo")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert fetch(server.port, "GET", "/api")[::2] == (200, b"api root")
    assert fetch(server.port, "GET", "/foo")[0] == 404


def test_sub_router_middlewares_stay_on_its_routes(server: Any) -> None:
    assert fetch(server.port, "GET", "/api/seen")[2] == b"yes"
    assert fetch(server.port, "GET", "/top")[2] == b"none"


def test_dependencies(server: Any) -> None:
    import json

    body = json.loads(fetch(server.port, "GET", "/api/deps")[2])
    assert body["router"] == {"SUB_DEP": "sub"}
    # The app's own global wins; the sub-router's fill in the names it lacks.
    assert body["global"]["SHARED"] == "from app" and body["global"]["ONLY_SUB"] == "only sub"


def test_websocket_on_a_sub_router(server: Any) -> None:
    ws = create_connection(f"{server.ws_url}/api/ws", timeout=10)
    try:
        assert ws.recv() == "hello from the sub-router"
        ws.send("hi")
        assert ws.recv() == "echo hi"
    finally:
        ws.close()
    assert fetch(server.port, "GET", "/api/ws")[0] == 426


def test_join_prefix() -> None:
    assert join_prefix("/api", "/foo") == "/api/foo"
    assert join_prefix("api/", "foo") == "/api/foo"
    assert join_prefix("", "/") == "/"
    assert join_prefix("/", "/x") == "/x"
    assert join_prefix("/api", "") == "/api"


def test_a_sub_router_is_not_served_alone_nor_included_twice() -> None:
    sub = SubRouter(__file__, "/s")
    with pytest.raises(TypeError, match="include_router"):
        sub.start()
    Robyn(__file__).include_router(sub)
    with pytest.raises(ValueError, match="already included"):
        Robyn(__file__).include_router(sub)
    with pytest.raises(TypeError, match="takes a SubRouter"):
        Robyn(__file__).include_router(Robyn(__file__))


def test_a_route_clash_is_found_at_include() -> None:
    from robyn_fast.exceptions import DuplicateRoute

    app = Robyn(__file__)
    app.add_route("GET", "/api/x", lambda: "app")
    sub = SubRouter(__file__, "/api")
    sub.add_route("GET", "/x", lambda: "sub")
    with pytest.raises(DuplicateRoute):
        app.include_router(sub)
