"""Handler parameters bound by name and by annotation (at registration),
files and served directories, cookies, form bodies, templates, and the
Robyn-mode choices of the compat app (lenient binding, ``str()`` of other
return values, "Not found"); real servers on both loops, real files."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robyn_fast import Config, Robyn, compat
from robyn_fast.exceptions import UnboundParameter
from robyn_fast.http.files import serve_file, serve_html
from robyn_fast.http.params import Body, JsonBody, Method, PathParams
from robyn_fast.http.types import Headers, QueryParams, Request, Response, Url
from robyn_fast.templating import JinjaTemplate

from .server_helpers import LOOPS, running
from .test_middlewares import fetch


class Item(Body):
    name: str


class Filters(QueryParams):
    pass


def make_app(root: Path) -> Robyn:
    app = Robyn(__file__)

    @app.post("/typed/:id")
    def typed(item: Item, filters: Filters, verb: Method, where: Url, params: PathParams,
              h: Headers, req: Request) -> dict[str, Any]:
        return {"body": item, "q": filters.to_dict(), "method": verb, "path": where.path, "params": params,
                "ua": h.get("x-ua"), "same": req.headers is h}

    @app.post("/named")
    def named(body: str, query_params: QueryParams, method: str, url: Url, ip_addr: str | None) -> dict[str, Any]:
        return {"body": body, "q": query_params.to_dict(), "method": method, "path": url.path, "ip": ip_addr}

    @app.get("/file")
    def file() -> Response:
        return serve_file(str(root / "report.txt"))

    @app.get("/page")
    def page() -> Response:
        return serve_html(str(root / "page.html"))

    @app.get("/template")
    def template() -> Response:
        return JinjaTemplate(str(root / "templates")).render_template("hi.html", name="Ann")

    @app.get("/cookies")
    def cookies() -> Response:
        response = Response(200, {}, "c")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2", path="/", http_only=True, secure=True, same_site="Lax", max_age=60)
        response.set_cookie("a", "3")
        return response

    @app.post("/form")
    def form(request: Request) -> dict[str, Any]:
        return {"fields": request.form_data, "files": {k: v.decode() for k, v in request.files.items()}}

    app.serve_directory("/static", str(root / "site"), index_file="index.html")
    app.serve_directory("/list", str(root / "site"), show_files_listing=True)

    @app.get("/static/api")
    def api() -> str:
        return "route wins"

    return app


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "report.txt").write_text("quarterly")
    (tmp_path / "page.html").write_text("<html>page</html>")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hi.html").write_text("<p>Hello {{ name }}</p>")
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("<html>home</html>")
    (site / "style.css").write_text("body{}")
    (site / "sub" / "a.txt").write_text("A")
    (tmp_path / "secret.txt").write_text("do not serve")
    return tmp_path


@pytest.fixture(params=LOOPS)
def server(request: pytest.FixtureRequest, root: Path) -> Iterator[Any]:
    with running(make_app(root), request.param) as srv:
        yield srv


def test_parameters_by_annotation(server: Any) -> None:
    status, _, body = fetch(server.port, "POST", "/typed/7?a=1&a=2", {"x-ua": "t"}, b"payload")
    assert status == 200
    assert json.loads(body) == {"body": "payload", "q": {"a": ["1", "2"]}, "method": "POST", "path": "/typed/7",
                                "params": {"id": "7"}, "ua": "t", "same": True}


def test_parameters_by_name(server: Any) -> None:
    out = json.loads(fetch(server.port, "POST", "/named?x=y", body=b"b")[2])
    assert out == {"body": "b", "q": {"x": ["y"]}, "method": "POST", "path": "/named", "ip": "127.0.0.1"}


def test_unbindable_parameter_refused_at_registration() -> None:
    app = Robyn(__file__)

    class Opaque:
        pass

    def opaque(request: Request, thing: Opaque) -> None:
        return None

    with pytest.raises(UnboundParameter, match="cannot bind parameter 'thing' of HTTP handler .* for '/x'"):
        app.add_route("GET", "/x", opaque)
    def mapping(pairs: dict[str, int]) -> None:
        return None

    with pytest.raises(UnboundParameter, match="'pairs'.*none of str, int, float, bool"):
        app.add_route("GET", "/y", mapping)
    # A parameter of another name is a query parameter (Robyn 0.80+): bound, read per request.
    app.add_route("GET", "/lone", lambda rq: None)
    def annotated(whatever: Request) -> None:
        return None

    for n, ok in enumerate((lambda request: None, lambda req: None, lambda r: None, annotated)):
        app.add_route("GET", f"/fine/{n}", ok)


class Reading(JsonBody):
    celsius: float


@pytest.mark.parametrize("loop", LOOPS)
def test_json_body(loop: str) -> None:
    app = Robyn(__file__)

    @app.post("/bare")
    def bare(data: JsonBody) -> Any:
        return data

    @app.post("/typed")
    async def typed(request: Request, reading: Reading) -> dict[str, Any]:
        return {"f": reading["celsius"] * 9 / 5 + 32}

    with running(app, loop) as srv:
        status, _, body = fetch(srv.port, "POST", "/bare", body=b'{"a": [1, 2]}')
        assert (status, json.loads(body)) == (200, {"a": [1, 2]})
        status, _, body = fetch(srv.port, "POST", "/typed", body=b'{"celsius": 100}')
        assert (status, json.loads(body)) == (200, {"f": 212.0})
        for path in ("/bare", "/typed"):
            status, headers, body = fetch(srv.port, "POST", path, body=b"{not json")
            assert status == 400 and headers["content-type"] == "application/json"
            assert json.loads(body)["error"].startswith("Invalid JSON body: ")
        assert fetch(srv.port, "POST", "/bare", body=b"")[0] == 400


def test_files(server: Any) -> None:
    status, headers, body = fetch(server.port, "GET", "/file")
    assert (status, body) == (200, b"quarterly")
    assert headers["content-disposition"] == "attachment; filename=report.txt"
    assert headers["content-type"].startswith("text/plain")
    status, headers, body = fetch(server.port, "GET", "/page")
    assert (status, body, headers["content-type"]) == (200, b"<html>page</html>", "text/html")


def test_served_directory(server: Any) -> None:
    assert fetch(server.port, "GET", "/static")[::2] == (200, b"<html>home</html>")
    status, headers, body = fetch(server.port, "GET", "/static/style.css")
    assert (status, body, headers["content-type"]) == (200, b"body{}", "text/css")
    assert fetch(server.port, "GET", "/static/sub/a.txt")[2] == b"A"
    assert fetch(server.port, "GET", "/static/api")[2] == b"route wins"
    assert fetch(server.port, "GET", "/static/missing.txt")[0] == 404
    assert fetch(server.port, "GET", "/static/sub")[0] == 404  # no index there, no listing
    for escape in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/sub/..%2F..%2Fsecret.txt"):
        assert fetch(server.port, "GET", escape)[0] == 404, escape
    status, _, body = fetch(server.port, "GET", "/list/sub")
    assert status == 200 and b'href="/list/sub/a.txt"' in body


def test_template(server: Any) -> None:
    status, headers, body = fetch(server.port, "GET", "/template")
    assert (status, body) == (200, b"<p>Hello Ann</p>")
    assert headers["content-type"] == "text/html; charset=utf-8"


def test_cookies(server: Any) -> None:
    _, headers, _ = fetch(server.port, "GET", "/cookies")
    assert headers.get_all("set-cookie") == ["b=2; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax", "a=3"]


def test_cookie_values_are_checked() -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        Response(200, {}, "").set_cookie("a", "x; Path=/evil")
    with pytest.raises(ValueError, match="token"):
        Response(200, {}, "").set_cookie("a b", "x")


def test_forms(server: Any) -> None:
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n").encode()
    out = json.loads(fetch(server.port, "POST", "/form", {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                           body)[2])
    assert out == {"fields": {"title": "hello"}, "files": {"a.txt": "file body"}}
    out = json.loads(fetch(server.port, "POST", "/form", {"Content-Type": "application/x-www-form-urlencoded"},
                           b"a=1&b=x+y")[2])
    assert out == {"fields": {"a": "1", "b": "x y"}, "files": {}}
    out = json.loads(fetch(server.port, "POST", "/form", {"Content-Type": "multipart/form-data; boundary=q"},
                           b"garbage")[2])
    assert out == {"fields": {}, "files": {}}


# -- the compat app: Robyn's choices --------------------------------------------------


@pytest.fixture
def shim() -> Iterator[None]:
    compat.install()
    try:
        yield
    finally:
        compat.uninstall()


@pytest.mark.parametrize("loop", LOOPS)
def test_robyn_mode(shim: None, loop: str) -> None:
    from robyn import Robyn as CompatRobyn

    app = CompatRobyn(__file__)

    @app.get("/int")
    def as_int() -> int:
        return 200

    @app.get("/none")
    def as_none() -> None:
        return None

    @app.get("/broken")
    def broken(vishnu: str, other: str) -> str:  # Robyn 0.80+: query parameters, 400 when missing
        return vishnu

    @app.get("/seen")
    def seen(headers: Headers) -> str:
        return f"{headers.get('server')} {headers.get('x-req')}"

    @app.before_request("/guarded")
    def guard() -> Response:
        return Response(403, {}, "no")

    @app.get("/guarded")
    def guarded_get() -> str:
        return "get"

    @app.post("/guarded")
    def guarded_post() -> str:
        return "post"

    app.set_response_header("server", "robyn")
    app.set_request_header("x-req", "r")
    with running(app, loop) as srv:
        # Robyn's endpoint middlewares are for GET only.
        assert fetch(srv.port, "GET", "/guarded")[0] == 403
        assert fetch(srv.port, "POST", "/guarded")[::2] == (200, b"post")
        # Robyn 0.77: the request carries the global response headers too.
        assert fetch(srv.port, "GET", "/seen")[2] == b"robyn r"
        assert fetch(srv.port, "GET", "/int")[2] == b"200"
        assert fetch(srv.port, "GET", "/none")[2] == b"None"
        assert fetch(srv.port, "GET", "/broken")[::2] == (400, b"Missing required parameter: 'vishnu'")
        assert fetch(srv.port, "GET", "/broken?vishnu=v&other=o")[2] == b"v"
        assert fetch(srv.port, "GET", "/nowhere")[::2] == (404, b"Not found")


def test_robyn_event_handlers_and_cors_headers(shim: None) -> None:
    from robyn import ALLOW_CORS, Robyn as CompatRobyn
    from robyn.events import Events

    app = CompatRobyn(__file__)

    async def down() -> None:
        return None

    app.startup_handler(lambda: None)
    app.shutdown_handler(down)
    assert app.event_handlers[Events.SHUTDOWN].is_async is True
    assert app.event_handlers[Events.STARTUP].number_of_params == 0
    ALLOW_CORS(app, ["*"])
    assert app.response_headers.get("access-control-allow-origin") == "*"


@pytest.mark.parametrize("loop", LOOPS)
def test_robyn_add_route_takes_is_const(shim: None, loop: str) -> None:
    from robyn import Robyn as CompatRobyn

    app = CompatRobyn(__file__)
    calls: list[int] = []

    def counted() -> str:
        calls.append(1)
        return "same"

    app.add_route("GET", "/const", counted, is_const=True)
    with running(app, loop) as srv:
        assert fetch(srv.port, "GET", "/const")[2] == b"same"
        assert fetch(srv.port, "GET", "/const")[2] == b"same"
    assert len(calls) == 1  # answered from the cache the second time


@pytest.mark.parametrize("loop", LOOPS)
def test_robyn_binding_and_http_exception(shim: None, loop: str) -> None:
    from robyn import Robyn as CompatRobyn
    from robyn.exceptions import HTTPException

    # Robyn 0.77-0.79's rules: a parameter no rule binds answers 500 (0.80+ reads it from the query).
    plain = CompatRobyn(__file__, config=Config(robyn_version="0.79"))
    handled = CompatRobyn(__file__, config=Config(robyn_version="0.79"))
    seen: list[Exception] = []

    @handled.exception
    def to_status(exc: Exception) -> Response:
        seen.append(exc)
        if isinstance(exc, HTTPException):
            return Response(exc.status_code, {}, exc.detail)
        return Response(599, {}, type(exc).__name__)

    for app in (plain, handled):
        @app.get("/lone")
        def lone(rq: Any) -> str:  # Robyn: "Unexpected request params found", 500; the app still starts
            return "never"

        @app.get("/teapot")
        def teapot() -> str:
            raise HTTPException(418)

    with running(plain, loop) as srv:
        assert fetch(srv.port, "GET", "/lone")[0] == 500
        assert fetch(srv.port, "GET", "/teapot")[0] == 500  # Robyn gives HTTPException no status of its own
    with running(handled, loop) as srv:
        assert fetch(srv.port, "GET", "/teapot")[::2] == (418, b"I'm a Teapot")
        assert fetch(srv.port, "GET", "/lone")[::2] == (599, b"UnboundParameter")
    assert isinstance(seen[0], HTTPException) and isinstance(seen[1], TypeError)
