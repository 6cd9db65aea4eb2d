"""Servers on several "hosts" joined by a real Redis (``--broker``): an
unmodified Robyn chat app on two servers behaves as one chat (joins,
broadcasts, private messages by id), also with two workers each, and
through a Redis restart: local delivery goes on while Redis is away, cross
delivery resumes within 5 s of its return; the broker's state is readable
with ``app.stats()``; a bad broker URL is a usage error."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from robyn_fast.websocket.ids import node_of

from .process_helpers import ROOT, ServerProcess, serve_script, worker_pids
from .redis_helpers import RedisServer, redis_server
from .test_workers import Client, spread_clients

CHAT = ROOT / "tests" / "robyn_apps" / "chat.py"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@contextlib.contextmanager
def servers(url: str, count: int = 2, processes: int = 1, loop_kind: str = "uvloop",
            script: Path = CHAT, cwd: Path = ROOT) -> Iterator[list[ServerProcess]]:
    """``count`` servers of ``script`` on their own ports, each with ``--broker url``."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(serve_script(script, loop_kind, args=["--processes", str(processes), "--broker",
                                                                         url], module=script == CHAT, cwd=cwd))
               for _ in range(count)]


def wait_broker_connected(server: ServerProcess) -> None:
    server.wait_output(r"broker: connected to Redis at ", timeout=10)


def test_an_unmodified_robyn_chat_on_two_servers_is_one_chat(redis: RedisServer, loop_kind: str) -> None:
    with servers(redis.url + "?prefix=chat1", loop_kind=loop_kind) as (a_srv, b_srv):
        for srv in (a_srv, b_srv):
            wait_broker_connected(srv)
        assert a_srv.port is not None and b_srv.port is not None
        clients: list[Client] = []
        try:
            a = Client(a_srv.port)
            clients.append(a)
            b = Client(b_srv.port)
            clients.append(b)
            a.expect(rf"^joined {b.id}$")  # b's join, broadcast on server B, reached a on server A
            a2 = Client(a_srv.port)
            clients.append(a2)
            for c in (a, b):
                c.expect(rf"^joined {a2.id}$")
            assert len({node_of(c.id) for c in clients}) == 2  # one node tag per server
            a.ws.send(f"@{b.id} across hosts")
            b.expect(rf"^private from {a.id}: across hosts$")
            b.ws.send(f"@{a2.id} and back")
            a2.expect(rf"^private from {b.id}: and back$")
            assert not any("and back" in t for t in a.seen)  # only to its recipient
            b.ws.send("hello everyone")
            for c in clients:
                c.expect(rf"^{b.id}: hello everyone$")
            a.ws.send("@00000000-0000-4000-8000-000000000000 nobody")
            a.expect(r"^no such user 00000000-0000-4000-8000-000000000000$")
        finally:
            for c in clients:
                c.close()
        for srv in (a_srv, b_srv):
            assert "Traceback" not in srv.output()


def test_two_servers_of_two_workers_through_a_redis_restart(loop_kind: str) -> None:
    with redis_server() as redis, servers(redis.url, processes=2, loop_kind=loop_kind) as (a_srv, b_srv):
        placed: dict[int, list[Client]] = {}
        for srv in (a_srv, b_srv):
            assert srv.port is not None
            srv.wait_output(r"with 2 worker processes")
            placed.update(spread_clients(srv.port, worker_pids(srv.pid), per_worker=1))
        everyone = [c for clients in placed.values() for c in clients]
        try:
            assert len(placed) == 4 and len({node_of(c.id) for c in everyone}) == 4  # four nodes
            first = everyone[0]
            for c in everyone[1:]:
                first.ws.send(f"@{c.id} hi {c.id}")
                c.expect(rf"^private from {first.id}: hi {c.id}$")
            first.ws.send("to all four workers")
            for c in everyone:
                c.expect(rf"^{first.id}: to all four workers$")

            redis.kill()
            # Redis is away: every worker still serves its own clients (with a broker, the workers of a
            # server are nodes on Redis too, so a broadcast now reaches the sender's worker only).
            a_clients = [c for pid, cs in placed.items() if pid in worker_pids(a_srv.pid) for c in cs]
            sender = a_clients[0]
            sender.ws.send("while redis is down")
            sender.expect(rf"^{sender.id}: while redis is down$")
            # A new client on a server still connects and is greeted.
            late = Client(a_srv.port)  # type: ignore[arg-type]
            everyone.append(late)

            redis.start()
            started = time.monotonic()
            # Cross delivery resumes within 5 s: keep sending until every client, on all four workers of
            # both servers, hears a probe. (Redis pub/sub keeps nothing for a subscriber that is not yet
            # back: a message published before a worker has subscribed again is not delivered to it, so
            # the test waits for every worker before it expects a message everywhere.)
            waiting = list(everyone)
            k = 0
            while waiting:
                assert time.monotonic() - started < 5.0, (
                    f"no cross delivery 5 s after Redis came back to {[c.id for c in waiting]}")
                k += 1
                sender.ws.send(f"probe {k}")
                for c in list(waiting):
                    c.ws.settimeout(0.1)
                    try:
                        c.expect(rf"^{sender.id}: probe \d+$")
                        waiting.remove(c)
                    except Exception as exc:  # a timeout: not there yet
                        if "timed out" not in str(exc).lower():
                            raise
                    finally:
                        c.ws.settimeout(10)
            sender.ws.send("after the restart")
            for c in everyone:
                c.expect(rf"^{sender.id}: after the restart$")
        finally:
            for c in everyone:
                c.close()
        for srv in (a_srv, b_srv):
            out = srv.output()
            assert "Traceback" not in out, out
            assert re.search(r"broker: .*reconnecting", out), out
            assert re.search(r"broker: connected to Redis at \S+ again after", out), out


STATS_APP = """
    import json
    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)
    ws = WebSocket(app, "/chat")


    @ws.on("message")
    def message(ws, msg):
        ws.sync_broadcast(msg)


    @app.get("/stats")
    def stats(request):
        return json.dumps(app.stats())


    app.start(host="127.0.0.1", port=0)
"""


def _get(port: int, path: str) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def test_the_broker_state_is_readable_with_app_stats(redis: RedisServer, tmp_path: Path) -> None:
    import textwrap

    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(STATS_APP))
    with servers(redis.unix_url + "?prefix=stats", script=script, cwd=tmp_path) as (a_srv, b_srv):
        for srv in (a_srv, b_srv):
            wait_broker_connected(srv)
        assert a_srv.port is not None and b_srv.port is not None
        import websocket as wsclient

        sender = wsclient.create_connection(f"ws://127.0.0.1:{a_srv.port}/chat", timeout=10)
        receiver = wsclient.create_connection(f"ws://127.0.0.1:{b_srv.port}/chat", timeout=10)
        try:
            sender.send("one")
            assert sender.recv() == "one" and receiver.recv() == "one"
        finally:
            sender.close()
            receiver.close()
        sa = json.loads(_get(a_srv.port, "/stats"))
        sb = json.loads(_get(b_srv.port, "/stats"))
        assert sa["broker"]["kind"] == "redis" and sa["broker"]["connected"] is True
        assert sa["broker"]["published"] == 1 and sb["broker"]["received"] == 1
        assert sa["broker"]["dropped"] == 0 and sa["broker"]["url"].startswith("unix://")
        assert sa["broker"]["node"] != sb["broker"]["node"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--broker", "http://x"], "scheme is redis://"),
        (["--broker", "redis://h:1/abc"], "db is a number"),
    ],
)
def test_a_bad_broker_url_is_a_usage_error(args: list[str], says: str) -> None:
    server = ServerProcess(["-m", "robyn_fast", str(CHAT), *args])
    assert server.wait(30) == 2
    out = server.output()
    assert says in out and "serving on" not in out, out


def test_a_server_starts_while_redis_is_down(tmp_path: Path) -> None:
    down = RedisServer()
    try:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            down.port = s.getsockname()[1]
        with serve_script(CHAT, args=["--broker", down.url], module=True) as srv:
            assert srv.port is not None
            srv.wait_output(r"is not reachable yet; serving on")
            c = Client(srv.port)
            c.ws.send("alone")
            c.expect(rf"^{c.id}: alone$")
            down.start()
            srv.wait_output(r"broker: connected to Redis at \S+ again after", timeout=10)
            c.close()
    finally:
        down.close()
