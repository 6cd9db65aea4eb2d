"""The one launch path (robyn_fast.workers.launch), with real server processes:

- a second server on an address a first one serves, in every combination of
  one process, worker processes and ``--dev``, exits 1 with one line, and the
  first keeps its clients and gets every new connection (no ``SO_REUSEPORT``
  group for the kernel to split connections over); the same against a foreign
  listener that set ``SO_REUSEPORT`` itself;
- "cannot listen on" is printed exactly once in each mode;
- every address family the host resolves to is served, in one process, with
  workers and under ``--dev``.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .process_helpers import ServerProcess

TIMEOUT = 10.0
NEW_CONNECTIONS = 12

APP = """
    import os
    from robyn_fast import Robyn

    app = Robyn(__file__)

    @app.get("/pid")
    def pid(request):
        return str(os.getpid())

    app.start(host=os.environ.get("LAUNCH_TEST_HOST", "127.0.0.1"), port=0)
"""

# The start-up line of one process or a supervisor: the first URL's port (any host, IPv6 in brackets).
SERVING = r"serving on https?://(?:\[[^\]]*\]|[^:/\s]*):(\d+)"

MODES = {"one": [], "workers": ["--processes", "2"], "dev": ["--dev"]}


def _script(tmp_path: Path, name: str) -> Path:
    # Each server its own directory: --dev watches the app's directory tree.
    directory = tmp_path / name
    directory.mkdir()
    script = directory / "app.py"
    script.write_text(textwrap.dedent(APP))
    return script


def _descendants(pid: int) -> set[int]:
    found = {pid}
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                found |= _descendants(int(child))
    return found


def _get_pid(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/pid")
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (response.status, body)
    return int(body)


def _pid_over_a_new_connection(host: str, port: int) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        return _get_pid(conn)
    finally:
        conn.close()


@contextlib.contextmanager
def _serving(script: Path, mode: str, *, port: int = 0, host: str = "127.0.0.1") -> Iterator[ServerProcess]:
    # An empty ROBYN_HOST is no address: app.start()'s host (every interface for "") is what applies.
    env = {"ROBYN_HOST": "", "LAUNCH_TEST_HOST": host}
    server = ServerProcess([str(script), *MODES[mode]], env=env, port=port, cwd=script.parent)
    try:
        m = server.wait_output(SERVING, timeout=30)
        server.port = int(m.group(1))
        yield server
    finally:
        server.stop()


def _one_line_exit_1(server: ServerProcess, port: int) -> None:
    code = server.wait(30)
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, (code, lines)
    assert lines[0].startswith(f"robyn_fast: cannot listen on 127.0.0.1:{port}: "), lines
    assert "address already in use" in lines[0].lower(), lines


@pytest.mark.parametrize("second", list(MODES))
@pytest.mark.parametrize("first", list(MODES))
def test_a_second_server_on_a_served_port_exits_1_and_the_first_keeps_every_connection(
    tmp_path: Path, first: str, second: str
) -> None:
    with _serving(_script(tmp_path, "first"), first) as server:
        port = server.port
        assert port is not None
        ours = _descendants(server.pid)
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)  # a client of the first, kept open
        try:
            assert _get_pid(kept) in ours
            intruder = ServerProcess([str(_script(tmp_path, "second")), *MODES[second]], port=port,
                                     cwd=tmp_path / "second")
            _one_line_exit_1(intruder, port)
            assert _get_pid(kept) in ours  # the kept connection still answers
            ours = _descendants(server.pid)  # (a worker restarted meanwhile would be ours too)
            reached = [_pid_over_a_new_connection("127.0.0.1", port) for _ in range(NEW_CONNECTIONS)]
            assert set(reached) <= ours, (reached, ours)
        finally:
            kept.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_a_foreign_reuseport_listener_keeps_its_port(tmp_path: Path, mode: str) -> None:
    """Anything else that listens with SO_REUSEPORT (a server that lets its
    own processes share a port) is not joined either."""
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT here")
    with socket.socket() as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        foreign.bind(("127.0.0.1", 0))
        foreign.listen(64)
        port = foreign.getsockname()[1]
        server = ServerProcess([str(_script(tmp_path, "app")), *MODES[mode]], port=port, cwd=tmp_path / "app")
        _one_line_exit_1(server, port)
        # Every new connection reaches the foreign listener.
        foreign.settimeout(TIMEOUT)
        for _ in range(NEW_CONNECTIONS):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
                accepted, _ = foreign.accept()
                accepted.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_cannot_listen_is_printed_once(tmp_path: Path, mode: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ServerProcess([str(_script(tmp_path, "app")), *MODES[mode]], port=port, cwd=tmp_path / "app")
        code = server.wait(30)
    out = server.output()
    assert code == 1 and out.count("cannot listen on") == 1, out
    assert [line for line in out.splitlines() if line.strip()] == [
        f"robyn_fast: cannot listen on 127.0.0.1:{port}: Address already in use"], out


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("host", ["::", ""])
def test_every_address_family_is_served(tmp_path: Path, host: str, mode: str) -> None:
    """``"::"`` (one dual-stack socket) and ``""`` (an IPv4 and an IPv6
    socket on one port) answer on 127.0.0.1 and ::1, whichever the mode."""
    with _serving(_script(tmp_path, "app"), mode, host=host) as server:
        port = server.port
        assert port is not None
        ours = _descendants(server.pid)
        for address in ("127.0.0.1", "::1"):
            assert _pid_over_a_new_connection(address, port) in ours, address


# -- the binder itself (robyn_fast.listener), in this process ------------------------------------------------


def test_a_group_takes_joiners_and_refuses_every_other_server() -> None:
    from robyn_fast.listener import join, joinable, listen, reuse_port_available

    if not reuse_port_available():
        pytest.skip("no SO_REUSEPORT spreading here")
    group = listen("127.0.0.1", 0, 16, shareable=True)
    port = group[0].getsockname()[1]
    try:
        assert joinable(group)
        worker = join(group, 16)
        try:
            assert [s.getsockname() for s in worker] == [s.getsockname() for s in group]
            for shareable in (False, True):  # a second server, one process or a supervisor
                with pytest.raises(OSError) as info:
                    listen("127.0.0.1", port, 16, shareable=shareable)
                assert info.value.errno == errno.EADDRINUSE
            # A plain server's sockets take no joiner.
            plain = listen("127.0.0.1", 0, 16)
            try:
                assert not joinable(plain)
                with pytest.raises(OSError) as info:
                    join(plain, 16)
                assert info.value.errno == errno.EADDRINUSE
            finally:
                for sock in plain:
                    sock.close()
        finally:
            for sock in worker:
                sock.close()
    finally:
        for sock in group:
            sock.close()


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_every_interface_is_one_port_in_both_families() -> None:
    from robyn_fast.listener import join, listen

    sockets = listen("", 0, 16, shareable=True)
    try:
        families = {s.family: s for s in sockets}
        assert set(families) == {socket.AF_INET, socket.AF_INET6}
        assert len({s.getsockname()[1] for s in sockets}) == 1
        assert families[socket.AF_INET6].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        worker = join(sockets, 16)
        assert [(s.family, s.getsockname()) for s in worker] == [(s.family, s.getsockname()) for s in sockets]
        for sock in worker:
            sock.close()
    finally:
        for sock in sockets:
            sock.close()
    (dual,) = listen("::", 0, 16)
    try:
        assert dual.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0  # IPv4 clients too
    finally:
        dual.close()
