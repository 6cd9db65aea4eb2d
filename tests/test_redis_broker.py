"""The Redis broker against a real redis-server (tests/redis_helpers.py):
URLs, RESP, two nodes in one process on both loops (every kind of message,
order, batching, own echo), AUTH and db select, a garbage message on our
channel, Redis killed and restarted, paused (SIGSTOP), absent at start-up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from robyn_fast.broker.redis import RedisBroker
from robyn_fast.broker.resp import BrokerURLError, command, parse_url, redact_url
from robyn_fast.broker.wire import ALL, ROOM, TO, encode

from .redis_helpers import RedisServer, redis_server

# -- URLs and commands (no Redis needed) ------------------------------------------------------------------


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert command("PUBLISH", b"ch", b"a\r\nb") == b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n"
    assert command("SELECT", 3) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
    assert command("AUTH", "pässword") == b"*2\r\n$4\r\nAUTH\r\n$9\r\np\xc3\xa4ssword\r\n"


@pytest.mark.parametrize(
    ("url", "where", "db", "user", "password", "prefix", "tls"),
    [
        ("redis://127.0.0.1:6380/2", ("127.0.0.1", 6380, None), 2, None, None, "robyn_fast", False),
        ("redis://localhost", ("localhost", 6379, None), 0, None, None, "robyn_fast", False),
        ("redis://:s%40cret@h:1/0?prefix=chat", ("h", 1, None), 0, None, "s@cret", "chat", False),
        ("redis://secret@h:1", ("h", 1, None), 0, None, "secret", "robyn_fast", False),
        ("redis://alice:pw@h:1/5", ("h", 1, None), 5, "alice", "pw", "robyn_fast", False),
        ("rediss://h:6390/1?ssl_cert_reqs=none", ("h", 6390, None), 1, None, None, "robyn_fast", True),
        ("unix:///run/redis.sock?db=4&prefix=p", (None, 0, "/run/redis.sock"), 4, None, None, "p", False),
        ("unix://:pw@/run/r.sock", (None, 0, "/run/r.sock"), 0, None, "pw", "robyn_fast", False),
    ],
)
def test_broker_urls(url: str, where: tuple[Any, ...], db: int, user: str | None, password: str | None,
                     prefix: str, tls: bool) -> None:
    a = parse_url(url)
    assert (a.host, a.port, a.path) == where
    assert (a.db, a.username, a.password, a.prefix, a.tls is not None) == (db, user, password, prefix, tls)
    assert "pw" not in a.url and "secret" not in a.url and "cret" not in a.url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1", "scheme"),
        ("redis://h:port", "Port could not be cast"),
        ("redis://h:1/x", "db is a number"),
        ("redis://h:1/-1", "db is 0 or more"),
        ("redis://h:1/1?db=2", "given twice"),
        ("redis://h:1?timeout=3", "unknown option"),
        ("redis://h:1?prefix=", "prefix"),
        ("unix://", "no socket path"),
        ("rediss://h:1?ssl_cert_reqs=maybe", "yes/no"),
        ("", "non-empty"),
    ],
)
def test_bad_broker_urls_say_why(url: str, says: str) -> None:
    with pytest.raises(BrokerURLError, match=says):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://u:s3cret@h:1", "redis://u:s3cret@h:port", "redis://:s3cret@h:1/x", "redis://s3cret@h:1/-1",
     "redis://u:s3cret@h:1?timeout=3", "unix://u:s3cret@", "rediss://:s3cret@h:1?ssl_cert_reqs=maybe",
     "redis://u:s3cret@x@h:1/x", "redis://u:s3cret@[::1/0"],
)
def test_bad_broker_urls_never_show_their_password(url: str) -> None:
    with pytest.raises(BrokerURLError) as raised:
        parse_url(url)
    assert "s3cret" not in str(raised.value) and "***@" in str(raised.value), str(raised.value)
    assert "s3cret" not in repr(parse_url("redis://u:s3cret@h:1/0"))  # nor an address's repr()
    assert redact_url(url).count("***") == 1 and "s3cret" not in redact_url(url)


# -- two nodes in one process ----------------------------------------------------------------------------


def run_on(loop_kind: str, main: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), timeout))
    finally:
        loop.close()


class Node:
    """A broker and what it delivered; it serves ``endpoints`` (as a
    server watches each of its endpoints before it starts the broker)."""

    def __init__(self, url: str, tag: int, endpoints: tuple[str, ...] = ("/ws", "/chat"),
                 broker_class: Any = RedisBroker, **kwargs: Any) -> None:
        self.broker = broker_class(url, tag, **kwargs)
        for endpoint in endpoints:
            self.broker.watch(endpoint, None)
        self.got: list[tuple[int, str, Any, bytes]] = []
        self.arrived = asyncio.Event()

    def deliver(self, kind: int, endpoint: str, key: Any, frame: bytes) -> None:
        self.got.append((kind, endpoint, key, frame))
        self.arrived.set()

    async def start(self) -> Node:
        await self.broker.start(asyncio.get_running_loop(), self.deliver)
        return self

    async def wait_count(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(self.got)} of {n} delivered after {timeout}s: {[m[3][:40] for m in self.got[-3:]]}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass


async def subscribed(redis: RedisServer, channels: list[bytes], count: int = 1, timeout: float = 5.0) -> None:
    """Wait until each of ``channels`` has ``count`` subscribers at Redis (PUBSUB NUMSUB)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        reply = await loop.run_in_executor(None, redis.command, "PUBSUB", "NUMSUB", *channels)
        numbers = dict(zip(reply[::2], reply[1::2]))
        if all(numbers.get(c) == count for c in channels):
            return
        assert time.monotonic() < deadline, f"subscribers after {timeout}s: {numbers}, expected {count} each"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def redis() -> Any:
    with redis_server() as server:
        yield server


def test_every_kind_crosses_with_its_exact_frame_and_no_echo(redis: RedisServer, loop_kind: str) -> None:
    async def main() -> None:
        a = await Node(redis.url + "?prefix=kinds", 0x0A0A0A0A).start()
        b = await Node(redis.unix_url + "?prefix=kinds", 0x0B0B0B0B).start()
        assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
        # b has members in two rooms: it subscribes to their channels (a has none: it does not).
        b.broker.watch("/chat", "red")
        b.broker.watch("/chat", 7)
        await subscribed(redis, [b"kinds:r:5:/chat:s:red", b"kinds:r:5:/chat:i:7"])
        frame = b"\x81\x05hello"
        a.broker.publish(ALL, "/chat", None, frame)
        a.broker.publish(ROOM, "/chat", "red", frame + b"!")
        a.broker.publish(ROOM, "/chat", 7, frame + b"?")
        assert a.broker.publish_to(0x0B0B0B0B, "/chat", "0b0b0b0b-1111-8111-8111-111111111111", b"\x82\x01x")
        assert not a.broker.publish_to(0x0A0A0A0A, "/chat", "itself", frame)  # its own node: not via Redis
        await b.wait_count(4)
        assert b.got == [(ALL, "/chat", None, frame), (ROOM, "/chat", "red", frame + b"!"),
                         (ROOM, "/chat", 7, frame + b"?"),
                         (TO, "/chat", "0b0b0b0b-1111-8111-8111-111111111111", b"\x82\x01x")]
        # A message to another node's id does not reach a node it is not for.
        a.broker.publish_to(0x0C0C0C0C, "/chat", "nobody", frame)
        b.broker.publish(ALL, "/chat", None, b"from b")
        await a.wait_count(1)
        await b.wait_count(4)
        assert a.got == [(ALL, "/chat", None, b"from b")]  # and not its own four
        assert len(b.got) == 4  # not its own broadcast, not the send_to for node 0c0c0c0c
        s = a.broker.stats()
        assert (s["connected"], s["published"], s["received"], s["dropped"]) == (True, 5, 1, 0)
        # Its own broadcast came back on the endpoint's channel (before b's, in Redis's order): filtered.
        assert s["filtered"] == 1
        await a.broker.close()
        await b.broker.close()

    run_on(loop_kind, main)


def test_many_messages_arrive_in_order_in_few_publishes(redis: RedisServer, loop_kind: str) -> None:
    async def main() -> None:
        a = await Node(redis.url + "?prefix=order", 1).start()
        b = await Node(redis.url + "?prefix=order", 2).start()
        assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
        expected = []
        for batch in range(50):
            for i in range(100):
                n = batch * 100 + i
                if n % 3 == 0:
                    a.broker.publish_to(2, "/ws", "x", b"%d" % n)  # interleaved with broadcasts: one order
                else:
                    a.broker.publish(ALL, "/ws", None, b"%d" % n)
                expected.append(b"%d" % n)
            await asyncio.sleep(0)  # the next loop iteration: the batch is flushed
        await b.wait_count(5000, timeout=20)
        assert [m[3] for m in b.got] == expected
        # Corked per iteration and joined per run of one channel: far fewer PUBLISH commands than messages.
        assert a.broker.stats()["publishes"] < 5000 * 0.75
        # But no PUBLISH carries more than 512 KiB (Redis drops subscribers whose buffer passes 8-32 MB):
        # 40 messages of 100 KB in one iteration leave as at least 8 PUBLISH commands, in order.
        before = a.broker.stats()["publishes"]
        big = [bytes([65 + i % 26]) * 100_000 for i in range(40)]
        for frame in big:
            a.broker.publish(ALL, "/ws", None, frame)
        await b.wait_count(5040, timeout=20)
        assert [m[3] for m in b.got[5000:]] == big
        assert a.broker.stats()["publishes"] - before >= 8
        await a.broker.close()
        await b.broker.close()

    run_on(loop_kind, main)


def test_a_garbage_message_on_our_channel_is_logged_and_ignored(
    redis: RedisServer, loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        a = await Node(redis.url + "?prefix=garbage", 1).start()
        assert await a.broker.wait_connected(5)
        loop = asyncio.get_running_loop()
        good = encode(ALL, 99, "/ws", None, b"\x81\x02ok")
        for payload in (b"hello", b"\x01" * 40, good[:-1], b""):
            await loop.run_in_executor(None, redis.command, "PUBLISH", "garbage:e:/ws", payload)
        await loop.run_in_executor(None, redis.command, "PUBLISH", "garbage:e:/ws", good)
        await a.wait_count(1)
        assert a.got == [(ALL, "/ws", None, b"\x81\x02ok")]
        assert a.broker.stats()["malformed"] == 4
        await a.broker.close()

    with caplog.at_level(logging.WARNING, logger="robyn_fast.broker"):
        run_on(loop_kind, main)
    reports = [r for r in caplog.records if "not one of ours" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in caplog.records]  # at most one line per 10 s


def test_auth_and_db_select(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    with redis_server(password="s3cret") as redis:
        async def main() -> None:
            wrong = await Node(f"redis://:nope@127.0.0.1:{redis.port}/3?prefix=auth", 1).start()
            right = await Node(f"redis://:s3cret@127.0.0.1:{redis.port}/3?prefix=auth", 2).start()
            other = await Node(f"unix://default:s3cret@{redis.socket}?db=3&prefix=auth", 3).start()
            assert await right.broker.wait_connected(5) and await other.broker.wait_connected(5)
            assert not wrong.broker.connected
            right.broker.publish(ALL, "/ws", None, b"x")
            await other.wait_count(1)
            assert other.got == [(ALL, "/ws", None, b"x")]
            # The wrong password never connects; its messages wait in the outage buffer.
            wrong.broker.publish(ALL, "/ws", None, b"y")
            assert wrong.broker.stats()["buffered"] == 1 and not wrong.broker.connected
            for node in (wrong, right, other):
                await node.broker.close()

        with caplog.at_level(logging.WARNING, logger="robyn_fast.broker"):
            run_on(loop_kind, main)
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert refused and ("WRONGPASS" in refused[0] or "invalid" in refused[0]), refused
        assert len(refused) == 1, refused  # said once, not once per retry


def test_redis_killed_and_restarted(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    with redis_server() as redis:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            a = await Node(redis.url + "?prefix=outage", 1, outage_limit=10 * 100).start()
            b = await Node(redis.url + "?prefix=outage", 2).start()
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            a.broker.publish(ALL, "/ws", None, b"before")
            await b.wait_count(1)
            await loop.run_in_executor(None, redis.kill)
            deadline = time.monotonic() + 5
            # Both of a's connections have seen Redis go (each notices on its own, in either order).
            while (a.broker.connected or a.broker.links["publisher"] is not None) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not a.broker.connected and a.broker.links["publisher"] is None
            # During the outage: a bounded buffer, then drops, counted.
            frame = b"m" * 60  # 60 + 16 + 3 bytes a message: 12 fit in 1000 bytes
            for _ in range(20):
                a.broker.publish(ALL, "/ws", None, frame)
            s = a.broker.stats()
            assert (s["buffered"], s["dropped"]) == (12, 8), s
            await loop.run_in_executor(None, redis.start)
            t0 = time.monotonic()
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            assert time.monotonic() - t0 < 5.0
            a.broker.publish(ALL, "/ws", None, b"after")
            while b.got[-1][3] != b"after":
                await b.wait_count(len(b.got) + 1)
            assert b.got[0][3] == b"before" and b.got[-1][3] == b"after"
            assert all(m[3] == frame for m in b.got[1:-1])  # buffered ones that found b resubscribed, no others
            assert a.broker.stats()["outages"] == 1
            for node in (a, b):
                await node.broker.close()

        with caplog.at_level(logging.INFO, logger="robyn_fast.broker"):
            run_on(loop_kind, main)
    messages = [r.getMessage() for r in caplog.records if "node 00000001" in r.getMessage()
                or "reconnecting" in r.getMessage() or "again after" in r.getMessage()
                or "buffer is full" in r.getMessage()]
    lost = [m for m in messages if "reconnecting" in m]
    full = [m for m in messages if "buffer is full" in m]
    back = [m for m in messages if "again after" in m]
    assert len(full) == 1, messages  # once per outage, not per message
    assert lost and back, messages
    assert any("12 buffered message(s) sent, 8 dropped" in m for m in back), back


def test_a_paused_redis_is_noticed_and_recovered(loop_kind: str) -> None:
    with redis_server() as redis:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            a = await Node(redis.url + "?prefix=pause", 1).start()
            b = await Node(redis.url + "?prefix=pause", 2).start()
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            redis.pause()
            try:
                deadline = time.monotonic() + 10
                while a.broker.connected and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert not a.broker.connected  # no PONG within the timeout
            finally:
                redis.resume()
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            a.broker.publish(ALL, "/ws", None, b"after the pause")
            deadline = time.monotonic() + 5
            while not any(m[3] == b"after the pause" for m in b.got):
                assert time.monotonic() < deadline, b.got
                await asyncio.sleep(0.01)
            for node in (a, b):
                await node.broker.close()
            await loop.run_in_executor(None, lambda: None)

        run_on(loop_kind, main)


def test_a_broker_starts_without_redis_and_connects_when_it_comes(loop_kind: str) -> None:
    redis = RedisServer()
    try:
        redis.port = _unused_port()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            a = await Node(redis.url + "?prefix=late", 1).start()
            assert time.monotonic() - t0 < 3.0 and not a.broker.connected  # start() does not wait for Redis
            a.broker.publish(ALL, "/ws", None, b"early")
            assert a.broker.stats()["buffered"] == 1
            await loop.run_in_executor(None, redis.start)
            assert await a.broker.wait_connected(5)
            assert a.broker.stats()["buffered"] == 0
            await a.broker.close()

        run_on(loop_kind, main)
    finally:
        redis.close()


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tls_to_a_real_redis_with_a_ca_made_here(tmp_path: Path, loop_kind: str) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    tls_port = _unused_port()
    extra = ("--tls-port", str(tls_port), "--tls-cert-file", str(cert_pem), "--tls-key-file", str(key_pem),
             "--tls-ca-cert-file", str(ca_pem), "--tls-auth-clients", "no")
    with redis_server(extra=extra) as redis:
        async def main() -> None:
            url = f"rediss://127.0.0.1:{tls_port}/0?prefix=tls&ssl_ca_certs={ca_pem}"
            a = await Node(url, 1).start()
            b = await Node(url, 2).start()
            untrusted = await Node(f"rediss://127.0.0.1:{tls_port}/0?prefix=tls", 3).start()  # the system CAs only
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            a.broker.publish(ALL, "/ws", None, b"over tls")
            await b.wait_count(1)
            assert b.got == [(ALL, "/ws", None, b"over tls")]
            assert not untrusted.broker.connected  # a certificate nobody vouches for is refused
            for node in (a, b, untrusted):
                await node.broker.close()

        run_on(loop_kind, main)
    del redis


def test_a_subscriber_redis_disconnects_for_being_slow_resubscribes(
    loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis drops a subscriber whose output buffer passes 256 KiB (what a stalled node makes it buffer).
    with redis_server(extra=("--client-output-buffer-limit", "pubsub 256kb 128kb 1")) as redis:
        async def main() -> None:
            a = await Node(redis.url + "?prefix=slow", 1).start()
            b = await Node(redis.url + "?prefix=slow", 2).start()
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            sub = b.broker.links["subscriber"]
            assert sub is not None and sub.transport is not None
            sub.transport.pause_reading()  # b stalls: Redis buffers for it
            frame = b"z" * 10_000
            # 30 MiB: more than the kernel's socket buffers can hide from Redis.
            for _ in range(30):
                for _ in range(100):
                    a.broker.publish(ALL, "/ws", None, frame)
                await asyncio.sleep(0.02)
            # Redis drops b's subscriber (past its limit): one subscriber left, a's. b, not reading,
            # cannot have noticed yet.
            deadline = time.monotonic() + 10
            while True:
                listing = await asyncio.get_running_loop().run_in_executor(
                    None, redis.command, "CLIENT", "LIST", "TYPE", "pubsub")
                if len(listing.splitlines()) == 1:
                    break
                assert time.monotonic() < deadline, listing
                await asyncio.sleep(0.02)
            sub.transport.resume_reading()
            # b reconnects, resubscribes and hears new messages.
            deadline = time.monotonic() + 10
            while True:
                a.broker.publish(ALL, "/ws", None, b"later")
                await asyncio.sleep(0.05)
                if any(m[3] == b"later" for m in b.got):
                    break
                assert time.monotonic() < deadline, (b.broker.stats(), len(b.got))
            assert b.broker.stats()["outages"] >= 1
            assert len([m for m in b.got if m[3] == frame]) < 3000  # some were lost with the dropped link
            for node in (a, b):
                await node.broker.close()

        with caplog.at_level(logging.WARNING, logger="robyn_fast.broker"):
            run_on(loop_kind, main)
    lost = [r.getMessage() for r in caplog.records if "subscriber connection" in r.getMessage()]
    assert lost, [r.getMessage() for r in caplog.records]


def test_a_peer_that_accepts_and_never_answers_the_set_up_is_dropped_and_retried(
    loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts (the kernel does), never answers: a proxy whose Redis is gone
    port = silent.getsockname()[1]
    try:
        async def main() -> None:
            a = await Node(f"redis://:pw@127.0.0.1:{port}/0?prefix=silent", 1).start()
            deadline = time.monotonic() + 10
            while not any("no answer to the connection's set-up" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
                await asyncio.sleep(0.05)
            assert not a.broker.connected
            await a.broker.close()

        with caplog.at_level(logging.WARNING, logger="robyn_fast.broker"):
            run_on(loop_kind, main)
    finally:
        silent.close()


def test_messages_redis_refuses_are_counted_and_logged_once(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    with redis_server() as redis:
        # An ACL user that may subscribe but not publish.
        redis.command("ACL", "SETUSER", "mute", "on", ">pw", "~*", "&*", "+@all", "-publish")

        async def main() -> None:
            mute = await Node(f"redis://mute:pw@127.0.0.1:{redis.port}/0?prefix=acl", 1).start()
            assert await mute.broker.wait_connected(5)
            for i in range(30):
                mute.broker.publish(ALL, "/ws", None, b"%d" % i)
                if i % 10 == 9:
                    await asyncio.sleep(0)  # three PUBLISH commands of 10 messages each
            deadline = time.monotonic() + 5
            while mute.broker.stats()["dropped"] < 30:
                assert time.monotonic() < deadline, mute.broker.stats()
                await asyncio.sleep(0.01)
            assert mute.broker.stats()["dropped"] == 30 and mute.broker.stats()["publishes"] == 3
            await mute.broker.close()

        with caplog.at_level(logging.WARNING, logger="robyn_fast.broker"):
            run_on(loop_kind, main)
    errors = [r.getMessage() for r in caplog.records if "answered the publisher with an error" in r.getMessage()]
    assert len(errors) == 1 and "NOPERM" in errors[0], errors
