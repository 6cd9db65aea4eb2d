"""The app `bench/soak.py` serves for its soak test (run it like any app:
``python bench/soak_app.py --processes 2``; ``ROBYN_PORT=0`` picks a free port).

Endpoints:

* ``/echo``: every message comes back unchanged (echo clients, churn, ping floods).
* ``/bcast``: every message received is broadcast to every connection of the
  endpoint on every worker (the publisher's message carries its send time).
* ``/slow``: a ``feed SIZE INTERVAL_MS`` message starts a stream of SIZE-byte
  messages to that connection every INTERVAL_MS until it closes; a small
  ``max_backpressure`` with the ``"close"`` policy, so a client that stops
  reading is closed with 1008.
* ``/slowdrop``: the same stream, with the ``"drop"`` policy: a client that
  reads too slowly misses messages (each carries a sequence number).
* ``GET /soak/stats``: this worker's ``pid``, ``asyncio_tasks``
  (``len(asyncio.all_tasks())`` on its loop) and ``app.stats()``. A request
  lands on whichever worker accepted it, so the soak asks on fresh
  connections until it has heard from every worker.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from robyn_fast import Config, Robyn, WebSocket

# Small enough that a stalled client crosses it within seconds of the kernel's
# buffers filling up; the default (4 MiB) would take minutes at a soak's rates.
SLOW_BACKPRESSURE = 64 * 1024
# A feed request is bounded: no client can make a worker stream huge messages fast.
MAX_FEED_SIZE = 64 * 1024
MIN_FEED_INTERVAL_MS = 1

app = Robyn(__file__)
echo = WebSocket(app, "/echo")
bcast = WebSocket(app, "/bcast")
slow = WebSocket(app, "/slow", config=Config(max_backpressure=SLOW_BACKPRESSURE, backpressure_policy="close"))
slowdrop = WebSocket(app, "/slowdrop", config=Config(max_backpressure=SLOW_BACKPRESSURE, backpressure_policy="drop"))


@echo.on("message")
def on_echo(ws: Any, msg: Any) -> Any:
    return msg


@bcast.on("message")
def on_bcast(ws: Any, msg: Any) -> None:
    bcast.broadcast(msg)


def _parse_feed(msg: Any) -> tuple[int, float] | None:
    parts = msg.split() if isinstance(msg, str) else []
    if len(parts) != 3 or parts[0] != "feed" or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    size, interval_ms = int(parts[1]), int(parts[2])
    if not 16 <= size <= MAX_FEED_SIZE or interval_ms < MIN_FEED_INTERVAL_MS:
        return None
    return size, interval_ms / 1000.0


async def _feed(ws: Any, msg: Any) -> str | None:
    """Streams numbered messages to this connection until it is closed (by
    the client, or by the backpressure policy). A dropped message (``"drop"``
    policy) still uses up its number, which is how the client sees the gap."""
    parsed = _parse_feed(msg)
    if parsed is None:
        return f"error: expected 'feed SIZE INTERVAL_MS' (16 <= SIZE <= {MAX_FEED_SIZE}), got {str(msg)[:40]!r}"
    size, interval = parsed
    seq = 0
    while not ws.closed:
        head = f"{seq}:"
        await ws.async_send_to(ws.id, head + "x" * (size - len(head)))
        seq += 1
        await asyncio.sleep(interval)
    return None


slow.on("message")(_feed)
slowdrop.on("message")(_feed)


@app.get("/soak/stats")
async def soak_stats() -> dict[str, Any]:
    return {"pid": os.getpid(), "asyncio_tasks": len(asyncio.all_tasks()), "stats": app.stats()}


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
