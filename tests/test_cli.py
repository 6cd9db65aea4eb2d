"""Robyn's command line (robyn_fast/cli.py, Robyn.start, ``python -m
robyn_fast``, the ``--dev`` reloader).

The pure functions first: ``cli.parse`` (flags, usage errors on stderr and
exit status 2), ``cli.resolve`` (a flag wins over an environment variable,
which wins over an argument of ``app.start()``) and ``cli.load_env_file``
(``robyn.env``). Then real processes, both as ``python app.py [flags]`` (an
app written to tmp_path) and as ``python -m robyn_fast
tests/robyn_apps/chat.py [flags]``: ``--help``/``--version`` and bad flags
serve nothing, ``--log-level`` and the timeouts reach the server, ``robyn.env``
next to the app is read. Then ``--dev``: a change to the source restarts the
app on the same port (WebSockets get Close 1001), a syntax error leaves the
reloader waiting for the fix, SIGTERM/SIGINT stop it and its child.

Every process is bounded in time (subprocess timeouts, ServerProcess.stop)
and listens on 127.0.0.1 only (ROBYN_HOST); nothing waits by sleeping: tests
wait for output lines or poll a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket as wsclient

import robyn_fast
from robyn_fast import cli
from robyn_fast.cli import Options, Settings, UsageError

from .process_helpers import ROOT, ServerProcess
from .server_helpers import eventually, wait_for

CHAT = Path("tests") / "robyn_apps" / "chat.py"  # relative to ROOT, as a user types it
TIMEOUT = 20.0  # every subprocess that should exit on its own, every wait for a line
IO_TIMEOUT = 10.0  # every receive and HTTP request
PROG = "app.py"


# == cli.parse ===========================================================================================


def parse(*argv: str) -> Options:
    return cli.parse(list(argv), PROG)


def test_no_flags_are_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse() == Options(processes=None, workers=None, fast=False, dev=False, log_level=None,
                              open_browser=False)
    assert capsys.readouterr() == ("", "")


def test_every_flag_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("--processes", "3", "--workers=2", "--fast", "--log-level", "warn", "--open-browser") == Options(
        processes=3, workers=2, fast=True, dev=False, log_level="WARN", open_browser=True)
    assert parse("--dev", "--log-level", "error") == Options(dev=True, log_level="ERROR")
    assert parse("--dev", "--processes", "1", "--workers", "1") == Options(processes=1, workers=1, dev=True)
    assert capsys.readouterr() == ("", "")


def test_disable_openapi_is_accepted_silently(capsys: pytest.CaptureFixture[str]) -> None:
    # The compat app reads it (tests/test_robyn_features.py); it is no setting of the server.
    assert parse("--disable-openapi") == Options()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--processes", "two"], "argument --processes: expected a whole number, got 'two'"),
        (["--processes", "0"], "argument --processes: expected 1 or more, got 0"),
        (["--processes", "1.5"], "argument --processes: expected a whole number, got '1.5'"),
        (["--workers", "-1"], "argument --workers: expected 1 or more, got -1"),
        (["--workers"], "argument --workers: expected one argument"),
        (["--log-level", "LOUD"],
         "argument --log-level: expected one of DEBUG, INFO, WARNING, WARN, ERROR, CRITICAL, got 'LOUD'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--proc", "2"], "unrecognized arguments: --proc 2"),  # no abbreviations: Robyn's flags are exact
        (["app.py"], "unrecognized arguments: app.py"),
    ],
)
def test_a_bad_command_line_is_the_usage_and_one_line_then_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"usage: {PROG} [-h] [--processes N] [--workers M]")
    assert lines[-1] == f"{PROG}: error: {message}"
    assert sum(line.startswith(f"{PROG}: ") for line in lines) == 1, err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--create"], "--create"),
        (["--docs"], "--docs"),
        (["--compile-rust-path", "x"], "--compile-rust-path"),
        (["--create-rust-file", "y"], "--create-rust-file"),
        (["--processes", "2", "--docs"], "--docs"),
    ],
)
def test_robyns_tools_are_one_line_saying_they_are_not_supported_and_exit_2(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{PROG}: {flag} is not supported by robyn_fast: ")


@pytest.mark.parametrize(
    "argv",
    [["--dev", "--processes", "2"], ["--processes", "2", "--dev"], ["--dev", "--workers", "3"], ["--dev", "--fast"]],
)
def test_dev_with_more_than_one_process_is_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"{PROG}: --dev serves one process; it cannot be combined with --processes, --workers or "
                   "--fast\n")


def test_help_lists_robyns_flags_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--processes", "2", "--help")
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"usage: {PROG} ")
    for flag in ("--processes N", "--workers M", "--fast", "--dev", "--log-level LEVEL", "--open-browser",
                 "--version", "--disable-openapi"):
        assert flag in out
    for hidden in ("--create", "--docs", "--compile-rust-path"):  # accepted only to say they are not supported
        assert hidden not in out
    assert out == cli.help_text(PROG)


def test_version_is_printed_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--processes", "2", "--version")
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (f"robyn_fast {robyn_fast.__version__} (Robyn's WebSocket API; "
                   f"Python {platform.python_version()})\n")


# == cli.resolve ========================================================================================


def resolve(*argv: str, env: dict[str, str] | None = None, host: str = "127.0.0.1", port: int = 8080,
            **start: object) -> Settings:
    """Settings for ``argv`` (flags), ``env`` and ``app.start(host, port, **start)``."""
    return cli.resolve(cli.parse(list(argv), PROG), env or {}, host, port, **start)  # type: ignore[arg-type]


def test_defaults_serve_one_process_at_info_on_the_start_address() -> None:
    assert resolve() == Settings(host="127.0.0.1", port=8080, processes=1, dev=False, log_level=logging.INFO,
                                 open_browser=False)  # and no Config field set: the app's Config decides
    assert (resolve().header_timeout, resolve().keep_alive_timeout, resolve().config) == (None, None, {})


def test_the_arguments_of_app_start_apply_when_nothing_else_is_set() -> None:
    s = resolve(host="127.0.0.2", port=9001, processes=2, workers=3, client_timeout=3.5, keep_alive_timeout=4.5)
    assert (s.host, s.port, s.processes, s.header_timeout, s.keep_alive_timeout) == ("127.0.0.2", 9001, 6, 3.5, 4.5)


def test_the_environment_wins_over_the_arguments_of_app_start() -> None:
    env = {"ROBYN_HOST": "127.0.0.3", "ROBYN_PORT": "9002", "ROBYN_PROCESSES": "3", "ROBYN_WORKERS": "1",
           "ROBYN_CLIENT_TIMEOUT": "2.5", "ROBYN_KEEP_ALIVE_TIMEOUT": " 0.75 "}
    s = resolve(env=env, host="127.0.0.2", port=9001, processes=2, workers=5, client_timeout=30.0,
                keep_alive_timeout=40.0)
    assert (s.host, s.port, s.processes, s.header_timeout, s.keep_alive_timeout) == ("127.0.0.3", 9002, 3, 2.5, 0.75)


def test_port_0_from_the_environment_is_a_port_not_a_missing_value() -> None:
    assert resolve(env={"ROBYN_PORT": "0"}, port=8080).port == 0
    assert resolve(env={"ROBYN_PORT": ""}, port=8081).port == 8081  # empty: not set


def test_flags_win_over_the_environment() -> None:
    env = {"ROBYN_PROCESSES": "5", "ROBYN_WORKERS": "7", "ROBYN_DEV_MODE": "false"}
    assert resolve("--processes", "2", "--workers", "3", env=env, processes=11, workers=13).processes == 6
    assert resolve("--processes", "2", env=env).processes == 2 * 7
    assert resolve("--workers", "2", env=env).processes == 5 * 2
    dev = resolve("--dev", env={"ROBYN_DEV_MODE": "false"})
    assert dev.dev and dev.processes == 1 and dev.log_level == logging.DEBUG
    assert resolve("--log-level", "ERROR", env={"ROBYN_DEV_MODE": "true"}).log_level == logging.ERROR


def test_processes_times_workers_from_the_environment() -> None:
    assert resolve(env={"ROBYN_PROCESSES": "2", "ROBYN_WORKERS": "3"}).processes == 6
    assert resolve(env={"ROBYN_WORKERS": "4"}).processes == 4
    assert resolve(env={"ROBYN_PROCESSES": "3"}, workers=2).processes == 6


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "yes", "on", " true "])
def test_robyn_dev_mode_true_is_dev_at_debug(value: str) -> None:
    s = resolve(env={"ROBYN_DEV_MODE": value})
    assert s.dev and s.processes == 1 and s.log_level == logging.DEBUG


@pytest.mark.parametrize("value", ["false", "0", "", "no", "off", " OFF ", "  "])
def test_robyn_dev_mode_otherwise_is_not_dev(value: str) -> None:
    s = resolve(env={"ROBYN_DEV_MODE": value})
    assert not s.dev and s.log_level == logging.INFO


@pytest.mark.parametrize(
    ("env", "start"),
    [
        ({"ROBYN_DEV_MODE": "true", "ROBYN_PROCESSES": "2"}, {}),
        ({"ROBYN_DEV_MODE": "true", "ROBYN_WORKERS": "2"}, {}),
        ({"ROBYN_DEV_MODE": "true"}, {"processes": 2}),
    ],
)
def test_dev_mode_from_the_environment_with_more_than_one_process_is_a_usage_error(
    env: dict[str, str], start: dict[str, object]
) -> None:
    with pytest.raises(UsageError, match="dev mode .* serves one process"):
        resolve(env=env, **start)  # type: ignore[arg-type]


def test_fast_is_one_process_per_cpu_at_warning_unless_a_flag_says_otherwise() -> None:
    cpus = len(os.sched_getaffinity(0))  # the CPUs this process may run on, not the machine's
    fast = resolve("--fast")
    assert (fast.processes, fast.log_level, fast.dev) == (cpus, logging.WARNING, False)
    assert resolve("--fast", "--processes", "3").processes == 3
    assert resolve("--fast", "--workers", "2").processes == cpus * 2
    assert resolve("--fast", "--log-level", "ERROR").log_level == logging.ERROR
    # A flag wins over the environment and app.start(): --fast too.
    assert resolve("--fast", env={"ROBYN_PROCESSES": "7"}, processes=5).processes == cpus


def test_too_many_processes_and_an_empty_host_variable() -> None:
    with pytest.raises(UsageError, match="16 x 16 = 256 worker processes; at most 255"):
        resolve("--processes", "16", "--workers", "16")
    assert resolve("--processes", "15", "--workers", "17").processes == 255
    assert resolve(env={"ROBYN_HOST": ""}).host == "127.0.0.1"  # not "" (every interface)
    assert resolve(env={"ROBYN_HOST": " 127.0.0.5 "}).host == "127.0.0.5"


@pytest.mark.parametrize(
    ("name", "level"),
    [("DEBUG", logging.DEBUG), ("INFO", logging.INFO), ("WARNING", logging.WARNING), ("WARN", logging.WARNING),
     ("warn", logging.WARNING), ("ERROR", logging.ERROR), ("CRITICAL", logging.CRITICAL), ("critical", 50)],
)
def test_log_levels(name: str, level: int) -> None:
    assert resolve("--log-level", name).log_level == level
    assert resolve("--dev", "--log-level", name).log_level == level


def test_open_browser_from_the_flag_or_the_environment() -> None:
    assert resolve("--open-browser").open_browser
    assert resolve(env={"ROBYN_BROWSER_OPEN": "true"}).open_browser
    assert not resolve(env={"ROBYN_BROWSER_OPEN": "false"}).open_browser


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ROBYN_PORT", "abc"),
        ("ROBYN_PORT", "70000"),
        ("ROBYN_PORT", "65536"),
        ("ROBYN_PORT", "-1"),
        ("ROBYN_PORT", "80.5"),
        ("ROBYN_PROCESSES", "two"),
        ("ROBYN_PROCESSES", "0"),
        ("ROBYN_WORKERS", "-2"),
        ("ROBYN_CLIENT_TIMEOUT", "-1"),
        ("ROBYN_CLIENT_TIMEOUT", "0"),
        ("ROBYN_CLIENT_TIMEOUT", "soon"),
        ("ROBYN_CLIENT_TIMEOUT", "inf"),
        ("ROBYN_KEEP_ALIVE_TIMEOUT", "nan"),
        ("ROBYN_KEEP_ALIVE_TIMEOUT", "-0.5"),
    ],
)
def test_a_malformed_environment_variable_is_a_usage_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(UsageError) as raised:
        resolve(env={name: value})
    message = str(raised.value)
    assert f"{name}={value!r}" in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("start", "needle"),
    [({"processes": 0}, "app.start(processes=0)"), ({"workers": "2"}, "app.start(workers='2')"),
     ({"processes": True}, "app.start(processes=True)"), ({"port": 70000}, "invalid port 70000"),
     # checked as the Config field they set (before: a ValueError traceback from Config, exit 1)
     ({"client_timeout": -1}, "app.start(client_timeout=-1): Config.header_timeout must be a positive"),
     ({"keep_alive_timeout": "5"}, "app.start(keep_alive_timeout='5'): Config.keep_alive_timeout must be a number")],
)
def test_malformed_app_start_arguments_are_usage_errors(start: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError) as raised:
        resolve(**start)  # type: ignore[arg-type]
    assert needle in str(raised.value)


def test_a_valid_environment_overrides_a_port_app_start_got_wrong() -> None:
    assert resolve(env={"ROBYN_PORT": "65535"}, port=8080).port == 65535


# == cli.load_env_file ==================================================================================


def test_robyn_env_sets_what_is_not_set_and_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "robyn.env").write_text(
        "# a comment\n"
        "\n"
        "ROBYN_PORT=9090\n"
        "   \n"
        "  # an indented comment=with an equals sign\n"
        "  SPACED_OUT =  a value with spaces  \n"
        "URL=http://127.0.0.1/?a=b&c=d\n"
        "EMPTY=\n"
        "ALREADY_SET=from the file\n"
        "_under_score9=x\n"
    )
    environ = {"ALREADY_SET": "from the environment"}
    loaded = cli.load_env_file(tmp_path, environ)
    assert loaded == ["ROBYN_PORT", "SPACED_OUT", "URL", "EMPTY", "_under_score9"]
    assert environ == {
        "ALREADY_SET": "from the environment",
        "ROBYN_PORT": "9090",
        "SPACED_OUT": "a value with spaces",
        "URL": "http://127.0.0.1/?a=b&c=d",
        "EMPTY": "",
        "_under_score9": "x",
    }


def test_a_missing_robyn_env_changes_nothing(tmp_path: Path) -> None:
    environ = {"A": "1"}
    assert cli.load_env_file(tmp_path, environ) == []
    assert environ == {"A": "1"}


def test_robyn_env_fills_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROBYN_FAST_TEST_CLI_NEW", "ROBYN_FAST_TEST_CLI_SET"):
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores (removes) them afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("ROBYN_FAST_TEST_CLI_SET", "kept")
    (tmp_path / "robyn.env").write_text("ROBYN_FAST_TEST_CLI_NEW=new\nROBYN_FAST_TEST_CLI_SET=ignored\n")
    assert cli.load_env_file(str(tmp_path)) == ["ROBYN_FAST_TEST_CLI_NEW"]
    assert os.environ["ROBYN_FAST_TEST_CLI_NEW"] == "new"
    assert os.environ["ROBYN_FAST_TEST_CLI_SET"] == "kept"


@pytest.mark.parametrize("bad", ["JUST_A_WORD", "=value", "1ABC=x", "export FOO=bar", "BAD KEY=x", "A-B=c"])
def test_a_malformed_robyn_env_line_is_a_usage_error_naming_file_and_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "robyn.env"
    path.write_text(f"# settings\n\nGOOD=1\n{bad}\nLATER=2\n")
    with pytest.raises(UsageError) as raised:
        cli.load_env_file(tmp_path, {})
    assert str(raised.value) == f"{path}:4: expected KEY=VALUE, got {bad!r}"


def test_an_unreadable_robyn_env_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "robyn.env"
    path.write_bytes(b"NAME=\xff\xfe\n")
    with pytest.raises(UsageError, match=re.escape(f"{path}: cannot read it: ")):
        cli.load_env_file(tmp_path, {})


# == processes: python app.py [flags] and python -m robyn_fast chat.py [flags] ==========================

# The app every process test serves (as app.py in tmp_path): it prints what it
# was configured with from a startup handler, and logs one line at DEBUG.
APP = '''
import logging
import os
import sys

from robyn_fast import Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws")
BODY = "version 1"


@app.get("/")
def index():
    return BODY


@app.get("/env")
def env():
    return os.environ.get("ROBYN_FAST_TEST_GREETING", "(unset)")


@ws.on("message")
def echo(ws, msg):
    return msg


def listening():
    # the port, whether or not logging shows the server's own "serving on" record
    print(f"APP listening on http://127.0.0.1:{app.server.sockets[0].getsockname()[1]}", flush=True)


@app.startup_handler
def started():
    import asyncio
    asyncio.get_running_loop().call_soon(listening)  # runs once the server listens
    logging.getLogger("testapp").debug("a debug record")
    c = app.config
    print(f"STARTED pid={os.getpid()} level={logging.getLogger().getEffectiveLevel()} "
          f"header_timeout={c.header_timeout} keep_alive_timeout={c.keep_alive_timeout} "
          f"greeting={os.environ.get('ROBYN_FAST_TEST_GREETING', '(unset)')}", flush=True)


@app.shutdown_handler
def stopped():
    print(f"STOPPED pid={os.getpid()}", flush=True)


if __name__ == "__main__":
    app.start(START_ARGS)
'''

STARTED = re.compile(r"^STARTED pid=(\d+) level=(\d+) header_timeout=(\S+) keep_alive_timeout=(\S+) "
                     r"greeting=(.*)$", re.M)


def write_app(directory: Path, start_args: str = "port=0", body: str = "version 1", prelude: str = "") -> Path:
    """app.py in ``directory`` (the APP above), serving ``body`` at GET /."""
    script = directory / "app.py"
    source = APP.replace("START_ARGS", start_args).replace('BODY = "version 1"', f'BODY = "{body}"')
    script.write_text(prelude + source)
    return script


def app_command(tmp_path: Path, form: str) -> tuple[list[str], Path, str]:
    """(python arguments, cwd, prog) for running the test app: as a script,
    or through ``python -m robyn_fast``."""
    script = write_app(tmp_path)
    if form == "script":
        return [str(script)], tmp_path, "app.py"
    return ["-m", "robyn_fast", str(script)], ROOT, "app.py"


@pytest.fixture(params=["python app.py", "python -m robyn_fast chat.py"])
def command(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], Path, str]:
    """The two ways a user runs an app: (python arguments, cwd, prog)."""
    if request.param == "python app.py":
        return app_command(tmp_path, "script")
    return ["-m", "robyn_fast", str(CHAT)], ROOT, "chat.py"


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """A process that must exit by itself within ``timeout`` (killed and
    TimeoutExpired otherwise). It would serve on 127.0.0.1, on a port the
    kernel picks, if it served at all."""
    full_env = dict(os.environ, ROBYN_HOST="127.0.0.1", ROBYN_PORT="0", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], cwd=str(cwd), env=full_env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_served_nothing(result: subprocess.CompletedProcess[str]) -> None:
    everything = result.stdout + result.stderr
    assert "serving on" not in everything and "STARTED" not in everything, everything
    assert "Traceback" not in everything, everything


@contextlib.contextmanager
def serving(args: list[str], cwd: Path, loop_kind: str = "uvloop",
            env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A server process, listening; on exit it is sent SIGTERM and must exit 0."""
    server = ServerProcess(args, loop_kind, env, cwd=cwd)
    try:
        server.wait_listening(TIMEOUT)
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output()
    assert "Traceback" not in server.output(), server.output()


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=IO_TIMEOUT) as resp:
        return resp.read().decode()


def test_help_prints_the_usage_and_serves_nothing(command: tuple[list[str], Path, str]) -> None:
    args, cwd, prog = command
    started = time.monotonic()
    result = run([*args, "--help"], cwd)
    assert time.monotonic() - started < TIMEOUT
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {prog} ")
    for flag in ("--processes N", "--workers M", "--dev", "--log-level LEVEL", "--fast", "--version"):
        assert flag in result.stdout
    assert result.stderr == ""
    assert_served_nothing(result)


def test_version_prints_robyn_fast_and_its_version_and_serves_nothing(command: tuple[list[str], Path, str]) -> None:
    args, cwd, _ = command
    result = run([*args, "--version"], cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"robyn_fast {robyn_fast.__version__} ")
    assert result.stdout.count("\n") == 1
    assert result.stderr == ""
    assert_served_nothing(result)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--processes", "two"], "error: argument --processes: expected a whole number, got 'two'"),
        (["--workers", "0"], "error: argument --workers: expected 1 or more, got 0"),
        (["--log-level", "LOUD"], "error: argument --log-level: expected one of "),
        (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
    ],
)
def test_a_bad_flag_is_the_usage_on_stderr_and_exit_2(
    command: tuple[list[str], Path, str], flags: list[str], error: str
) -> None:
    args, cwd, prog = command
    result = run([*args, *flags], cwd)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"usage: {prog} ")
    assert lines[-1].startswith(f"{prog}: {error}"), lines
    assert_served_nothing(result)


@pytest.mark.parametrize("flags", [["--create"], ["--docs"], ["--compile-rust-path", "x"]])
def test_robyns_tools_are_one_line_and_exit_2(command: tuple[list[str], Path, str], flags: list[str]) -> None:
    args, cwd, prog = command
    result = run([*args, *flags], cwd)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"{prog}: {flags[0]} is not supported by robyn_fast: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert_served_nothing(result)


def test_dev_with_processes_is_exit_2(command: tuple[list[str], Path, str]) -> None:
    args, cwd, prog = command
    result = run([*args, "--dev", "--processes", "2"], cwd)
    assert result.returncode == 2
    assert result.stderr == (f"{prog}: --dev serves one process; it cannot be combined with --processes, "
                             "--workers or --fast\n")
    assert_served_nothing(result)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        # a variable's text goes through its flag's parser and its Config field's check
        ({"ROBYN_PORT": "abc"}, "ROBYN_PORT='abc': expected a whole number, got 'abc'"),
        ({"ROBYN_CLIENT_TIMEOUT": "-1"},
         "ROBYN_CLIENT_TIMEOUT='-1': Config.header_timeout must be a positive finite number, got -1.0"),
        ({"ROBYN_DEV_MODE": "true", "ROBYN_PROCESSES": "2"},
         "dev mode (--dev or ROBYN_DEV_MODE) serves one process; drop --processes/--workers"),
    ],
)
def test_a_bad_environment_variable_is_one_line_and_exit_2(
    command: tuple[list[str], Path, str], env: dict[str, str], line: str
) -> None:
    args, cwd, prog = command
    result = run(args, cwd, env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"{prog}: {line}\n"
    assert_served_nothing(result)


@pytest.mark.parametrize(("flags", "level"), [([], logging.INFO), (["--log-level", "DEBUG"], logging.DEBUG),
                                              (["--log-level", "warn"], logging.WARNING),
                                              (["--fast", "--processes", "1"], logging.WARNING)])
@pytest.mark.parametrize("form", ["script", "module"])
def test_the_log_level_reaches_the_root_logger(tmp_path: Path, form: str, flags: list[str], level: int) -> None:
    args, cwd, _ = app_command(tmp_path, form)
    with serving([*args, *flags], cwd) as server:
        m = server.wait_output(STARTED.pattern)
        out = server.output()
    assert int(m.group(2)) == level
    # The app's own debug record is shown exactly when the level is DEBUG.
    assert ("DEBUG testapp: a debug record" in out) == (level == logging.DEBUG), out
    # The announcement is an INFO record, shown when INFO is (before: a plain line on stderr otherwise).
    info_line = re.search(r"INFO robyn_fast\.server: robyn_fast: serving on http://127\.0\.0\.1:\d+", out)
    assert bool(info_line) == (level <= logging.INFO), out
    assert ("robyn_fast: serving on" in out) == (level <= logging.INFO), out


def test_sigterm_just_after_the_announcement_stops_the_server(tmp_path: Path, loop_kind: str) -> None:
    # Robyn.start() serves until SIGTERM, even one sent the moment the server
    # says it is serving (uvloop once lost it between two runs of its loop).
    script = write_app(tmp_path)
    for _ in range(3):
        server = ServerProcess([str(script)], loop_kind, cwd=tmp_path)
        try:
            server.wait_listening(TIMEOUT)
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait(TIMEOUT) == 0, server.output()
        finally:
            server.stop()
        assert re.search(r"^STOPPED pid=\d+$", server.output(), re.M), server.output()


def test_log_level_debug_applies_to_an_unmodified_robyn_app() -> None:
    # asyncio's loop logs its selector at DEBUG when it is created: visible
    # only when the level set by --log-level is in force before the loop is made.
    with serving(["-m", "robyn_fast", str(CHAT), "--log-level", "DEBUG"], ROOT, "asyncio") as server:
        server.wait_output(r"^STARTED \d+$")
        assert re.search(r"DEBUG asyncio: Using selector: \w+", server.output()), server.output()
    with serving(["-m", "robyn_fast", str(CHAT), "--log-level", "INFO"], ROOT, "asyncio") as server:
        server.wait_output(r"^STARTED \d+$")
        out = server.output()
        assert "Using selector" not in out and "INFO robyn_fast.server: robyn_fast: serving on" in out, out


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_timeouts_from_the_environment_reach_the_config_and_the_connections(tmp_path: Path, loop_kind: str) -> None:
    # app.start() asks for long timeouts; the environment wins, and the server uses its values.
    script = write_app(tmp_path, "port=0, client_timeout=30, keep_alive_timeout=40")
    env = {"ROBYN_CLIENT_TIMEOUT": "0.5", "ROBYN_KEEP_ALIVE_TIMEOUT": "0.75"}
    with serving([str(script)], tmp_path, loop_kind, env) as server:
        m = server.wait_output(STARTED.pattern)
        assert (m.group(3), m.group(4)) == ("0.5", "0.75")
        assert server.port is not None
        # A request head that never ends: 408 after ROBYN_CLIENT_TIMEOUT, well
        # before the 10 s read timeout (the 30 s of app.start() would fail it).
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            reply = read_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 408 "), reply
            assert time.monotonic() - started < IO_TIMEOUT
        # An idle keep-alive connection: closed after ROBYN_KEEP_ALIVE_TIMEOUT.
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = read_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"version 1"), reply


def test_the_timeouts_of_app_start_apply_without_the_environment(tmp_path: Path) -> None:
    script = write_app(tmp_path, "port=0, client_timeout=3.5, keep_alive_timeout=4.5")
    with serving([str(script)], tmp_path) as server:
        m = server.wait_output(STARTED.pattern)
    assert (m.group(3), m.group(4)) == ("3.5", "4.5")


@pytest.mark.parametrize("form", ["script", "module"])
def test_robyn_env_next_to_the_app_fills_in_what_is_not_set(tmp_path: Path, form: str) -> None:
    app_dir = tmp_path / "project"
    app_dir.mkdir()
    with socket.socket() as busy:
        # app.start() asks for a port that is taken; robyn.env's ROBYN_PORT=0 must win over it.
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        # ServerProcess always sets ROBYN_PORT: the app drops it, so that robyn.env is what supplies it.
        script = write_app(app_dir, f"port={taken}", prelude='import os\nos.environ.pop("ROBYN_PORT")\n')
        (app_dir / "robyn.env").write_text(
            "# robyn.env of the test app\n"
            "ROBYN_PORT=0\n"
            "ROBYN_FAST_TEST_GREETING = hello from robyn.env\n"
            "ROBYN_CLIENT_TIMEOUT=7\n"
            "ROBYN_KEEP_ALIVE_TIMEOUT=6\n"
        )
        # Run from elsewhere: robyn.env is found next to the app, not in the working directory.
        args = [str(script)] if form == "script" else ["-m", "robyn_fast", str(script)]
        with serving(args, tmp_path, env={"ROBYN_CLIENT_TIMEOUT": "2"}) as server:
            m = server.wait_output(STARTED.pattern)
            assert server.port not in (None, taken)
            assert get(server.port, "/env") == "hello from robyn.env"  # type: ignore[arg-type]
    # The environment's ROBYN_CLIENT_TIMEOUT is kept; the file's other values apply.
    assert (m.group(3), m.group(4), m.group(5)) == ("2.0", "6.0", "hello from robyn.env")


def test_a_malformed_robyn_env_stops_the_app_before_it_serves(tmp_path: Path) -> None:
    script = write_app(tmp_path)
    env_file = tmp_path / "robyn.env"
    env_file.write_text("GOOD=1\nnot an assignment\n")
    result = run([str(script)], tmp_path)
    assert result.returncode == 2  # a usage error, as a bad flag or variable
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{env_file}:2: expected KEY=VALUE, got 'not an assignment'" in lines[0], lines
    assert "serving on" not in result.stdout + result.stderr and "STARTED" not in result.stdout


# == hostile robyn.env, TLS files, broker URLs and variables (issue 16, item 9) ===========================


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a usage error prints (exit 2, no traceback, nothing served)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert_served_nothing(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("form", ["script", "module"])
def test_a_nul_byte_in_a_robyn_env_value_is_one_line_and_exit_2(tmp_path: Path, form: str) -> None:
    # before: os.environ refused the value: a ValueError traceback and exit 1
    args, cwd, prog = app_command(tmp_path, form)
    (tmp_path / "robyn.env").write_bytes(b"GOOD=1\nROBYN_FAST_TEST_GREETING=a\x00b\n")
    line = one_line_exit_2(run(args, cwd))
    assert line == (f"{prog}: {tmp_path / 'robyn.env'}:2: the value of ROBYN_FAST_TEST_GREETING holds a NUL byte, "
                    "which no environment variable can hold")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "too-large"])
def test_robyn_env_is_read_bounded_and_only_from_a_regular_file(tmp_path: Path, kind: str) -> None:
    # before: /dev/zero (and a FIFO nobody writes to) hung the start; a huge file was read whole
    script = write_app(tmp_path)
    env_file = tmp_path / "robyn.env"
    if kind == "dev-zero":
        env_file.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(env_file)
    else:
        env_file.write_bytes(b"# padding\n" * (110 * 1024))  # 1.1 MB of comments
    started = time.monotonic()
    line = one_line_exit_2(run([str(script)], tmp_path, timeout=TIMEOUT))
    assert time.monotonic() - started < TIMEOUT
    why = "larger than 1048576 bytes; not a configuration file" if kind == "too-large" else "not a regular file"
    assert line == f"app.py: {env_file}: {why}"


@pytest.mark.parametrize("flag", ["--ssl-certfile", "--ssl-keyfile", "ROBYN_FAST_SSL_CERTFILE"])
def test_tls_files_are_read_bounded_and_only_from_regular_files(tmp_path: Path, flag: str) -> None:
    # before: --ssl-certfile /dev/zero read forever (memory growing) and never started
    script = write_app(tmp_path)
    pem = tmp_path / "ok.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    if flag == "--ssl-keyfile":
        args, env, what = [str(script), "--ssl-certfile", str(pem), "--ssl-keyfile", "/dev/zero"], {}, "key file"
    elif flag == "--ssl-certfile":
        args, env, what = [str(script), "--ssl-certfile", "/dev/zero"], {}, "certificate file"
    else:
        args, env, what = [str(script)], {"ROBYN_FAST_SSL_CERTFILE": "/dev/zero"}, "certificate file"
    line = one_line_exit_2(run(args, tmp_path, env))
    assert line == f"app.py: TLS {what} /dev/zero: not a regular file"
    big = tmp_path / "big.pem"
    big.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (2 * 1024 * 1024))
    line = one_line_exit_2(run([str(script), "--ssl-certfile", str(big)], tmp_path))
    assert line == f"app.py: TLS certificate file {big}: larger than 1048576 bytes; not a configuration file"


SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}@127.0.0.1:notaport/0",
        f"redis://:{SECRET}@127.0.0.1:6379/zero",
        f"redis://{SECRET}@127.0.0.1:6379/0?bogus=1",
        f"http://user:{SECRET}@127.0.0.1:6379",
        f"rediss://u:{SECRET}@h/0?ssl_cert_reqs=maybe",
        f"redis://u:{SECRET}@/x@y:12:34",
    ],
)
@pytest.mark.parametrize("where", ["flag", "variable", "app.start"])
def test_a_broker_url_usage_error_never_shows_the_password(tmp_path: Path, url: str, where: str) -> None:
    # before: "app.py: broker URL 'redis://user:s3cr3t-Pw@127.0.0.1:notaport/0': Port could not be cast..."
    if where == "app.start":
        script = write_app(tmp_path, f"broker={url!r}")
        args, env = [str(script)], {}
    else:
        script = write_app(tmp_path)
        args = [str(script), "--broker", url] if where == "flag" else [str(script)]
        env = {"ROBYN_FAST_BROKER": url} if where == "variable" else {}
    result = run(args, tmp_path, env)
    line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert result.returncode == 2 and "broker URL" in line, result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr, result.stderr
    assert "***" in line  # the URL is shown, its password replaced


def test_a_broker_url_with_a_password_is_never_printed_while_serving(tmp_path: Path) -> None:
    """Announce lines, the broker's connect and outage lines, a wrong password: no password in any."""
    from .redis_helpers import redis_server

    with redis_server(password=SECRET) as redis:
        script = write_app(tmp_path)
        for url, expect in ((redis.url, r"broker: connected to Redis at redis://127\.0\.0\.1:\d+ as node"),
                            (redis.url.replace(SECRET, "Wr0ng-" + SECRET), r"broker: .*redis://127\.0\.0\.1:\d+")):
            with serving([str(script), "--log-level", "DEBUG", "--broker", url], tmp_path) as server:
                server.wait_output(expect)
                assert get(server.port) == "version 1"  # type: ignore[arg-type]
            assert SECRET not in server.output(), server.output()


# Values that were accepted leniently or ignored silently before; each is now one line naming the
# variable and exit 2, as the same text given to the variable's flag (where it has one) is.
LENIENT_BEFORE = [
    ("ROBYN_DEV_MODE", "maybe"),         # was: not dev, silently
    ("ROBYN_BROWSER_OPEN", "sure"),      # was: no browser, silently
    ("ROBYN_PORT", "8_080"),             # was: port 8080 (int() reads "_" separators)
    ("ROBYN_PORT", "\u0668\u0660"),      # was: port 80 (int() reads Arabic-Indic digits)
    ("ROBYN_PROCESSES", "1_0"),          # was: 10 processes
    ("ROBYN_WORKERS", "\uff12"),         # was: 2 (a full-width digit)
    ("ROBYN_CLIENT_TIMEOUT", "1_0"),     # was: 10 s
    ("ROBYN_KEEP_ALIVE_TIMEOUT", "\uff15"),  # was: 5 s
    ("ROBYN_HOST", "127.0.0.1 evil"),    # was: a bind error (exit 1) or worse, a resolver lookup
    ("ROBYN_FAST_LOOP", "asyncoi"),      # was: uvloop, silently
    ("ROBYN_FAST_LOOP", "ASYNCIO"),      # was: uvloop, silently (the server compares exactly)
    ("ROBYN_FAST_SSL_CERTFILE", "cert\x1b.pem"),
]


@pytest.mark.parametrize(("name", "value"), LENIENT_BEFORE)
def test_values_accepted_leniently_before_are_usage_errors(name: str, value: str) -> None:
    with pytest.raises(UsageError) as raised:
        resolve(env={name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}={value!r}: ") and "\n" not in message, message


def test_every_variable_is_validated_like_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """For every setting with both a flag and a variable: the text its flag refuses, its variable
    refuses with the same reason; a switch's variable takes only on/off words."""
    bad = {"processes": "1_0", "workers": "0", "log_level": "LOUD", "broker": "http://x", "ssl_certfile": "a\x07b",
           "ssl_keyfile": "k\x00", "metrics_path": "metrics", "host": "a b", "port": "65536", "uds": "s\x00",
           "fd": "-1", "forwarded_allow_ips": "nginx", "robyn_version": "0.99",
           "log_config": "no-such-logging.json", "tls_transport": "fastest"}
    checked = []
    for spec in cli.SETTINGS:
        if spec.env is None:
            continue
        if spec.switch:
            with pytest.raises(UsageError, match=f"^{spec.env}='maybe': expected true or false "):
                cli.environment({spec.env: "maybe"})
            assert cli.environment({spec.env: " Off "}) == {spec.name: False}
            checked.append(spec.name)
            continue
        if spec.flag is None or spec.redact is not None and spec.name == "ssl_keyfile_password":
            continue
        text = bad[spec.name]
        with pytest.raises(SystemExit):
            parse(spec.flag, text)
        flag_reason = capsys.readouterr().err.splitlines()[-1].split(f"argument {spec.flag}: ", 1)[1]
        with pytest.raises(UsageError) as raised:
            cli.environment({spec.env: text})
        assert str(raised.value).split("': ", 1)[1] == flag_reason
        checked.append(spec.name)
    assert {"processes", "workers", "broker", "ssl_certfile", "ssl_keyfile", "dev", "open_browser"} <= set(checked)


# == --dev ==============================================================================================


def children_started(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"dev: serving from pid (\d+)", server.output())]


def announced_ports(server: ServerProcess) -> list[int]:
    return [int(p) for p in re.findall(r"serving on http://127\.0\.0\.1:(\d+)", server.output())]


def wait_for_child(server: ServerProcess, n: int) -> int:
    """Wait until the reloader's ``n``-th child serves (its startup handler
    ran, then it announced its address); the child's pid."""
    assert wait_for(lambda: len(children_started(server)) >= n, TIMEOUT), server.output()
    pid = children_started(server)[n - 1]
    serving_after_start = re.compile(rf"^STARTED pid={pid} .*?serving on http://", re.M | re.S)
    assert wait_for(lambda: serving_after_start.search(server.output()), TIMEOUT), server.output()
    return pid


def gone(pid: int, script: Path) -> bool:
    """No process ``pid`` running ``script`` (a reused pid is another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return str(script).encode() not in cmdline


def rewrite(script: Path, source: str) -> None:
    """Write ``source`` and make sure the modification time moves forward."""
    before = script.stat().st_mtime_ns
    script.write_text(source)
    after = script.stat().st_mtime_ns
    if after <= before:
        os.utime(script, ns=(after, before + 1_000_000))


def close_code(conn: wsclient.WebSocket) -> tuple[int, bytes]:
    """Read frames until a Close arrives; answer it; (code, reason)."""
    while True:
        frame = conn.recv_frame()
        if frame.opcode == wsclient.ABNF.OPCODE_CLOSE:
            with contextlib.suppress(wsclient.WebSocketException, OSError):
                conn.send_close()
            return struct.unpack("!H", frame.data[:2])[0], frame.data[2:]


def dev_command(tmp_path: Path, form: str) -> tuple[list[str], Path]:
    args, cwd, _ = app_command(tmp_path, form)
    return [*args, "--dev"], cwd


@pytest.mark.parametrize("form", ["script", "module"])
def test_dev_restarts_on_a_change_on_the_same_port_and_closes_websockets_with_1001(
    tmp_path: Path, form: str, loop_kind: str
) -> None:
    args, cwd = dev_command(tmp_path, form)
    script = tmp_path / "app.py"
    server = ServerProcess(args, loop_kind, cwd=cwd)
    conn = None
    try:
        port = server.wait_listening(TIMEOUT)
        first = wait_for_child(server, 1)
        assert first != server.pid
        assert int(server.wait_output(STARTED.pattern).group(2)) == logging.DEBUG  # --dev's default level
        assert get(port) == "version 1"
        conn = wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=IO_TIMEOUT)
        conn.send("ping")
        assert conn.recv() == "ping"

        rewrite(script, script.read_text().replace('BODY = "version 1"', 'BODY = "version 2"'))
        # The open WebSocket is closed as the old child shuts down gracefully.
        assert close_code(conn) == (1001, b"server shutting down")
        server.wait_output(rf"dev: {re.escape(str(script))} changed; restarting", TIMEOUT)
        second = wait_for_child(server, 2)
        assert second not in (first, server.pid)
        assert wait_for(lambda: gone(first, script), TIMEOUT)
        assert f"STOPPED pid={first}" in server.output()  # the old child's shutdown handler ran
        assert announced_ports(server) == [port, port]
        assert get(port) == "version 2"
        with contextlib.closing(wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=IO_TIMEOUT)) as c2:
            c2.send("pong")
            assert c2.recv() == "pong"

        assert server.stop(signal.SIGTERM, TIMEOUT) == 0
        assert gone(second, script)
        assert f"STOPPED pid={second}" in server.output()
    finally:
        if conn is not None:
            conn.close(timeout=1)
        server.stop()
    out = server.output()
    assert "Traceback" not in out, out
    assert len(children_started(server)) == 2, out


def test_dev_survives_a_syntax_error_and_serves_again_once_it_is_fixed(tmp_path: Path) -> None:
    args, cwd = dev_command(tmp_path, "script")
    script = tmp_path / "app.py"
    good = script.read_text()
    server = ServerProcess(args, cwd=cwd)
    try:
        port = server.wait_listening(TIMEOUT)
        first = wait_for_child(server, 1)
        assert get(port) == "version 1"

        rewrite(script, good + "\ndef broken(:\n")
        m = server.wait_output(r"dev: the app exited with status (\d+); waiting for a change to start it again",
                               TIMEOUT)
        assert m.group(1) == "1"
        assert "SyntaxError" in server.output()
        assert len(children_started(server)) == 2
        assert gone(first, script) and gone(children_started(server)[1], script)
        assert server.proc.poll() is None  # the reloader is still running...
        # ...and nothing serves the broken app: a request made now waits in the backlog of the
        # reloader's listening socket (the address stays this server's) until a fixed app answers it.
        waiting = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        waiting.settimeout(1.0)
        with pytest.raises(TimeoutError):
            waiting.recv(1)

        rewrite(script, good.replace('BODY = "version 1"', 'BODY = "version 3"'))
        third = wait_for_child(server, 3)
        assert announced_ports(server) == [port, port]  # the broken child never served
        waiting.settimeout(IO_TIMEOUT)
        reply = b""
        while chunk := waiting.recv(65536):
            reply += chunk
        waiting.close()
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"version 3"), reply
        assert get(port) == "version 3"
        assert server.stop(signal.SIGTERM, TIMEOUT) == 0
        assert gone(third, script)
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_reloader_stops_its_child_gracefully_and_exits_0(tmp_path: Path, sig: int) -> None:
    args, cwd = dev_command(tmp_path, "script")
    script = tmp_path / "app.py"
    server = ServerProcess(args, cwd=cwd)
    try:
        port = server.wait_listening(TIMEOUT)
        child = wait_for_child(server, 1)
        with contextlib.closing(wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=IO_TIMEOUT)) as c:
            c.send("hi")
            assert c.recv() == "hi"
            os.kill(server.pid, sig)
            assert close_code(c) == (1001, b"server shutting down")
        assert server.wait(TIMEOUT) == 0
        assert gone(child, script)
        assert f"STOPPED pid={child}" in server.output()
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()


def test_robyn_dev_mode_in_the_environment_runs_the_reloader(tmp_path: Path) -> None:
    args, cwd, _ = app_command(tmp_path, "script")
    with serving(args, cwd, env={"ROBYN_DEV_MODE": "true"}) as server:
        child = wait_for_child(server, 1)
        assert child != server.pid
        assert int(server.wait_output(rf"^STARTED pid={child} level=(\d+)").group(1)) == logging.DEBUG


def test_dev_restarts_when_robyn_env_changes_and_the_app_sees_the_new_values(tmp_path: Path) -> None:
    args, cwd, _ = app_command(tmp_path, "script")
    env_file = tmp_path / "robyn.env"
    env_file.write_text("ROBYN_FAST_TEST_GREETING=first\n")
    with serving([*args, "--dev"], cwd) as server:
        assert server.port is not None
        wait_for_child(server, 1)
        assert get(server.port, "/env") == "first"
        rewrite(env_file, "ROBYN_FAST_TEST_GREETING=second\n")
        server.wait_output(rf"dev: {re.escape(str(env_file))} changed; restarting", TIMEOUT)
        second = wait_for_child(server, 2)
        assert server.wait_output(rf"^STARTED pid={second} .* greeting=(.*)$").group(1) == "second"
        assert eventually(lambda: get(server.port, "/env"), lambda body: body == "second")  # type: ignore[arg-type]
