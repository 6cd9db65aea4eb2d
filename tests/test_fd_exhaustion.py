"""Running out of file descriptors (robyn_fast.listener), on uvloop and asyncio.

A server in a subprocess gets a low RLIMIT_NOFILE once it listens; clients
then open far more connections than it can hold. Each one must be either
held by the server or answered ``503`` and closed (none dropped silently,
none left waiting), the server must not spin while it is out of
descriptors, its log must say once how many it refused (no traceback), and
once the clients let go it must serve a WebSocket echo and an HTTP request
as usual.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import time
import urllib.request
from pathlib import Path

import websocket as wsclient

from .process_helpers import ROOT, ServerProcess, open_fds
from .server_helpers import eventually

APP = ROOT / "tests" / "robyn_apps" / "fd_limit.py"
LIMIT = 96  # the server's RLIMIT_NOFILE once it listens
CLIENTS = 3 * LIMIT  # first wave: about two thirds of them cannot be held
LATE = 40  # connections attempted while the server is out of descriptors
REFUSED_LINE = re.compile(r"out of file descriptors \(EMFILE\): refused (\d+) connections in the last [\d.]+ s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_held(port: int) -> set[int]:
    """Client ports of the connections to ``port`` that a process holds
    (accepted: a socket inode), from /proc/net/tcp."""
    held = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if int(local.rsplit(":", 1)[1], 16) == port and state == "01" and inode:  # 01: ESTABLISHED
            held.add(int(remote.rsplit(":", 1)[1], 16))
    return held


class Client:
    """One raw TCP connection that sends nothing and records what it gets."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.eof = False

    def poll(self) -> None:
        while not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
            self.data += chunk

    @property
    def refused(self) -> bool:
        return self.eof and self.data.startswith(b"HTTP/1.1 503 ")


def settle(clients: list[Client], port: int) -> tuple[list[Client], list[Client]]:
    """Wait until every client is either held by the server or refused;
    (held, refused)."""

    def decided() -> tuple[int, int, int]:
        held = server_held(port)
        for c in clients:
            c.poll()
        n_held = sum(c.port in held for c in clients)
        n_refused = sum(c.refused for c in clients)
        return n_held, n_refused, len(clients)

    eventually(decided, lambda v: v[0] + v[1] == v[2], timeout=20, interval=0.05)
    held = server_held(port)
    return [c for c in clients if c.port in held], [c for c in clients if c.refused]


def test_out_of_file_descriptors(loop_kind: str) -> None:
    server = ServerProcess([str(APP)], loop_kind)
    clients: list[Client] = []
    try:
        port = server.wait_listening()
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

        clients = [Client(port) for _ in range(CLIENTS)]
        held, refused = settle(clients, port)
        assert refused, "the server held every connection: the limit was not reached"
        assert len(held) + len(refused) == CLIENTS
        assert open_fds(server.pid) == LIMIT  # full: what it could not hold was refused, not dropped
        for c in refused:
            head, _, body = c.data.partition(b"\r\n\r\n")
            assert b"retry-after: 1" in head.lower()
            assert b"file descriptor" in body

        # Out of descriptors, with more clients arriving: the server answers
        # them and otherwise sleeps (asyncio used to spin here).
        before = cpu_seconds(server.pid)
        started = time.monotonic()
        late: list[Client] = []
        for _ in range(LATE):
            late.append(Client(port))
            time.sleep(0.05)  # spread over ~2 s: a window in which a busy loop would show
        clients += late
        _, refused_late = settle(late, port)
        window = time.monotonic() - started
        spent = cpu_seconds(server.pid) - before
        assert len(refused_late) == LATE
        assert spent < 0.1 * window, f"{spent:.2f} s of CPU in {window:.1f} s while out of descriptors"

        # The clients let go: the episode ends with its one line, and the
        # server serves as usual.
        for c in clients:
            c.sock.close()
        clients = []
        match = server.wait_output(REFUSED_LINE.pattern)
        assert int(match.group(1)) == len(refused) + LATE

        conn = wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=5)
        try:
            conn.send("still here")
            assert conn.recv() == "still here"
        finally:
            conn.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200 and response.read() == b"ok"
        # A second round: still one descriptor spare for each new connection.
        again = [Client(port) for _ in range(5)]
        clients = again
        held_again, refused_again = settle(again, port)
        assert len(held_again) == 5 and not refused_again
    finally:
        for c in clients:
            c.sock.close()
        server.stop()
    output = server.output()
    assert len(REFUSED_LINE.findall(output)) == 1, output[-3000:]
    assert "Traceback" not in output and "out of system resource" not in output, output[-3000:]
