"""Running Robyn apps unchanged: ``python -m robyn_fast app.py`` and the
``robyn`` shim (robyn_fast.compat).

The server tests start tests/robyn_apps/base_routes_ws.py, written with
``from robyn import ...`` for Robyn's legacy WebSocket API, as a subprocess
through ``python -m robyn_fast`` with Robyn's own command-line flags after the
script, on uvloop and on asyncio, and replay the message sequences of Robyn's
``integration_tests/test_web_sockets.py`` with websocket-client. Where Robyn's
test asserted one of its bugs, the correct behaviour is asserted instead and a
comment says so.

The shim tests install it in this process (and remove it afterwards) to check
which names resolve and how unsupported ones fail.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket as wsclient

import robyn_fast
import robyn_fast.openapi
from robyn_fast import compat
from robyn_fast.exceptions import InvalidState

from .process_helpers import ROOT, ServerProcess, serve_script
from .server_helpers import LOOPS, wait_for

APP = Path("tests") / "robyn_apps" / "base_routes_ws.py"  # relative to ROOT, as a user types it
ROBYN_FLAGS = ["--processes", "1", "--workers", "1", "--log-level", "DEBUG"]  # read by app.start(): one process
TIMEOUT = 5.0  # every receive and HTTP request


# -- running a script through `python -m robyn_fast` -------------------------------------------


class Served:
    def __init__(self, server: ServerProcess) -> None:
        assert server.port is not None
        self.server = server
        self.port = server.port
        self.proc = server.proc
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.http_url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.server.output()

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.http_url + path, timeout=TIMEOUT) as resp:
            return json.loads(resp.read())


@contextlib.contextmanager
def serve_with_robyn_fast(script: Path, args: list[str] | None = None, loop_kind: str = "uvloop") -> Iterator[Served]:
    """``python -m robyn_fast script *args`` from the repository root with
    ROBYN_HOST/ROBYN_PORT set (the port the kernel picks); stopped with SIGTERM."""
    with serve_script(script, loop_kind, args=args, module=True) as server:
        yield Served(server)


@pytest.fixture(scope="module", params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The Robyn app, started with Robyn's CLI flags after the script: they
    must reach the script untouched and change nothing."""
    with serve_with_robyn_fast(APP, ROBYN_FLAGS, loop_kind=request.param) as served:
        yield served
    output = served.output()
    assert served.proc.returncode == 0, output
    # The only handler errors are the ones test_handler_error_... provokes.
    assert output.count("Traceback") == output.count("ValueError: boom, as asked"), output


@contextlib.contextmanager
def client(url: str) -> Iterator[wsclient.WebSocket]:
    conn = wsclient.create_connection(url, timeout=TIMEOUT)
    try:
        yield conn
    finally:
        with contextlib.suppress(wsclient.WebSocketException, OSError):
            conn.close(timeout=1)


def expect_close(conn: wsclient.WebSocket, code: int) -> None:
    """The next frame is a Close with ``code``; answer it."""
    frame = conn.recv_frame()
    assert frame.opcode == wsclient.ABNF.OPCODE_CLOSE, (frame.opcode, frame.data)
    assert int.from_bytes(frame.data[:2], "big") == code
    with contextlib.suppress(wsclient.WebSocketException, OSError):
        conn.send_close()


# -- Robyn's WebSocket scenarios -------------------------------------------------------------


def test_web_socket(server: Served) -> None:
    with client(f"{server.ws_url}/web_socket?one=hi&two=hello") as ws:
        assert ws.recv() == "Hello world, from ws"

        # Robyn's test sorts these three because Robyn delivered them in any
        # order; robyn_fast sends a handler's messages in the order it sends
        # them, its return value last.
        ws.send("My name is?")
        assert [ws.recv() for _ in range(3)] == ["This is a broadcast message", "This is a message to self",
                                                 "Whaaat??"]
        ws.send("My name is?")
        assert ws.recv() == "Whooo??"
        ws.send("My name is?")
        assert [ws.recv() for _ in range(3)] == ["hi", "hello", "*chika* *chika* Slim Shady."]

        # Robyn's test expects the text "Connection closed" here: its close()
        # sent that string as a message. robyn_fast's close() sends a Close
        # frame (RFC 6455 §5.5.1) with 1000 and no text message.
        ws.send("test")
        expect_close(ws, 1000)


def test_web_socket_broadcast_reaches_the_other_connections(server: Served) -> None:
    with client(f"{server.ws_url}/web_socket?one=a&two=b") as first, \
            client(f"{server.ws_url}/web_socket?one=c&two=d") as second:
        assert first.recv() == second.recv() == "Hello world, from ws"
        first.send("My name is?")
        assert [first.recv() for _ in range(3)] == ["This is a broadcast message", "This is a message to self",
                                                    "Whaaat??"]
        # Only the broadcast reaches the second connection; its own state is untouched.
        assert second.recv() == "This is a broadcast message"
        second.send("My name is?")
        assert [second.recv() for _ in range(3)] == ["This is a broadcast message", "This is a message to self",
                                                     "Whaaat??"]
        assert first.recv() == "This is a broadcast message"


def test_web_socket_json(server: Served) -> None:
    with client(f"{server.ws_url}/web_socket_json") as ws:
        assert ws.recv() == "Hello world, from ws"
        msg = "My name is?"
        ids = set()
        for expected in ("Whaaat??", "Whooo??", "*chika* *chika* Slim Shady.", "Whaaat??"):
            ws.send(msg)
            resp = json.loads(ws.recv())
            assert resp["resp"] == expected
            assert resp["msg"] == msg
            ids.add(resp["ws_id"])
        assert len(ids) == 1


def test_websocket_di(server: Served) -> None:
    closes_before = len(server.get_json("/web_socket_di/closes"))
    with client(f"{server.ws_url}/web_socket_di") as ws:
        # connect handler (global_dependencies, router_dependencies)
        assert ws.recv() == "GLOBAL DEPENDENCY ROUTER DEPENDENCY"
        # message handler (ws, msg, global_dependencies, router_dependencies), stable across messages
        ws.send("test")
        assert ws.recv() == "handler: GLOBAL DEPENDENCY ROUTER DEPENDENCY"
        ws.send("test again")
        assert ws.recv() == "handler: GLOBAL DEPENDENCY ROUTER DEPENDENCY"
    # close handler (global_dependencies) alone
    assert wait_for(lambda: len(server.get_json("/web_socket_di/closes")) == closes_before + 1)
    assert server.get_json("/web_socket_di/closes")[-1] == "GLOBAL DEPENDENCY"


def test_websocket_empty_returns(server: Served) -> None:
    with client(f"{server.ws_url}/web_socket_empty_returns") as ws:
        ws.send("test message")
        ws.send("another one")
        # Handlers returning None send nothing: no frame in half a second, and
        # the answer to our Close is the first frame the server sends.
        ws.settimeout(0.5)
        with pytest.raises(wsclient.WebSocketTimeoutException):
            ws.recv()
        ws.settimeout(TIMEOUT)
        ws.send_close(1000)
        frame = ws.recv_frame()
        assert frame.opcode == wsclient.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1000


def test_handler_error_neither_kills_the_server_nor_the_connection(server: Served) -> None:
    # Robyn's legacy server could die of an exception in a WebSocket handler;
    # robyn_fast logs it, sends nothing for that message and goes on.
    with client(f"{server.ws_url}/web_socket_raise") as ws:
        ws.send("boom")
        ws.send("still there?")
        assert ws.recv() == "still there?"
    assert server.proc.poll() is None
    assert wait_for(lambda: "boom, as asked" in server.output())


def test_http_routes_of_the_robyn_app(server: Served) -> None:
    assert server.get_json("/sync/queries?a=1&a=2&b=x") == {"a": ["1", "2"], "b": ["x"]}


def test_robyn_html_is_a_text_html_response(server: Served) -> None:
    with urllib.request.urlopen(server.http_url + "/sync/html", timeout=TIMEOUT) as resp:
        assert resp.status == 200
        assert resp.headers.get_all("content-type") == ["text/html"]  # as Robyn sends it: no charset
        assert resp.read() == "<h1>Hello, world! \u00e9</h1>".encode()


def test_robyn_cli_flags_reach_the_script(server: Served) -> None:
    assert server.get_json("/argv") == [str(APP), *ROBYN_FLAGS]


# -- python -m robyn_fast --------------------------------------------------------------------


def run_main(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "robyn_fast", *args], cwd=str(cwd), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "no script given"),
        (("no/such/app.py", "--dev"), "'no/such/app.py': no such file"),
        (("tests",), "'tests': not a file"),
        (("--processes", "2", str(APP)), "unknown option '--processes'"),
    ],
)
def test_usage_errors_print_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    result = run_main(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("robyn_fast: ") and needle in lines[0]
    assert "usage: python -m robyn_fast path/to/app.py [args...]" in lines[0]


def test_help() -> None:
    result = run_main("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m robyn_fast path/to/app.py [args...]")


def test_usage_error_loads_neither_the_shim_nor_runpy() -> None:
    code = ("import sys; import robyn_fast.__main__ as m; rc = m.main([]); "
            "print(rc, 'robyn_fast.compat' in sys.modules, 'runpy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == ["2", "False", "False"]


def test_script_runs_as_main_with_its_args_and_its_directory_on_sys_path(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 'from the script directory'\n")
    (tmp_path / "app.py").write_text(
        "import json, sys\n"
        "import robyn\n"
        "from robyn import Robyn\n"
        "import helper\n"
        "app = Robyn(__file__)\n"
        "if __name__ == '__main__':\n"
        "    print(json.dumps({'argv': sys.argv, 'helper': helper.VALUE, 'robyn': robyn.__name__,\n"
        "                      'app': type(app).__mro__[1].__module__}))\n"
        "    sys.exit(3)\n"
    )
    result = run_main(str(tmp_path / "app.py"), *ROBYN_FLAGS, "--", "x y", cwd=tmp_path.parent)
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout) == {
        "argv": [str(tmp_path / "app.py"), *ROBYN_FLAGS, "--", "x y"],
        "helper": "from the script directory",
        "robyn": "robyn",
        "app": "robyn_fast.app",
    }


def test_unsupported_import_in_a_script_names_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from robyn import Robyn, MCPApp\n")
    result = run_main(str(tmp_path / "app.py"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "robyn_fast.compat.UnsupportedRobynFeature: robyn_fast does not support robyn.MCPApp " \
                   "(MCP apps)"


# -- the robyn shim, in this process ---------------------------------------------------------


@pytest.fixture
def shim() -> Iterator[None]:
    assert not compat.installed()
    compat.install()
    try:
        yield
    finally:
        compat.uninstall()


def test_supported_names_are_robyn_fasts(shim: None) -> None:
    import robyn
    import robyn.dependency_injection
    import robyn.robyn
    import robyn.status_codes
    import robyn.types
    import robyn.ws
    from robyn import (
        DependencyMap,
        Headers,
        Request,
        Response,
        Robyn,
        WebSocket,
        WebSocketConnector,
        jsonify,
        status_codes,
    )

    assert robyn.__name__ == "robyn"
    assert issubclass(Robyn, robyn_fast.Robyn)
    assert (Request, Response, Headers, WebSocket, WebSocketConnector, jsonify) == (
        robyn_fast.Request, robyn_fast.Response, robyn_fast.Headers, robyn_fast.WebSocket,
        robyn_fast.WebSocketConnector, robyn_fast.jsonify)
    assert DependencyMap is robyn.dependency_injection.DependencyMap
    assert DependencyMap.__module__ == "robyn_fast.dependency_injection"
    assert robyn.ws.WebSocket is WebSocket
    assert (robyn.robyn.QueryParams, robyn.robyn.Request, robyn.robyn.Response, robyn.robyn.Headers,
            robyn.robyn.WebSocketConnector) == (robyn_fast.QueryParams, Request, Response, Headers,
                                                WebSocketConnector)
    assert robyn.robyn.Url.__module__ == "robyn_fast.http.types"
    assert status_codes is robyn.status_codes
    assert (status_codes.HTTP_200_OK, status_codes.HTTP_404_NOT_FOUND, status_codes.HTTP_418_IM_A_TEAPOT,
            status_codes.HTTP_511_NETWORK_AUTHENTICATION_REQUIRED) == (200, 404, 418, 511)
    assert len(status_codes.__all__) == 63
    assert {"PathParams", "Method", "FormData", "Files", "IPAddress", "JSONResponse", "Body"} <= set(dir(robyn.types))
    assert jsonify({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_html_builds_robyns_text_html_response(shim: None) -> None:
    from robyn import Response, html

    page = html("<p>hi</p>")
    assert isinstance(page, Response)
    assert (page.status_code, page.description) == (200, "<p>hi</p>")
    assert page.headers.get("content-type") == "text/html"
    assert html(b"<p>raw</p>").description == b"<p>raw</p>"
    with pytest.raises(TypeError, match="html\\(\\) takes the HTML as a str, not int"):
        html(42)  # type: ignore[arg-type]


def test_app_and_endpoint_work_as_in_robyn(shim: None) -> None:
    from robyn import Robyn, WebSocket

    app = Robyn(__file__)
    ws = WebSocket(app, "/web_socket")

    def handler(ws: Any, msg: str) -> str:
        return msg

    assert ws.on("message")(handler) is handler  # Robyn's on() returned None: decorated names became None
    app.inject(RouterDependency="Router Dependency")
    app.inject_global(GLOBAL_DEPENDENCY="GLOBAL DEPENDENCY")


@pytest.mark.parametrize(
    ("statement", "name"),
    [
        ("from robyn import MCPApp", "robyn.MCPApp"),
        ("from robyn.ws import create_websocket_decorator", "robyn.ws.create_websocket_decorator"),
        ("from robyn.robyn import Cookie", "robyn.robyn.Cookie"),
        ("from robyn.types import Directory", "robyn.types.Directory"),
        ("from robyn.mcp import MCPApp", "robyn.mcp"),
        ("import robyn.argument_parser", "robyn.argument_parser"),
    ],
)
def test_unsupported_names_raise_import_error_naming_them(shim: None, statement: str, name: str) -> None:
    with pytest.raises(ImportError) as info:
        exec(statement, {})
    assert isinstance(info.value, compat.UnsupportedRobynFeature)
    assert str(info.value).startswith(f"robyn_fast does not support {name} (")


def test_unsupported_module_is_a_module_not_found_error(shim: None) -> None:
    with pytest.raises(ModuleNotFoundError, match="robyn_fast does not support robyn.mcp") as info:
        import robyn.mcp  # noqa: F401
    assert info.value.name == "robyn.mcp"


def test_names_robyn_never_had_fail_as_usual(shim: None) -> None:
    import robyn

    assert not hasattr(robyn, "no_such_name")
    assert getattr(robyn, "__path__", None) is not None
    with pytest.raises(ImportError, match="cannot import name 'NoSuchName'"):
        exec("from robyn import NoSuchName", {})
    with pytest.raises(ModuleNotFoundError, match="No module named 'robyn.no_such_module'"):
        exec("import robyn.no_such_module", {})


def test_unsupported_app_method_names_itself(shim: None) -> None:
    from robyn import Robyn

    app = Robyn(__file__)
    with pytest.raises(AttributeError, match=r"robyn_fast does not support Robyn\.mcp \(MCP apps\)"):
        app.mcp()
    assert not hasattr(app, "view")
    with pytest.raises(AttributeError, match="'Robyn' object has no attribute 'no_such_method'"):
        app.no_such_method()


def test_query_params_behave_like_robyns(shim: None) -> None:
    from robyn.robyn import QueryParams

    params = QueryParams()
    assert params.empty() and not params.contains("a") and "a" not in params
    assert params.get("a") is None and params.get("a", "default") == "default"
    assert params.get_first("a") is None and params.get_all("a") is None
    params.set("a", "1")
    params.set("a", "2")  # set appends, as in Robyn
    params.set("b", "x")
    assert not params.empty() and params.contains("a") and "b" in params
    assert params.get("a") == "2"  # the last value
    assert params.get_first("a") == "1"
    assert params.get_all("a") == ["1", "2"]
    assert params.to_dict() == {"a": ["1", "2"], "b": ["x"]}
    other = QueryParams()
    other.set("a", "3")
    other.set("c", "y")
    params.extend(other)
    assert params.to_dict() == {"a": ["1", "2", "3"], "b": ["x"], "c": ["y"]}
    assert other.to_dict() == {"a": ["3"], "c": ["y"]}


def test_install_is_idempotent_and_uninstall_forgets_robyn(shim: None) -> None:
    import robyn

    compat.install()
    assert [type(f).__module__ for f in sys.meta_path].count("robyn_fast.compat") == 1
    compat.uninstall()
    assert "robyn" not in sys.modules and not compat.installed()
    compat.install()
    import robyn as again

    assert again is not robyn and again.WebSocket is robyn.WebSocket


def test_install_refuses_when_robyn_was_imported_first() -> None:
    sys.modules["robyn"] = types.ModuleType("robyn")
    try:
        with pytest.raises(InvalidState, match="robyn package is already imported"):
            compat.install()
        assert not compat.installed()
    finally:
        del sys.modules["robyn"]


def test_openapi_module_as_robyn_defines_it(shim: None, tmp_path: Path) -> None:
    import robyn
    from robyn.openapi import (
        Components,
        Contact,
        ExternalDocumentation,
        License,
        OpenAPI,
        OpenAPIInfo,
        Server,
    )

    assert robyn.OpenAPI is OpenAPI and issubclass(OpenAPI, robyn_fast.openapi.OpenAPI)
    import typing

    from robyn.openapi import str_typed_dict

    assert typing.get_type_hints(str_typed_dict) == {"key": str, "value": str}
    info = OpenAPIInfo(title="Shop", version="2.0", description="d", contact=Contact(name="me", email="a@b.c"),
                       license=License(name="MIT"), servers=[Server(url="https://api.example")],
                       externalDocs=ExternalDocumentation(description="more", url="https://docs.example"),
                       components=Components(schemas={"Item": {"type": "object"}}))
    app = robyn.Robyn(str(tmp_path / "app.py"), openapi=OpenAPI(info=info))

    @app.get("/items/:id", openapi_tags=["items"])
    def item(path_params: Any) -> str:
        """One item."""
        return "x"

    app.openapi.add_openapi_path_obj("get", "/items/:id", "Item", ["items"], item)
    spec = app.openapi.get_openapi_config()
    assert spec["info"] == {"title": "Shop", "version": "2.0", "description": "d",
                            "contact": {"name": "me", "email": "a@b.c"}, "license": {"name": "MIT"}}
    assert spec["servers"] == [{"url": "https://api.example"}]
    assert spec["externalDocs"] == {"description": "more", "url": "https://docs.example"}
    assert spec["components"]["schemas"] == {"Item": {"type": "object"}}
    assert spec["paths"]["/items/{id}"]["get"]["description"] == "One item."
    assert OpenAPI().openapi_spec["externalDocs"] is None  # no url: null, as Robyn writes it
    page = app.openapi.get_openapi_docs_page()
    assert page.status_code == 200 and "SwaggerUIBundle" in str(page.description)
    with pytest.raises(TypeError, match="openapi must be a robyn.openapi.OpenAPI, not dict"):
        robyn.Robyn(str(tmp_path / "app.py"), openapi={})  # type: ignore[arg-type]


def test_openapi_file_is_the_whole_document(shim: None, tmp_path: Path) -> None:
    import robyn

    (tmp_path / "spec.json").write_text(json.dumps({"openapi": "3.1.0", "info": {"title": "T", "version": "9"},
                                                    "paths": {"/only": {}}}))
    app = robyn.Robyn(str(tmp_path / "app.py"), openapi_file_path="spec.json")
    app.openapi.add_openapi_path_obj("get", "/other", "", [], lambda: "x")
    assert app.openapi.openapi_spec["info"]["title"] == "T"
    assert list(app.openapi.openapi_spec["paths"]) == ["/only"]
    other = robyn.Robyn(str(tmp_path / "app.py"))
    other.init_openapi("spec.json")
    assert other.openapi.openapi_spec["info"]["version"] == "9"
    with pytest.raises(FileNotFoundError):
        other.init_openapi("missing.json")


def test_exceptions_as_robyn_defines_them(shim: None) -> None:
    import robyn
    from robyn.exceptions import HTTPException, WebSocketException

    assert robyn.HTTPException is HTTPException
    err = HTTPException(404)
    assert (err.status_code, err.detail, str(err), repr(err)) == (
        404, "Not Found", "404: Not Found", "HTTPException(status_code=404, detail=Not Found)")
    assert HTTPException(418, "tea").detail == "tea"
    with pytest.raises(ValueError):
        HTTPException(999)
    ws = WebSocketException(1008)
    assert (ws.code, ws.reason, str(ws), repr(ws)) == (1008, "", "1008: ", "WebSocketException(code=1008, reason=)")
    assert isinstance(err, robyn_fast.exceptions.RobynFastError) and isinstance(ws, Exception)


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_docs_served_unless_disable_openapi(tmp_path: Path, loop_kind: str) -> None:
    (tmp_path / "app.py").write_text(
        "from robyn import Robyn\n"
        "app = Robyn(__file__)\n"
        "@app.get('/hello')\n"
        "def hello():\n"
        "    return 'hi'\n"
        "app.start()\n")
    for args, expected in (([], 200), (["--disable-openapi"], 404)):
        with serve_with_robyn_fast(tmp_path / "app.py", args, loop_kind) as served:
            try:
                with urllib.request.urlopen(served.http_url + "/openapi.json", timeout=TIMEOUT) as resp:
                    status = resp.status
                    assert "/hello" in json.loads(resp.read())["paths"]
            except urllib.error.HTTPError as err:
                status = err.code
            assert status == expected, args
