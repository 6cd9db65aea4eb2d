"""docs/deploy.md's nginx configuration, for real: Debian's nginx (``make
test`` installs it) runs ``examples/deploy/nginx-site.conf``, the file the
guide shows, as a reverse proxy in front of ``examples/echo.py`` with two
worker processes; a real client (``websockets``) upgrades and echoes through
it, ``http.client`` gets the page, and the kernel's socket table shows both
workers serving nginx's upstream connections. nginx runs in the foreground
as a child of the test (``daemon off``), with its pid, temp and log files in
a private directory, and is stopped by its pid. A test that cannot start
nginx fails: it never skips.

The guide cannot drift from the files: the last test checks that
docs/deploy.md holds each file of ``examples/deploy/`` verbatim."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from .loops import LOOPS
from .process_helpers import EXAMPLES, ROOT, connections_per_process, serve_script, worker_pids
from .server_helpers import wait_for

DEPLOY = EXAMPLES / "deploy"
SITE = DEPLOY / "nginx-site.conf"
GUIDE = ROOT / "docs" / "deploy.md"
# What the site file says, and what the test puts in its place.
UPSTREAM = "server 127.0.0.1:8000;"
LISTEN = "listen 80;"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_config(backend_port: int, listen_port: int) -> str:
    """The guide's site file with the test's two ports in it."""
    text = SITE.read_text(encoding="utf-8")
    assert text.count(UPSTREAM) == 1 and text.count(LISTEN) == 1, f"{SITE} no longer has {UPSTREAM!r} and {LISTEN!r}"
    return text.replace(UPSTREAM, f"server 127.0.0.1:{backend_port};").replace(
        LISTEN, f"listen 127.0.0.1:{listen_port};")


def main_config(tmp: Path, site: Path) -> str:
    """A whole nginx.conf around the site file: foreground, everything it
    writes under ``tmp``."""
    # As root, nginx's workers switch to the user of the `user` directive
    # (nobody, whose group may not exist); the files here are root's.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\n{user}worker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {tmp / 'access.log'};\n{temp}\n    include {site};\n}}\n")


@contextlib.contextmanager
def nginx_in_front_of(backend_port: int, timeout: float = 20.0) -> Iterator[tuple[int, Path]]:
    """nginx proxying a free 127.0.0.1 port to ``backend_port``; yields
    (port, its private directory). Stopped with SIGQUIT, then SIGKILL, by
    pid."""
    binary = shutil.which("nginx")
    assert binary, "nginx is not installed: `make test` installs it (apt-get install nginx)"
    tmp = Path(tempfile.mkdtemp(prefix="rf-nginx-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(10):  # another process may take the free port before nginx binds it
            port = _free_port()
            (tmp / "site.conf").write_text(site_config(backend_port, port), encoding="utf-8")
            (tmp / "nginx.conf").write_text(main_config(tmp, tmp / "site.conf"), encoding="utf-8")
            out = open(tmp / "stderr.log", "wb")
            proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e",
                                     str(tmp / "error.log")], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
            out.close()
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.05)
            else:
                log = (tmp / "error.log").read_text(errors="replace") if (tmp / "error.log").exists() else ""
                stop(proc)
                proc = None
                if "Address already in use" in log:
                    continue
                raise AssertionError(f"nginx did not start:\n{log}\n{(tmp / 'stderr.log').read_text(errors='replace')}")
            yield port, tmp
            return
        raise AssertionError("nginx found no free port in 10 tries")
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGQUIT (nginx's graceful stop) to the master; SIGKILL to its process
    group (its worker) if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_websocket_and_http_through_nginx_to_two_workers(loop_kind: str) -> None:
    with serve_script(EXAMPLES / "echo.py", loop_kind, args=["--processes", "2"]) as server:
        assert server.port is not None
        assert wait_for(lambda: len(worker_pids(server.pid)) == 2, 20)
        workers = worker_pids(server.pid)
        with nginx_in_front_of(server.port) as (port, tmp):
            # HTTP: the page through the proxy
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 200 and "<h1>robyn_fast echo</h1>" in body
            assert resp.getheader("Server", "").startswith("nginx")
            conn.close()

            # WebSocket: 16 clients at once, each echoing text and binary, one of 256 KiB
            with contextlib.ExitStack() as stack:
                clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10,
                                                       max_size=2**20, compression=None))
                           for _ in range(16)]
                for i, c in enumerate(clients):
                    c.send(f"hello {i}")
                    c.send(bytes([i]) * 1000)
                for i, c in enumerate(clients):
                    assert c.recv(timeout=10) == f"hello {i}"
                    assert c.recv(timeout=10) == bytes([i]) * 1000
                big = os.urandom(256 * 1024)
                clients[0].send(big)
                assert clients[0].recv(timeout=10) == big
                # nginx holds one upstream connection per client; the kernel
                # spread them over both workers (all on one: 2 in 65,536)
                spread = connections_per_process(server.port, workers)
                assert sum(spread.values()) == 16 and all(spread.values()), spread
                for c in clients:
                    c.close()
                    assert c.close_code == 1000
            # the requests went through nginx: its access log has them (an
            # upgraded one is logged when its connection ends)
            access = tmp / "access.log"
            assert wait_for(lambda: len(re.findall(r'"GET /ws HTTP/1\.1" 101 ', access.read_text())) == 16, 10), \
                access.read_text()
            assert re.search(r'"GET / HTTP/1\.1" 200 ', access.read_text())
    assert server.returncode == 0, server.output()
    assert "Traceback" not in server.output()


def test_the_guide_shows_the_deploy_files_verbatim() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    files = sorted(p for p in DEPLOY.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"nginx-site.conf", "robyn-fast.socket", "robyn-fast.service", "Dockerfile"}
    for path in files:
        assert path.read_text(encoding="utf-8").strip() in guide, f"docs/deploy.md does not show {path} as it is"
