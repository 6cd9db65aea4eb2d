"""Why the Redis broker has its own client: robyn_fast's broker against redis-py, measured.

:mod:`robyn_fast.broker.redis` talks to Redis through a thin ``asyncio.Protocol`` on
``hiredis.Reader``: publishes are corked per loop iteration and the messages to one channel are
joined into one PUBLISH payload (the bus format of :mod:`robyn_fast.broker.wire` concatenates, a
``Decoder`` splits it), replies are read but never awaited, and a node drops its own echo. This
script measures that design against the obvious alternative, redis-py's asyncio client (which
parses with hiredis too when it is installed), side by side in one run::

    python bench/redis_client.py [--n64 100000] [--n1k 30000] [--sizes 64,1024] [--batches 1,100]
        [--repeat 3] [--window 4000] [--pubsub listen|get_message] [--client-core 1]
        [--redis-core 0] [--no-pin] [--timeout 900] [--out PATH]

How: a private ``redis-server`` (on a free 127.0.0.1 port and a Unix socket in a temporary
directory, ``--save '' --appendonly no``, every thread pinned to ``--redis-core``); this process
pinned to ``--client-core``, one uvloop loop holding two nodes: node A publishes, node B counts.
Both nodes subscribe to the broadcast channel, so Redis sends every message to both and A drops its
echo, as on a server. Messages travel over TCP and are the bus's own: ``wire.encode`` of an
unmasked text frame of exactly 64 or 1024 bytes carrying its sequence number.

Entries, each at ``B`` messages per batch (B=1 and B=100):

- ``robyn_fast``: two :class:`~robyn_fast.broker.redis.RedisBroker` nodes; A calls ``publish`` B
  times per loop iteration (so one PUBLISH of B joined messages leaves per iteration);
- ``redis-py``: ``redis.asyncio``; A sends a ``pipeline(transaction=False)`` of B PUBLISH
  commands per batch and awaits it; A and B each read a ``PubSub`` and split payloads with
  ``wire.Decoder`` as the broker does. ``listen()`` by default: a ``get_message(timeout=None)``
  loop (``--pubsub get_message``) measured the same throughput within noise and 2-4 % more CPU;
- ``redis-py joined``: as ``redis-py`` but each batch is ONE PUBLISH of the B joined messages, as
  ours: the difference to ``robyn_fast`` is then the client alone, not the batching.

The publisher keeps at most ``--window`` messages ahead of B's count (so no buffer anywhere grows
past a few MB and Redis never drops a slow subscriber). Timed: from the first publish until B has
the last message; encoding (``wire.encode``) and decoding are inside, as in the broker. Reported:
msgs/s, this process's CPU per message (``time.process_time``) and redis-server's CPU per message
(the sum over its threads of ``/proc/<pid>/task/*/schedstat``, nanoseconds; the coarser
``/proc/<pid>/stat`` utime+stime, in clock ticks, is in the JSON too). Each run starts on fresh
connections and channels, warms up with 2,000 messages, then times N; it counts only if B got all
N frames, in order, byte for byte, and nothing was dropped or malformed (checked outside the timed
part). Rows are the median of ``--repeat`` runs, taken round-robin over the entries so background
load hits them alike; every run is in the JSON (``bench/results/redis-client-<date>.json``). A
run over 180 s fails; past ``--timeout`` (an alarm) redis-server is killed and the script exits
124. Exit status 1 when any run failed its check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
import uvloop
from redis.utils import HIREDIS_AVAILABLE

from robyn_fast.broker.redis import RedisBroker
from robyn_fast.broker.resp import command
from robyn_fast.broker.wire import ALL, Decoder, Key, WireError, encode

NODE_A, NODE_B = 0x0A0A0A0A, 0x0B0B0B0B
ENDPOINT = "/ws"
WARMUP = 2000
RUN_TIMEOUT = 180.0  # seconds for one run (connect, warm up, N messages, close)
ENTRIES = ("robyn_fast", "redis-py", "redis-py joined")

Publish = Callable[[int, int], Awaitable[None]]  # publish messages [lo, hi) of the run's frames


# -- redis-server -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A private redis-server on 127.0.0.1 and a Unix socket, every thread pinned to ``core``."""

    def __init__(self, core: int | None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.core = core
        self.dir = tempfile.mkdtemp(prefix="rf-bench-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        for _ in range(10):  # another process may take the free port before redis-server binds it
            port = _free_port()
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
                 "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    if self.command("PING") == b"PONG":
                        self.port = port
                        self._pin()
                        return
                time.sleep(0.02)
            out = self._kill()
            if b"Address already in use" not in out:
                raise RuntimeError(f"redis-server did not start: {out.decode(errors='replace')}")
        raise RuntimeError("no free port for redis-server after 10 tries")

    def _pin(self) -> None:
        if self.core is None:
            return
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            os.sched_setaffinity(int(tid), {self.core})

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self, *args: str | bytes | int) -> Any:
        """One command over the Unix socket; the reply."""
        reader = hiredis.Reader()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2.0)
            s.connect(self.socket)
            s.sendall(command(*args))
            while (reply := reader.gets()) is False:
                data = s.recv(65536)
                if not data:
                    raise OSError("redis-server closed the connection")
                reader.feed(data)
        return reply

    def version(self) -> str:
        info: bytes = self.command("INFO", "server")
        for line in info.decode().splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1]
        return "?"

    def cpu_ns(self) -> int:
        """CPU time of all its threads, in ns (schedstat: exact, not in clock ticks)."""
        total = 0
        task_dir = f"/proc/{self.pid}/task"
        for tid in os.listdir(task_dir):
            with contextlib.suppress(FileNotFoundError), open(f"{task_dir}/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total

    def cpu_ticks_s(self) -> float:
        """utime + stime of /proc/<pid>/stat, in seconds (clock-tick resolution)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _kill(self) -> bytes:
        proc, self.proc = self.proc, None
        if proc is None:
            return b""
        if proc.poll() is None:
            proc.kill()
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            return b""
        return out or b""

    def close(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- what is sent and what arrives ---------------------------------------------------------------


def make_frame(seq: int, size: int) -> bytes:
    """An unmasked RFC 6455 text frame of exactly ``size`` bytes whose payload starts with ``seq``."""
    if not 14 <= size <= 0xFFFF:
        raise ValueError(f"a frame size in 14..65535, not {size}")
    plen = size - 2 if size - 2 <= 125 else size - 4
    header = bytes((0x81, plen)) if size - 2 <= 125 else bytes((0x81, 126)) + plen.to_bytes(2, "big")
    return header + (b"%012d" % seq).ljust(plen, b"x")


class Sink:
    """Node B's deliver callback: keeps every frame; wakes the publisher's window, then the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.frames: list[bytes] = []
        self.expected = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.waiter_at = 0
        self.wake_at = 0  # the next count at which deliver() has something to do

    def reset(self, expected: int) -> None:
        self.frames = []
        self.expected = expected
        self.done = self.loop.create_future()
        self.waiter = None
        self.wake_at = expected

    def deliver(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        frames = self.frames
        frames.append(frame)
        if len(frames) >= self.wake_at:
            self._wake()

    def _wake(self) -> None:
        count = len(self.frames)
        if self.waiter is not None and count >= self.waiter_at:
            if not self.waiter.done():
                self.waiter.set_result(None)
            self.waiter = None
        if count >= self.expected and not self.done.done():
            self.done.set_result(None)
        self.wake_at = self.waiter_at if self.waiter is not None else self.expected

    async def reach(self, count: int) -> None:
        if len(self.frames) >= count:
            return
        self.waiter = self.loop.create_future()
        self.waiter_at = count
        self.wake_at = min(count, self.expected)
        await self.waiter


async def drive(publish: Publish, n: int, batch: int, window: int, sink: Sink) -> None:
    """Publish ``n`` messages ``batch`` at a time, at most ``window`` ahead of B; wait for the last."""
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        await publish(lo, hi)
        if hi - len(sink.frames) > window:
            await sink.reach(hi - window)
    await sink.done


# -- the entries -------------------------------------------------------------------------------------


class Entry:
    """One client under test: two nodes (A publishes, B delivers to the sink) on fresh connections."""

    name = ""
    batch = 1

    async def open(self, url: str, prefix: str, sink: Sink) -> None:
        raise NotImplementedError

    def publisher(self, frames: list[bytes]) -> Publish:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What went wrong besides the frames B got (drops, malformed payloads, stray messages)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RobynFastEntry(Entry):
    """Two RedisBroker nodes; A publishes B messages per loop iteration (the broker joins them)."""

    name = "robyn_fast"

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.nodes: list[RedisBroker] = []
        self.stray = 0

    def _a_deliver(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        self.stray += 1  # nothing but A's own echo reaches A, and the broker drops that

    async def open(self, url: str, prefix: str, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        a = RedisBroker(f"{url}?prefix={prefix}", NODE_A)
        b = RedisBroker(f"{url}?prefix={prefix}", NODE_B)
        self.nodes = [a, b]
        await a.start(loop, self._a_deliver)
        await b.start(loop, sink.deliver)
        for node in self.nodes:
            if not await node.wait_connected(5.0):
                raise RuntimeError(f"robyn_fast node {node.node:08x} did not connect to Redis")

    def publisher(self, frames: list[bytes]) -> Publish:
        publish = self.nodes[0].publish
        sleep = asyncio.sleep

        async def publish_batch(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                publish(ALL, ENDPOINT, None, frames[i])
            await sleep(0)  # the end of this loop iteration: the corked PUBLISH leaves

        return publish_batch

    def problems(self) -> list[str]:
        out = [f"node {node.node:08x}: {node.dropped} dropped" for node in self.nodes if node.dropped]
        out += [f"node {node.node:08x}: {node.malformed} malformed" for node in self.nodes if node.malformed]
        out += [f"node {node.node:08x}: {node.outages} outages" for node in self.nodes if node.outages]
        if self.stray:
            out.append(f"node A got {self.stray} message(s) not its own")
        return out

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()


class PyNode:
    """The receiving half of a node on redis-py: a PubSub whose payloads are split and delivered
    as the broker did when this benchmark was written (a fresh Decoder per payload, own echo dropped; the broker
    now decodes with wire.decode_at in slices and is not sent its own broadcasts)."""

    def __init__(self, node: int, deliver: Callable[[int, str, Key, bytes], None], reader: str) -> None:
        self.node = node
        self.deliver = deliver
        self.reader = reader
        self.malformed = 0
        self.client: aioredis.Redis | None = None
        self.pubsub: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, url: str, channel: bytes) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(channel)
        self.task = asyncio.get_running_loop().create_task(
            self._listen() if self.reader == "listen" else self._get_messages())

    async def _listen(self) -> None:
        on_payload = self.on_payload
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                on_payload(message["data"])

    async def _get_messages(self) -> None:
        get_message = self.pubsub.get_message
        on_payload = self.on_payload
        while True:
            message = await get_message(timeout=None)
            if message is not None and message["type"] == "message":
                on_payload(message["data"])

    def on_payload(self, payload: bytes) -> None:
        decoder = Decoder()
        try:
            messages = decoder.feed(payload)
            if decoder.buffered or not messages:
                raise WireError("a truncated or empty payload")
        except WireError:
            self.malformed += 1
            return
        for m in messages:
            if m.origin == self.node:
                continue
            self.deliver(m.kind, m.endpoint, m.key, m.frame)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.pubsub is not None:
            await self.pubsub.aclose()
        if self.client is not None:
            await self.client.aclose()


class RedisPyEntry(Entry):
    """redis.asyncio: a pipeline of B PUBLISH per batch, or (joined) one PUBLISH of B messages."""

    def __init__(self, batch: int, joined: bool, reader: str) -> None:
        self.name = "redis-py joined" if joined else "redis-py"
        self.batch = batch
        self.joined = joined
        self.reader = reader
        self.stray = 0
        self.publisher_client: aioredis.Redis | None = None
        self.nodes: list[PyNode] = []
        self.channel = b""

    def _a_deliver(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        self.stray += 1

    async def open(self, url: str, prefix: str, sink: Sink) -> None:
        self.channel = f"{prefix}:all".encode()
        self.nodes = [PyNode(NODE_A, self._a_deliver, self.reader), PyNode(NODE_B, sink.deliver, self.reader)]
        for node in self.nodes:
            await node.open(url, self.channel)
        self.publisher_client = aioredis.Redis.from_url(url)
        deadline = time.monotonic() + 5.0
        while (await self.publisher_client.pubsub_numsub(self.channel))[0][1] < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-py subscribers did not subscribe within 5 s")
            await asyncio.sleep(0.01)

    def publisher(self, frames: list[bytes]) -> Publish:
        client = self.publisher_client
        assert client is not None
        channel = self.channel

        if self.joined:
            async def publish_joined(lo: int, hi: int) -> None:
                await client.publish(channel, b"".join([encode(ALL, NODE_A, ENDPOINT, None, frames[i])
                                                        for i in range(lo, hi)]))
            return publish_joined

        async def publish_pipeline(lo: int, hi: int) -> None:
            pipe = client.pipeline(transaction=False)
            for i in range(lo, hi):
                pipe.publish(channel, encode(ALL, NODE_A, ENDPOINT, None, frames[i]))
            await pipe.execute()

        return publish_pipeline

    def problems(self) -> list[str]:
        out = [f"node {node.node:08x}: {node.malformed} malformed" for node in self.nodes if node.malformed]
        if self.stray:
            out.append(f"node A got {self.stray} message(s) not its own")
        return out

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()
        if self.publisher_client is not None:
            await self.publisher_client.aclose()


def make_entry(name: str, batch: int, reader: str) -> Entry:
    if name == "robyn_fast":
        return RobynFastEntry(batch)
    return RedisPyEntry(batch, joined=name == "redis-py joined", reader=reader)


# -- one run ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    entry: str
    batch: int
    size: int
    n: int
    ok: bool
    error: str = ""
    seconds: float = 0.0
    msgs_per_s: float = 0.0
    client_cpu_us: float = 0.0  # per message
    redis_cpu_us: float = 0.0  # per message, schedstat
    redis_cpu_us_stat: float = 0.0  # per message, /proc/<pid>/stat utime+stime (clock ticks)


async def run_once(server: RedisProcess, entry: Entry, size: int, n: int, window: int, tag: str) -> Run:
    run = Run(entry.name, entry.batch, size, n, ok=False)
    sink = Sink(asyncio.get_running_loop())
    warm = [make_frame(i, size) for i in range(min(WARMUP, n))]
    frames = [make_frame(i, size) for i in range(n)]
    try:
        await entry.open(server.url, f"bench-{tag}", sink)
        sink.reset(len(warm))
        await drive(entry.publisher(warm), len(warm), run.batch, window, sink)
        if sink.frames != warm:
            raise AssertionError("the warm-up messages did not all arrive in order")
        publish = entry.publisher(frames)
        sink.reset(n)
        gc.collect()
        t0, c0, r0, s0 = time.perf_counter(), time.process_time(), server.cpu_ns(), server.cpu_ticks_s()
        await drive(publish, n, run.batch, window, sink)
        t1, c1, r1, s1 = time.perf_counter(), time.process_time(), server.cpu_ns(), server.cpu_ticks_s()
        await asyncio.sleep(0.05)  # late strays and echoes, before the check
        got = sink.frames
        if len(got) != n:
            raise AssertionError(f"B got {len(got)} messages, not {n}")
        if got != frames:
            first = next(i for i, (a, b) in enumerate(zip(got, frames)) if a != b)
            raise AssertionError(f"message {first} differs (order or bytes)")
        if problems := entry.problems():
            raise AssertionError("; ".join(problems))
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        return run
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(entry.close(), 5.0)
    run.ok = True
    run.seconds = t1 - t0
    run.msgs_per_s = n / run.seconds
    run.client_cpu_us = (c1 - c0) / n * 1e6
    run.redis_cpu_us = (r1 - r0) / 1e3 / n
    run.redis_cpu_us_stat = (s1 - s0) / n * 1e6
    return run


@dataclass
class Row:
    entry: str
    batch: int
    size: int
    n: int
    runs_ok: int
    msgs_per_s: float | None
    client_cpu_us: float | None
    redis_cpu_us: float | None
    vs_robyn_fast_msgs: float | None = None
    vs_robyn_fast_client_cpu: float | None = None
    errors: list[str] = field(default_factory=list)


def summarize(runs: list[Run], sizes: list[int], batches: list[int], entries: list[str]) -> list[Row]:
    rows: list[Row] = []
    for size in sizes:
        for batch in batches:
            base: Row | None = None
            for name in entries:
                mine = [r for r in runs if (r.entry, r.batch, r.size) == (name, batch, size)]
                ok = [r for r in mine if r.ok]

                def median(attr: str) -> float | None:
                    return statistics.median(getattr(r, attr) for r in ok) if ok else None

                row = Row(name, batch, size, mine[0].n if mine else 0, len(ok), median("msgs_per_s"),
                          median("client_cpu_us"), median("redis_cpu_us"),
                          errors=[r.error for r in mine if not r.ok])
                if name == "robyn_fast":
                    base = row
                if base is not None and base.msgs_per_s and row.msgs_per_s:
                    row.vs_robyn_fast_msgs = row.msgs_per_s / base.msgs_per_s
                if base is not None and base.client_cpu_us and row.client_cpu_us:
                    row.vs_robyn_fast_client_cpu = row.client_cpu_us / base.client_cpu_us
                rows.append(row)
    return rows


def markdown(rows: list[Row]) -> str:
    def num(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "FAILED"

    lines = ["| entry | batch | size | msgs/s | client CPU µs/msg | redis CPU µs/msg | msgs/s vs robyn_fast "
             "| client CPU vs robyn_fast |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        size = "1 KiB" if r.size == 1024 else f"{r.size} B"
        lines.append(f"| {r.entry} | {r.batch} | {size} | {num(r.msgs_per_s, ',.0f')} | "
                     f"{num(r.client_cpu_us, '.2f')} | {num(r.redis_cpu_us, '.2f')} | "
                     f"{num(r.vs_robyn_fast_msgs, '.2f')}× | {num(r.vs_robyn_fast_client_cpu, '.2f')}× |")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n64", type=int, default=100_000, help="messages per run at 64 B (default 100000)")
    p.add_argument("--n1k", type=int, default=30_000, help="messages per run at 1 KiB (default 30000)")
    p.add_argument("--sizes", type=int_list, default=[64, 1024], help="frame sizes among 64,1024")
    p.add_argument("--batches", type=int_list, default=[1, 100], help="messages per batch (default 1,100)")
    p.add_argument("--entries", default=",".join(ENTRIES), help=f"among {','.join(ENTRIES)}")
    p.add_argument("--repeat", type=int, default=3, help="runs per row; the row is their median")
    p.add_argument("--window", type=int, default=4000, help="messages the publisher may be ahead of B")
    p.add_argument("--pubsub", choices=("listen", "get_message"), default="listen",
                   help="how redis-py reads its PubSub (default listen)")
    p.add_argument("--client-core", type=int, default=1, help="CPU for this process (default 1)")
    p.add_argument("--redis-core", type=int, default=0, help="CPU for redis-server (default 0)")
    p.add_argument("--no-pin", action="store_true", help="pin nothing")
    p.add_argument("--timeout", type=int, default=900, help="seconds before everything stops (default 900)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/redis-client-<date>.json)")
    args = p.parse_args(argv)
    if any(s not in (64, 1024) for s in args.sizes):
        p.error("--sizes: 64 and/or 1024")
    args.entries = [e.strip() for e in args.entries.split(",") if e.strip()]
    if any(e not in ENTRIES for e in args.entries):
        p.error(f"--entries: among {', '.join(ENTRIES)}")
    if "robyn_fast" not in args.entries:
        args.entries.insert(0, "robyn_fast")  # the ratios need it
    if min(args.batches) < 1 or args.repeat < 1 or args.window < max(args.batches):
        p.error("batches and --repeat are at least 1; --window at least the largest batch")
    if not args.no_pin:
        allowed = os.sched_getaffinity(0)
        for flag, core in (("--client-core", args.client_core), ("--redis-core", args.redis_core)):
            if core not in allowed:
                p.error(f"{flag} {core}: not among this process's CPUs {sorted(allowed)} (or use --no-pin)")
    return args


async def bench(args: argparse.Namespace, server: RedisProcess) -> list[Run]:
    runs: list[Run] = []
    counts = {64: args.n64, 1024: args.n1k}
    for rep in range(args.repeat):
        for size in args.sizes:
            for batch in args.batches:
                for name in args.entries:
                    entry = make_entry(name, batch, args.pubsub)
                    tag = f"{rep}-{size}-{batch}-{name.replace(' ', '-')}"
                    try:
                        run = await asyncio.wait_for(run_once(server, entry, size, counts[size], args.window, tag),
                                                     RUN_TIMEOUT)
                    except asyncio.TimeoutError:
                        run = Run(name, batch, size, counts[size], ok=False, error=f"over {RUN_TIMEOUT:g} s")
                    runs.append(run)
                    status = (f"{run.msgs_per_s:>10,.0f} msgs/s  client {run.client_cpu_us:5.2f} µs  "
                              f"redis {run.redis_cpu_us:5.2f} µs" if run.ok else f"FAILED: {run.error}")
                    print(f"  [{rep + 1}/{args.repeat}] {name:<16} B={batch:<3} {size:>4} B  {status}",
                          file=sys.stderr, flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    server = RedisProcess(None if args.no_pin else args.redis_core)

    def give_up(signum: int, frame: FrameType | None) -> None:
        # An exception raised here would land in whatever callback the loop runs (and a protocol's
        # error handling may swallow it): stop hard instead, redis-server first.
        print(f"redis_client: the global --timeout of {args.timeout} s expired; stopping", file=sys.stderr)
        server.close()
        os._exit(124)

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(args.timeout)
    if not args.no_pin:
        os.sched_setaffinity(0, {args.client_core})
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server.start()
        print(f"redis-server {server.version()} pid {server.pid} at {server.url}; redis-py {redis.__version__} "
              f"(hiredis parser: {HIREDIS_AVAILABLE}), pubsub via {args.pubsub}()", file=sys.stderr)
        started = datetime.datetime.now(datetime.timezone.utc)
        load = os.getloadavg()
        runs = loop.run_until_complete(bench(args, server))
        redis_version = server.version()
    finally:
        signal.alarm(0)
        server.close()
        loop.close()
    rows = summarize(runs, args.sizes, args.batches, args.entries)
    table = markdown(rows)
    print(table)
    for row in rows:
        for error in row.errors:
            print(f"{row.entry} B={row.batch} {row.size} B: {error}", file=sys.stderr)
    out = args.out or Path(__file__).resolve().parent / "results" / f"redis-client-{started.date()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "uvloop": metadata.version("uvloop"),
        "redis_py": redis.__version__,
        "redis_py_hiredis_parser": HIREDIS_AVAILABLE,
        "hiredis": hiredis.__version__,
        "redis_server": redis_version,
        "pubsub_reader": args.pubsub,
        "client_core": None if args.no_pin else args.client_core,
        "redis_core": None if args.no_pin else args.redis_core,
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "window": args.window,
        "repeat": args.repeat,
        "warmup": WARMUP,
        "redis_cpu": "sum of /proc/<pid>/task/*/schedstat (redis_cpu_us); /proc/<pid>/stat utime+stime "
                     "in redis_cpu_us_stat",
        "row_figures": "median of the runs that passed the check",
    }
    out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "runs": [asdict(r) for r in runs]},
                              indent=2) + "\n")
    print(f"\nwritten {out}", file=sys.stderr)
    return 0 if all(r.runs_ok == args.repeat for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
