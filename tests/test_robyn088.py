"""What Robyn 0.80-0.88 added to the app API, natively and for Robyn apps:
``SubRouter("/prefix")`` without a file and nested sub-routers, typed
("easy access") handler parameters, ``status_code``/``deprecated``/
``include_in_schema``/``responses`` on routes, TypedDict bodies,
before-request middlewares answering with plain values, and
``Config.robyn_version`` for apps written for Robyn 0.77-0.79.

The Robyn app (tests/robyn_apps/robyn088_app.py, ``from robyn import ...``)
runs through ``python -m robyn_fast`` on uvloop and asyncio; the native
features run in-process on both loops."""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket as wsclient

from robyn_fast import Config, Robyn, compat
from robyn_fast.binding import converter
from robyn_fast.exceptions import InvalidParameter, InvalidState, UnboundParameter
from robyn_fast.http.types import Request, Response, Url
from robyn_fast.subrouter import SubRouter

from .process_helpers import serve_script
from .server_helpers import LOOPS, running
from .test_middlewares import fetch

APP = Path("tests") / "robyn_apps" / "robyn088_app.py"
TIMEOUT = 5.0


# -- SubRouter's arguments ------------------------------------------------------------------


def test_subrouter_forms(tmp_path: Path) -> None:
    here = __file__
    assert SubRouter("/users").prefix == "/users"
    assert SubRouter("users").prefix == "users"  # a prefix without its slash is still a prefix
    assert SubRouter(prefix="/users").prefix == "/users"
    assert SubRouter().prefix == ""
    legacy = SubRouter(here, prefix="/x")
    assert (legacy.prefix, legacy.file_path) == ("/x", here)
    assert SubRouter(here, "/x").prefix == "/x"
    assert SubRouter("pkg.module", prefix="/x").prefix == "/x"  # a module's __name__
    assert SubRouter(here).prefix == ""  # a lone __file__
    assert SubRouter("__main__").prefix == ""
    config = Config(max_body_size=1024)
    assert SubRouter(here, "/x", config).config is config
    assert SubRouter("/x", tags=["t"]).tags == ["t"]


@pytest.mark.parametrize("args, kwargs, message", [
    ((42,), {}, "first argument must be a str"),
    (("/a", "/b", None, "extra"), {}, "at most 3 positional arguments"),
    ((__file__, "/a"), {"prefix": "/b"}, "prefix twice"),
    ((__file__,), {"file_object": __file__, "prefix": "/b"}, "file twice"),
    ((), {"prefix": 3}, "prefix must be a str"),
    ((), {"file_object": 3}, "file_object must be a str"),
    ((), {"tags": "api"}, "tags must be a list of str"),
    ((__file__, "/a", Config()), {"config": Config()}, "config twice"),
])
def test_subrouter_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        SubRouter(*args, **kwargs)


# -- typed parameters -----------------------------------------------------------------------


class Size(enum.Enum):
    S = "s"
    L = "l"


def test_converters() -> None:
    assert converter(int).convert("7") == 7  # type: ignore[union-attr]
    flag = converter(bool)
    assert flag is not None
    words = ("true", "1", "YES", "on", "false", "0", "no", "off", "")
    assert [flag.convert(t) for t in words] == [True] * 4 + [False] * 5
    with pytest.raises(ValueError):
        flag.convert("maybe")
    listed = converter(list[int])
    assert listed is not None and listed.many and listed.type_name == "int"
    maybe = converter(int | None)
    assert maybe is not None and maybe.optional
    assert converter(Size).convert("l") is Size.L  # type: ignore[union-attr]
    assert converter(uuid.UUID) is not None and converter(datetime.date) is not None
    for unusable in (dict[str, int], int | str, object, list[object]):
        assert converter(unusable) is None


class Point:
    """A response model shaped as pydantic 2 models are (``model_validate``,
    ``model_dump_json``), without pydantic."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> Point:
        if not isinstance(data.get("x"), int) or not isinstance(data.get("y"), int):
            raise ValueError(f"not a point: {data!r}")
        return cls(data["x"], data["y"])

    def model_dump_json(self) -> str:
        return json.dumps({"x": self.x, "y": self.y}, separators=(",", ":"))


def make_native() -> Robyn:
    app = Robyn(__file__)
    api = SubRouter("/api")
    v1 = SubRouter(prefix="/v1")

    @v1.before_request()
    def inner(request: Request) -> Request:
        request.headers.set("x-order", (request.headers.get("x-order") or "") + "v1")
        return request

    @api.before_request()
    def outer(request: Request) -> Request:
        request.headers.set("x-order", (request.headers.get("x-order") or "") + "api,")
        return request

    @v1.get("/items/:id")
    def item(request: Request, id: int, q: str, page: int = 1, size: Size | None = None) -> dict[str, Any]:
        return {"id": id, "q": q, "page": page, "size": size and size.value, "order": request.headers.get("x-order")}

    @v1.get("/many")
    async def many(n: list[float], on: bool = False) -> dict[str, Any]:
        return {"n": n, "on": on}

    @v1.get("/point", response_model=Point, status_code=201)
    def point() -> dict[str, Any]:
        return {"x": 1, "y": 2, "extra": "dropped by the model"}

    @v1.get("/not-a-point", response_model=Point)
    async def not_a_point() -> dict[str, Any]:
        return {"x": "one"}

    @v1.post("/make", status_code=201, deprecated=True)
    def make_v1() -> str:
        return "made"

    api.include_router(v1)
    app.include_router(api)

    @app.post("/made", status_code=201)
    def made() -> dict[str, bool]:
        return {"made": True}

    @app.post("/made-async", status_code=202)
    async def made_async() -> str:
        return "accepted"

    @app.post("/own-status", status_code=201)
    def own_status() -> Response:
        return Response(200, {}, "mine")

    return app


@pytest.fixture(params=LOOPS)
def native(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running(make_native(), request.param) as srv:
        yield srv


def test_nested_subrouters_and_typed_parameters(native: Any) -> None:
    status, _, body = fetch(native.port, "GET", "/api/v1/items/42?q=hi&size=s")
    assert status == 200
    assert json.loads(body) == {"id": 42, "q": "hi", "page": 1, "size": "s", "order": "api,v1"}
    assert json.loads(fetch(native.port, "GET", "/api/v1/items/1?q=&page=3")[2])["page"] == 3
    assert fetch(native.port, "GET", "/api/v1/items/abc?q=x")[::2] == (
        400, b"Invalid value 'abc' for parameter 'id': expected int")
    assert fetch(native.port, "GET", "/api/v1/items/1")[::2] == (400, b"Missing required parameter: 'q'")
    assert fetch(native.port, "GET", "/api/v1/items/1?q=x&size=xl")[::2] == (
        400, b"Invalid value 'xl' for parameter 'size': expected Size")
    assert json.loads(fetch(native.port, "GET", "/api/v1/many?n=1.5&n=2&on=yes")[2]) == {"n": [1.5, 2.0], "on": True}
    assert fetch(native.port, "GET", "/api/v1/many")[::2] == (400, b"Missing required parameter: 'n'")
    assert fetch(native.port, "GET", "/v1/items/1?q=x")[0] == 404  # only under the accumulated prefix


def test_route_status_code(native: Any) -> None:
    assert fetch(native.port, "POST", "/made")[::2] == (201, b'{"made":true}')
    assert fetch(native.port, "POST", "/made-async")[::2] == (202, b"accepted")
    assert fetch(native.port, "POST", "/own-status")[::2] == (200, b"mine")  # a Response keeps its own
    assert fetch(native.port, "POST", "/api/v1/make")[::2] == (201, b"made")  # through nested sub-routers


def test_route_response_model(native: Any) -> None:
    status, headers, body = fetch(native.port, "GET", "/api/v1/point")
    assert (status, body, headers["content-type"]) == (201, b'{"x":1,"y":2}', "application/json")
    assert fetch(native.port, "GET", "/api/v1/not-a-point")[0] == 500  # the handler's error, logged


def test_route_arguments_checked() -> None:
    app = Robyn(__file__)
    with pytest.raises(ValueError, match="status_code must be an HTTP status"):
        app.post("/x", status_code=99)(lambda: None)
    with pytest.raises(TypeError, match="responses must be a dict"):
        app.get("/x", responses=[404])(lambda: None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'status_cod'"):
        app.get("/x", status_cod=201)(lambda: None)

    def opaque(thing: dict[str, int]) -> None:
        return None

    with pytest.raises(UnboundParameter, match="'thing'"):
        app.get("/y")(opaque)


def test_openapi_route_arguments() -> None:
    app = Robyn(__file__)

    class Problem(dict):  # type: ignore[type-arg]
        message: str

    @app.post("/made", status_code=201, openapi_tags=["t"])
    def made() -> datetime.datetime:
        """Made"""
        return datetime.datetime.now()

    @app.get("/old", deprecated=True, responses={404: "Missing", 422: {"description": "Bad", "model": Problem}})
    def old() -> str:
        return "old"

    @app.get("/hidden", include_in_schema=False)
    def hidden() -> str:
        return "hidden"

    sub = SubRouter("/sub", tags=["sub"])

    @sub.get("/x", openapi_tags=["x"])
    def x() -> str:
        return "x"

    app.include_router(sub)
    app.serve_openapi()
    with running(app) as srv:
        spec = json.loads(fetch(srv.port, "GET", "/openapi.json")[2])
    made_op = spec["paths"]["/made"]["post"]
    assert list(made_op["responses"]) == ["201"]
    assert made_op["responses"]["201"]["content"]["application/json"]["schema"] == {
        "type": "string", "format": "date-time"}
    old_op = spec["paths"]["/old"]["get"]
    assert old_op["deprecated"] is True
    assert old_op["responses"]["404"] == {"description": "Missing"}
    assert old_op["responses"]["422"]["content"]["application/json"]["schema"]["properties"] == {
        "message": {"type": "string"}}
    assert "/hidden" not in spec["paths"]
    assert spec["paths"]["/sub/x"]["get"]["tags"] == ["sub", "x"]


# -- a Robyn 0.88 app through `python -m robyn_fast` -------------------------------------------


@contextlib.contextmanager
def served(loop_kind: str, args: list[str] | None = None) -> Iterator[str]:
    with serve_script(APP, loop_kind, args=args, module=True) as server:
        yield f"127.0.0.1:{server.port}"


def call(base: str, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{base}{path}", data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module", params=LOOPS)
def robyn088(request: pytest.FixtureRequest) -> Iterator[str]:
    with served(request.param) as base:
        yield base


def test_robyn_subrouters(robyn088: str) -> None:
    status, headers, body = call(robyn088, "/api/v1/items/7?q=hi&page=2&color=blue")
    assert status == 200
    assert json.loads(body) == {"id": 7, "q": "hi", "page": 2, "color": "blue", "v1": "yes"}
    assert headers["x-v1-after"] == "yes"  # the nested router's endpoint middleware, under its full path
    assert call(robyn088, "/api/top")[2] == b"not v1"  # v1's middlewares are v1's own
    assert json.loads(call(robyn088, "/api/v1/added")[2]) == {"added": True}
    assert call(robyn088, "/api/v1/dep")[2] == b"v1 dependency"
    assert call(robyn088, "/legacy/ping")[2] == b"pong"
    conn = wsclient.create_connection(f"ws://{robyn088}/api/v1/ws?room=r1", timeout=TIMEOUT)
    try:
        assert conn.recv() == "v1 hello"
        conn.send("hi")
        assert conn.recv() == "r1: hi"
    finally:
        conn.close()


def test_robyn_typed_parameters(robyn088: str) -> None:
    assert call(robyn088, "/api/v1/items/x?q=a")[::2] == (400, b"Invalid value 'x' for parameter 'id': expected int")
    assert call(robyn088, "/api/v1/items/1")[::2] == (400, b"Missing required parameter: 'q'")
    assert json.loads(call(robyn088, "/api/v1/tags?tag=a&tag=b&exact=1")[2]) == {
        "tags": ["a", "b"], "limit": None, "exact": True}
    assert call(robyn088, "/unknown")[::2] == (400, b"Missing required parameter: 'vishnu'")
    assert call(robyn088, "/unknown?vishnu=v")[2] == b"v"


def test_robyn_route_extras(robyn088: str) -> None:
    assert call(robyn088, "/created", "POST", b"{}")[::2] == (201, b'{"created":true}')
    assert json.loads(call(robyn088, "/pair", "POST", b'{"name": "n", "value": 21}')[2]) == {
        "name": "n", "doubled": 42}
    status, headers, body = call(robyn088, "/pair", "POST", b"not json")
    assert status == 400 and json.loads(body)["error"].startswith("Invalid JSON body")
    status, headers, body = call(robyn088, "/blocked")
    assert (status, body, headers["x-why"], headers["x-after"]) == (403, b"denied", "blocked", "ran")
    spec = json.loads(call(robyn088, "/openapi.json")[2])
    assert spec["paths"]["/api/v1/items/{id}"]["get"]["tags"] == ["api", "items"]
    assert spec["paths"]["/api/v1/items/{id}"]["get"]["description"] == "One item"
    assert "201" in spec["paths"]["/created"]["post"]["responses"]
    assert spec["paths"]["/deprecated"]["get"]["deprecated"] is True
    assert spec["paths"]["/deprecated"]["get"]["responses"]["404"]["description"] == "No such thing"
    assert "/hidden" not in spec["paths"]
    assert spec["paths"]["/pair"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"] == {
        "name": {"type": "string"}, "value": {"type": "integer"}}


def test_robyn_version_079() -> None:
    """``--robyn-version 0.79``: a parameter Robyn 0.77-0.79 cannot bind answers 500, as there."""
    with served("uvloop", ["--robyn-version", "0.79"]) as base:
        assert call(base, "/unknown?vishnu=v")[0] == 500
        assert call(base, "/api/v1/items/7?q=hi")[0] == 500  # q: no query parameters by name before 0.80
        assert call(base, "/api/v1/dep")[::2] == (200, b"v1 dependency")


def test_robyn_version_setting() -> None:
    assert Config().robyn_version == "0.88"
    assert Config(robyn_version="0.77").robyn_version == "0.77"
    for bad in ("0.76", "0.89", "1.0", "latest"):
        with pytest.raises(ValueError, match="Robyn release from 0.77 to 0.88"):
            Config(robyn_version=bad)
    with pytest.raises(TypeError):
        Config(robyn_version=0.79)  # type: ignore[arg-type]


@pytest.fixture()
def shim() -> Iterator[None]:
    compat.install()
    try:
        yield
    finally:
        compat.uninstall()


def test_robyn_088_names(shim: None) -> None:
    import robyn
    from robyn.openapi import OpenAPI, RouteOpenAPIMeta
    from robyn.types import QueryParamValidationError

    assert robyn.RequestURL is Url and robyn.RequestBody == str | bytes
    assert "PATCH" in robyn.RequestMethod.__args__
    err = QueryParamValidationError("id", "abc", int)
    assert isinstance(err, InvalidParameter) and err.status_code == 400
    assert err.detail == err.message == "Invalid value 'abc' for parameter 'id': expected int"
    assert QueryParamValidationError("q", None, str).detail == "Missing required parameter: 'q'"

    def handler() -> str:
        """Docstring"""
        return ""

    spec = OpenAPI()
    spec.add_openapi_path_obj("post", "/made", "made", ["t"], handler, meta=RouteOpenAPIMeta(
        status_code=201, deprecated=True, summary="Make", description="Makes", operation_id="make"))
    spec.add_openapi_path_obj("get", "/hidden", "", [], handler, meta=RouteOpenAPIMeta(include_in_schema=False))
    operation = spec.openapi_spec["paths"]["/made"]["post"]
    assert (operation["summary"], operation["description"], operation["operationId"]) == ("Make", "Makes", "make")
    assert operation["deprecated"] is True and list(operation["responses"]) == ["201"]
    assert "/hidden" not in spec.openapi_spec["paths"]


def test_registering_on_an_included_subrouter_is_refused() -> None:
    app = Robyn(__file__)
    outer, inner = SubRouter("/outer"), SubRouter("/inner")
    outer.include_router(inner)
    app.include_router(outer)
    with pytest.raises(InvalidState, match=r"route GET '/inner/late'.*already included"):
        inner.get("/late")(lambda: "never served")
    with pytest.raises(InvalidState, match="already included"):
        outer.include_router(SubRouter("/more"))
    with pytest.raises(InvalidState, match="WebSocket endpoint '/outer/ws'"):
        @outer.websocket("/ws")
        async def ws(websocket: Any) -> None: ...
    with pytest.raises(ValueError, match="already included in another app or router"):
        Robyn(__file__).include_router(inner)


def test_compat_subrouter_logs_a_late_route(shim: None, caplog: pytest.LogCaptureFixture) -> None:
    from robyn import Robyn as CompatRobyn
    from robyn import SubRouter as CompatSubRouter

    app, sub = CompatRobyn(__file__), CompatSubRouter("/sub")
    app.include_router(sub)
    sub.get("/late")(lambda: "never served")  # loads, as on Robyn, and says so
    assert "route GET '/sub/late' is registered on a SubRouter already included: it is not served" in caplog.text
