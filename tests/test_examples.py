"""The examples in examples/, each run as a subprocess (as a user would run it)
and driven by real clients: websocket-client, websockets, and for the echo
chat page a headless Chromium through Playwright. Each server must also exit
0 on SIGTERM and log no handler error.

"Nothing else arrived" is proven by ordering where possible, not by waiting:
a server sends a message to a room's members in one synchronous loop, so once
one member has it, a later reply to a non-member that arrives first shows the
non-member was skipped (TCP keeps each connection's frames in order)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket as wsclient
from websockets.sync.client import connect as ws_connect

from .process_helpers import EXAMPLES, serve_script
from .server_helpers import eventually

TIMEOUT = 5.0          # every single receive or HTTP request
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# -- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium_page(profile: Path, *args: str, timeout_ms: int = 30_000) -> Iterator[Any]:
    """A page of a headless Chromium (Debian's, through Playwright) with its
    own profile in ``profile`` (removed afterwards); ``args`` are added to
    CHROMIUM_ARGS. Not skipped when Chromium is missing: `make test` installs
    both (make browser, the [test] extras), so a missing one is a broken
    setup, not a reason to pass."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` installs Debian's chromium"
    import playwright.sync_api as playwright_api
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args], timeout=30_000)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def example(name: str, loop_kind: str = "uvloop", env: dict[str, str] | None = None) -> Iterator[int]:
    """Serve examples/<name>; yield its port. On exit (SIGTERM) the server
    must have exited 0 and logged no traceback."""
    with serve_script(EXAMPLES / name, loop_kind, env=env) as server:
        assert server.port is not None
        yield server.port
    output = server.output()
    assert server.returncode == 0, output
    assert "Traceback" not in output and "handler raised" not in output, output


class Clients:
    """websocket-client connections, all closed at the end of the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open: list[wsclient.WebSocket] = []

    def connect(self, path: str) -> wsclient.WebSocket:
        conn = wsclient.create_connection(f"ws://127.0.0.1:{self.port}{path}", timeout=TIMEOUT)
        self.open.append(conn)
        return conn

    def close_all(self) -> None:
        for conn in self.open:
            with contextlib.suppress(Exception):
                conn.close(timeout=1)


@contextlib.contextmanager
def clients(port: int) -> Iterator[Clients]:
    c = Clients(port)
    try:
        yield c
    finally:
        c.close_all()


def recv_json(conn: wsclient.WebSocket) -> Any:
    return json.loads(conn.recv())


def skip(conn: wsclient.WebSocket, n: int) -> None:
    """Receive and drop ``n`` frames (greetings a test has checked elsewhere)."""
    for _ in range(n):
        conn.recv()


def recv_close(conn: wsclient.WebSocket) -> tuple[int, str]:
    """Read frames up to the server's Close; return its code and reason."""
    while True:
        opcode, frame = conn.recv_data_frame(control_frame=True)
        if opcode == wsclient.ABNF.OPCODE_CLOSE:
            data = frame.data
            return struct.unpack("!H", data[:2])[0], data[2:].decode()


def http(port: int, path: str, method: str = "GET", data: bytes | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return resp.status, resp.headers.get("content-type", ""), resp.read()


def http_json(port: int, path: str, method: str = "GET", data: bytes | None = None) -> Any:
    status, ctype, body = http(port, path, method, data)
    assert status == 200 and ctype.startswith("application/json"), (status, ctype, body)
    return json.loads(body)


# -- echo_chat.py -------------------------------------------------------------------------

JOINED = re.compile(r"^User ([0-9a-f-]{36}) joined the chat$")


def test_echo_chat_serves_its_page() -> None:
    with example("echo_chat.py") as port:
        status, ctype, body = http(port, "/")
    assert status == 200
    assert ctype.startswith("text/html")
    page = body.decode()
    for needle in ('id="message"', 'id="send"', 'id="log"', "${location.host}/ws"):
        assert needle in page


def test_echo_chat_join_echo_leave(loop_kind: str) -> None:
    with example("echo_chat.py", loop_kind) as port, clients(port) as c:
        a = c.connect("/ws")
        first = a.recv()
        m = JOINED.match(first)
        assert m, first
        a_id = m.group(1)

        b = c.connect("/ws")
        b_joined = b.recv()
        m = JOINED.match(b_joined)
        assert m and m.group(1) != a_id, b_joined
        b_id = m.group(1)
        assert a.recv() == f"User {b_id} joined the chat"

        a.send("hello there")
        assert a.recv() == "Echo: hello there"
        # The echo went to a only: b's own echo is the next thing b sees.
        b.send("ü and 🎉")
        assert b.recv() == "Echo: ü and 🎉"
        b.send_binary(b"\x00\xffraw")
        assert b.recv() == b"\x00\xffraw"

        b.close()
        assert a.recv() == f"User {b_id} left the chat"
        a.send("still here")
        assert a.recv() == "Echo: still here"


# -- chat_room.py -------------------------------------------------------------------------


def test_chat_room_join_broadcast_private_leave(loop_kind: str) -> None:
    with example("chat_room.py", loop_kind) as port, clients(port) as c:
        alice = c.connect("/chat?username=alice")
        welcome = recv_json(alice)
        assert welcome["type"] == "welcome" and welcome["username"] == "alice"
        assert recv_json(alice) == {"type": "user_list", "users": ["alice"]}

        bob = c.connect("/chat?username=bob")
        assert recv_json(bob)["type"] == "welcome"
        assert recv_json(bob) == {"type": "user_list", "users": ["alice", "bob"]}
        assert recv_json(alice) == {"type": "user_joined", "username": "bob"}

        carol = c.connect("/chat?username=carol")
        assert recv_json(carol)["type"] == "welcome"
        assert recv_json(carol) == {"type": "user_list", "users": ["alice", "bob", "carol"]}
        assert recv_json(alice) == {"type": "user_joined", "username": "carol"}
        assert recv_json(bob) == {"type": "user_joined", "username": "carol"}

        alice.send(json.dumps({"type": "message", "text": "hi all"}))
        expected = {"type": "message", "username": "alice", "text": "hi all"}
        for conn in (alice, bob, carol):
            assert recv_json(conn) == expected

        alice.send(json.dumps({"type": "private_message", "to": "bob", "text": "psst"}))
        assert recv_json(bob) == {"type": "private_message", "from": "alice", "to": "bob", "text": "psst"}
        # Neither alice nor carol got it: each one's next frame is carol's broadcast.
        carol.send(json.dumps({"type": "message", "text": "me too"}))
        expected = {"type": "message", "username": "carol", "text": "me too"}
        for conn in (alice, bob, carol):
            assert recv_json(conn) == expected

        bob.close()
        for conn in (alice, carol):
            assert recv_json(conn) == {"type": "user_left", "username": "bob"}
        alice.send(json.dumps({"type": "private_message", "to": "bob", "text": "gone?"}))
        assert recv_json(alice) == {"type": "error", "message": "no user named 'bob'"}


def test_chat_room_bad_input_keeps_connection_open(loop_kind: str) -> None:
    with example("chat_room.py", loop_kind) as port, clients(port) as c:
        dave = c.connect("/chat?username=dave")
        skip(dave, 2)   # welcome, user_list
        bad_inputs = {
            "{not json": "invalid JSON",
            "[1, 2]": "expected a JSON object",
            json.dumps({"type": "dance"}): "unknown message type 'dance'",
            json.dumps({"type": "message", "text": 42}): '"text" must be a string',
            json.dumps({"type": "private_message", "to": "nobody", "text": "x"}): "no user named 'nobody'",
        }
        for raw, why in bad_inputs.items():
            dave.send(raw)
            reply = recv_json(dave)
            assert reply["type"] == "error" and why in reply["message"], (raw, reply)
        dave.send_binary(b"\x01\x02")
        assert recv_json(dave)["type"] == "error"
        dave.send(json.dumps({"type": "message", "text": "still open"}))
        assert recv_json(dave) == {"type": "message", "username": "dave", "text": "still open"}


def test_chat_room_usernames(loop_kind: str) -> None:
    with example("chat_room.py", loop_kind) as port, clients(port) as c:
        guest = c.connect("/chat")
        welcome = recv_json(guest)
        assert welcome["username"] == "guest-" + welcome["id"].replace("-", "")[:8]
        assert recv_json(guest) == {"type": "user_list", "users": [welcome["username"]]}

        blank = c.connect("/chat?username=%20%20")
        assert recv_json(blank)["username"].startswith("guest-")
        skip(blank, 1)
        assert recv_json(guest)["type"] == "user_joined"

        eve = c.connect("/chat?username=eve")
        skip(eve, 2)
        imposter = c.connect("/chat?username=eve")
        assert recv_json(imposter) == {"type": "error", "message": "username 'eve' is taken"}
        assert recv_close(imposter) == (4000, "username taken")

        too_long = c.connect("/chat?username=" + "x" * 33)
        assert recv_json(too_long)["type"] == "error"
        assert recv_close(too_long) == (4000, "username too long")

        # The refused clients never joined: nobody heard of them, and eve's
        # name still belongs to eve.
        eve.send(json.dumps({"type": "message", "text": "still eve"}))
        assert recv_json(eve) == {"type": "message", "username": "eve", "text": "still eve"}
        for conn in (guest, blank):
            assert recv_json(conn) == {"type": "user_joined", "username": "eve"}
            assert recv_json(conn) == {"type": "message", "username": "eve", "text": "still eve"}


# -- async_updates.py ---------------------------------------------------------------------


def next_reply(conn: Any, seen_ticks: list[int]) -> dict[str, Any]:
    """The next frame that is not a tick; ticks on the way are recorded."""
    while True:
        frame = json.loads(conn.recv(timeout=TIMEOUT))
        if frame["type"] != "tick":
            return frame
        seen_ticks.append(frame["n"])


def test_async_updates_subscribe_ticks_unsubscribe(loop_kind: str) -> None:
    with example("async_updates.py", loop_kind) as port, ws_connect(
        f"ws://127.0.0.1:{port}/updates", open_timeout=TIMEOUT, close_timeout=TIMEOUT
    ) as conn:
        hello = json.loads(conn.recv(timeout=TIMEOUT))
        assert hello["type"] == "hello" and hello["interval"] == 0.2

        conn.send("subscribe")
        assert json.loads(conn.recv(timeout=TIMEOUT)) == {"type": "subscribed", "interval": 0.2}
        ticks = [json.loads(conn.recv(timeout=TIMEOUT)) for _ in range(3)]
        assert [t["type"] for t in ticks] == ["tick"] * 3
        assert [t["n"] for t in ticks] == [1, 2, 3]
        gap = ticks[2]["time"] - ticks[0]["time"]
        assert 0.3 < gap < 2.0, gap

        seen: list[int] = [t["n"] for t in ticks]
        conn.send("subscribe")
        assert next_reply(conn, seen) == {"type": "error", "message": "already subscribed"}
        conn.send("unsubscribe")
        reply = next_reply(conn, seen)
        assert reply == {"type": "unsubscribed", "ticks": seen[-1]}
        assert seen == list(range(1, seen[-1] + 1))
        # Proving an absence takes waiting: three intervals without a tick.
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.6)
        assert http_json(port, "/stats")["ticker_tasks_alive"] == 0

        conn.send("unsubscribe")
        assert json.loads(conn.recv(timeout=TIMEOUT)) == {"type": "error", "message": "not subscribed"}
        conn.send("dance")
        assert json.loads(conn.recv(timeout=TIMEOUT))["type"] == "error"
        conn.send("subscribe")  # a fresh subscription counts from 1 again
        assert json.loads(conn.recv(timeout=TIMEOUT))["type"] == "subscribed"
        assert json.loads(conn.recv(timeout=TIMEOUT))["n"] == 1


def test_async_updates_close_cancels_the_task(loop_kind: str) -> None:
    with example("async_updates.py", loop_kind) as port:
        url = f"ws://127.0.0.1:{port}/updates"
        with ws_connect(url, open_timeout=TIMEOUT) as stays, ws_connect(url, open_timeout=TIMEOUT) as leaves:
            for conn in (stays, leaves):
                conn.recv(timeout=TIMEOUT)
                conn.send("subscribe")
                assert json.loads(conn.recv(timeout=TIMEOUT))["type"] == "subscribed"
                assert json.loads(conn.recv(timeout=TIMEOUT))["n"] == 1
            assert http_json(port, "/stats")["ticker_tasks_alive"] == 2

            leaves.close()
            # A cancelled task stays in asyncio.all_tasks() until its next step, so poll.
            one_left = {"subscriptions": 1, "ticker_tasks_alive": 1, "connections": 1}
            eventually(lambda: http_json(port, "/stats"), lambda s: s == one_left)
            # The other subscription keeps ticking.
            n = [json.loads(stays.recv(timeout=TIMEOUT))["n"] for _ in range(2)]
            assert n[1] == n[0] + 1
        none_left = {"subscriptions": 0, "ticker_tasks_alive": 0, "connections": 0}
        eventually(lambda: http_json(port, "/stats"), lambda s: s == none_left)


def test_async_updates_announce_from_http(loop_kind: str) -> None:
    with example("async_updates.py", loop_kind) as port, clients(port) as c:
        conns = [c.connect("/updates") for _ in range(2)]
        for conn in conns:
            assert recv_json(conn)["type"] == "hello"
        result = http_json(port, "/announce", "POST", "maintenance at noon ☕".encode())
        assert result == {"delivered_to": 2}
        for conn in conns:
            assert recv_json(conn) == {"type": "announcement", "text": "maintenance at noon ☕"}


# -- dependency_injection.py --------------------------------------------------------------


def test_dependency_injection_logger_and_user_manager(loop_kind: str) -> None:
    with example("dependency_injection.py", loop_kind) as port, clients(port) as c:
        alice = c.connect("/ws?username=alice")
        assert recv_json(alice) == {"type": "welcome", "username": "alice", "online": 1}
        anon = c.connect("/ws")
        welcome = recv_json(anon)
        assert welcome["type"] == "welcome" and welcome["online"] == 2
        assert re.fullmatch(r"user-[0-9a-f]{8}", welcome["username"]), welcome
        anon_name = welcome["username"]

        alice.send("hello")
        assert recv_json(alice) == {"type": "logged", "seq": 1, "username": "alice", "text": "hello"}
        anon.send("world")
        assert recv_json(anon) == {"type": "logged", "seq": 2, "username": anon_name, "text": "world"}
        alice.send("again")
        assert recv_json(alice)["seq"] == 3

        admin = c.connect("/admin")
        admin.send("users")
        assert recv_json(admin) == {"type": "users", "users": sorted(["alice", anon_name])}

        stats = http_json(port, "/stats")
        assert stats == {
            "users": sorted(["alice", anon_name]),
            "connected_total": 2,
            "messages": [
                {"seq": 1, "username": "alice", "text": "hello"},
                {"seq": 2, "username": anon_name, "text": "world"},
                {"seq": 3, "username": "alice", "text": "again"},
            ],
        }

        anon.close()
        stats = eventually(lambda: http_json(port, "/stats"), lambda s: s["users"] == ["alice"])
        assert stats["connected_total"] == 2 and len(stats["messages"]) == 3
        admin.send("users")
        assert recv_json(admin) == {"type": "users", "users": ["alice"]}


# -- rooms.py -----------------------------------------------------------------------------


def test_rooms_deliver_within_a_room_only(loop_kind: str) -> None:
    with example("rooms.py", loop_kind) as port, clients(port) as c:
        alice = c.connect("/room/red?username=alice")
        assert recv_json(alice) == {"type": "welcome", "room": "red", "username": "alice", "members": ["alice"]}
        bob = c.connect("/room/red?username=bob")
        assert recv_json(bob) == {"type": "welcome", "room": "red", "username": "bob",
                                  "members": ["alice", "bob"]}
        assert recv_json(alice) == {"type": "joined", "room": "red", "username": "bob"}
        carol = c.connect("/room/blue?username=carol")
        assert recv_json(carol) == {"type": "welcome", "room": "blue", "username": "carol",
                                    "members": ["carol"]}
        assert http_json(port, "/rooms") == {"red": ["alice", "bob"], "blue": ["carol"]}

        alice.send("hi red")
        red_msg = {"type": "message", "room": "red", "username": "alice", "text": "hi red"}
        assert recv_json(alice) == red_msg
        assert recv_json(bob) == red_msg
        # carol's own message is the first thing she gets: nothing from red reached her.
        carol.send("hi blue")
        assert recv_json(carol) == {"type": "message", "room": "blue", "username": "carol", "text": "hi blue"}

        dave = c.connect("/room/blue?username=dave")
        skip(dave, 1)
        assert recv_json(carol) == {"type": "joined", "room": "blue", "username": "dave"}

        bob.close()
        assert recv_json(alice) == {"type": "left", "room": "red", "username": "bob"}
        dave.send("bye bob?")
        blue_msg = {"type": "message", "room": "blue", "username": "dave", "text": "bye bob?"}
        assert recv_json(carol) == blue_msg     # no "left" notice crossed rooms
        assert recv_json(dave) == blue_msg

        alice.close()
        assert eventually(lambda: http_json(port, "/rooms"), lambda r: "red" not in r) == {
            "blue": ["carol", "dave"]
        }


# -- the echo chat page in a real browser ------------------------------------------------


def test_echo_chat_page_in_headless_chromium(tmp_path: Path) -> None:
    message = "hello from chromium ✓"
    shot = tmp_path / "echo_chat.png"
    with example("echo_chat.py") as port, chromium_page(tmp_path / "chromium-profile", timeout_ms=10_000) as page:
        import playwright.sync_api as playwright_api
        page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
        expect = playwright_api.expect
        expect(page.locator("#status")).to_have_text("connected", timeout=10_000)
        expect(page.locator("#log")).to_contain_text("joined the chat", timeout=10_000)
        page.fill("#message", message)
        page.click("#send")
        expect(page.locator("#log .echo")).to_have_text(f"Echo: {message}", timeout=10_000)
        page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


# Runs in the page: open a WebSocket to /ws, send a 4 MiB text of repeated
# JSON-like records, and resolve with what was negotiated and whether the echo
# came back equal.
ROUND_TRIP_JS = """
async () => {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("no connection")); });
  const parts = [];
  let total = 0;
  for (let i = 0; total < 4 * 1024 * 1024; i++) {
    const part = `{"seq":${i},"user":"user-${i % 97}","text":"message number ${i} ✓"},`;
    parts.push(part);
    total += part.length;
  }
  const big = parts.join("");
  const small = "short ✓";
  const echoes = [];
  const done = new Promise((ok, fail) => {
    ws.onmessage = (e) => { echoes.push(e.data); if (echoes.length === 2) ok(); };
    ws.onclose = (e) => fail(new Error(`closed ${e.code} ${e.reason} after ${echoes.length} echoes`));
    setTimeout(() => fail(new Error(`no echo within 20 s (${echoes.length} so far)`)), 20000);
  });
  ws.send(big);
  ws.send(small);
  await done;
  const result = {extensions: ws.extensions, bigOk: echoes[0] === big, smallOk: echoes[1] === small,
                  size: big.length};
  ws.close(1000);
  return result;
}
"""


@pytest.mark.parametrize("mode, answer", [
    ("shared", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ("dedicated", "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
])
def test_chromium_negotiates_compression_and_round_trips_a_large_message(
        tmp_path: Path, mode: str, answer: str) -> None:
    with example("echo.py", env={"ECHO_COMPRESSION": mode}) as port, \
            chromium_page(tmp_path / "chromium-profile") as page:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
        result = page.evaluate(ROUND_TRIP_JS)
    # Chromium offers "permessage-deflate; client_max_window_bits" and shows the server's answer.
    assert result["extensions"] == answer
    assert result["size"] >= 4 * 1024 * 1024
    assert result["bigOk"] and result["smallOk"], result
