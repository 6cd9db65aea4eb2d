"""Issue 21 item 1: robyn_fast configures logging only when the user has not (or never, with
``--log-config none``); every line, "serving on" and "shutting down" included, is a record at a
level the user controls; ``--log-level DEBUG`` shows WebSocket handshakes, closes and worker events.

Each test runs a real app in a subprocess (its logging is process-wide) and talks to it. The app
prints where it listens itself (``listening on ...``), since what logging shows is the point."""

from __future__ import annotations

import json
import logging
import re
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from robyn_fast.logs import AUTO, FORMAT, configure_logging

from .process_helpers import ServerProcess
from .server_helpers import eventually

TIMEOUT = 30.0

# The app under test: PRELUDE (the user's own logging setup, if any) runs before app.start().
APP = '''
import asyncio
import logging
import logging.config
import os

from robyn_fast import Robyn, WebSocket

PRELUDE

app = Robyn(__file__)
ws = WebSocket(app, "/ws")


@app.get("/")
def index():
    logging.getLogger("userapp").info("user info record")
    return "ok"


@ws.on("message")
def echo(ws, msg):
    return msg


def listening():
    root = logging.getLogger()
    print(f"APP listening on http://127.0.0.1:{app.server.sockets[0].getsockname()[1]} "
          f"root_level={root.level} root_handlers={len(root.handlers)}", flush=True)


@app.startup_handler
def started():
    asyncio.get_running_loop().call_soon(listening)  # runs once the server listens


@app.shutdown_handler
def stopped():
    print(f"STOPPED pid={os.getpid()}", flush=True)


app.start(port=0)
'''

DICT_CONFIG_ERROR = '''
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"mine": {"format": "MINE %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "mine"}},
    "root": {"level": "ROOT_LEVEL", "handlers": ["err"]},
})
'''


def _run(tmp_path: Path, prelude: str = "", args: tuple[str, ...] = (), *, traffic: bool = True,
         env: dict[str, str] | None = None, processes: int = 1,
         wait_for: str | None = None) -> tuple[str, re.Match[str]]:
    """Serve the app, do one GET and one WebSocket echo, stop it with SIGTERM: its whole output,
    and the match of its ``listening on`` line. With worker ``processes``, each says it listens
    (and handles SIGTERM from then on) before the stop; ``wait_for``: a line to wait for too."""
    script = tmp_path / "app.py"
    script.write_text(APP.replace("PRELUDE", textwrap.dedent(prelude)))
    server = ServerProcess([str(script), *args], env=env, cwd=tmp_path)
    try:
        port = server.wait_listening(TIMEOUT)
        eventually(lambda: server.output().count("APP listening on"), lambda n: n >= processes, TIMEOUT)
        if wait_for is not None:
            server.wait_output(wait_for, TIMEOUT)
        if traffic:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                assert resp.read() == b"ok"
            client = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
            client.send("hello")
            assert client.recv() == "hello"
            client.close()
    finally:
        code = server.stop()
    out = server.output()
    assert code == 0, out
    assert "STOPPED pid=" in out, out  # it shut down gracefully: the records below had their chance
    listening = re.search(r"listening on \S+ root_level=(\d+) root_handlers=(\d+)", out)
    assert listening is not None, out
    return out, listening


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_a_dictconfig_root_level_is_kept_and_nothing_below_it_is_printed(tmp_path: Path, level: str) -> None:
    # Before: app.start() set the root logger to INFO, so "serving on", "shutting down" and the
    # app's own INFO records were printed whatever the dictConfig said.
    out, listening = _run(tmp_path, DICT_CONFIG_ERROR.replace("ROOT_LEVEL", level))
    assert int(listening.group(1)) == getattr(logging, level), out
    assert int(listening.group(2)) == 1, out  # the user's handler alone: none added
    assert "serving on" not in out and "shutting down" not in out, out
    assert "user info record" not in out and " INFO " not in out, out


def test_a_basicconfig_warning_is_kept(tmp_path: Path) -> None:
    out, listening = _run(tmp_path, "logging.basicConfig(level=logging.WARNING)")
    assert int(listening.group(1)) == logging.WARNING, out
    assert "serving on" not in out and "shutting down" not in out and "user info record" not in out, out


def test_the_announcements_go_through_the_users_handlers(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, DICT_CONFIG_ERROR.replace("ROOT_LEVEL", "INFO"))
    assert re.search(r"^MINE INFO robyn_fast\.server: robyn_fast: serving on http://127\.0\.0\.1:\d+; "
                     r"WebSocket: ws://127\.0\.0\.1:\d+/ws$", out, re.M), out
    assert re.search(r"^MINE INFO robyn_fast\.server: robyn_fast: shutting down$", out, re.M), out
    assert re.search(r"^MINE INFO userapp: user info record$", out, re.M), out
    # every line of robyn_fast is one of the user's records: none is printed around logging
    assert not [line for line in out.splitlines() if "robyn_fast" in line and not line.startswith("MINE ")], out


def test_log_level_warning_silences_the_announcements(tmp_path: Path) -> None:
    # Before: "serving on" and "shutting down" were printed on stderr when WARNING hid them.
    out, listening = _run(tmp_path, args=("--log-level", "WARNING"))
    assert int(listening.group(1)) == logging.WARNING and int(listening.group(2)) == 1, out
    assert "serving on" not in out and "shutting down" not in out, out


def test_without_user_configuration_robyn_fast_configures_info(tmp_path: Path) -> None:
    out, listening = _run(tmp_path)
    assert int(listening.group(1)) == logging.INFO and int(listening.group(2)) == 1, out
    assert re.search(r" INFO robyn_fast\.server: robyn_fast: serving on http://127\.0\.0\.1:\d+", out), out
    assert re.search(r" INFO robyn_fast\.server: robyn_fast: shutting down$", out, re.M), out
    assert " INFO userapp: user info record" in out, out


def test_log_level_debug_shows_handshakes_and_closes(tmp_path: Path) -> None:
    # Before: --log-level DEBUG added nothing about connections (only --access-log showed them).
    out, _ = _run(tmp_path, args=("--log-level", "DEBUG"))
    assert re.search(r"DEBUG robyn_fast\.websocket: 127\.0\.0\.1:\d+: WebSocket handshake for /ws accepted: "
                     r"id=\S+ subprotocol=None permessage-deflate=(on|off)$", out, re.M), out
    assert re.search(r"DEBUG robyn_fast\.websocket: 127\.0\.0\.1:\d+: WebSocket /ws id=\S+ closed with code 1000 "
                     r"after \d+\.\d{3} s$", out, re.M), out


def test_log_level_debug_with_the_users_configuration_sets_robyn_fasts_loggers_only(tmp_path: Path) -> None:
    out, listening = _run(tmp_path, DICT_CONFIG_ERROR.replace("ROOT_LEVEL", "WARNING"), ("--log-level", "DEBUG"))
    assert int(listening.group(1)) == logging.WARNING, out  # the user's root level stands
    assert re.search(r"^MINE DEBUG robyn_fast\.websocket: .* closed with code 1000 ", out, re.M), out
    assert re.search(r"^MINE INFO robyn_fast\.server: robyn_fast: serving on ", out, re.M), out
    assert "user info record" not in out, out  # the app's own INFO: still the user's WARNING


def test_log_config_none_never_configures(tmp_path: Path) -> None:
    out, listening = _run(tmp_path, args=("--log-config", "none"))
    assert int(listening.group(2)) == 0 and int(listening.group(1)) == logging.WARNING, out  # Python's defaults
    assert "serving on" not in out and "shutting down" not in out and "user info record" not in out, out


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".ini"])
def test_log_config_file(tmp_path: Path, suffix: str) -> None:
    config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"f": {"format": "FILE %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f"}},
        "root": {"level": "INFO", "handlers": ["h"]},
    }
    path = tmp_path / f"logging{suffix}"
    if suffix == ".ini":
        path.write_text(textwrap.dedent("""
            [loggers]
            keys=root
            [handlers]
            keys=h
            [formatters]
            keys=f
            [logger_root]
            level=INFO
            handlers=h
            [handler_h]
            class=StreamHandler
            formatter=f
            args=(sys.stderr,)
            [formatter_f]
            format=FILE %(levelname)s %(name)s: %(message)s
        """))
    else:
        path.write_text(json.dumps(config))  # JSON is YAML too
    out, _ = _run(tmp_path, args=("--log-config", str(path)), traffic=False)
    assert re.search(r"^FILE INFO robyn_fast\.server: robyn_fast: serving on ", out, re.M), out
    assert re.search(r"^FILE INFO robyn_fast\.server: robyn_fast: shutting down$", out, re.M), out


@pytest.mark.parametrize(("content", "reason"), [
    (None, "no such file"),
    ("{not json", "Expecting property name"),
    ('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}', "Unable to configure handler 'h'"),
])
def test_a_log_config_that_cannot_be_used_is_one_line_and_exit_2(tmp_path: Path, content: str | None,
                                                                 reason: str) -> None:
    path = tmp_path / "logging.json"
    if content is not None:
        path.write_text(content)
    script = tmp_path / "app.py"
    script.write_text(APP.replace("PRELUDE", ""))
    server = ServerProcess([str(script)], env={"ROBYN_FAST_LOG_CONFIG": str(path)}, cwd=tmp_path)
    code = server.wait(TIMEOUT)
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("app.py: ") and reason in lines[0] and "listening on" not in lines[0], lines


def test_workers_inherit_the_users_configuration(tmp_path: Path) -> None:
    # --processes 2 forks after app.start() made its decision: the workers keep the user's ERROR root.
    out, listening = _run(tmp_path, DICT_CONFIG_ERROR.replace("ROOT_LEVEL", "ERROR"), ("--processes", "2"),
                            processes=2)
    assert int(listening.group(1)) == logging.ERROR, out
    assert out.count("STOPPED pid=") == 2, out  # both workers shut down gracefully
    assert "serving on" not in out and " INFO " not in out and "user info record" not in out, out


def test_worker_events_at_debug(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, args=("--processes", "2", "--log-level", "DEBUG"), traffic=False, processes=2,
                  wait_for=r"serving on http://127\.0\.0\.1:\d+ with 2 worker processes")
    for index in (0, 1):
        assert re.search(rf"DEBUG \[\d+\] robyn_fast\.workers: workers: worker {index} started \(pid \d+, "
                         r"generation 0\)$", out, re.M), out
        assert re.search(rf"DEBUG \[\d+\] robyn_fast\.workers: workers: worker {index} \(pid \d+\) serving$",
                         out, re.M), out
        assert re.search(rf"DEBUG \[\d+\] robyn_fast\.workers: workers: worker {index} \(pid \d+\) stopped$",
                         out, re.M), out
    assert re.search(r"INFO \[\d+\] robyn_fast\.server: robyn_fast: serving on http://127\.0\.0\.1:\d+ with 2 "
                     r"worker processes", out), out


# -- the decision itself, in this process (its logging restored after each test) -----------------


@pytest.fixture
def clean_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    ours = logging.getLogger("robyn_fast")
    saved = (root.handlers[:], root.level, ours.level)
    root.handlers.clear()
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_configure_logging_decides_once(clean_logging: logging.Logger) -> None:
    root = clean_logging
    root.handlers.clear()  # pytest's capture handler, added once the test runs: "the user configured nothing"
    assert configure_logging(AUTO, logging.DEBUG) is True
    assert len(root.handlers) == 1 and root.level == logging.DEBUG
    formatter = root.handlers[0].formatter
    assert formatter is not None and formatter._fmt == FORMAT
    # configured now: a second call (another entry point) touches nothing
    assert configure_logging(AUTO, logging.ERROR) is False
    assert len(root.handlers) == 1 and root.level == logging.DEBUG
    # an explicit level, when the user configured: robyn_fast's loggers only
    assert configure_logging(AUTO, logging.ERROR, level_given=True) is False
    assert root.level == logging.DEBUG and logging.getLogger("robyn_fast").level == logging.ERROR
    assert configure_logging(None, logging.INFO) is False and len(root.handlers) == 1


def test_a_bad_dict_config_is_a_value_error(clean_logging: logging.Logger) -> None:
    with pytest.raises(ValueError, match=r"^log_config: dictConfig\(\) refused it: "):
        configure_logging({"version": 2})
