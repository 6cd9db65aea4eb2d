"""Async handlers and periodic updates at /updates.

Send the text "subscribe" and the server pushes {"type": "tick", "n": 1, ...},
n = 2, ... every 0.2 s until you send "unsubscribe" or disconnect. Each
subscription is one asyncio task; "unsubscribe" and the close handler cancel
it, and a tick that finds its connection closing ends the task too, so no
task outlives its connection. POST /announce pushes the request body to every
connected client as {"type": "announcement", "text": ...}, from an HTTP
route; GET /stats shows how many ticker tasks are alive.

Replies (JSON text):

    connect        -> {"type": "hello", "commands": ["subscribe", "unsubscribe"], "interval": 0.2}
    "subscribe"    -> {"type": "subscribed", "interval": 0.2}, then ticks
                      ({"type": "error", ...} if already subscribed)
    "unsubscribe"  -> {"type": "unsubscribed", "ticks": <ticks sent>}; no tick follows it
                      ({"type": "error", ...} if not subscribed)
    anything else  -> {"type": "error", "message": ...}

    python examples/async_updates.py     # ws://127.0.0.1:8080/updates
"""

import asyncio
import json
import time

from robyn_fast import Robyn, WebSocket

INTERVAL = 0.2
TASK_PREFIX = "ticker-"

app = Robyn(__file__)
ws = WebSocket(app, "/updates")

# connection id -> its ticker task. Touched only on the event loop thread.
tickers: dict[str, asyncio.Task] = {}
ticks_sent: dict[str, int] = {}


async def _tick(ws) -> None:
    n = 0
    try:
        while True:
            await asyncio.sleep(INTERVAL)
            n += 1
            tick = json.dumps({"type": "tick", "n": n, "time": time.time()})
            if not await ws.async_send_to(ws.id, tick):
                return      # the connection is closing; its close handler may not have run yet
            ticks_sent[ws.id] = n
    finally:
        # Leave the table only if it still names this task (not a newer subscription's).
        if tickers.get(ws.id) is asyncio.current_task():
            del tickers[ws.id]


def _stop(conn_id: str) -> int:
    task = tickers.pop(conn_id, None)
    if task is not None:
        task.cancel()
    return ticks_sent.pop(conn_id, 0)


@ws.on("connect")
async def on_connect(ws):
    return {"type": "hello", "commands": ["subscribe", "unsubscribe"], "interval": INTERVAL}


@ws.on("message")
async def on_message(ws, msg):
    command = msg.strip() if isinstance(msg, str) else None
    if command == "subscribe":
        if ws.id in tickers:
            return {"type": "error", "message": "already subscribed"}
        ticks_sent[ws.id] = 0
        tickers[ws.id] = asyncio.create_task(_tick(ws), name=f"{TASK_PREFIX}{ws.id}")
        return {"type": "subscribed", "interval": INTERVAL}
    if command == "unsubscribe":
        if ws.id not in tickers:
            return {"type": "error", "message": "not subscribed"}
        # cancel() takes effect before the task can send again: no tick follows the reply.
        return {"type": "unsubscribed", "ticks": _stop(ws.id)}
    return {"type": "error", "message": f"unknown command {msg!r}; send subscribe or unsubscribe"}


@ws.on("close")
async def on_close(ws):
    _stop(ws.id)


@app.post("/announce")
async def announce(request):
    text = request.raw_body.decode("utf-8", "replace")
    sent = ws.broadcast(json.dumps({"type": "announcement", "text": text}))
    return {"delivered_to": sent}


@app.get("/stats")
async def stats():
    alive = [t for t in asyncio.all_tasks() if t.get_name().startswith(TASK_PREFIX)]
    return {"subscriptions": len(tickers), "ticker_tasks_alive": len(alive), "connections": len(ws.connections)}


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
