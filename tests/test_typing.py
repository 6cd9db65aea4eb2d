"""mypy sees robyn_fast's types from the installed package (the test venv's editable
install, as `make install` makes it): a correct user script passes --strict, and a wrong
call is reported, so the types are really found (an untyped or unfound package would make
every name Any and let the wrong call through)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CORRECT = '''
from robyn_fast import Config, Request, Robyn, WebSocket, WebSocketAdapter
from robyn_fast.logs import get_logger, printable

app = Robyn(__file__, config=Config(max_message_size=64 * 1024, ping_interval=None))
chat = WebSocket(app, "/chat")
log = get_logger("myapp")


@chat.on("message")
async def message(ws: object, msg: str) -> str:
    log.info("got %s", printable(msg, limit=80))
    return msg.upper()


@chat.before_upgrade
async def check(request: Request) -> int | None:
    return None if request.headers.get("authorization") else 401


size: int | None = Config().max_message_size
allowed: tuple[str, ...] = Config(forwarded_allow_ips=("10.0.0.0/8",)).forwarded_allow_ips


async def embedded() -> None:
    await app.serve("127.0.0.1", 0, handle_signals=False, log_config=None)
    stopped: bool = app.stop()


def test_app() -> None:
    from robyn_fast.testing import LiveServer, serve

    with serve(app, loop="asyncio") as live:
        url: str = live.url + live.ws_url
        port: int = live.port
        same: LiveServer = live


async def test_app_async() -> None:
    from robyn_fast.testing import serve

    async with serve(app) as live:
        url: str = live.ws_url


@app.websocket("/rooms")
async def rooms(websocket: WebSocketAdapter) -> None:
    joined: bool = websocket.join("red")
    members: frozenset[object] = websocket.rooms
    reached: int = await websocket.broadcast_to("red", {"joined": joined, "rooms": len(members)})
    also: int = websocket.sync_broadcast_to("red", b"bytes", exclude_self=True)
    sent: bool = await websocket.send_to(websocket.id, await websocket.receive_text())
    left: bool = websocket.leave("red")
    print(reached, also, sent, left)
'''

WRONG = '''
from robyn_fast import Config, Robyn, WebSocketAdapter
from robyn_fast.logs import printable
from robyn_fast.testing import serve

Config(max_message_size="64 KiB")
text: int = printable("x")
serve(Robyn(__file__), loop="trio")


async def handler(websocket: WebSocketAdapter) -> None:
    reached: str = await websocket.broadcast_to("red", "x")
'''


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_app.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    # from an empty folder: robyn_fast can only come from the installed package
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    assert not (tmp_path / "robyn_fast").exists()
    return tmp_path


def test_a_correct_script_type_checks(folder: Path) -> None:
    result = _mypy(folder, CORRECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 1 source file" in result.stdout


def test_a_wrong_call_is_reported(folder: Path) -> None:
    result = _mypy(folder, WRONG)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "import-not-found" not in result.stdout and "import-untyped" not in result.stdout, result.stdout
    assert 'Argument "max_message_size" to "Config" has incompatible type "str"; expected "int | None"' in (
        result.stdout), result.stdout
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in (
        result.stdout), result.stdout
    assert 'Argument "loop" to "serve" has incompatible type "Literal[\'trio\']"' in result.stdout, result.stdout
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in (
        result.stdout), result.stdout
