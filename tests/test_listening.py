"""Where a server listens, from the command line: ``--host``/``--port`` beside
their variables, ``--uds PATH`` (HTTP and WebSocket over a Unix socket, a
stale socket file replaced, a live one refused, the file removed on exit),
``--fd N`` (an inherited socket, passed by the test or by systemd's
``systemd-socket-activate``, served by every worker of ``--processes``),
the usage errors of combinations that cannot work, and ``--help`` naming
every variable. Real server processes and real clients."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from robyn_fast import cli
from robyn_fast.cli import UsageError

from .codec_helpers import masked
from .loops import LOOPS
from .process_helpers import ServerProcess
from .server_helpers import eventually, read_frame, recv_all, recv_until, upgrade_request

APP = """
    import os
    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)

    @app.get("/pid")
    def pid(request):
        return f"{os.getpid()} {request.ip_addr} {request.url.scheme}"

    ws = WebSocket(app, "/ws")

    @ws.on("message")
    def echo(ws, msg):
        return "echo " + msg

    app.start(port=8080)
"""

# No host or port from the environment: --uds/--fd refuse them (the helper sets both by default).
NO_ADDRESS = {"ROBYN_HOST": "", "ROBYN_PORT": ""}


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(APP))
    return path


@contextlib.contextmanager
def _server(script: Path, args: list[str], loop_kind: str = "uvloop", env: dict[str, str] | None = None,
            pass_fds: tuple[int, ...] = (), prefix: list[str] | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess([str(script), *args], loop_kind, {**NO_ADDRESS, **(env or {})}, pass_fds=pass_fds,
                           prefix=prefix)
    try:
        yield server
    finally:
        server.stop()


def _unix_get(path: str, target: str = "/pid") -> bytes:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        return recv_all(sock)
    finally:
        sock.close()


def _tcp_get(port: int, target: str = "/pid", extra: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        return recv_all(sock)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_uds_serves_http_and_websocket_and_removes_its_file(script: Path, tmp_path: Path, loop_kind: str) -> None:
    path = str(tmp_path / "app.sock")
    with _server(script, ["--uds", path, "--forwarded-allow-ips", "unix:"], loop_kind) as server:
        server.wait_output(rf"serving on unix:{re.escape(path)}")
        response = _unix_get(path)
        assert response.startswith(b"HTTP/1.1 200"), response
        pid, ip, scheme = response.partition(b"\r\n\r\n")[2].decode().split()
        assert int(pid) == server.pid and ip == "None" and scheme == "http"
        # a Unix socket peer is trusted with "unix:": a proxy in front of it names the client
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.4\r\nX-Forwarded-Proto: https\r\n"
                     b"Connection: close\r\n\r\n")
        assert recv_all(sock).endswith(b" 203.0.113.4 https")
        sock.close()
        # WebSocket over AF_UNIX
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(upgrade_request("/ws") + masked(0x81, b"hi"))
        head, _, rest = recv_until(sock, b"\r\n\r\n").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert read_frame(sock, rest)[1] == b"echo hi"
        sock.close()
        assert server.stop() == 0
    assert not os.path.exists(path)


def test_uds_replaces_a_stale_file_and_refuses_a_live_socket_or_another_file(script: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # a file left by a server that is gone: nothing listens on it
    stale.close()
    with _server(script, ["--uds", path]) as first:
        first.wait_output("serving on unix:")
        assert _unix_get(path).startswith(b"HTTP/1.1 200")
        with _server(script, ["--uds", path]) as second:
            assert second.wait(20) == 1
            assert re.search(rf"cannot listen on unix:{re.escape(path)}: .*listening on {re.escape(path)} already",
                             second.output()), second.output()
        assert _unix_get(path).startswith(b"HTTP/1.1 200")  # the first keeps its socket file
    regular = tmp_path / "notes.txt"
    regular.write_text("keep me")
    with _server(script, ["--uds", str(regular)]) as third:
        assert third.wait(20) == 1
        assert "is not a socket (not removed)" in third.output()
    assert regular.read_text() == "keep me"


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _pids_seen(port: int, want: int, tries: int = 200) -> set[int]:
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(int(_tcp_get(port).partition(b"\r\n\r\n")[2].split()[0]))
        if len(seen) >= want:
            break
    return seen


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_fd_is_served_by_every_worker(script: Path, loop_kind: str) -> None:
    listening = _listening_socket()
    port = listening.getsockname()[1]
    fd = listening.fileno()
    try:
        with _server(script, ["--fd", str(fd), "--processes", "2"], loop_kind, pass_fds=(fd,)) as server:
            server.wait_output(r"with 2 worker processes")
            listening.close()  # the server's copy is what serves now
            assert len(_pids_seen(port, 2)) == 2
            assert server.stop() == 0
    finally:
        listening.close()


def test_fd_that_is_no_listening_socket_is_one_line_and_exit_1(script: Path, tmp_path: Path) -> None:
    with _server(script, ["--fd", "97"]) as server:  # not open in the child
        assert server.wait(20) == 1
        assert "cannot listen on fd 97: " in server.output()
    with open(tmp_path / "file", "w") as f:
        with _server(script, ["--fd", str(f.fileno())], pass_fds=(f.fileno(),)) as server:
            assert server.wait(20) == 1
            assert f"cannot listen on fd {f.fileno()}: descriptor {f.fileno()} is not a socket" in server.output()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed (Debian: apt-get install systemd)")
def test_systemd_socket_activation_passes_fd_3(script: Path) -> None:
    with socket.socket() as probe:  # a free port for systemd-socket-activate to bind (it cannot take 0 and say)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    activate = shutil.which("systemd-socket-activate")
    assert activate is not None
    with _server(script, ["--fd", "3", "--processes", "2"],
                 prefix=[activate, "-l", f"127.0.0.1:{port}", "-E", "PYTHONUNBUFFERED", "-E", "ROBYN_FAST_LOOP",
                         "-E", "PATH", "-E", "PYTHONPATH", "-E", "ROBYN_HOST", "-E", "ROBYN_PORT"]) as server:
        # systemd-socket-activate listens, then starts the server on the first connection
        server.wait_output(rf"Listening on 127\.0\.0\.1:{port}")
        assert len(eventually(lambda: _pids_seen(port, 2, tries=50), lambda s: len(s) == 2, timeout=30)) == 2
        server.wait_output(rf"serving on http://127\.0\.0\.1:{port} with 2 worker processes")


def test_host_and_port_flags_serve_and_win_over_the_environment(script: Path) -> None:
    with _server(script, ["--host", "127.0.0.1", "--port", "0"], env={"ROBYN_PORT": "1"}) as server:
        port = server.wait_listening()
        assert _tcp_get(port).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("argv, env, needle", [
    (["--uds", "/tmp/x.sock", "--port", "1"], {}, "--uds (or ROBYN_UDS) serves on that socket: --port"),
    (["--fd", "3", "--host", "::1"], {}, "--fd (or ROBYN_FD) serves on that socket: --host"),
    (["--fd", "3"], {"ROBYN_PORT": "80"}, "--port (or ROBYN_PORT) cannot be combined"),
    (["--fd", "3", "--uds", "/tmp/x"], {}, "--uds and --fd"),
    (["--proxy-protocol", "--ssl-certfile", "c.pem"], {}, "PROXY header comes before the TLS handshake"),
    (["--forwarded-allow-ips", "10.0.0.0/33"], {}, "argument --forwarded-allow-ips"),
])
def test_combinations_that_cannot_work_are_usage_errors(argv: list[str], env: dict[str, str], needle: str) -> None:
    try:
        cli.resolve(cli.parse(argv, "app.py"), env, "127.0.0.1", 8080)
    except UsageError as exc:
        assert needle in str(exc)
    except SystemExit as exc:  # a flag's own argument: the usage and exit 2
        assert exc.code == 2
    else:
        raise AssertionError(f"{argv} {env}: accepted")


def test_a_usage_error_from_a_running_script_exits_2(script: Path) -> None:
    with _server(script, ["--uds", "/tmp/never.sock", "--port", "0"]) as server:
        assert server.wait(20) == 2
        assert "--uds (or ROBYN_UDS) serves on that socket" in server.output()


def test_help_names_every_variable() -> None:
    text = cli.help_text("app.py")
    for spec in cli.SETTINGS:
        if spec.env is not None:
            assert spec.env in text, spec.env
        if spec.flag is not None:
            assert spec.flag in text, spec.flag
    for flag in ("--host HOST", "--port PORT", "--uds PATH", "--fd N", "--forwarded-allow-ips LIST",
                 "--proxy-protocol", "ROBYN_FORWARDED_ALLOW_IPS", "ROBYN_PROXY_PROTOCOL"):
        assert flag in text


def test_dev_serves_a_unix_socket_through_its_children(script: Path, tmp_path: Path) -> None:
    """--dev with --uds: the reloader's child serves the reloader's socket (it used to be handed the path's
    second character as its port, and stopped with a usage error)."""
    path = str(tmp_path / "dev.sock")
    with _server(script, ["--dev", "--uds", path]) as server:
        server.wait_output(rf"serving on unix:{re.escape(path)}")
        pid = int(_unix_get(path).partition(b"\r\n\r\n")[2].split()[0])
        assert pid != server.pid  # the child answers
        assert server.stop() == 0
    assert not os.path.exists(path)
