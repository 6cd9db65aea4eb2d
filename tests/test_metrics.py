"""Observability: the counters of the compiled core, scraped from
``Config.metrics_path`` with a real HTTP client and parsed with
prometheus_client's own text parser, after traffic whose every byte and event
the test knows (raw-socket clients count what they sent and read); the sum
over two worker processes, scraped from each; the access log's lines and
its escaping of client text; the path off by default; Config and CLI
validation."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import struct
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import websocket as wsclient
from prometheus_client.parser import text_string_to_metric_families

from robyn_fast import Config, Robyn, WebSocket, WebSocketAdapter, metrics

from .process_helpers import ServerProcess, owner, serve_script, worker_pids
from .redis_helpers import redis_server
from .server_helpers import connect, eventually, recv_all, running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int, path: str = "/metrics", conn: http.client.HTTPConnection | None = None) -> Samples:
    """GET the metrics path; every sample by (name, labels)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body)
        assert response.getheader("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    finally:
        if own:
            conn.close()
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


class Raw:
    """A raw-socket WebSocket client that counts every byte it sends and
    reads after the handshake (what the server's wire-byte counters must say)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = connect(port)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, "closed during the handshake"
            data += chunk
        head, _, self.buf = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.sent = 0
        self.received = len(self.buf)

    def send(self, opcode: int, payload: bytes) -> None:
        assert len(payload) < 126
        mask = os.urandom(4)
        frame = bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(frame)
        self.sent += len(frame)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.received += len(chunk)
        self.buf += chunk

    def read(self) -> tuple[int, bytes]:
        """One server frame: (opcode, payload)."""
        while len(self.buf) < 2:
            self._more()
        n, head = self.buf[1] & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._more()
            n, head = int.from_bytes(self.buf[2:4], "big"), 4
        while len(self.buf) < head + n:
            self._more()
        opcode, payload = self.buf[0] & 0x0F, self.buf[head:head + n]
        self.buf = self.buf[head + n:]
        return opcode, payload

    def close(self, code: int) -> int:
        """Closing handshake from our side; the code the server answered
        with; then read to EOF (the server closes TCP first)."""
        self.send(0x8, struct.pack("!H", code))
        return self.finish(answer=False)

    def finish(self, answer: bool = True) -> int:
        """Read to the server's Close (answered when the server began the
        handshake), then to EOF; its close code."""
        opcode, payload = self.read()
        while opcode != 0x8:
            opcode, payload = self.read()
        if answer:
            self.send(0x8, payload[:2])
        with contextlib.suppress(EOFError):
            while True:
                self._more()
        self.sock.close()
        return struct.unpack("!H", payload[:2])[0]


class Access(logging.Handler):
    """Keeps the messages of the robyn_fast.access logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access() -> Iterator[Access]:
    handler = Access()
    logger = logging.getLogger("robyn_fast.access")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def traffic_app() -> Robyn:
    app = Robyn(__file__, config=Config(metrics_path="/metrics", access_log=True, ping_interval=None))
    echo = WebSocket(app, "/ws")

    @echo.on("message")
    def message(ws: object, msg: str) -> str:
        if msg == "boom":
            raise RuntimeError("handler failure on purpose")
        return msg

    def burst(ws: object, msg: str) -> None:
        # Three 1000-byte messages in one loop iteration against a 1500-byte bound: the
        # first goes (nothing buffered yet), the second exceeds the bound.
        for _ in range(3):
            ws.sync_send_to(ws.id, "x" * 1000)  # type: ignore[attr-defined]

    for path, policy in (("/flood", "close"), ("/drop", "drop")):
        endpoint = WebSocket(app, path, config=Config(max_backpressure=1500, backpressure_policy=policy,
                                                      ping_interval=None))
        endpoint.on("message")(burst)
    WebSocket(app, "/ka", config=Config(ping_interval=0.05, ping_timeout=5.0))
    return app


def test_known_traffic_gives_exact_counters(loop_kind: str, access: Access) -> None:
    app = traffic_app()
    with running(app, loop_kind) as srv:
        before = scrape(srv.port)
        clients: list[Raw] = []

        def client(path: str) -> Raw:
            c = Raw(srv.port, path)
            clients.append(c)
            return c

        c1, c2, c3 = client("/ws"), client("/ws"), client("/ws")
        for c in (c1, c2):
            for _ in range(2):
                c.send(0x1, b"0123456789")
                assert c.read() == (0x1, b"0123456789")
        c1.send(0x9, b"hi")                        # a ping: answered
        assert c1.read() == (0xA, b"hi")
        c1.send(0xA, b"u")                         # an unsolicited pong
        c3.send(0x1, b"boom")                      # the handler raises; no answer, connection stays open
        eventually(lambda: app.stats()["counters"]["handler_errors"] - before_errors(before), lambda n: n == 1)
        assert c1.close(1000) == 1000
        assert c2.close(4001) == 4001              # a code outside the fixed table: "other"
        c3.sock.close()                            # TCP ends without a Close: 1006
        flood = client("/flood")
        flood.send(0x1, b"go")
        assert flood.read() == (0x1, b"x" * 1000)
        assert flood.finish() == 1008              # closed by the "close" policy
        drop = client("/drop")
        drop.send(0x1, b"go")
        assert drop.read() == (0x1, b"x" * 1000)   # the other two were dropped
        assert drop.close(1000) == 1000
        ka = client("/ka")
        opcode, payload = ka.read()                # the keepalive ping; left unanswered, no second one comes
        assert opcode == 0x9 and len(payload) == 8  # 8 random bytes
        assert ka.close(1000) == 1000
        eventually(lambda: srv.call(lambda: srv.server.live_connections), lambda n: n == 0)
        after = scrape(srv.port)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("robyn_fast_ws_connections_opened_total") == 6
        assert value(after, "robyn_fast_ws_connections") == value(before, "robyn_fast_ws_connections")
        assert delta("robyn_fast_ws_connections_closed_total", code="1000") == 3
        assert delta("robyn_fast_ws_connections_closed_total", code="1006") == 1
        assert delta("robyn_fast_ws_connections_closed_total", code="1008") == 1
        other = ("robyn_fast_ws_connections_closed_total", frozenset({("code", "other")}))
        assert after[other] - before.get(other, 0) == 1    # shown once counted
        assert delta("robyn_fast_ws_messages_received_total") == 7
        assert delta("robyn_fast_ws_messages_sent_total") == 6
        assert delta("robyn_fast_ws_received_bytes_total") == sum(c.sent for c in clients)
        assert delta("robyn_fast_ws_sent_bytes_total") == sum(c.received for c in clients)
        assert delta("robyn_fast_ws_backpressure_total", policy="drop") == 2
        assert delta("robyn_fast_ws_backpressure_total", policy="close") == 1
        assert delta("robyn_fast_ws_pings_sent_total") == 1
        assert delta("robyn_fast_ws_pings_received_total") == 1
        assert delta("robyn_fast_ws_pongs_sent_total") == 1
        assert delta("robyn_fast_ws_pongs_received_total") == 1
        assert delta("robyn_fast_ws_handler_errors_total") == 1
        assert value(after, "robyn_fast_workers") == 1
        assert ("robyn_fast_broker_up", frozenset()) not in after    # no broker, no broker families
        # app.stats() keeps its keys and adds this process's counters; alone, the all-workers sum is the same.
        stats = app.stats()
        assert {"pid", "connections", "tasks", "compressions", "broker"} <= stats.keys()
        assert stats["counters"]["opened"] == value(after, "robyn_fast_ws_connections_opened_total")
        summed = app.stats_all_workers()
        assert summed["workers"] == 1 and summed["bytes_in"] == stats["counters"]["bytes_in"]
    lines = access.lines
    opens = [line for line in lines if " WS open " in line]
    closes = [line for line in lines if " WS close " in line]
    assert len(opens) == 6 and len(closes) == 6, lines
    assert sorted(int(line.split("code=")[1].split()[0]) for line in closes) == [1000, 1000, 1000, 1006, 1008, 4001]
    assert all(line.startswith("127.0.0.1:") and line.endswith("ms") for line in closes), closes
    assert sum(1 for line in lines if '"GET /metrics" 200 ' in line) == 2, lines


def test_a_receive_loop_endpoint_counts_as_legacy_ones(loop_kind: str, access: Access) -> None:
    """``@app.websocket`` endpoints run on the same compiled connections: the
    same counters, to the byte, and the same access-log lines; a handler
    that raises counts in handler_errors (and closes 1011)."""
    app = Robyn(__file__, config=Config(metrics_path="/metrics", access_log=True, ping_interval=None))

    @app.websocket("/recv")
    async def echo(websocket: WebSocketAdapter) -> None:
        while True:
            msg = await websocket.receive_text()
            if msg == "boom":
                raise RuntimeError("handler failure on purpose")
            await websocket.send_text(msg)

    with running(app, loop_kind) as srv:
        before = scrape(srv.port)
        c1, c2 = Raw(srv.port, "/recv"), Raw(srv.port, "/recv")
        for _ in range(2):
            c1.send(0x1, b"0123456789")
            assert c1.read() == (0x1, b"0123456789")
        assert c1.close(4001) == 4001
        c2.send(0x1, b"boom")
        assert c2.finish() == 1011
        eventually(lambda: srv.call(lambda: srv.server.live_connections), lambda n: n == 0)
        after = scrape(srv.port)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("robyn_fast_ws_connections_opened_total") == 2
        assert value(after, "robyn_fast_ws_connections") == value(before, "robyn_fast_ws_connections")
        assert delta("robyn_fast_ws_connections_closed_total", code="1011") == 1
        other = ("robyn_fast_ws_connections_closed_total", frozenset({("code", "other")}))
        assert after[other] - before.get(other, 0) == 1
        assert delta("robyn_fast_ws_messages_received_total") == 3
        assert delta("robyn_fast_ws_messages_sent_total") == 2
        assert delta("robyn_fast_ws_received_bytes_total") == c1.sent + c2.sent
        assert delta("robyn_fast_ws_sent_bytes_total") == c1.received + c2.received
        assert delta("robyn_fast_ws_handler_errors_total") == 1
    closes = sorted(line for line in access.lines if " WS close /recv " in line)
    assert len([line for line in access.lines if " WS open /recv id=" in line]) == 2, access.lines
    assert sorted(int(line.split("code=")[1].split()[0]) for line in closes) == [1011, 4001], closes


def before_errors(samples: Samples) -> float:
    return value(samples, "robyn_fast_ws_handler_errors_total")


def test_access_log_escapes_client_text(access: Access) -> None:
    app = traffic_app()

    @app.get("/caf\u00e9")
    def cafe(request: object) -> str:
        return "ok"

    with running(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        # ESC, CR, LF and DEL arrive percent-encoded (the parser refuses them raw); the log shows
        # the decoded path, so they must come out escaped.
        conn.request("GET", "/a%1B%5B31mX%0D%0AFAKE%20200%7F?q=1")
        response = conn.getresponse()
        assert response.status == 404
        body = response.read()
        conn.request("GET", "/caf%C3%A9")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b"ok"
        conn.close()
        sock = connect(srv.port)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\x01bad\r\n\r\n")    # refused by the parser
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
        sock.close()
        eventually(lambda: len(access.lines), lambda n: n >= 3)
    hostile = next(line for line in access.lines if "FAKE" in line)
    assert not any(ch in hostile for ch in "\x1b\r\n\x7f"), hostile
    assert '"GET /a\\x1b[31mX\\r\\nFAKE\\x20200\\x7f?q=1" 404 ' in hostile, hostile
    size = hostile.split('" 404 ')[1].split()[0]
    assert int(size) > len(body)                  # the whole response, head included
    assert any('"GET /caf\u00e9" 200 ' in line for line in access.lines), access.lines
    assert any('"- -" 400 ' in line and line.endswith(" -") for line in access.lines), access.lines


# One access line: peer "METHOD target" status bytes duration; every field free of spaces (of
# any kind) and quotes, with Python-style escapes (robyn_fast.logs.field) that a reader undoes.
ACCESS_LINE = re.compile(r'(?P<peer>[^ "]+) "(?P<method>[^ "]+) (?P<target>[^ "]+)" (?P<status>\d{3}) (?P<size>\d+) '
                         r'(?P<took>[^ "]+)')
_UNESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|(.))")


def unescape_field(text: str) -> str:
    r"""The value of one access-log field (the inverse of robyn_fast.logs.field); a byte that was
    not UTF-8 (\xNN of 0x80..0xff) comes back as its surrogateescape code point."""
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            code = int(m.group(1), 16)
            return chr(code) if code < 0x80 else chr(0xDC00 + code)
        if m.group(2) or m.group(3):
            return chr(int(m.group(2) or m.group(3), 16))
        return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[m.group(4)]
    return _UNESCAPE.sub(one, text)


def test_access_log_lines_parse_back_to_exactly_the_request_fields(loop_kind: str, access: Access) -> None:
    app = Robyn(__file__, config=Config(access_log=True, ping_interval=None))

    @app.get("/ok")
    def ok(request: object) -> str:
        return "ok"

    # What percent-decoding lets through a request line that httptools accepts: quotes and spaces
    # that would end the target field and forge a status, size and duration, backslashes that
    # would forge an escape, controls, separators, bytes that are not UTF-8, and a plain target.
    targets = [
        "/ok",
        "/x%22%20500%201%200.1ms%20%22GET%20/forged",
        '/x"y"z',  # a raw quote too, if the HTTP parser lets one through
        "/a%5Cx22b%5C%5Cc%5Cx20",
        "/q?name=a%20b%22c&z=%25",
        "/%0D%0Aforged%20line%09tab%1B[0m%E2%80%AE%E2%80%A8",
        "/%FF%FE%C3%28%20end",
        "/caf%C3%A9%20%22%22",
        "/nbsp%C2%A0200%C2%A01%E2%80%830.1ms",  # U+00A0 and U+2003: spaces to str.split()
    ]
    sent: list[str] = []
    with running(app, loop_kind) as srv:
        for target in targets:
            sock = connect(srv.port)
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = recv_all(sock)
            sock.close()
            if answer.startswith(b"HTTP/1.1 400 ") and '"' in target:
                continue  # a raw quote refused by the HTTP parser: logged as "- -", nothing of the target in it
            sent.append(target)
        eventually(lambda: len(access.lines), lambda n: n >= len(targets))
    assert len(sent) >= len(targets) - 1, sent  # every percent-encoded target was served
    lines = [line for line in access.lines if '"- -"' not in line]
    assert len(lines) == len(sent), access.lines
    for target, line in zip(sent, lines):
        m = ACCESS_LINE.fullmatch(line)
        assert m is not None, line
        assert len(line.split()) == 6, line  # str.split() too finds exactly the six fields
        assert unescape_field(m["method"]) == "GET"
        assert unescape_field(m["target"]) == unquote(target, errors="surrogateescape"), line
        assert m["status"] == ("200" if target == "/ok" else "404"), line
        assert int(m["size"]) > 0 and m["took"].endswith("ms")
        host, _, port = unescape_field(m["peer"]).rpartition(":")
        assert host == "127.0.0.1" and port.isdigit()


def test_metrics_path_is_off_by_default_and_takes_only_get() -> None:
    app = Robyn(__file__)
    WebSocket(app, "/ws")
    with running(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        assert response.status == 404
        conn.close()
    app = traffic_app()
    with running(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", "/metrics", body=b"x")
        response = conn.getresponse()
        response.read()
        assert response.status == 405 and response.getheader("allow") == "GET, HEAD"
        conn.request("HEAD", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        conn.close()


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"metrics_path": "metrics"}, ValueError),
    ({"metrics_path": "/m?x=1"}, ValueError),
    ({"metrics_path": "/m\n"}, ValueError),
    ({"metrics_path": b"/metrics"}, TypeError),
    ({"access_log": "yes"}, TypeError),
])
def test_config_validates_the_new_fields(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match="Config\\.(metrics_path|access_log)"):
        Config(**kwargs)  # type: ignore[arg-type]


WORKERS_APP = """
    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")


    @ws.on("message")
    def message(ws, msg):
        return msg


    app.start(host="127.0.0.1", port=0)
"""


def on_every_worker(port: int, pids: list[int]) -> tuple[list[wsclient.WebSocket], dict[int, int]]:
    """Open clients (each sends one 10-byte message and reads its echo)
    until every worker holds at least one; the clients and how many each holds."""
    clients: list[wsclient.WebSocket] = []
    on: dict[int, int] = {pid: 0 for pid in pids}
    while not all(on.values()):
        assert len(clients) < 40, on
        c = wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
        clients.append(c)
        on[owner(c.sock, port, pids)] += 1
        c.send("m" * 10)
        assert c.recv() == "m" * 10
    return clients, on


def test_two_workers_scraped_from_either_give_the_sum(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(WORKERS_APP))
    args = ["--processes", "2", "--metrics-path", "/metrics", "--access-log"]
    with serve_script(script, args=args, cwd=tmp_path) as server:
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        assert len(pids) == 2
        clients, _ = on_every_worker(port, pids)
        n = len(clients)
        scrapers: dict[int, http.client.HTTPConnection] = {}
        spare: list[http.client.HTTPConnection] = []
        try:
            while len(scrapers) < 2:
                assert len(scrapers) + len(spare) < 40
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                scrape(port, conn=conn)             # accepted and served: the server end now exists
                pid = owner(conn.sock, port, pids)  # a keep-alive connection stays with that worker
                if pid in scrapers:
                    spare.append(conn)
                else:
                    scrapers[pid] = conn
            for pid, conn in scrapers.items():
                samples = eventually(lambda: scrape(port, conn=conn),
                                     lambda s: value(s, "robyn_fast_broker_up") == 2)
                assert value(samples, "robyn_fast_workers") == 2, pid
                assert value(samples, "robyn_fast_ws_connections") == n, pid
                assert value(samples, "robyn_fast_ws_connections_opened_total") == n
                assert value(samples, "robyn_fast_ws_messages_received_total") == n
                assert value(samples, "robyn_fast_ws_messages_sent_total") == n
                # each client: one masked 10-byte text frame in (16 bytes), its echo out (12 bytes)
                assert value(samples, "robyn_fast_ws_received_bytes_total") == 16 * n
                assert value(samples, "robyn_fast_ws_sent_bytes_total") == 12 * n
        finally:
            for conn in [*scrapers.values(), *spare]:
                conn.close()
            for c in clients:
                with contextlib.suppress(Exception):
                    c.close(timeout=1)
        server.wait_output(r'"GET /metrics" 200 ')
        assert server.output().count(" WS open /ws id=") == n


def test_a_restarted_worker_continues_its_slot_and_counts_what_died_with_1006(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(WORKERS_APP))
    with serve_script(script, args=["--processes", "2", "--metrics-path", "/metrics"], cwd=tmp_path) as server:
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        clients, on = on_every_worker(port, pids)
        try:
            victim = pids[1]
            os.kill(victim, signal.SIGKILL)
            server.wait_output(r"worker \d+ \(pid \d+\) serving again")
            samples = eventually(lambda: scrape(port), lambda s: value(s, "robyn_fast_workers") == 2 and value(
                s, "robyn_fast_ws_connections_closed_total", code="1006") == on[victim])
            # Nothing went down: the replacement kept its predecessor's counts.
            assert value(samples, "robyn_fast_ws_connections_opened_total") == len(clients)
            assert value(samples, "robyn_fast_ws_messages_received_total") == len(clients)
            assert value(samples, "robyn_fast_ws_connections") == on[pids[0]]
        finally:
            for c in clients:
                with contextlib.suppress(Exception):
                    c.close(timeout=1)


def test_the_shared_block_refuses_a_slot_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="slots must be >= 1"):
        metrics.new_block(0)
    with pytest.raises(ValueError, match="slot 2 is not in a block of 2 slot"):
        metrics.attach(metrics.new_block(2), 2)
    assert metrics.totals()["workers"] == 1      # this process still counts on its own


def test_the_cli_refuses_a_bad_metrics_path(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(WORKERS_APP))
    server = ServerProcess([str(script), "--metrics-path", "metrics"], cwd=tmp_path)
    assert server.wait() == 2
    assert "--metrics-path: Config.metrics_path must be a path" in server.output()


BROADCAST_APP = """
    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")


    @ws.on("message")
    def message(ws, msg):
        ws.sync_broadcast(msg)


    app.start(host="127.0.0.1", port=0)
"""


def test_the_redis_brokers_figures_are_summed_over_the_workers(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(BROADCAST_APP))
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        args = ["--processes", "2", "--metrics-path", "/metrics", "--broker", redis.url + "?prefix=metrics"]
        server = stack.enter_context(serve_script(script, args=args, cwd=tmp_path))
        port = server.port
        assert port is not None
        eventually(lambda: scrape(port), lambda s: value(s, "robyn_fast_broker_up") == 2, timeout=10)
        c = wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
        try:
            c.send("hello")
            assert c.recv() == "hello"
            # The broadcast went to the other worker through Redis: one published, one received,
            # by different workers, and a scrape on either sees both (copied within a second).
            samples = eventually(lambda: scrape(port), lambda s: value(s, "robyn_fast_broker_published_total") == 1
                                 and value(s, "robyn_fast_broker_received_total") == 1, timeout=10)
            assert value(samples, "robyn_fast_broker_dropped_total") == 0
            assert value(samples, "robyn_fast_broker_reconnects_total") == 0
        finally:
            c.close(timeout=1)
