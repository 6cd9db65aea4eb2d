"""A chat app written for Robyn's legacy WebSocket API, unmodified, for
tests/test_workers.py (run as `python -m robyn_fast tests/robyn_apps/chat.py
--processes 2`): everyone hears who joins and leaves and what is said;
"@<id> text" is a private message. Prints CLOSED <id> when a connection's
close handler runs, STARTED/STOPPED <pid> from the hooks."""

import os

from robyn import Robyn, WebSocket

app = Robyn(__file__)
websocket = WebSocket(app, "/chat")


@websocket.on("connect")
def connect(ws):
    ws.sync_broadcast(f"joined {ws.id}")
    return f"welcome {ws.id}"


@websocket.on("message")
async def message(ws, msg):
    if msg.startswith("@"):
        target, _, text = msg[1:].partition(" ")
        sent = await ws.async_send_to(target, f"private from {ws.id}: {text}")
        return None if sent else f"no such user {target}"
    await ws.async_broadcast(f"{ws.id}: {msg}")
    return None


@websocket.on("close")
def close(ws):
    ws.sync_broadcast(f"left {ws.id}")
    print(f"CLOSED {ws.id}", flush=True)


@app.startup_handler
def started():
    print(f"STARTED {os.getpid()}", flush=True)


@app.shutdown_handler
def stopped():
    print(f"STOPPED {os.getpid()}", flush=True)


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
