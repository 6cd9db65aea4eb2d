"""robyn_fast.inprocess.InProcessClient and Robyn 0.88's robyn.testing.TestClient
on it: requests through the app's real pipeline without a socket, on both
loops (each test's client runs on a loop of that kind)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvloop

from robyn_fast import Robyn
from robyn_fast.exceptions import InvalidState
from robyn_fast.http.streaming import StreamingResponse
from robyn_fast.http.types import Request, Response
from robyn_fast.inprocess import InProcessClient

from .loops import LOOPS

try:
    import pydantic
except ImportError:  # the tests that need it skip
    pydantic = None
else:
    class Item(pydantic.BaseModel):
        name: str


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    loop = new_loop(request.param)
    yield loop
    loop.close()


def make_app(events: list[str]) -> Robyn:
    app = Robyn(__file__)

    @app.startup_handler
    async def up() -> None:
        events.append("startup")

    @app.shutdown_handler
    def down() -> None:
        events.append("shutdown")

    @app.get("/hello")
    def hello() -> str:
        return "Hello, World!"

    @app.get("/loop")
    def in_loop() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]  # a sync handler runs in the loop

    @app.post("/echo/:name")
    async def echo(request: Request, name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"name": name, "json": request.json(), "q": request.query_params.get("q"),
                "x": request.headers.get("x-custom"), "ip": request.ip_addr, "host": request.url.host}

    @app.post("/form")
    def form(request: Request) -> dict[str, Any]:
        return {"fields": request.form_data, "files": {k: v.decode() for k, v in request.files.items()}}

    @app.get("/stream")
    def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for i in range(3):
                yield f"chunk{i};"
        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/cookie")
    def cookie(request: Request) -> Response:
        response = Response(200, {}, request.headers.get("cookie") or "none")
        response.set_cookie("a", "1")
        return response

    @app.get("/forget")
    def forget() -> Response:
        response = Response(200, {}, "")
        response.set_cookie("a", "", max_age=0)
        return response

    return app


def test_requests_go_through_the_app(loop: asyncio.AbstractEventLoop) -> None:
    events: list[str] = []
    client = InProcessClient(make_app(events), loop=loop)
    r = client.get("/hello")
    assert (r.status_code, r.text, r.ok) == (200, "Hello, World!", True)
    assert r.headers.get("content-type") == "text/plain; charset=utf-8"
    r = client.post("/echo/bob", json={"a": [1]}, query_params={"q": "batman"}, headers={"X-Custom": "v"})
    assert r.json() == {"name": "bob", "json": {"a": [1]}, "q": "batman", "x": "v", "ip": "127.0.0.1",
                        "host": "testclient"}
    assert client.get("/nothing").status_code == 404
    assert client.delete("/hello").status_code == 405
    head = client.head("/hello")
    assert head.status_code == 200 and head.content == b"" and head.headers.get("content-length") == "13"
    assert events == []  # no startup handler without `with`


def test_sync_handlers_run_inside_the_clients_loop(loop: asyncio.AbstractEventLoop) -> None:
    client = InProcessClient(make_app([]), loop=loop)
    expected = "uvloop" if isinstance(loop, uvloop.Loop) else "asyncio"
    assert client.get("/loop").text == expected


def test_forms_files_and_streams(loop: asyncio.AbstractEventLoop) -> None:
    client = InProcessClient(make_app([]), loop=loop)
    assert client.post("/form", form_data={"a": "1", "b": "é"}).json() == {"fields": {"a": "1", "b": "é"},
                                                                             "files": {}}
    assert client.post("/form", form_data={"a": "1"}, files={"f.txt": b"data"}).json() == {
        "fields": {"a": "1"}, "files": {"f.txt": "data"}}
    r = client.get("/stream")
    assert (r.status_code, r.content) == (200, b"chunk0;chunk1;chunk2;")
    assert r.headers.get("transfer-encoding") == "chunked"
    with pytest.raises(ValueError, match="one of body, json"):
        client.post("/form", body="x", json={})
    with pytest.raises(ValueError, match="starts with '/'"):
        client.get("hello")


def test_cookies_are_kept_and_forgotten(loop: asyncio.AbstractEventLoop) -> None:
    client = InProcessClient(make_app([]), loop=loop)
    assert client.get("/cookie").text == "none"
    assert client.cookies == {"a": "1"}
    assert client.get("/cookie").text == "a=1"
    client.get("/forget")
    assert client.cookies == {} and client.get("/cookie").text == "none"
    forgetful = InProcessClient(make_app([]), keep_cookies=False, loop=loop)
    forgetful.get("/cookie")
    assert forgetful.get("/cookie").text == "none"


def test_with_runs_the_startup_and_shutdown_handlers(loop: asyncio.AbstractEventLoop) -> None:
    events: list[str] = []
    with InProcessClient(make_app(events), loop=loop) as client:
        assert events == ["startup"]
        assert client.get("/hello").ok
    assert events == ["startup", "shutdown"]
    assert not loop.is_closed()  # a loop it was given is the caller's to close


def test_its_own_loop_is_closed_on_exit() -> None:
    client = InProcessClient(make_app([]))
    with client:
        assert client.get("/hello").ok
    with pytest.raises(InvalidState, match="closed"):
        client.get("/hello")


def test_it_takes_an_app() -> None:
    with pytest.raises(TypeError, match="robyn_fast app"):
        InProcessClient(object())  # type: ignore[arg-type]


# -- Robyn's TestClient -------------------------------------------------------------


@pytest.fixture
def robyn() -> Iterator[Any]:
    from robyn_fast import compat

    was = compat.installed()
    compat.install()
    import robyn
    import robyn.testing

    yield robyn
    if not was:
        compat.uninstall()


def test_robyns_testclient_as_its_documentation_uses_it(robyn: Any) -> None:
    from robyn.testing import TestClient, TestResponse

    app = robyn.Robyn(__file__)

    @app.before_request()
    def add_request_id(request: Any) -> Any:
        request.headers.set("X-Request-ID", "test-123")
        return request

    @app.after_request()
    def add_server_header(response: Any) -> Any:
        response.headers.set("X-Server", "Robyn")
        return response

    @app.get("/protected")
    def protected(request: Any) -> Any:
        return request.headers.get("X-Request-ID")

    @app.get("/users/:user_id")
    def get_user(request: Any) -> dict[str, Any]:
        return {"user_id": request.path_params["user_id"]}

    @app.post("/items")
    def create_item(request: Any) -> dict[str, Any]:
        body = request.json()
        return {"id": 1, "name": body["name"]}

    @app.post("/search")
    def search(request: Any) -> dict[str, Any]:
        return {"body": request.body, "q": request.query_params.get("q"), "h": request.headers.get("x-custom")}

    @app.get("/set")
    def set_cookie() -> Any:
        response = robyn.Response(200, {}, "set")
        response.set_cookie("c", "1")
        return response

    with TestClient(app) as client:
        response = client.get("/protected")
        assert isinstance(response, TestResponse)
        assert response.text == "test-123" and response.headers.get("X-Server") == "Robyn"
        assert client.get("/users/42").json() == {"user_id": "42"}
        response = client.post("/items", json_data={"name": "Batarang"})
        assert response.status_code == 200 and response.json()["name"] == "Batarang"
        response = client.post("/search", body="raw body content", headers={"X-Custom": "value"},
                               query_params={"q": "batman"})
        assert response.ok and response.json() == {"body": "raw body content", "q": "batman", "h": "value"}
        assert client.post("/search", json_data={"ignored": 1}, body="wins").json()["body"] == "wins"
        assert client.get("/nonexistent").status_code == 404
        client.get("/set")
        assert client.get("/protected").ok and client.cookies is None  # Robyn's keeps no cookies


def test_robyns_testclient_with_sessions_and_pydantic(robyn: Any) -> None:
    pytest.importorskip("pydantic")
    from robyn.testing import TestClient

    app = robyn.Robyn(__file__)
    app.configure_sessions(secret_key="s", cookie_name="robyn_session")

    @app.post("/item")
    def item(request: Any, it: Item) -> Item:
        request.session["last"] = it.name
        return it

    @app.get("/last")
    def last(request: Any) -> Any:
        return {"last": request.session.get("last")}

    client = TestClient(app)
    response = client.post("/item", json_data={"name": "x"})
    assert response.json() == {"name": "x"}
    cookie = response.headers.get("set-cookie").split(";")[0]
    assert client.get("/last", headers={"Cookie": cookie}).json() == {"last": "x"}
    assert client.post("/item", json_data={}).status_code == 422
    client.close()
