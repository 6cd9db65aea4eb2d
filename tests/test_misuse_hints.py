"""Issue 21 item 7: the mistakes a first-time user makes get an error that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from robyn_fast import Robyn, WebSocket


@pytest.fixture
def ws() -> WebSocket:
    return WebSocket(Robyn(__file__), "/ws")


def test_on_without_parentheses_names_the_fix(ws: WebSocket) -> None:
    # Before: ValueError "unknown websocket event <function message at 0x...>".
    with pytest.raises(TypeError) as raised:

        @ws.on  # type: ignore[arg-type]
        def message(ws: Any, msg: str) -> str:
            return msg

    assert str(raised.value) == ('ws.on() takes the event name, not the handler: write @ws.on("message") (or '
                                 '"connect", "close") above test_on_without_parentheses_names_the_fix.<locals>.'
                                 'message(), not @ws.on')
    assert ws.handlers == {}


@pytest.mark.parametrize(("event", "meant"), [("open", "connect"), ("disconnect", "close"), ("Message", "message"),
                                              ("receive", "message")])
def test_a_near_miss_event_name_suggests_the_event(ws: WebSocket, event: str, meant: str) -> None:
    with pytest.raises(ValueError) as raised:
        ws.on(event)
    assert str(raised.value) == (f"unknown websocket event {event!r}; expected one of connect, message, close "
                                 f"(did you mean {meant!r}?)")


def test_an_unknown_event_lists_the_events(ws: WebSocket) -> None:
    with pytest.raises(ValueError) as raised:
        ws.on("ping")
    assert str(raised.value) == "unknown websocket event 'ping'; expected one of connect, message, close"


@pytest.mark.parametrize("event", ["connect", "close"])
def test_a_message_parameter_on_connect_or_close_says_none_comes(ws: WebSocket, event: str) -> None:
    # Before: "cannot bind parameter 'msg' ... it is not the connector, the message, ..." (but it was
    # named like the message: the point is that these handlers get none).
    with pytest.raises(TypeError) as raised:

        @ws.on(event)
        def handler(ws: Any, msg: str) -> None:
            pass

    text = str(raised.value)
    assert text.startswith(f"websocket {event} handler ") and text.endswith(
        f"has a parameter 'msg', but {event} handlers receive no message (only message handlers do): drop the "
        'parameter, or register the handler with @ws.on("message")'), text

    @ws.on(event)
    def fine(ws: Any, msg: str = "") -> None:  # a default: left to it
        pass


def test_a_route_decorator_without_parentheses_names_the_fix() -> None:
    # Before: no error at all; the function was replaced by a decorator and the route never existed.
    app = Robyn(__file__)
    with pytest.raises(TypeError) as raised:

        @app.get  # type: ignore[arg-type]
        def index() -> str:
            return "hi"

    assert str(raised.value) == ('app.get() takes the route\'s path, not the handler: write @app.get("/path") above '
                                 'test_a_route_decorator_without_parentheses_names_the_fix.<locals>.index(), not '
                                 '@app.get')
    with pytest.raises(TypeError, match=r'^a route\'s path is a str such as "/items/:id", not int$'):
        app.post(404)  # type: ignore[arg-type]
    assert app.router.routes() == []


def test_app_websocket_without_parentheses_names_the_fix() -> None:
    app = Robyn(__file__)
    with pytest.raises(TypeError, match=r'^app\.websocket\(\) takes the route\'s path, not the handler: write '
                                        r'@app\.websocket\("/path"\) above .*\.handler\(\), not @app\.websocket$'):

        @app.websocket  # type: ignore[arg-type]
        async def handler(websocket: Any) -> None:
            pass


def _run_module(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, ROBYN_HOST="127.0.0.1", ROBYN_PORT="0")
    return subprocess.run([sys.executable, "-m", "robyn_fast", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_script_that_never_starts_its_app_says_so(tmp_path: Path) -> None:
    # Before: `python -m robyn_fast app.py` ran the script, served nothing and exited 0 without a word.
    result = _run_module(tmp_path, """
        from robyn import Robyn
        app = Robyn(__file__)

        @app.get("/")
        def index():
            return "hi"
    """)
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr == ("robyn_fast: app.py ran to its end without serving: it never called app.start(); add "
                             "app.start(host=..., port=...) at its end\n")


def test_a_script_that_started_an_app_anywhere_exits_0_without_the_hint(tmp_path: Path) -> None:
    result = _run_module(tmp_path, """
        from robyn import Robyn

        def main():
            app = Robyn(__file__)       # not a global of the script: started all the same

            @app.startup_handler
            def stop_at_once():
                app.stop()

            app.start(port=0)

        main()
    """)
    assert result.returncode == 0, result
    assert "without serving" not in result.stderr and "shutting down" in result.stderr, result.stderr
