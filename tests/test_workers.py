"""Worker processes: an unmodified Robyn chat app on `--processes 2`, with
clients placed on both workers (told apart with the kernel's socket table),
broadcasts and private messages crossing them, ids naming their worker, a
worker killed and replaced, SIGTERM with clients on every worker, crash at
start-up, a busy port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket as wsclient

from robyn_fast.websocket.ids import node_of

from .process_helpers import ROOT, ServerProcess, serve_script
from .server_helpers import eventually

CHAT = ROOT / "tests" / "robyn_apps" / "chat.py"
TIMEOUT = 10.0


# -- who holds which connection: the kernel's socket table ------------------------------------------


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's children: its workers."""
    with open(f"/proc/{supervisor}/task/{supervisor}/children") as f:
        return sorted(int(pid) for pid in f.read().split())


def _server_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return inode
    return None


def owner(client: Client, server_port: int, pids: list[int]) -> int:
    """The worker process whose fd table holds the server end of ``client``'s TCP connection."""
    inode = _server_inode(server_port, client.ws.sock.getsockname()[1])
    assert inode, "no server-side socket for this client in /proc/net/tcp"
    wanted = f"socket:[{inode}]"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
    raise AssertionError(f"no worker among {pids} holds {wanted}")


# -- chat clients ------------------------------------------------------------------------------------------


class Client:
    """A websocket-client connection to the chat that keeps what it read."""

    count = 0

    def __init__(self, port: int) -> None:
        Client.count += 1
        self.opened = Client.count
        self.ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/chat", timeout=TIMEOUT)
        self.seen: list[str] = []
        self.id = self.expect(r"^welcome (\S+)$").group(1)

    def expect(self, pattern: str) -> re.Match[str]:
        """Read until a message matching ``pattern`` arrives (kept in ``seen``)."""
        regex = re.compile(pattern)
        for text in self.seen:
            m = regex.search(text)
            if m:
                self.seen.remove(text)
                return m
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == wsclient.ABNF.OPCODE_CLOSE:
                raise AssertionError(f"closed ({frame.data!r}) while waiting for {pattern!r}; seen {self.seen}")
            text = frame.data.decode()
            m = regex.search(text)
            if m:
                return m
            self.seen.append(text)

    def close_frame(self) -> tuple[int, bytes]:
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == wsclient.ABNF.OPCODE_CLOSE:
                return struct.unpack("!H", frame.data[:2])[0], frame.data[2:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=1)


@contextlib.contextmanager
def chat(processes: int = 2, loop_kind: str = "uvloop") -> Iterator[ServerProcess]:
    with serve_script(CHAT, loop_kind, args=["--processes", str(processes)], module=True) as server:
        yield server


def spread_clients(port: int, pids: list[int], per_worker: int = 2, limit: int = 40) -> dict[int, list[Client]]:
    """Open clients until every worker holds ``per_worker`` of them."""
    placed: dict[int, list[Client]] = {pid: [] for pid in pids}
    opened = 0
    while any(len(c) < per_worker for c in placed.values()):
        assert opened < limit, f"{limit} connections and still {({p: len(c) for p, c in placed.items()})}"
        client = Client(port)
        opened += 1
        placed[owner(client, port, pids)].append(client)
    return placed


# -- the chat across workers ---------------------------------------------------------------------------


def test_an_unmodified_robyn_chat_crosses_workers(loop_kind: str) -> None:
    with chat(2, loop_kind) as server:
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        assert len(pids) == 2
        placed = spread_clients(port, pids)
        everyone = [c for clients in placed.values() for c in clients]
        try:
            # Every join was broadcast to every client already there, on both workers.
            opened = sorted(everyone, key=lambda c: c.opened)
            for i, client in enumerate(opened):
                for later in opened[i:]:
                    client.expect(rf"^joined {later.id}$")
            a, b = placed[pids[0]][0], placed[pids[1]][0]
            # Private messages by id, both ways across the workers.
            a.ws.send(f"@{b.id} secret for b")
            b.expect(rf"^private from {a.id}: secret for b$")
            b.ws.send(f"@{a.id} and back")
            a.expect(rf"^private from {b.id}: and back$")
            a.ws.send("@00000000-0000-4000-8000-000000000000 nobody")
            a.expect(r"^no such user 00000000-0000-4000-8000-000000000000$")
            # A broadcast from each worker reaches every client on both.
            for sender in (a, b):
                sender.ws.send(f"hello from {sender.id}")
                for client in everyone:
                    client.expect(rf"^{sender.id}: hello from {sender.id}$")
            # Ids name their worker: one node tag per process, different between them.
            tags = {pid: {node_of(c.id) for c in clients} for pid, clients in placed.items()}
            assert all(len(t) == 1 and None not in t for t in tags.values()), tags
            assert tags[pids[0]] != tags[pids[1]]
            assert len({c.id for c in everyone}) == len(everyone)
            # SIGTERM: every client on every worker gets 1001; the close handlers and hooks run.
            server.proc.send_signal(signal.SIGTERM)
            for client in everyone:
                assert client.close_frame() == (1001, b"server shutting down")
                client.ws.send_close()
            assert server.wait(30) == 0
        finally:
            for client in everyone:
                client.close()
    out = server.output()
    assert sorted(re.findall(r"^CLOSED (\S+)$", out, re.M)) == sorted(c.id for c in everyone)
    assert sorted(int(p) for p in re.findall(r"^STOPPED (\d+)$", out, re.M)) == pids
    assert sorted(int(p) for p in re.findall(r"^STARTED (\d+)$", out, re.M)) == pids
    assert "Traceback" not in out


def test_the_private_message_in_the_chat_test_arrives_intact() -> None:
    with chat(2) as server:
        assert server.port is not None
        pids = worker_pids(server.pid)
        placed = spread_clients(server.port, pids, per_worker=1)
        a, b = placed[pids[0]][0], placed[pids[1]][0]
        a.ws.send(f"@{b.id} only for you")
        b.expect(rf"^private from {a.id}: only for you$")
        b.ws.send(f"@{a.id} received")
        a.expect(rf"^private from {b.id}: received$")
        assert not any("only for you" in text for text in a.seen)
        for c in (a, b):
            c.close()


def test_a_killed_worker_is_replaced_and_the_others_keep_serving() -> None:
    with chat(2) as server:
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        placed = spread_clients(port, pids, per_worker=1)
        survivor, victim = placed[pids[0]][0], placed[pids[1]][0]
        victim_id = victim.id
        os.kill(pids[1], signal.SIGKILL)
        server.wait_output(rf"worker 1 \(pid {pids[1]}\) died \(killed by SIGKILL\); restarting it in")
        # The surviving worker serves on: its clients talk while the other is down.
        survivor.ws.send("still here")
        survivor.expect(rf"^{survivor.id}: still here$")
        survivor.ws.send(f"@{victim_id} are you there")  # an id of the dead worker: nobody owns it now
        replacement = int(server.wait_output(r"worker 1 \(pid (\d+)\) serving again \(generation 1\)").group(1))
        assert replacement not in pids and worker_pids(server.pid) == sorted([pids[0], replacement])
        # New connections reach the replacement, and the bus joins it to the survivor again.
        newcomers = spread_clients(port, [pids[0], replacement], per_worker=1)[replacement]
        newcomer = newcomers[0]
        survivor.ws.send("welcome back")
        newcomer.expect(rf"^{survivor.id}: welcome back$")
        newcomer.ws.send(f"@{survivor.id} hi")
        survivor.expect(rf"^private from {newcomer.id}: hi$")
        survivor.ws.send(f"@{victim_id} still gone?")
        survivor.expect(rf"^no such user {victim_id}$")
        victim.close()
        for c in (survivor, *newcomers):
            c.close()


# -- start-up ---------------------------------------------------------------------------------------------


def _app(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(body))
    return script


def test_a_worker_that_fails_at_start_up_stops_everything_with_status_1(tmp_path: Path) -> None:
    script = _app(tmp_path, """
        from robyn_fast import Robyn
        app = Robyn(__file__)

        @app.startup_handler
        def broken():
            raise RuntimeError("the database is not there")

        app.start(port=0)
    """)
    server = ServerProcess([str(script), "--processes", "2"], cwd=tmp_path)
    code = server.wait(60)
    out = server.output()
    assert code == 1, out
    assert "RuntimeError: the database is not there" in out
    assert re.search(r"worker \d \(pid \d+\) exited \(exit status 1\) before it was serving; stopping", out)
    assert "serving on" not in out


def test_a_busy_port_is_one_line_and_status_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ServerProcess(["-m", "robyn_fast", str(CHAT), "--processes", "2"], port=port)
        code = server.wait(30)
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"robyn_fast: cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize("processes", [1, 3])
def test_workers_times_processes_worker_processes(processes: int) -> None:
    with serve_script(CHAT, args=["--processes", str(processes), "--workers", "2"], module=True) as server:
        assert len(worker_pids(server.pid)) == processes * 2
        assert f"with {processes * 2} worker processes" in server.output()
