"""A server whose message handlers are suspended when shutdown comes, for
tests/test_lifecycle.py. `/ws` has an async close handler, `/ws-sync` a sync
one; a message "forever" suspends its handler for good, a number suspends it
that many seconds. Prints SUSPENDED <id>, CLOSED <id> and SHUTDOWN-HOOK."""

import asyncio
import os

from robyn_fast import Config, Robyn, WebSocket

app = Robyn(__file__, config=Config(close_timeout=float(os.environ.get("CLOSE_TIMEOUT", "5"))))
async_ws = WebSocket(app, "/ws")
sync_ws = WebSocket(app, "/ws-sync")


async def on_message(conn, msg):
    print(f"SUSPENDED {conn.id}", flush=True)
    if msg == "forever":
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(float(msg))
    return "a reply after the close"


async_ws.on("message")(on_message)
sync_ws.on("message")(on_message)


@async_ws.on("close")
async def on_close_async(conn):
    await asyncio.sleep(0.05)  # must not be cancelled half-way
    print(f"CLOSED {conn.id}", flush=True)


@sync_ws.on("close")
def on_close_sync(conn):
    print(f"CLOSED {conn.id}", flush=True)


@app.shutdown_handler
def hook():
    print("SHUTDOWN-HOOK", flush=True)


if __name__ == "__main__":
    app.start()
