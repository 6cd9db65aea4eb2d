"""The bus between worker processes (robyn_fast.broker): the sans-I/O wire
format; LocalBus meshes on a real event loop (asyncio and uvloop) in one
process — delivery of every kind with the exact frame bytes, per-pair order,
corked writes, refused hellos and garbage, the bounded per-peer backlog with
its drop counting and once-per-episode logging, a gone peer, a restarted
peer; and a two-worker server whose handler sends 2000 messages to a
connection on the other worker, which gets them all, in order."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import struct
import tempfile
import textwrap
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
import websocket as wsclient

from robyn_fast.broker import ALL, ROOM, TO, make_node_tag, node_slot
from robyn_fast.broker.local import DELIVERY_SLICE, LocalBus
from robyn_fast.broker.wire import (
    HEAD_SIZE,
    HELLO,
    MAX_MESSAGE,
    Decoder,
    Message,
    WireError,
    encode,
    encode_hello,
)
from robyn_fast.config import Config
from robyn_fast.websocket.ids import node_of

from .process_helpers import ServerProcess, owner, worker_pids

T = TypeVar("T")

TIMEOUT = 10.0
HOST = 0x1234
OTHER_HOST = 0x4321
LOG = "robyn_fast.bus"

# -- the wire format, sans-I/O ------------------------------------------------------------------------

_HEAD = struct.Struct("!BBBBIHHI")

TAG = make_node_tag(HOST, 3, 7)
TEXT = b"\x81\x05hello"
BIG = b"\x82\x7f" + (70_000).to_bytes(8, "big") + bytes(range(256)) * 273 + bytes(112)

MESSAGES = [
    Message(HELLO, TAG, "", None, b""),
    Message(ALL, TAG, "/chat", None, TEXT),
    Message(ROOM, TAG, "/chat", "lobby", TEXT),
    Message(ROOM, TAG, "/chät/ü", "räum ✓", b"\x81\x02hi"),
    Message(ROOM, TAG, "/chat", 7, TEXT),
    Message(ROOM, TAG, "/chat", 0, TEXT),
    Message(ROOM, TAG, "/chat", -12, TEXT),
    Message(ROOM, TAG, "/chat", 10**40, TEXT),
    Message(ROOM, TAG, "/chat", "", TEXT),
    Message(TO, TAG, "/chat", "00000000-0000-8000-8000-000000000000", TEXT),
    Message(TO, make_node_tag(0xFFFF, 255, 255), "/x", "id", b"\x88\x00"),
]


def _encode(m: Message) -> bytes:
    return encode_hello(m.origin) if m.kind == HELLO else encode(m.kind, m.origin, m.endpoint, m.key, m.frame)


def test_every_kind_round_trips_fed_whole() -> None:
    for m in [*MESSAGES, Message(ALL, TAG, "/big", None, BIG), Message(TO, TAG, "/big", "c", BIG)]:
        raw = _encode(m)
        decoder = Decoder()
        out = decoder.feed(raw)
        assert out == [m]
        assert type(out[0].key) is type(m.key)
        assert decoder.buffered == 0


def test_hello_is_a_bare_header() -> None:
    raw = encode_hello(TAG)
    assert raw == _HEAD.pack(1, HELLO, 0, 0, TAG, 0, 0, 0) and len(raw) == HEAD_SIZE == 16


def test_the_header_is_the_documented_layout() -> None:
    raw = encode(ROOM, TAG, "/e", 42, b"\x81\x00")
    assert raw == _HEAD.pack(1, ROOM, 2, 0, TAG, 2, 2, 2) + b"/e" + b"42" + b"\x81\x00"
    raw = encode(TO, TAG, "/é", "k", b"F")
    assert raw == _HEAD.pack(1, TO, 1, 0, TAG, 3, 1, 1) + "/é".encode() + b"k" + b"F"


def test_a_stream_split_at_every_offset_yields_the_same_messages() -> None:
    stream = b"".join(_encode(m) for m in MESSAGES)
    for cut in range(len(stream) + 1):
        decoder = Decoder()
        out = decoder.feed(stream[:cut])
        assert decoder.buffered == cut - sum(len(_encode(m)) for m in out)
        out += decoder.feed(stream[cut:])
        assert out == MESSAGES, cut
        assert decoder.buffered == 0


def test_a_stream_split_twice_yields_the_same_messages() -> None:
    stream = b"".join(_encode(m) for m in MESSAGES[:5])
    for a, b in itertools.combinations(range(len(stream) + 1), 2):
        decoder = Decoder()
        out = decoder.feed(stream[:a]) + decoder.feed(stream[a:b]) + decoder.feed(stream[b:])
        assert out == MESSAGES[:5], (a, b)


def test_a_stream_fed_one_byte_at_a_time_yields_each_message_on_its_last_byte() -> None:
    messages = [*MESSAGES, Message(ALL, TAG, "/big", None, BIG), *MESSAGES]
    stream = b"".join(_encode(m) for m in messages)
    ends = set(itertools.accumulate(len(_encode(m)) for m in messages))
    decoder = Decoder()
    out: list[Message] = []
    for i in range(len(stream)):
        got = decoder.feed(stream[i : i + 1])
        assert len(got) == (1 if i + 1 in ends else 0), i
        out += got
    assert out == messages and decoder.buffered == 0


def test_a_big_frame_split_anywhere() -> None:
    m = Message(ROOM, TAG, "/big", "room", BIG)
    raw = _encode(m)
    for cut in (1, HEAD_SIZE - 1, HEAD_SIZE, HEAD_SIZE + 4, HEAD_SIZE + 8, 1000, len(raw) - 1):
        decoder = Decoder()
        assert decoder.feed(raw[:cut]) == []
        assert decoder.feed(raw[cut:]) == [m]


def test_a_big_frame_is_copied_once_whole_or_in_pieces() -> None:
    # The frame's own bytes are the one copy: peak memory while decoding stays near one frame
    # (copying it into a growing buffer, out of it, and into bytes took three).
    frame = b"\x82\x7f" + (1 << 20).to_bytes(8, "big") + bytes(range(256)) * 4096
    raw = encode(ROOM, TAG, "/big", "room", frame)
    for size in (len(raw), 256 * 1024, 65536, 1000):
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        decoder = Decoder()
        tracemalloc.start()
        try:
            out = [m for piece in pieces for m in decoder.feed(piece)]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert out == [Message(ROOM, TAG, "/big", "room", frame)] and decoder.buffered == 0
        assert type(out[0].frame) is bytes
        assert peak < len(frame) + 128 * 1024, (size, peak)


def test_frames_never_alias_a_buffer_the_caller_writes_again() -> None:
    # Like a transport's receive buffer: each chunk arrives in the same bytearray, rewritten
    # after every feed. What the decoder keeps, and the frames it returns, must not change.
    messages = [*MESSAGES, Message(ALL, TAG, "/big", None, BIG)]
    raw = b"".join(_encode(m) for m in messages)
    for size in (1, 7, HEAD_SIZE + 3, 4096):
        buf = bytearray(size)
        decoder = Decoder()
        out: list[Message] = []
        for i in range(0, len(raw), size):
            piece = raw[i : i + size]
            buf[: len(piece)] = piece
            out += decoder.feed(memoryview(buf)[: len(piece)])
            buf[:] = b"\xee" * size
        assert out == messages, size


def test_several_messages_in_one_feed_and_a_tail() -> None:
    stream = b"".join(_encode(m) for m in MESSAGES)
    tail = _encode(MESSAGES[2])
    decoder = Decoder()
    assert decoder.feed(stream + tail[:10]) == MESSAGES
    assert decoder.buffered == 10
    assert decoder.feed(tail[10:]) == [MESSAGES[2]]


def _raw(kind: int = ALL, key_type: int = 0, endpoint: bytes = b"/chat", key: bytes = b"", frame: bytes = TEXT,
         version: int = 1, pad: int = 0) -> bytes:
    return _HEAD.pack(version, kind, key_type, pad, TAG, len(endpoint), len(key), len(frame)) + endpoint + key + frame


MALFORMED = {
    "version 0": _raw(version=0),
    "version 2": _raw(version=2),
    "kind 4": _raw(kind=4),
    "kind 8": _raw(kind=8),
    "query without an endpoint": _raw(kind=4, endpoint=b"", frame=b"\x00\x00\x00\x01"),
    "query id of 3 bytes": _raw(kind=4, frame=b"\x00\x00\x01"),
    "reply with a str key": _raw(kind=5, key_type=1, key=b"1", frame=b"[]"),
    "reply without a body": _raw(kind=5, key_type=2, key=b"1", frame=b""),
    "interest without a room": _raw(kind=6, frame=b"\x01"),
    "interest flag of 2 bytes": _raw(kind=6, key_type=1, key=b"r", frame=b"\x01\x01"),
    "synced with a body": _raw(kind=7, endpoint=b"", frame=b"x"),
    "kind 255": _raw(kind=255),
    "non-zero pad": _raw(pad=1),
    "key type 3": _raw(kind=ROOM, key_type=3, key=b"x"),
    "key type 255": _raw(kind=ROOM, key_type=255, key=b"x"),
    "key bytes without a key type": _raw(kind=ROOM, key_type=0, key=b"x"),
    "endpoint not UTF-8": _raw(endpoint=b"/ch\xffat"),
    "str key not UTF-8": _raw(kind=ROOM, key_type=1, key=b"\xc3("),
    "int key with a letter": _raw(kind=ROOM, key_type=2, key=b"12a"),
    "int key empty": _raw(kind=ROOM, key_type=2, key=b""),
    "int key a lone minus": _raw(kind=ROOM, key_type=2, key=b"-"),
    "int key two minuses": _raw(kind=ROOM, key_type=2, key=b"--5"),
    "int key with a plus": _raw(kind=ROOM, key_type=2, key=b"+5"),
    "int key with spaces": _raw(kind=ROOM, key_type=2, key=b" 5"),
    "int key with an underscore": _raw(kind=ROOM, key_type=2, key=b"1_0"),
    "int key non-ASCII digits": _raw(kind=ROOM, key_type=2, key="١٢".encode()),
    "int key of 5000 digits": _raw(kind=ROOM, key_type=2, key=b"1" * 5000),
    "hello with an endpoint": _raw(kind=HELLO, frame=b""),
    "hello with a key": _raw(kind=HELLO, endpoint=b"", key_type=1, key=b"k", frame=b""),
    "hello with a key type": _raw(kind=HELLO, endpoint=b"", key_type=1, key=b"", frame=b""),  # found by fuzz/
    "hello with a frame": _raw(kind=HELLO, endpoint=b""),
    "delivery without an endpoint": _raw(endpoint=b""),
    "delivery without a frame": _raw(frame=b""),
    "TO without a frame": _raw(kind=TO, key_type=1, key=b"id", frame=b""),
    "ALL with a str key": _raw(kind=ALL, key_type=1, key=b"room"),
    "ALL with an int key": _raw(kind=ALL, key_type=2, key=b"1"),
    "ROOM without a key": _raw(kind=ROOM),
    "TO without a key": _raw(kind=TO),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_is_a_wire_error(name: str) -> None:
    raw = MALFORMED[name]
    with pytest.raises(WireError):
        Decoder().feed(raw)
    # ... also after a good message in the same feed, and fed one byte at a time.
    with pytest.raises(WireError):
        Decoder().feed(_encode(MESSAGES[1]) + raw)
    decoder = Decoder()
    with pytest.raises(WireError):
        for i in range(len(raw)):
            decoder.feed(raw[i : i + 1])
    # The good message itself decodes: the error is the malformed one's.
    assert Decoder().feed(_encode(MESSAGES[1])) == [MESSAGES[1]]


def test_a_header_is_judged_before_its_body_arrives() -> None:
    bad_version = _raw(version=9)[:HEAD_SIZE]
    with pytest.raises(WireError):
        Decoder().feed(bad_version)
    # A message of exactly MAX_MESSAGE bytes waits for its body; one byte more is refused from its header alone.
    flen = MAX_MESSAGE - HEAD_SIZE - 5
    fits = _HEAD.pack(1, ALL, 0, 0, TAG, 5, 0, flen) + b"/chat"
    decoder = Decoder()
    assert decoder.feed(fits) == [] and decoder.buffered == len(fits)
    for head in (
        _HEAD.pack(1, ALL, 0, 0, TAG, 5, 0, flen + 1),
        _HEAD.pack(1, ALL, 0, 0, TAG, 0xFFFF, 0xFFFF, 0xFFFFFFFF),
        _HEAD.pack(1, ROOM, 1, 0, TAG, 5, 0xFFFF, MAX_MESSAGE),
    ):
        with pytest.raises(WireError, match="bytes"):
            Decoder().feed(head)
    # ... also when the header arrives in pieces behind a good message.
    decoder = Decoder()
    head = _HEAD.pack(1, ALL, 0, 0, TAG, 0, 0, MAX_MESSAGE)
    assert decoder.feed(_encode(MESSAGES[1]) + head[:7]) == [MESSAGES[1]]
    with pytest.raises(WireError):
        decoder.feed(head[7:])


@pytest.mark.parametrize("key", [1.5, b"room", bytearray(b"r"), True, False, ("a",), object()])
def test_encode_refuses_a_key_that_is_no_str_or_int(key: Any) -> None:
    with pytest.raises(TypeError):
        encode(ROOM, TAG, "/chat", key, TEXT)


def test_encode_refuses_an_endpoint_or_key_over_65535_bytes() -> None:
    with pytest.raises(ValueError):
        encode(ALL, TAG, "/" + "e" * 0xFFFF, None, TEXT)
    with pytest.raises(ValueError):
        encode(ALL, TAG, "/" + "é" * 0x8000, None, TEXT)  # 65537 bytes of UTF-8 in 32769 characters
    with pytest.raises(ValueError):
        encode(ROOM, TAG, "/chat", "r" * 0x10000, TEXT)
    longest = Message(ROOM, TAG, "/" + "e" * 0xFFFE, "r" * 0xFFFF, TEXT)
    assert Decoder().feed(_encode(longest)) == [longest]


def test_node_tags() -> None:
    assert make_node_tag(HOST, 2, 5) == HOST << 16 | 2 << 8 | 5
    assert node_slot(make_node_tag(0xFFFF, 255, 255)) == (0xFFFF, 255, 255)
    for bad in ((0, 0, 0), (1 << 16, 0, 0), (1, 256, 0), (1, 0, 256), (1, -1, 0)):
        with pytest.raises(ValueError):
            make_node_tag(*bad)


# -- LocalBus on a real event loop ---------------------------------------------------------------------


def run(loop_kind: str, main: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """``main()`` on a fresh event loop of ``loop_kind``, bounded in time."""
    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), timeout))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` on the loop (state no callback reports: a link
    closed, a buffer drained) until it holds; AssertionError after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"still not {what} after {timeout}s")
        await asyncio.sleep(0.002)


class Inbox:
    """A bus's ``deliver``: keeps what arrives and wakes who waits for it."""

    def __init__(self) -> None:
        self.got: list[tuple[int, str, Any, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, kind: int, endpoint: str, key: Any, frame: bytes) -> None:
        self.got.append((kind, endpoint, key, frame))
        self._changed.set()

    async def wait(self, count: int, timeout: float = TIMEOUT) -> list[tuple[int, str, Any, bytes]]:
        """Wait until ``count`` messages arrived; all of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.got) < count:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise AssertionError(f"{len(self.got)} of {count} messages after {timeout}s") from None
        return self.got

    def frames(self) -> list[bytes]:
        return [m[3] for m in self.got]


@pytest.fixture
def rundir(tmp_path: Path) -> Iterator[str]:
    """Where the buses' sockets live: tmp_path, or a shorter directory when
    its path is too long for a Unix socket address."""
    if len(os.fsencode(tmp_path / "255.sock")) < 100:
        yield str(tmp_path)
        return
    short = tempfile.mkdtemp(prefix="rfbus-")
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@contextlib.asynccontextmanager
async def buses(rundir: str, slots: int, start: int | None = None, *, generation: int = 0,
                buffer_limit: int | None = None, mesh: bool = True,
                linger: float | None = None) -> AsyncIterator[list[tuple[LocalBus, Inbox]]]:
    """``start`` (all by default) buses of a ``slots``-worker host, started
    one after the other like workers that come up in turn; meshed unless
    ``mesh`` is False; closed on exit."""
    started: list[tuple[LocalBus, Inbox]] = []
    kwargs: dict[str, Any] = {} if buffer_limit is None else {"buffer_limit": buffer_limit}
    if linger is not None:
        kwargs["linger"] = linger
    try:
        for slot in range(slots if start is None else start):
            bus = LocalBus(rundir, make_node_tag(HOST, slot, generation), slots, **kwargs)
            inbox = Inbox()
            await bus.start(asyncio.get_running_loop(), inbox)
            started.append((bus, inbox))
        if mesh:
            for bus, _ in started:
                assert await bus.wait_meshed(TIMEOUT), f"worker {bus.slot} has links to {sorted(bus.links)}"
        yield started
    finally:
        for bus, _ in started:
            await bus.close()


def frame(i: int, size: int = 0) -> bytes:
    """A text frame carrying ``i`` (padded to ``size`` bytes of payload)."""
    payload = str(i).encode().ljust(size, b".")
    if len(payload) < 126:
        return bytes([0x81, len(payload)]) + payload
    return b"\x81\x7e" + len(payload).to_bytes(2, "big") + payload


def index(f: bytes) -> int:
    payload = f[2:] if f[1] < 126 else f[4:]
    return int(payload.rstrip(b"."))


def bus_records(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and re.search(pattern, r.getMessage())]


def inbound_from(bus: LocalBus, node: int) -> Any:
    """``bus``'s end of the link ``node`` dialed to it."""
    found = [inbound for inbound in bus._inbound if inbound.peer == node]
    assert len(found) == 1, f"{len(found)} inbound links from {node:#x}"
    return found[0]


async def watching(everyone: list[LocalBus], endpoint: str, room: Any, members: list[LocalBus]) -> None:
    """``members`` have members in ``room``: wait until every bus of
    ``everyone`` sends that room's messages to them and to nobody else."""
    for bus in members:
        bus.watch(endpoint, room)
    want = {bus.slot for bus in members}
    await until(lambda: all(bus.peers_for(endpoint, room) == frozenset(want - {bus.slot}) for bus in everyone),
                f"told that {sorted(want)} need {room!r}")


def backlog(bus: LocalBus, slot: int) -> int:
    link = bus.links[slot]
    assert link.transport is not None
    return link.pending_bytes + link.transport.get_write_buffer_size()


def test_three_buses_mesh_and_carry_every_kind_with_the_exact_frame(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        async with buses(rundir, 3) as started:
            (a, ia), (b, ib), (c, ic) = started
            for bus in (a, b, c):
                assert sorted(bus.links) == sorted({0, 1, 2} - {bus.slot})
                assert {s: link.tag for s, link in bus.links.items()} == {
                    other.slot: other.node for other in (a, b, c) if other is not bus
                }
                assert bus.stats()["peers"] == 2
            for endpoint, room in (("/chat", "lobby"), ("/chät", 7), ("/chat", -3)):
                await watching([a, b, c], endpoint, room, [b, c])
            sent = [
                (ALL, "/chat", None, TEXT),
                (ROOM, "/chat", "lobby", b"\x81\x03abc"),
                (ROOM, "/chät", 7, b"\x82\x01\x00"),
                (ROOM, "/chat", -3, TEXT),
                (ALL, "/big", None, BIG),
            ]
            for kind, endpoint, key, f in sent:
                a.publish(kind, endpoint, key, f)
            assert await ib.wait(len(sent)) == sent
            assert await ic.wait(len(sent)) == sent
            for got in (ib.got, ic.got):
                assert [type(m[2]) for m in got] == [type(m[2]) for m in sent]
            # To one connection: only the node its id names gets it. c's inbox
            # shows that: a's next broadcast reaches it, and the stream from a
            # to c is ordered, so a TO sent to c before it would be there first.
            assert a.publish_to(b.node, "/chat", "conn-on-b", b"\x81\x01b") is True
            assert c.publish_to(b.node, "/chat", "conn-on-b", b"\x81\x01c") is True
            a.publish(ALL, "/chat", None, b"\x81\x04done")
            rest = (await ib.wait(len(sent) + 3))[len(sent):]
            # The streams from a and from c are each in order; how they interleave is not given.
            assert [m for m in rest if m[3] != b"\x81\x01c"] == [
                (TO, "/chat", "conn-on-b", b"\x81\x01b"), (ALL, "/chat", None, b"\x81\x04done"),
            ]
            assert [m for m in rest if m[3] == b"\x81\x01c"] == [(TO, "/chat", "conn-on-b", b"\x81\x01c")]
            assert (await ic.wait(len(sent) + 1))[len(sent):] == [(ALL, "/chat", None, b"\x81\x04done")]
            assert ia.got == []  # nothing comes back to the publisher
            assert a.stats() == {"kind": "local", "node": a.node, "peers": 2, "published": len(sent) + 2,
                                 "received": 0, "dropped": 0, "subscriptions": 0, "subscribe_commands": 0,
                                 "unsubscribe_commands": 0, "filtered": 0, "queries": 0}
            assert b.stats()["subscriptions"] == 3 and b.stats()["subscribe_commands"] == 3
            assert b.stats()["received"] == len(sent) + 3 and c.stats()["received"] == len(sent) + 1

    run(loop_kind, main)


def test_buses_started_at_once_mesh(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        all_buses = [LocalBus(rundir, make_node_tag(HOST, slot, 0), 4) for slot in range(4)]
        inboxes = [Inbox() for _ in all_buses]
        try:
            await asyncio.gather(*(bus.start(loop, inbox) for bus, inbox in zip(all_buses, inboxes)))
            assert all(await asyncio.gather(*(bus.wait_meshed(TIMEOUT) for bus in all_buses)))
            for i in range(4):
                await watching(all_buses, "/r", i, all_buses)
            for i, bus in enumerate(all_buses):
                bus.publish(ROOM, "/r", i, frame(i))
            for i, inbox in enumerate(inboxes):
                got = await inbox.wait(3)
                assert sorted(got) == sorted((ROOM, "/r", j, frame(j)) for j in range(4) if j != i)
        finally:
            for bus in all_buses:
                await bus.close()

    run(loop_kind, main)


@pytest.mark.parametrize("kind", ["publish", "publish_to"])
def test_ten_thousand_messages_from_one_bus_to_another_arrive_in_order(
    loop_kind: str, rundir: str, kind: str
) -> None:
    count = 10_000

    async def main() -> None:
        async with buses(rundir, 2) as [(a, _), (b, ib)]:
            sent = 0
            batch = itertools.cycle([1, 7, 500, 3, 1200, 40])
            while sent < count:
                # Over many loop iterations, in batches of every size: many writes, each of many messages.
                for _ in range(min(next(batch), count - sent)):
                    if kind == "publish":
                        a.publish(ALL, "/ws", None, frame(sent))
                    else:
                        assert a.publish_to(b.node, "/ws", "c", frame(sent))
                    sent += 1
                await asyncio.sleep(0)
            await ib.wait(count)
            assert [index(f) for f in ib.frames()] == list(range(count))
            assert a.dropped == 0 and a.published == count and b.received == count
            assert a.writes > 10

    run(loop_kind, main)


class CountingTransport:
    """A transport wrapper that counts the writes that reach the transport."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.calls: list[int] = []  # messages per call

    def write(self, data: bytes) -> None:
        self.calls.append(1)
        self._transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        data = list(data)
        self.calls.append(len(data))
        self._transport.writelines(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def test_publishes_of_one_loop_iteration_leave_in_one_write_per_peer(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        async with buses(rundir, 3) as [(a, _), (b, ib), (c, ic)]:
            await watching([a, b, c], "/ws", "r", [b, c])
            counting = {}
            for slot, link in a.links.items():
                counting[slot] = link.transport = CountingTransport(link.transport)  # type: ignore[assignment]
            writes = a.writes
            for i in range(300):
                a.publish(ALL, "/ws", None, frame(i))
            # Nothing has left yet: all corked until the end of this iteration.
            assert a.writes == writes
            assert all(t.calls == [] for t in counting.values())
            assert [a.links[s].pending_bytes for s in (1, 2)] == [sum(len(encode(ALL, a.node, "/ws", None, frame(i)))
                                                                    for i in range(300))] * 2
            for inbox in (ib, ic):
                await inbox.wait(300)
                assert [index(f) for f in inbox.frames()] == list(range(300))
            assert a.writes == writes + 2
            assert {s: t.calls for s, t in counting.items()} == {1: [300], 2: [300]}
            # The next iteration's publishes: one more write each.
            a.publish(ALL, "/ws", None, frame(300))
            a.publish(ROOM, "/ws", "r", frame(301))
            await ib.wait(302)
            await ic.wait(302)
            assert {s: t.calls for s, t in counting.items()} == {1: [300, 2], 2: [300, 2]}
            assert a.writes == writes + 4

    run(loop_kind, main)


def test_publish_to_refuses_another_host_a_stale_generation_and_itself(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        async with buses(rundir, 3) as [(a, _), (b, ib), (c, ic)]:
            refused = [
                make_node_tag(OTHER_HOST, 1, 0),  # b's slot on another host
                make_node_tag(HOST, 1, 1),  # b's slot, a generation that is not b's
                make_node_tag(HOST, 1, 255),
                make_node_tag(HOST, 0, 0),  # a itself
                make_node_tag(HOST, 3, 0),  # no such slot
                make_node_tag(HOST, 200, 0),
            ]
            for node in refused:
                assert a.publish_to(node, "/ws", "id", TEXT) is False, hex(node)
            assert a.stats()["published"] == 0 and a.dropped == 0
            assert a.publish_to(b.node, "/ws", "id", b"\x81\x02ok") is True
            a.publish(ALL, "/ws", None, b"\x81\x03end")
            assert await ib.wait(2) == [(TO, "/ws", "id", b"\x81\x02ok"), (ALL, "/ws", None, b"\x81\x03end")]
            assert await ic.wait(1) == [(ALL, "/ws", None, b"\x81\x03end")]

    run(loop_kind, main)


async def _raw_link(bus: LocalBus, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(bus.path(bus.slot))
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _closed_without_a_word(reader: asyncio.StreamReader) -> None:
    """The bus closed the link and sent nothing on it (no hello back)."""
    assert await asyncio.wait_for(reader.read(65536), TIMEOUT) == b""


@pytest.mark.parametrize("who", ["another host", "its own slot", "a slot past the last", "node 0"])
def test_a_hello_from_no_worker_of_this_server_is_refused(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture, who: str
) -> None:
    tag = {"another host": make_node_tag(OTHER_HOST, 1, 0), "its own slot": make_node_tag(HOST, 0, 1),
           "a slot past the last": make_node_tag(HOST, 2, 0), "node 0": 0}[who]
    caplog.set_level(logging.WARNING, LOG)

    async def main() -> None:
        async with buses(rundir, 2) as [(a, ia), (b, ib)]:
            reader, writer = await _raw_link(a, encode_hello(tag) + encode(ALL, tag, "/ws", None, TEXT))
            await _closed_without_a_word(reader)
            writer.close()
            errors = bus_records(caplog, "malformed message from an unknown peer")
            assert errors == [f"bus: malformed message from an unknown peer: a hello from node {tag:#010x}, "
                              "not a worker of this server; closing the link"]
            assert ia.got == []  # the message behind the refused hello was not delivered
            assert {s: link.tag for s, link in a.links.items()} == {1: b.node} and not a._dialing
            # The bus serves on.
            b.publish(ALL, "/ws", None, b"\x81\x05after")
            assert await ia.wait(1) == [(ALL, "/ws", None, b"\x81\x05after")]

    run(loop_kind, main)


def test_a_link_that_does_not_start_with_a_hello_is_refused(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOG)

    async def main() -> None:
        async with buses(rundir, 2) as [(a, ia), (b, _)]:
            reader, writer = await _raw_link(a, encode(ALL, b.node, "/ws", None, TEXT))
            await _closed_without_a_word(reader)
            writer.close()
            assert bus_records(caplog, "malformed") == [
                "bus: malformed message from an unknown peer: a link that does not start with a hello; closing the link"
            ]
            assert ia.got == []

    run(loop_kind, main)


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    _raw(version=2),
    _raw(kind=ROOM, key_type=2, key=b"--5"),
    _raw(kind=ROOM, key_type=2, key=b"9" * 5000),
    encode_hello(make_node_tag(HOST, 2, 0)),
], ids=["http", "version 2", "int key --5", "int key of 5000 digits", "a second hello"])
def test_garbage_on_an_inbound_link_closes_that_link_only(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.WARNING, LOG)
    peer = make_node_tag(HOST, 2, 0)  # slot 2 of 3, never started: the raw link speaks for it

    async def main() -> None:
        async with buses(rundir, 3, start=2, mesh=False) as [(a, ia), (b, ib)]:
            await until(lambda: 1 in a.links and 0 in b.links, "linked")
            reader, writer = await _raw_link(a, encode_hello(peer) + encode(ROOM, peer, "/ws", "r", b"\x81\x01x"))
            # The bus answers a worker's hello with its own, then delivers what follows.
            assert Decoder().feed(await asyncio.wait_for(reader.readexactly(HEAD_SIZE), TIMEOUT)) == [
                Message(HELLO, a.node, "", None, b"")
            ]
            assert await ia.wait(1) == [(ROOM, "/ws", "r", b"\x81\x01x")]
            writer.write(garbage)
            await _closed_without_a_word(reader)
            writer.close()
            errors = bus_records(caplog, "malformed")
            assert len(errors) == 1 and errors[0].startswith("bus: malformed message from worker 2: ")
            assert errors[0].endswith("; closing the link")
            assert not any(r.exc_info for r in caplog.records), "an exception escaped the bus"
            assert ia.got == [(ROOM, "/ws", "r", b"\x81\x01x")]
            # Every other link still works, both ways.
            b.publish(ALL, "/ws", None, b"\x81\x05after")
            a.publish(ALL, "/ws", None, b"\x81\x04also")
            assert (await ia.wait(2))[1:] == [(ALL, "/ws", None, b"\x81\x05after")]
            assert await ib.wait(1) == [(ALL, "/ws", None, b"\x81\x04also")]
            await until(lambda: len(a._inbound) == 1, "one inbound link left")
            assert inbound_from(a, b.node)

    run(loop_kind, main)


def test_a_hello_on_our_own_link_that_names_another_node_is_refused(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener at slot 1's socket answers with a hello that is not slot 1
    of this host: our link to slot 1 is not made with it."""
    caplog.set_level(logging.WARNING, LOG)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[asyncio.StreamWriter] = []

        def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(encode_hello(make_node_tag(OTHER_HOST, 1, 0)))
            accepted.append(writer)

        server = await asyncio.start_unix_server(impostor, os.path.join(rundir, "1.sock"))
        a = LocalBus(rundir, make_node_tag(HOST, 0, 0), 2)
        try:
            await a.start(loop, Inbox())
            await until(lambda: bus_records(caplog, "link to worker 1"), "refused")
            assert 1 not in a.links
            assert a.publish_to(make_node_tag(HOST, 1, 0), "/ws", "id", TEXT) is False
            assert bus_records(caplog, "link to worker 1") == [
                "bus: link to worker 1: a hello from node 0x43210100, not worker 1 of this server; closing it"
            ]
        finally:
            await a.close()
            for writer in accepted:
                writer.close()
            server.close()

    run(loop_kind, main)


# -- the bounded backlog -----------------------------------------------------------------------------


def test_a_stalled_peer_backlog_is_bounded_and_drops_are_counted_and_logged_once(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 64 * 1024
    size = 1000
    caplog.set_level(logging.INFO, LOG)

    async def main() -> None:
        async with buses(rundir, 2, buffer_limit=limit) as [(a, _), (b, ib)]:
            stalled = inbound_from(b, a.node).transport
            stalled.pause_reading()
            queued: list[int] = []
            biggest = 0
            i = 0
            # Far past the limit (and past what the kernel's socket buffers hold), over many iterations.
            while a.dropped < 2000 or i * size < 20 * limit:
                assert i < 200_000, f"{a.dropped} dropped after {i} messages"
                for _ in range(50):
                    before = a.dropped
                    a.publish(ALL, "/ws", None, frame(i, size))
                    if a.dropped == before:
                        queued.append(i)
                    else:
                        assert a.dropped == before + 1
                    i += 1
                    biggest = max(biggest, backlog(a, 1))
                    assert backlog(a, 1) <= limit + size + 32
                await asyncio.sleep(0)
            assert biggest > limit - 2 * size  # the bound was reached, not just respected
            assert a.dropped == i - len(queued)
            assert bus_records(caplog, "worker 1") == [
                f"bus: worker 1 is too slow (backlog over {limit} bytes); dropping messages to it until it catches up"
            ]
            assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == LOG)
            # The peer reads again: exactly the messages that were queued arrive, in order.
            stalled.resume_reading()
            await ib.wait(len(queued))
            assert [index(f) for f in ib.frames()] == queued
            await until(lambda: backlog(a, 1) == 0, "drained")
            assert len(bus_records(caplog, "worker 1")) == 1  # nothing more until the next publish
            a.publish(ALL, "/ws", None, frame(i, size))
            await ib.wait(len(queued) + 1)
            assert [index(f) for f in ib.frames()[len(queued):]] == [i]
            dropped = i - len(queued)
            assert bus_records(caplog, "worker 1")[1:] == [
                f"bus: worker 1 caught up; {dropped} message(s) to it were dropped"
            ]
            assert a.dropped == dropped and a.stats()["dropped"] == dropped
            # A new episode is a new warning.
            stalled.pause_reading()
            j = i + 1
            while a.dropped == dropped:
                assert j < i + 200_000
                for _ in range(50):
                    a.publish(ALL, "/ws", None, frame(j, size))
                    j += 1
                await asyncio.sleep(0)
            assert len(bus_records(caplog, "too slow")) == 2
            stalled.resume_reading()

    run(loop_kind, main)


def test_a_stalled_peer_is_one_episode_whatever_the_message_sizes(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the peer reads nothing, no message of any size ends the episode:
    no "caught up" and no second warning, however the sizes mix."""
    limit = 64 * 1024
    caplog.set_level(logging.INFO, LOG)

    async def main() -> None:
        async with buses(rundir, 2, buffer_limit=limit) as [(a, _), (b, ib)]:
            stalled = inbound_from(b, a.node).transport
            stalled.pause_reading()
            i = 0
            while a.dropped == 0:  # big messages until the first drop
                assert i < 100_000
                a.publish(ALL, "/ws", None, frame(i, 4000))
                i += 1
                await asyncio.sleep(0)
            for _ in range(300):  # then, each iteration, a small message and a big one
                a.publish(ALL, "/ws", None, frame(i, 3))
                a.publish(ALL, "/ws", None, frame(i + 1, 4000))
                i += 2
                assert backlog(a, 1) <= limit + 4000 + 32
                await asyncio.sleep(0)
            assert bus_records(caplog, "worker 1") == [
                f"bus: worker 1 is too slow (backlog over {limit} bytes); dropping messages to it until it catches up"
            ]
            stalled.resume_reading()
            await until(lambda: backlog(a, 1) == 0, "drained")
            a.publish(ALL, "/ws", None, frame(i, 3))
            await until(lambda: ib.got and index(ib.got[-1][3]) == i, "delivered")
            assert len(bus_records(caplog, "caught up")) == 1
            got = [index(f) for f in ib.frames()]
            assert got == sorted(got) and len(got) + a.dropped == i + 1

    run(loop_kind, main)


# -- inbound flow control ---------------------------------------------------------------------------


def test_held_delivery_stops_reading_and_resumes_in_order_one_slice_per_iteration(loop_kind: str, rundir: str) -> None:
    """pause_delivery(): each inbound link keeps the one read it has and stops
    reading (the senders keep the rest); resume_delivery(): everything
    arrives, in order per sender, at most DELIVERY_SLICE bytes (plus the
    message that crosses it) per loop iteration, however many links wait."""
    n, size = 1500, 1000
    framed = len(frame(0, size))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with buses(rundir, 4) as started:
            senders, (d, inbox) = started[:3], started[3]
            d.pause_delivery()
            for i in range(n):
                for k, (bus, _) in enumerate(senders):
                    bus.publish(ALL, "/ws", None, frame(k * n + i, size))
                if i % 100 == 99:
                    await asyncio.sleep(0)
            links = [inbound_from(d, bus.node) for bus, _ in senders]
            await until(lambda: not any(link.reading for link in links), "paused on every link")
            assert inbox.got == [] and all(link.backlog for link in links)
            assert all(backlog(bus, 3) > 0 for bus, _ in senders)  # the rest waits with the senders
            # Resume, and count what is delivered between two turns of the loop.
            per_turn: list[int] = []
            seen = [0]

            def turn() -> None:
                per_turn.append((len(inbox.got) - seen[0]) * framed)
                seen[0] = len(inbox.got)
                if len(inbox.got) < 3 * n:
                    loop.call_soon(turn)

            loop.call_soon(turn)
            await asyncio.sleep(0)
            d.resume_delivery()
            await inbox.wait(3 * n)
            got = [index(f) for f in inbox.frames()]
            for k in range(3):
                assert [i for i in got if k * n <= i < (k + 1) * n] == list(range(k * n, (k + 1) * n))
            # (Without the slice: 0.7 to 1 MiB in one turn, the three links' reads at once.)
            assert max(per_turn) <= DELIVERY_SLICE + framed, max(per_turn)
            assert DELIVERY_SLICE * 8 <= Config().max_backpressure
            assert sum(per_turn) + (len(inbox.got) - seen[0]) * framed == 3 * n * framed
            assert d.received == 3 * n and all(bus.dropped == 0 for bus, _ in senders)
            assert all(link.reading for link in links)

    run(loop_kind, main)


def test_a_peer_that_is_gone_gets_nothing_counted_and_one_warning(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOG)

    async def main() -> None:
        async with buses(rundir, 3) as [(a, _), (b, ib), (c, ic)]:
            await watching([a, b, c], "/ws", "r", [b, c])
            await b.close()
            await until(lambda: 1 not in a.links, "unlinked from worker 1")
            for i in range(500):
                a.publish(ROOM, "/ws", "r", frame(i))
                if i % 100 == 0:
                    assert a.publish_to(b.node, "/ws", "id", frame(i)) is False
                    await asyncio.sleep(0)
            assert a.dropped == 505
            assert a.stats()["peers"] == 1
            assert bus_records(caplog, "worker 1") == [
                "bus: worker 1 is unreachable; dropping messages to it until it catches up"
            ]
            # The other peer got everything.
            await ic.wait(500)
            assert [index(f) for f in ic.frames()] == list(range(500))
            assert ib.got == []

    run(loop_kind, main)


# -- a restarted peer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "unnoticed"])
def test_a_restarted_peer_is_dialed_again_and_old_ids_are_refused(
    loop_kind: str, rundir: str, caplog: pytest.LogCaptureFixture, noticed: bool
) -> None:
    """Slot 1 closes and comes back as generation 1 (after the others noticed
    its end, or before): they learn it from its hello, dial it, and messages
    flow both ways again; ids of generation 0 are refused."""
    caplog.set_level(logging.INFO, LOG)

    async def main() -> None:
        async with buses(rundir, 3) as [(a, ia), (old, _), (c, ic)]:
            loop = asyncio.get_running_loop()
            if not noticed:
                # a and c do not read their links to slot 1: they see its end only when they write to it.
                for bus in (a, c):
                    bus.links[1].transport.pause_reading()  # type: ignore[union-attr]
            await old.close()
            if noticed:
                await until(lambda: 1 not in a.links and 1 not in c.links, "unlinked from worker 1")
                a.publish(ALL, "/ws", None, frame(0))
            new = LocalBus(rundir, make_node_tag(HOST, 1, 1), 3)
            inbox = Inbox()
            try:
                if not noticed:
                    assert [bus.links[1].tag for bus in (a, c)] == [old.node] * 2
                await new.start(loop, inbox)
                assert await new.wait_meshed(TIMEOUT)
                await until(lambda: all(1 in bus.links and bus.links[1].tag == new.node for bus in (a, c)),
                            "linked to generation 1")
                await watching([a, new, c], "/ws", 5, [a, new])
                assert a.publish_to(old.node, "/ws", "old-id", TEXT) is False
                assert a.publish_to(new.node, "/ws", "new-id", b"\x81\x01a") is True
                c.publish(ROOM, "/ws", 5, b"\x81\x01c")
                new.publish(ALL, "/ws", None, b"\x81\x01n")
                assert sorted(await inbox.wait(2)) == sorted([(TO, "/ws", "new-id", b"\x81\x01a"),
                                                              (ROOM, "/ws", 5, b"\x81\x01c")])
                # a and c: each other's messages and the new worker's (how the streams interleave is not given).
                assert sorted(await ia.wait(2)) == sorted(
                    [(ROOM, "/ws", 5, b"\x81\x01c"), (ALL, "/ws", None, b"\x81\x01n")]
                )
                assert sorted(await ic.wait(1 + noticed)) == sorted(
                    [(ALL, "/ws", None, frame(0))] * noticed + [(ALL, "/ws", None, b"\x81\x01n")]
                )
                # Exactly one link per pair: the old generation's links are gone.
                assert sorted(a.links) == [1, 2] and sorted(c.links) == [0, 1]
                await until(lambda: len(a._inbound) == 2 and len(c._inbound) == 2, "one inbound link per peer")
                if noticed:
                    assert bus_records(caplog, "worker 1") == [
                        "bus: worker 1 is unreachable; dropping messages to it until it catches up",
                        "bus: worker 1 reachable again; 1 message(s) to it were dropped meanwhile",
                    ]
                assert not bus_records(caplog, "malformed|link to")
            finally:
                await new.close()

    run(loop_kind, main)


# -- two worker processes ----------------------------------------------------------------------------


APP = """
    import asyncio

    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")


    @ws.on("connect")
    def connect(ws):
        return f"id {ws.id}"


    @ws.on("message")
    async def message(ws, msg):
        command, target, count = msg.split()
        sent = 0
        for i in range(int(count)):
            sent += ws.sync_send_to(target, str(i))
            if command == "trickle" and i % 7 == 0:
                await asyncio.sleep(0)  # spread over many loop iterations, many bus writes
        sent += ws.sync_send_to(target, "end")
        return f"sent {sent}"


    app.start(host="127.0.0.1", port=0)
"""


class WsClient:
    def __init__(self, port: int) -> None:
        self.ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=TIMEOUT)
        first = self.ws.recv()
        assert isinstance(first, str) and first.startswith("id "), first
        self.id = first[3:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=1)


@pytest.mark.parametrize("command", ["flood", "trickle"])
def test_two_thousand_messages_to_a_connection_on_the_other_worker_arrive_in_order(
    loop_kind: str, tmp_path: Path, command: str
) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    server = ServerProcess([str(script), "--processes", "2"], loop_kind, cwd=tmp_path)
    clients: list[WsClient] = []
    try:
        port = server.wait_listening(30)
        pids = worker_pids(server.pid)
        assert len(pids) == 2
        placed: dict[int, WsClient] = {}
        while len(placed) < 2:
            assert len(clients) < 40, "40 connections and all on one worker"
            client = WsClient(port)
            clients.append(client)
            placed.setdefault(owner(client.ws.sock, port, pids), client)
        for sender, receiver in ((placed[pids[0]], placed[pids[1]]), (placed[pids[1]], placed[pids[0]])):
            assert node_of(sender.id) != node_of(receiver.id)
            sender.ws.send(f"{command} {receiver.id} 2000")
            got = [receiver.ws.recv() for _ in range(2001)]
            assert got == [str(i) for i in range(2000)] + ["end"]
            assert sender.ws.recv() == "sent 2001"  # every send_to was handed to the bus
        out = server.output()
        assert "bus:" not in out and "Traceback" not in out, out
    finally:
        for client in clients:
            client.close()
        server.stop()
