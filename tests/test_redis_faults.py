"""The Redis broker against a faulty or hostile Redis (issue 16): a paused
real redis-server and a silent peer lose nothing uncounted (published =
delivered + dropped, to within what a paused Redis delivers late); a flood
of foreign, hello and unknown-endpoint messages is counted, logged at most
once per 10 s, and the loop keeps answering; a fake Redis that sends
malformed pushes or a huge reply costs a counted protocol error, bounded
memory and no reconnect storm; a node's own broadcasts that Redis sends back
are dropped whole, counted, and cost Redis no pattern match."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robyn_fast.broker.redis import RedisBroker
from robyn_fast.broker.resp import BrokerURLError, command, parse_url
from robyn_fast.broker.wire import ALL, ROOM, TO, Decoder, WireError, decode_at, encode, encode_hello

from .process_helpers import ROOT, process_rss, serve_script
from .redis_helpers import RedisServer, redis_server
from .test_redis_broker import Node, run_on


class RawSubscriber(asyncio.Protocol):
    """A plain RESP subscriber (no PING, so a paused Redis keeps it): the
    frames of the bus messages it hears, in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.frames: list[bytes] = []
        self.subscribed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, redis: RedisServer, channel: bytes) -> RawSubscriber:
        loop = asyncio.get_running_loop()
        _, sub = await loop.create_unix_connection(cls, redis.socket)
        assert sub.transport is not None
        sub.transport.write(command("SUBSCRIBE", channel))
        await asyncio.wait_for(sub.subscribed.wait(), 5)
        return sub

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if reply[0] == b"subscribe":
                self.subscribed.set()
            elif reply[0] == b"message":
                self.frames.extend(m.frame for m in Decoder().feed(reply[2]))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def until(predicate: Callable[[], bool], timeout: float, what: Callable[[], Any] = lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.02)


# -- decoding a whole payload in slices ---------------------------------------------------------------

_message = st.one_of(
    st.builds(encode, st.sampled_from([ALL]), st.integers(0, 2**32 - 1), st.sampled_from(["/ws", "/é", "/a/b"]),
              st.none(), st.binary(min_size=1, max_size=20)),
    st.builds(encode, st.sampled_from([ROOM, TO]), st.integers(0, 2**32 - 1), st.sampled_from(["/ws", "/x"]),
              st.one_of(st.text(max_size=5), st.integers(-10**20, 10**20)), st.binary(min_size=1, max_size=20)),
    st.builds(encode_hello, st.integers(0, 2**32 - 1)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_message, max_size=8), st.binary(max_size=24), st.integers(0, 40), st.integers(1, 4))
def test_decode_at_in_slices_reads_what_the_stream_decoder_reads(
    messages: list[bytes], tail: bytes, cut: int, limit: int
) -> None:
    """decode_at, slice by slice, gives the messages the stream Decoder
    gives, and stops (WireError) exactly where the Decoder would fail or
    be left with a truncated message; also for bytes that are not messages."""
    payload = b"".join(messages) + tail
    payload = payload[: len(payload) - cut] if cut < len(payload) else payload
    got: list[Any] = []
    pos, error = 0, False
    while pos < len(payload):
        try:
            part, pos = decode_at(payload, pos, limit)
        except WireError:
            error = True
            break
        assert 0 < len(part) <= limit
        got.extend(part)
    expected: list[Any] = []
    decoder = Decoder()
    bad = False
    for i in range(len(payload)):  # one byte at a time: the messages before any malformed one
        try:
            expected.extend(decoder.feed(payload[i : i + 1]))
        except WireError:
            bad = True
            break
    assert got == expected
    assert error == (bad or decoder.buffered > 0)


# -- item 3: nothing lost uncounted --------------------------------------------------------------------


def test_a_paused_redis_loses_nothing_uncounted(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """500 messages/s while Redis is SIGSTOPped 5 s: every message is
    delivered or counted as dropped; a message counted and delivered anyway
    was in flight when the link went (Redis read it on SIGCONT)."""
    with redis_server() as redis:
        async def main() -> None:
            a = await Node(redis.url + "?prefix=stop", 1, outage_limit=16 * 1024).start()  # ~280 messages
            assert await a.broker.wait_connected(5)
            sub = await RawSubscriber.open(redis, a.broker.names.endpoint("/ws"))
            seq = 0

            async def publish_for(seconds: float) -> None:
                nonlocal seq
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    for _ in range(10):
                        a.broker.publish(ALL, "/ws", None, b"%d" % seq + b"." * 40)
                        seq += 1
                    await asyncio.sleep(0.02)

            await publish_for(1.0)
            redis.pause()
            try:
                await publish_for(5.0)
            finally:
                redis.resume()
            assert await a.broker.wait_connected(10)
            await publish_for(1.0)
            await until(lambda: bool(sub.frames) and sub.frames[-1].startswith(b"%d." % (seq - 1)), 10,
                        lambda: (a.broker.stats(), len(sub.frames)))
            stats = a.broker.stats()
            delivered = {int(f.split(b".")[0]) for f in sub.frames}
            assert len(delivered) == len(sub.frames)  # none twice
            missing = seq - len(delivered)
            lost_in_flight = stats["dropped_in_flight"]
            print(f"{loop_kind}: published {stats['published']}, delivered {len(delivered)}, dropped "
                  f"{stats['dropped']} ({lost_in_flight} of them in flight on a lost link)")
            assert stats["published"] == seq and missing > 0  # the pause cost messages: the test tests something
            assert missing <= stats["dropped"], "messages lost uncounted"
            assert stats["dropped"] - missing <= lost_in_flight  # counted yet delivered: only in-flight ones, late
            sub.close()
            await a.broker.close()

        with caplog.at_level(logging.INFO, logger="robyn_fast.broker"):
            run_on(loop_kind, main)
    back = [r.getMessage() for r in caplog.records if "again after" in r.getMessage()]
    assert back and "in flight on a lost link" in back[-1], back


def test_a_silent_redis_gets_nothing_and_every_message_is_counted(loop_kind: str) -> None:
    """A peer that accepts and never answers (no password: no AUTH awaited):
    the publisher never becomes ready, so every message is buffered or
    dropped, counted."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        async def main() -> None:
            a = await Node(f"redis://127.0.0.1:{port}/0?prefix=silent", 1, outage_limit=10_000).start()
            for _ in range(40):
                for _ in range(50):
                    a.broker.publish(ALL, "/ws", None, b"x" * 100)
                await asyncio.sleep(0.1)  # 4 s: past the 3 s without an answer
            stats = a.broker.stats()
            assert stats["published"] == 2000
            assert stats["dropped"] + stats["buffered"] == 2000, stats
            assert stats["publishes"] == 0 and not stats["connected"]
            await a.broker.close()

        run_on(loop_kind, main)
    finally:
        silent.close()


# -- item 5: a flood of messages that are not ours ------------------------------------------------------


def test_a_flood_of_foreign_messages_is_counted_logged_once_and_the_loop_answers(loop_kind: str) -> None:
    """Payloads of 65,536 hellos and of 65,536 messages for an endpoint this
    app lacks, published on a channel a server's node hears: counted, one
    line per kind, and an echo through that server keeps answering within
    100 ms until it has read them all."""
    import json
    import urllib.request

    import websocket as wsclient

    with redis_server() as redis, serve_script(ROOT / "tests" / "robyn_apps" / "broker_echo.py", loop_kind,
                                               args=["--broker", redis.url + "?prefix=flood"]) as srv:
        srv.wait_output(r"broker: connected to Redis at ", timeout=10)

        def stats() -> dict[str, Any]:
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/stats", timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]

        hellos = encode_hello(0x01020304) * 65536
        unknown = encode(ALL, 0x01020304, "/nope", None, b"\x81\x01x") * 65536
        channel = "flood:e:/ws"  # the channel of an endpoint the server serves
        rounds = 6
        done = threading.Event()

        def flood() -> None:
            try:
                for _ in range(rounds):
                    for payload in (hellos, unknown):
                        redis.command("PUBLISH", channel, payload)
            finally:
                done.set()

        client = wsclient.create_connection(f"ws://127.0.0.1:{srv.port}/ws", timeout=5)
        try:
            thread = threading.Thread(target=flood)
            t_start = time.monotonic()
            thread.start()
            rtts = []
            n = 0
            # Echo until the server has read every message of the flood (not only until Redis took it).
            while not done.is_set() or n % 10 or stats()["unknown_endpoint"] < rounds * 65536:
                assert time.monotonic() < t_start + 60, stats()
                t0 = time.perf_counter()
                client.send(f"echo {n}")
                assert client.recv() == f"echo {n}"
                rtts.append(time.perf_counter() - t0)
                n += 1
                time.sleep(0.005)
            took = time.monotonic() - t_start
            thread.join()
            final = stats()
        finally:
            client.close()
        lines = srv.output().splitlines()
    worst = max(rtts) * 1000
    print(f"{loop_kind}: {rounds * 2} payloads read in {took:.2f} s, echo worst {worst:.1f} ms over {len(rtts)}, "
          f"malformed {final['broker']['malformed']}, unknown_endpoint {final['unknown_endpoint']}, "
          f"{len(lines)} output line(s)")
    assert final["broker"]["malformed"] == rounds  # one per hello payload: the rest of it is not read
    assert final["unknown_endpoint"] == rounds * 65536
    assert len([m for m in lines if "not one of ours" in m]) == 1, lines[-5:]
    assert len([m for m in lines if "not a WebSocket endpoint" in m]) == 1, lines[-5:]
    assert worst < 100, sorted(rtts)[-5:]


# -- item 6: a Redis that sends what it should not -----------------------------------------------------


class FakeRedis:
    """Answers a broker's set-up as Redis does (+OK, PONG, subscribe
    confirmations), then ``after_subscribe(writer)`` on each subscriber."""

    def __init__(self, after_subscribe: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.after_subscribe = after_subscribe
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        parser = hiredis.Reader()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                parser.feed(data)
                while (cmd := parser.gets()) is not False:
                    name = cmd[0].upper()
                    if name == b"PING":
                        writer.write(b"+PONG\r\n")
                    elif name == b"SUBSCRIBE":
                        for i, ch in enumerate(cmd[1:], 1):
                            kind = name.lower()
                            writer.write(b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n" % (len(kind), kind, len(ch), ch, i))
                        await self.after_subscribe(writer)
                    else:
                        writer.write(b"+OK\r\n")
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_malformed_pushes_are_counted_logged_once_and_keep_the_link(
    loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = encode(ALL, 99, "/ws", None, b"\x81\x02ok")
    bad = [
        b"*2\r\n$7\r\nmessage\r\n$2\r\nch\r\n",  # no payload
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n:5\r\n",  # a payload that is a number
        b"*3\r\n$8\r\npmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",  # a pmessage without its pattern
        b":7\r\n",  # no push at all
        b"*0\r\n",
    ]

    async def pushes(writer: asyncio.StreamWriter) -> None:
        for _ in range(200):
            writer.write(b"".join(bad))
            await writer.drain()
        writer.write(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$%d\r\n%s\r\n" % (len(good), good))

    async def main() -> None:
        fake = FakeRedis(pushes)
        await fake.start()
        a = await Node(f"redis://127.0.0.1:{fake.port}/0?prefix=bad", 1).start()
        await a.wait_count(1)
        stats = a.broker.stats()
        print(f"{loop_kind}: protocol_errors {stats['protocol_errors']}, connections {fake.connections}")
        assert a.got == [(ALL, "/ws", None, b"\x81\x02ok")]
        assert stats["protocol_errors"] == 200 * len(bad)
        assert fake.connections == 2 and stats["outages"] == 0  # the link stays: no reconnect storm
        await a.broker.close()
        await fake.close()

    with caplog.at_level(logging.WARNING):
        run_on(loop_kind, main)
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "protocol error" in m]) == 1, lines[:5]
    assert not any(r.exc_info for r in caplog.records), lines[:5]


def test_a_huge_reply_is_capped_counted_and_logged_once(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A 1 GiB bulk reply announced and streamed: the link is dropped past
    max_reply_size (4 MiB here), memory stays flat, one line."""
    streamed = [0]

    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1073741824\r\n")
        chunk = b"\0" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(1600):  # 100 MiB at most per connection
                writer.write(chunk)
                await writer.drain()
                streamed[0] += len(chunk)

    async def main() -> None:
        fake = FakeRedis(huge)
        await fake.start()
        before = process_rss(os.getpid())
        a = await Node(f"redis://127.0.0.1:{fake.port}/0?prefix=huge&max_reply_size={4 << 20}", 1).start()
        await until(lambda: a.broker.stats()["protocol_errors"] >= 3, 20, a.broker.stats)  # 1 s, 2 s apart
        grown = (process_rss(os.getpid()) - before) / (1 << 20)
        stats = a.broker.stats()
        print(f"{loop_kind}: RSS +{grown:.1f} MiB, streamed {streamed[0] >> 20} MiB, "
              f"protocol_errors {stats['protocol_errors']}, connections {fake.connections}")
        assert grown < 32, grown
        assert stats["outages"] >= 1
        await a.broker.close()
        await fake.close()

    with caplog.at_level(logging.WARNING):
        run_on(loop_kind, main)
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "protocol error" in m]) == 1, lines
    assert len(lines) <= 3, lines  # that, the link lost, and back: once, not per reconnect
    assert not any(r.exc_info for r in caplog.records), lines[:5]


def test_max_reply_size_in_the_url() -> None:
    assert parse_url("redis://h").max_reply == 64 << 20
    assert parse_url("redis://h?max_reply_size=2097152").max_reply == 2 << 20
    for bad in ("12", "x", "-5", str(1 << 41), ""):
        with pytest.raises(BrokerURLError, match="max_reply_size"):
            parse_url(f"redis://h?max_reply_size={bad}")


def test_a_message_over_max_reply_size_is_not_published() -> None:
    async def main() -> None:
        a = RedisBroker("redis://127.0.0.1:1/0?max_reply_size=1048576", 1)
        a.loop = asyncio.get_running_loop()
        a.publish(ALL, "/ws", None, b"x" * (1 << 20))
        assert a.stats()["dropped"] == 1 and a.stats()["buffered"] == 0

    run_on("asyncio", main)


# -- item 7: a node's own broadcasts that come back are dropped whole ------------------------------------


def test_own_broadcasts_come_back_filtered_whole_and_no_pattern_costs_redis(loop_kind: str) -> None:
    """Plain channels send a node its own PUBLISHes back (it serves the
    endpoint too): each payload is dropped on its origin, without decoding,
    counted in ``filtered``; nothing reaches the node's deliveries; Redis
    holds no pattern subscription (no glob match per PUBLISH)."""
    with redis_server() as redis:
        async def main() -> None:
            a = await Node(redis.url + "?prefix=own", 1).start()
            b = await Node(redis.url + "?prefix=own", 2).start()
            assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
            frame = b"o" * 100_000
            rounds = 30
            for round_ in range(rounds):
                for _ in range(10):
                    a.broker.publish(ALL, "/ws", None, frame)
                await b.wait_count(10 * (round_ + 1), timeout=10)
            assert len(b.got) == 10 * rounds and all(m[3] == frame for m in b.got)
            b.broker.publish(ALL, "/ws", None, b"to a")  # after a's own, on the same channel: in order
            await a.wait_count(1, timeout=10)
            stats = a.broker.stats()
            assert [m[3] for m in a.got] == [b"to a"]
            assert stats["filtered"] == 10 * rounds and stats["received"] == 1, stats
            assert await asyncio.get_running_loop().run_in_executor(None, redis.command, "PUBSUB", "NUMPAT") == 0
            for node in (a, b):
                await node.broker.close()

        run_on(loop_kind, main)
