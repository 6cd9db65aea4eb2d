"""Micro-benchmarks of broadcasting (pytest-benchmark): one message to N open
connections, no sockets.

N compiled ``robyn_fast._core.connection.Connection`` objects are started on
counting fake transports in the connection table (``Hub``) a real
``robyn_fast.server.Server`` keeps for a ``robyn_fast.WebSocket`` endpoint
(the server listens on 127.0.0.1 but nothing connects); each round calls ``WebSocket.broadcast(data)`` (the frame is built
once and the same bytes object goes to every connection), then runs one
iteration of the event loop, so that output the connection layer corks until
the end of the loop iteration reaches the transports too. Every round is
checked: each transport must have received exactly one write holding the
whole frame, i.e. one transport write per connection per broadcast.

Groups ``broadcast-100`` and ``broadcast-1000`` (N connections), entries:

* ``compiled``    - ``WebSocket.broadcast(data)`` + one loop iteration;
* ``python-loop`` - the same frame queued from a Python ``for`` loop over the
  endpoint's connections with ``Connection.send_frame_bytes`` (what a
  broadcast written in Python costs) + one loop iteration;
* ``transports-only`` - the fake transports' own ``write`` called once each
  from a Python loop + one loop iteration: the floor, with no robyn_fast code
  (the counting transport is Python, so it is a large part of every entry);
* ``loop-step``   - one loop iteration with nothing to do: the fixed part of
  the entries above that is not broadcasting.

``extra_info`` records ``writes_per_broadcast`` (transport calls per
broadcast, over all N connections; N means one write each),
``writes_per_connection`` and ``messages`` (= N, so ``bench/ratios.py`` prints
messages/s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_text
from robyn_fast._core.connection import Connection, Hub
from robyn_fast.server import Server

BUDGET = 1.0
MIN_ROUNDS = 15
MAX_ROUNDS = 20000
MESSAGE = '{"op":"tick","seq":12345,"ok":1}'
assert len(MESSAGE) == 32
FRAME = build_text(MESSAGE)
SIZES = [100, 1000]


class CountingTransport:
    """The part of an asyncio transport a Connection uses; counts what is
    written instead of sending it."""

    __slots__ = ("writes", "writelines_calls", "bytes", "last", "closing", "protocol", "reading")

    def __init__(self) -> None:
        self.writes = 0
        self.writelines_calls = 0
        self.bytes = 0
        self.last: Any = None
        self.closing = False
        self.protocol: Any = None
        self.reading = True

    def write(self, data: Any) -> None:
        self.writes += 1
        self.bytes += len(data)
        self.last = data

    def writelines(self, chunks: Any) -> None:
        self.writelines_calls += 1
        chunks = list(chunks)
        self.bytes += sum(len(c) for c in chunks)
        self.last = b"".join(chunks)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16384, 65536)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


def _new_loop() -> asyncio.AbstractEventLoop:
    try:  # the loop the server uses by default
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


@dataclasses.dataclass
class Endpoint:
    loop: asyncio.AbstractEventLoop
    server: Server
    ws: WebSocket
    hub: Hub
    transports: list[CountingTransport]

    def step(self) -> None:
        """One iteration of the loop: runs whatever the connections scheduled
        with call_soon (e.g. an end-of-iteration flush)."""
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def total_calls(self) -> int:
        return sum(t.writes + t.writelines_calls for t in self.transports)

    def close(self) -> None:
        for conn in list(self.hub.connections.values()):
            conn.connection_lost(None)
        self.step()
        self.loop.run_until_complete(self.server.shutdown())
        self.loop.close()


def make_endpoint(n: int) -> Endpoint:
    """An endpoint with n open connections on counting transports, in the
    table of a running server, built the way the server builds them
    (Connection(hub, key, ...) then .start(transport)), without keepalive
    timers."""
    loop = _new_loop()
    app = Robyn(__file__)
    ws = WebSocket(app, "/bench", config=Config(ping_interval=None, ping_timeout=None))
    server = Server(app, loop)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    loop.run_until_complete(server.start(sock=sock))
    hub = server.hub(ws)
    transports = []
    for i in range(n):
        t = CountingTransport()
        conn = Connection(hub, f"bench-{i}", None, None, None)
        t.set_protocol(conn)
        conn.start(t)
        transports.append(t)
    ep = Endpoint(loop, server, ws, hub, transports)
    ep.step()
    assert len(hub.connections) == n
    assert ep.total_calls() == 0, "a connection wrote something before any broadcast"
    return ep


def _broadcast_compiled(ep: Endpoint) -> Callable[[], None]:
    broadcast, step = ep.ws.broadcast, ep.step

    def run() -> None:
        broadcast(MESSAGE)
        step()

    return run


def _broadcast_python(ep: Endpoint) -> Callable[[], None]:
    connections, step = ep.hub.connections, ep.step

    def run() -> None:
        for conn in connections.values():
            conn.send_frame_bytes(FRAME)
        step()

    return run


def _transports_only(ep: Endpoint) -> Callable[[], None]:
    writes, step = [t.write for t in ep.transports], ep.step

    def run() -> None:
        for write in writes:
            write(FRAME)
        step()

    return run


def _check_one_broadcast(ep: Endpoint, fn: Callable[[], None]) -> None:
    before = [(t.writes, t.writelines_calls, t.bytes) for t in ep.transports]
    fn()
    for t, (w, wl, b) in zip(ep.transports, before):
        assert (t.writes - w) + (t.writelines_calls - wl) == 1, "expected one transport write per connection"
        assert t.bytes - b == len(FRAME)
        assert bytes(t.last) == FRAME


def _measure(benchmark, fn: Callable[[], None]) -> None:
    fn()
    t0 = time.perf_counter()
    n = 0
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed > 5e-3 or n >= 200:
            break
    per_call = elapsed / n
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, BUDGET / max(per_call, 1e-9))))
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)
    benchmark.extra_info["rounds_planned"] = rounds


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", ["compiled", "python-loop", "transports-only", "loop-step"])
def test_broadcast(benchmark, impl: str, n: int) -> None:
    benchmark.group = f"broadcast-{n}"
    ep = make_endpoint(n)
    try:
        if impl == "compiled":
            fn = _broadcast_compiled(ep)
        elif impl == "python-loop":
            fn = _broadcast_python(ep)
        elif impl == "transports-only":
            fn = _transports_only(ep)
        else:
            fn = ep.step
        if impl != "loop-step":
            _check_one_broadcast(ep, fn)
        calls0 = ep.total_calls()
        t0 = time.perf_counter()
        _measure(benchmark, fn)
        elapsed = time.perf_counter() - t0
        stats = benchmark.stats.stats if benchmark.stats is not None else None
        calls = ep.total_calls() - calls0
        broadcasts = None
        if impl != "loop-step":
            # Each broadcast costs exactly n transport calls (checked above),
            # so the total tells how many broadcasts ran; confirm it is a whole number.
            assert calls % n == 0
            broadcasts = calls // n
            _check_one_broadcast(ep, fn)
        benchmark.extra_info.update(
            impl=impl,
            connections=n,
            messages=n,
            bytes=n * len(FRAME),
            writes_per_broadcast=(calls / broadcasts) if broadcasts else 0,
            writes_per_connection=(calls / broadcasts / n) if broadcasts else 0,
            broadcasts_counted=broadcasts,
            wall_s=round(elapsed, 3),
            rounds=stats.rounds if stats is not None else None,
        )
    finally:
        ep.close()
