"""Instructions per message on the dispatch path, counted by callgrind.

Load tests on a shared 2-vCPU machine cannot resolve a few percent; instruction counts can, and
they are the same from run to run. This feeds masked frames to compiled connections on fake
transports (no sockets), with an echo handler (sync, or async with ``--async``), and runs one
uvloop iteration per round so the end-of-iteration flush runs too.

    python bench/dispatch_count.py [--per-read 16] [--size 1024] [--conns 8] [--async]
        [PYTHON ...]            # each interpreter's robyn_fast is measured (default: this one)
    python bench/dispatch_count.py --endpoint legacy|legacy-async|recv ...
    python bench/dispatch_count.py --endpoint fanout [--conns 2000] [--size 64] [--loop asyncio]

``--endpoint connect`` counts instructions per connect cycle instead: each cycle is what a client of
``rfload connect`` costs the server above the kernel and the loop's C code: an ``HttpProtocol`` made
by the ``Server`` (as its listener makes one per accepted socket) gets ``connection_made`` and the
upgrade request of ``examples/echo.py``'s ``/ws`` (headers as rfload sends them), writes the 101,
hands the transport to the compiled connection, which gets a masked Close(1000), answers it and
closes the transport, whose ``connection_lost`` comes in the next loop iteration, as uvloop's does.

``--endpoint`` drives whole endpoints of an app instead of bare compiled connections: the
connections are opened by a ``Server`` (not listening) as an upgrade would open them, so the
endpoint's own message path runs: ``legacy`` is ``examples/echo.py``'s handler (a sync ``message``
handler returning the message), ``legacy-async`` the same as a coroutine, ``recv`` Robyn's
receive-loop API (``@app.websocket``: ``send_text(await receive_text())`` in a loop, one Task per
connection woken per message).

``--endpoint fanout`` is ``examples/broadcast.py``'s server (a sync handler calling
``sync_broadcast``) with ``--conns`` connections on real transports of the loop (``--loop``) over
Unix socket pairs: each round one connection's message is fed to it and the broadcast goes to
every connection, written to the sockets (their peers are drained every few rounds). It prints
instructions per delivery: user-space only (callgrind does not see the kernel's send).

For each interpreter it runs the workload under ``valgrind --tool=callgrind`` with 1 and with 3
repetitions and prints (total 3 - total 1) / messages of 2 repetitions, so start-up (imports,
compilation) cancels out. An interpreter may belong to another checkout (``/tmp/base/.venv/bin/
python``): the workload speaks the connection API of this tree and of the one before issue 8.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

ROUNDS = 200

# What rfload's connect mode sends: the upgrade request (bench/loadgen/_rfload.pyx) and a masked Close(1000).
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _fake_transport(written: list[int], loop: object = None) -> type:
    """A transport class that counts the bytes written into ``written[0]``; with ``loop``, close()
    calls its protocol's connection_lost in the next loop iteration, as uvloop's transports do."""

    class Transport:
        def __init__(self) -> None:
            self.protocol: object = None
            self.closing = False
        def set_protocol(self, protocol: object) -> None:
            self.protocol = protocol
        def get_protocol(self) -> object:
            return self.protocol
        def write(self, d: bytes) -> None:
            written[0] += len(d)
        def writelines(self, d: list[bytes]) -> None:
            written[0] += sum(map(len, d))
        def get_write_buffer_size(self) -> int:
            return 0
        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 40000) if name == "peername" else default
        def is_closing(self) -> bool:
            return self.closing
        def close(self) -> None:
            if loop is not None and not self.closing:
                loop.call_soon(self.protocol.connection_lost, None)  # type: ignore[attr-defined]
            self.closing = True
        def abort(self) -> None:
            self.close()
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...

    return Transport


def connect_workload(reps: int) -> None:
    """ROUNDS connect cycles per repetition (see the module docstring), one after the other."""
    import asyncio

    import uvloop

    from robyn_fast import Config, Robyn, WebSocket
    from robyn_fast._core.codec import build_close
    from robyn_fast._core.connection import Connection
    from robyn_fast.http.protocol import HttpProtocol
    from robyn_fast.server import Server

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws", config=Config(max_message_size=64 * 1024 * 1024))

    @ws.on("message")
    def echo(conn, msg):  # type: ignore[no-untyped-def]
        return msg

    close = build_close(1000, "", mask=b"\x01\x02\x03\x04")
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(app, loop)
    written = [0]
    Transport = _fake_transport(written, loop)

    def connect(t: Any) -> None:
        protocol = HttpProtocol(server)
        protocol.connection_made(t)
        protocol.data_received(UPGRADE)

    async def cycles() -> None:
        # Each client event comes from a loop callback, as a socket's does (not from inside a Task).
        for _ in range(ROUNDS):
            t = Transport()
            loop.call_soon(connect, t)
            await asyncio.sleep(0)
            if not isinstance(t.protocol, Connection):
                raise SystemExit(f"connect: the upgrade was not accepted ({written[0]} bytes written)")
            loop.call_soon(t.protocol.data_received, close)
            for _ in range(100):
                await asyncio.sleep(0)  # the Close answered, connection_lost, then the close job
                if t.closing and not hub.connections and not hub.live:
                    break
            else:
                raise SystemExit("connect: a connection outlived its cycle")

    hub = server.hub(ws)
    for _ in range(reps):
        loop.run_until_complete(cycles())
    loop.close()


def endpoint_workload(kind: str, per_read: int, size: int, conns: int, reps: int) -> None:
    import asyncio

    import uvloop

    from robyn_fast import Config, Robyn, WebSocket
    from robyn_fast._core.codec import build_text
    from robyn_fast.server import Server

    data = b"".join(build_text("x" * size, mask=b"\x01\x02\x03\x04") for _ in range(per_read))
    config = Config(ping_interval=None)
    app = Robyn(__file__, config=config)
    if kind == "recv":
        @app.websocket("/ws")
        async def echo(websocket):  # type: ignore[no-untyped-def]
            while True:
                await websocket.send_text(await websocket.receive_text())
        endpoint = echo.endpoint
    else:
        endpoint = WebSocket(app, "/ws")
        if kind == "legacy-async":
            @endpoint.on("message")
            async def async_echo(ws, msg):  # type: ignore[no-untyped-def]
                return msg
        else:
            @endpoint.on("message")
            def sync_echo(ws, msg):  # type: ignore[no-untyped-def]
                return msg

    written = [0]
    Transport = _fake_transport(written)

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(app, loop)
    transports = [Transport() for _ in range(conns)]

    async def open_all() -> None:
        for t in transports:
            server.open_websocket(endpoint, t, b"", "", {}, [], ("127.0.0.1", 1))
        for _ in range(4):
            await asyncio.sleep(0)

    per_round = conns * per_read * (size + (2 if size < 126 else 4))  # one unmasked frame per message

    def feed() -> None:
        for t in transports:
            t.protocol.data_received(data)

    async def rounds() -> None:
        # Closed loop, as a client with `per_read` messages in flight: the next
        # round goes once every reply of this one is written. The reads come
        # from a loop callback, as a socket's do (not from inside a Task).
        for _ in range(ROUNDS):
            target = written[0] + per_round
            loop.call_soon(feed)
            for _ in range(1000):
                await asyncio.sleep(0)
                if written[0] >= target:
                    break
            if written[0] != target:
                raise SystemExit(f"{kind}: {written[0]} bytes written, {target} expected")

    loop.run_until_complete(open_all())
    for _ in range(reps):
        loop.run_until_complete(rounds())
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


FANOUT_DRAIN = 25  # rounds between drains of the peers (their socket buffers hold ~200 frames)


def fanout_workload(size: int, conns: int, reps: int, loop_name: str) -> None:
    import asyncio
    import socket

    from robyn_fast import Config, Robyn, WebSocket
    from robyn_fast._core.codec import build_text
    from robyn_fast.server import Server

    app = Robyn(__file__, config=Config(ping_interval=None))
    endpoint = WebSocket(app, "/ws")

    @endpoint.on("message")
    def fan_out(ws, msg):  # type: ignore[no-untyped-def]
        ws.sync_broadcast(msg)

    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(app, loop)
    frame_in = build_text("x" * size, mask=b"\x01\x02\x03\x04")
    delivery = len(build_text("x" * size))
    peers = []

    async def open_all() -> None:
        listener = socket.socket()  # a running server (broadcasts need one); nothing connects to it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        await server.start(sock=listener)
        for _ in range(conns):
            ours, peer = socket.socketpair()
            peer.setblocking(False)
            peers.append(peer)
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
            server.open_websocket(endpoint, transport, b"", "", {}, [], ("127.0.0.1", 1))  # type: ignore[arg-type]
        for _ in range(4):
            await asyncio.sleep(0)

    def drain(rounds: int) -> None:
        for peer in peers:
            got = peer.recv(1 << 20)
            if len(got) != rounds * delivery:
                raise SystemExit(f"fanout: a peer got {len(got)} bytes, {rounds * delivery} expected")

    async def rounds() -> None:
        conn = next(iter(server.hub(endpoint).connections.values()))
        for i in range(ROUNDS):
            loop.call_soon(conn.data_received, frame_in)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if (i + 1) % FANOUT_DRAIN == 0:
                drain(FANOUT_DRAIN)

    loop.run_until_complete(open_all())
    for _ in range(reps):
        loop.run_until_complete(rounds())
    loop.run_until_complete(server.shutdown())
    loop.close()


def workload(per_read: int, size: int, conns: int, is_async: bool, reps: int) -> None:
    import asyncio

    import uvloop

    from robyn_fast import Config
    from robyn_fast._core import connection as core
    from robyn_fast._core.codec import build_text

    data = b"".join(build_text("x" * size, mask=b"\x01\x02\x03\x04") for _ in range(per_read))

    class Transport:
        def write(self, d: bytes) -> None: ...
        def writelines(self, d: list[bytes]) -> None: ...
        def get_write_buffer_size(self) -> int:
            return 0
        def get_extra_info(self, name: str, default: object = None) -> object:
            return default
        def close(self) -> None: ...
        def abort(self) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...

    def echo(conn: object, msg: object) -> object:
        return msg

    async def async_echo(conn: object, msg: object) -> object:
        return msg

    handler = async_echo if is_async else echo
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    config = Config(ping_interval=None)
    connections = []
    if hasattr(core, "Hub") and hasattr(core, "start_task"):  # this tree: Hub(loop, config, json_dumps=)
        from robyn_fast.encoding import dumps

        hub = core.Hub(loop, config, json_dumps=dumps)
        make = lambda i: core.Connection(hub, f"c{i}", None, handler, None)  # noqa: E731
    else:  # before issue 8: Connection(loop, config, table, key, ...)
        make = lambda i: core.Connection(loop, config, {}, f"c{i}", None, handler, None)  # noqa: E731
    for i in range(conns):
        conn = make(i)
        conn.connector = conn
        conn.start(Transport())
        connections.append(conn)

    async def rounds() -> None:
        for _ in range(ROUNDS):
            for conn in connections:
                conn.data_received(data)
            await asyncio.sleep(0)
        for _ in range(per_read * 4):  # async handlers on 3.10/3.11: let their Tasks finish
            await asyncio.sleep(0)

    for _ in range(reps):
        loop.run_until_complete(rounds())


def count(python: str, args: argparse.Namespace, reps: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, __file__, "--run",
               "--per-read", str(args.per_read), "--size", str(args.size), "--conns", str(args.conns),
               "--reps", str(reps)] + (["--async"] if args.is_async else []) + (
               ["--endpoint", args.endpoint] if args.endpoint else []) + ["--loop", args.loop]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=tmp)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode != 0 or not m:
            raise SystemExit(f"{python}: callgrind failed:\n{r.stderr[-2000:]}")
        return int(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pythons", nargs="*", default=[sys.executable])
    p.add_argument("--per-read", type=int, default=16, help="frames in each data_received")
    p.add_argument("--size", type=int, default=1024, help="payload bytes")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--async", dest="is_async", action="store_true", help="an async echo handler")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="fanout: the event loop")
    p.add_argument("--endpoint", choices=["legacy", "legacy-async", "recv", "connect", "fanout"],
                   help="whole endpoints opened by a Server (see above) instead of bare connections; connect: "
                        "instructions per connect cycle (upgrade, 101, Close, teardown); fanout: per delivery")
    p.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.run:
        if a.endpoint == "connect":
            connect_workload(a.reps)
        elif a.endpoint == "fanout":
            fanout_workload(a.size, a.conns, a.reps, a.loop)
        elif a.endpoint:
            endpoint_workload(a.endpoint, a.per_read, a.size, a.conns, a.reps)
        else:
            workload(a.per_read, a.size, a.conns, a.is_async, a.reps)
        return 0
    if shutil.which("valgrind") is None:
        p.error("needs valgrind (apt-get install valgrind)")
    per_cycle = a.endpoint == "connect"
    messages = 2 * ROUNDS * (1 if per_cycle else a.conns * (1 if a.endpoint == "fanout" else a.per_read))
    for python in map(os.path.abspath, a.pythons):
        per_msg = (count(python, a, 3) - count(python, a, 1)) / messages
        if per_cycle:
            print(f"{python}: {per_msg:,.0f} instructions per connect cycle (upgrade, 101, Close, teardown)")
            continue
        if a.endpoint == "fanout":
            print(f"{python}: {per_msg:,.0f} instructions per delivery "
                  f"(broadcast of {a.size} B to {a.conns} conns, {a.loop})")
            continue
        what = f"{a.endpoint} endpoint" if a.endpoint else ("async" if a.is_async else "sync")
        print(f"{python}: {per_msg:,.0f} instructions per message "
              f"({what} echo, {a.per_read} x {a.size} B per read, {a.conns} conns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
