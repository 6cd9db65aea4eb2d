"""Per-message cost of the WebSocket dispatch path, by how the handler answers.

A real Server (listening on 127.0.0.1, port 0, never connected to) serves an app whose endpoint
handlers answer each message one of three ways:

- ``reply``:  ``return msg`` (the core sends the return value);
- ``send``:   ``ws.sync_send_to(ws.id, msg)`` (a send from the handler, through the connector);
- ``inject``: ``return msg`` from a handler that also takes one injected dependency.

Connections are opened by the endpoint on fake transports (no sockets), fed masked 32-byte text
frames, ``--per-read`` per read, and one loop iteration runs per round, so the flush is counted.
Prints the median of ``--repeat`` timings in microseconds per message; run it with each tree's
interpreter, pinned (``taskset -c 1``), interleaved, to compare.

    python bench/hop_cost.py [--mode reply|send|inject|all] [--repeat 7] [--rounds 400]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop

from robyn_fast import Config, Robyn, WebSocket
from robyn_fast._core.codec import build_text
from robyn_fast.server import Server


class _Transport:
    def write(self, data: bytes) -> None: ...
    def writelines(self, data: list[bytes]) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
    def set_protocol(self, protocol: Any) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool:
        return False


def measure(mode: str, conns: int, per_read: int, rounds: int, repeat: int) -> float:
    app = Robyn(__file__, config=Config(ping_interval=None))
    ws = WebSocket(app, "/ws")
    if mode == "reply":
        @ws.on("message")
        def reply(conn: Any, msg: Any) -> Any:
            return msg
    elif mode == "send":
        @ws.on("message")
        def send(conn: Any, msg: Any) -> Any:
            conn.sync_send_to(conn.id, msg)
    else:
        ws.inject(logger=object())

        @ws.on("message")
        def inject(conn: Any, msg: Any, logger: Any) -> Any:
            return msg

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(app, loop)
    loop.run_until_complete(server.start(host="127.0.0.1", port=0))
    hub = server.hub(ws)
    for _ in range(conns):
        ws.open_connection(server, hub, _Transport(), b"", "", {}, [], None)  # type: ignore[arg-type]
    connections = list(hub.connections.values())
    data = b"".join(build_text("x" * 32, mask=b"\x01\x02\x03\x04") for _ in range(per_read))

    async def run() -> float:
        t0 = time.perf_counter()
        for _ in range(rounds):
            for conn in connections:
                conn.data_received(data)
            await asyncio.sleep(0)
        return time.perf_counter() - t0

    loop.run_until_complete(run())  # warm up
    timings = [loop.run_until_complete(run()) for _ in range(repeat)]
    for conn in connections:
        conn.connection_lost(None)
    loop.run_until_complete(asyncio.sleep(0))
    server.stopping.set()
    loop.run_until_complete(server.shutdown())
    loop.close()
    return statistics.median(timings) / (rounds * conns * per_read) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["reply", "send", "inject", "all"], default="all")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--per-read", type=int, default=16)
    p.add_argument("--rounds", type=int, default=400)
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    for mode in ["reply", "send", "inject"] if a.mode == "all" else [a.mode]:
        us = measure(mode, a.conns, a.per_read, a.rounds, a.repeat)
        print(f"{mode}: {us:.3f} us/message")


if __name__ == "__main__":
    main()
