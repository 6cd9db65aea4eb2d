"""Worker processes: an unmodified Robyn chat app on `--processes 2`, with
clients placed on both workers (told apart with the kernel's socket table),
broadcasts and private messages crossing them, ids naming their worker, a
worker killed and replaced, SIGTERM with clients on every worker, crash at
start-up, a busy port."""

from __future__ import annotations

import contextlib
import json
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

from .process_helpers import ROOT, ServerProcess, owner, serve_script, worker_pids
from .redis_helpers import redis_server
from .server_helpers import eventually

CHAT = ROOT / "tests" / "robyn_apps" / "chat.py"
TIMEOUT = 10.0


# -- chat clients ------------------------------------------------------------------------------------------


class Client:
    """A websocket-client connection to the chat that keeps what it read."""

    count = 0

    def __init__(self, port: int, path: str = "/chat") -> None:
        Client.count += 1
        self.opened = Client.count
        self.ws = wsclient.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=TIMEOUT)
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


def spread_clients(port: int, pids: list[int], per_worker: int = 2, limit: int = 40,
                   path: str = "/chat") -> dict[int, list[Client]]:
    """Open clients (to ``path``) until every worker holds ``per_worker`` of them."""
    placed: dict[int, list[Client]] = {pid: [] for pid in pids}
    opened = 0
    while any(len(c) < per_worker for c in placed.values()):
        assert opened < limit, f"{limit} connections and still {({p: len(c) for p, c in placed.items()})}"
        client = Client(port, path)
        opened += 1
        placed[owner(client.ws.sock, port, pids)].append(client)
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
    # Not anchored to lines: print() writes its text and its newline apart, so
    # two workers' lines can interleave ("STARTED 1STARTED 2\n\n").
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert sorted(re.findall(rf"CLOSED ({uuid})", out)) == sorted(c.id for c in everyone)
    assert sorted(int(p) for p in re.findall(r"STOPPED (\d+)", out)) == pids
    assert sorted(int(p) for p in re.findall(r"STARTED (\d+)", out)) == pids
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


# -- rooms, HTTP routes and other threads across workers ----------------------------------------------

ROOMS_APP = """
    import asyncio
    import json
    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)
    ws = WebSocket(app, "/chat")


    @ws.on("connect")
    def connect(ws):
        return f"welcome {ws.id}"


    @ws.on("message")
    def message(ws, msg):
        cmd, _, arg = msg.partition(" ")
        if cmd == "join":
            room = int(arg) if arg.isdigit() else arg
            return f"in {arg} {ws.join(room)}"
        if cmd == "say":  # say <room> <text>: to the room, the sender excluded
            room, _, text = arg.partition(" ")
            n = ws.sync_broadcast_to(int(room) if room.isdigit() else room, f"{room}> {text}", exclude_self=True)
            return f"said locally to {n}"
        if cmd == "bad-room":
            try:
                ws.join((1, 2))
            except TypeError as exc:
                return f"TypeError: {exc}"
        return None


    @app.post("/announce")
    def announce(request):
        return f"announced locally to {ws.broadcast(request.body)}"


    @app.post("/to/:conn_id")
    def to(request):
        return str(ws.send_to(request.path_params["conn_id"], request.body))


    @app.get("/who")
    async def who(request):
        # Every connection on every worker (and host), with the node that holds it.
        found = await ws.cluster_connections(timeout=5)
        return json.dumps({"ids": dict(found), "complete": found.complete})


    @app.get("/members/:room")
    async def members(request):
        room = request.path_params["room"]
        found = await ws.cluster_room_members(int(room) if room.isdigit() else room, timeout=5)
        return json.dumps({"ids": dict(found), "complete": found.complete})


    @app.post("/room/:room")
    async def to_room(request):
        # From another thread (the loop waits without blocking): the call
        # runs on the loop and crosses workers too.
        n = await asyncio.to_thread(ws.broadcast_to, request.path_params["room"], request.body)
        return f"room locally {n}"


    app.start(host="127.0.0.1", port=0)
"""


def _post(port: int, path: str, body: str | None) -> str:
    """POST ``body`` to ``path`` (a GET when it is None); the 200 response's text."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET" if body is None else "POST", path, body=None if body is None else body.encode())
        response = conn.getresponse()
        assert response.status == 200, (response.status, response.read())
        return response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("bus", ["local", "redis"])
def test_rooms_http_routes_and_threads_reach_every_worker(tmp_path: Path, loop_kind: str, bus: str) -> None:
    """Over the local bus, and with every worker a node on a real Redis (``--broker``)."""
    script = _app(tmp_path, ROOMS_APP)
    everyone: list[Client] = []
    with contextlib.ExitStack() as stack:
        args = ["--processes", "2"]
        if bus == "redis":
            redis = stack.enter_context(redis_server())
            args += ["--broker", redis.url + "?prefix=rooms"]
        server = stack.enter_context(serve_script(script, loop_kind, args=args, cwd=tmp_path))
        if bus == "redis":  # both workers are nodes on Redis
            eventually(lambda: len(re.findall(r"broker: connected to Redis", server.output())), lambda n: n == 2)
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        placed = spread_clients(port, pids, per_worker=2)
        everyone = [c for clients in placed.values() for c in clients]
        try:
            (a1, a2), (b1, b2) = placed[pids[0]][:2], placed[pids[1]][:2]
            # Room "red": a1 and b1 (one per worker); room 7 (an int): a2 and b2.
            for client, room in ((a1, "red"), (b1, "red"), (a2, "7"), (b2, "7")):
                client.ws.send(f"join {room}")
                client.expect(rf"^in {room} True$")
            a1.ws.send("say red hello reds")
            b1.expect(r"^red> hello reds$")
            a1.expect(r"^said locally to 0$")  # the sender is excluded and is its worker's only red member
            b2.ws.send("say 7 hello sevens")
            a2.expect(r"^7> hello sevens$")
            # Nobody outside a room heard it: a marker broadcast arrives first everywhere else.
            assert _post(port, "/announce", "marker") .startswith("announced locally to ")
            for client in everyone:
                client.expect(r"^marker$")
                assert not any("hello" in text for text in client.seen if not text.startswith(("red>", "7>"))), \
                    client.seen
            assert not any(t.startswith("7>") for t in a1.seen + b1.seen)
            assert not any(t.startswith("red>") for t in a2.seen + b2.seen)
            # An HTTP route (served by whichever worker) reaches a connection on either worker by id.
            for target in (a1, b1, a2, b2):
                assert _post(port, f"/to/{target.id}", f"for {target.id}") == "True"
                target.expect(rf"^for {target.id}$")
            assert _post(port, "/to/00000000-0000-4000-8000-000000000000", "nobody") == "False"
            # From another thread in an HTTP route, to a room on both workers.
            _post(port, "/room/red", "red from a thread")
            a1.expect(r"^red from a thread$")
            b1.expect(r"^red from a thread$")
            # Who is where, asked from whichever worker serves the request: every worker answers.
            owners = {c.id: node_of(c.id) for c in everyone}
            assert json.loads(_post(port, "/who", None)) == {"ids": owners, "complete": True}
            for room, members in (("red", (a1, b1)), ("7", (a2, b2))):
                assert json.loads(_post(port, f"/members/{room}", None)) == {
                    "ids": {c.id: node_of(c.id) for c in members}, "complete": True}
            # With workers a room name must travel: a tuple is a TypeError in the caller.
            a1.ws.send("bad-room")
            a1.expect(r"^TypeError: with worker processes a room name is a str or an int")
            assert "Traceback" not in server.output()
        finally:
            for client in everyone:
                client.close()


def test_workers_of_a_supervisor_killed_by_sigkill_shut_down_gracefully() -> None:
    with chat(2) as server:
        assert server.port is not None
        pids = worker_pids(server.pid)
        placed = spread_clients(server.port, pids, per_worker=1)
        server.proc.kill()  # no chance to stop its workers itself
        for clients in placed.values():
            for client in clients:
                assert client.close_frame() == (1001, b"server shutting down")
                client.ws.send_close()
        for pid in pids:
            eventually(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=15)
        for clients in placed.values():
            for client in clients:
                client.close()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
