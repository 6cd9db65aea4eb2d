"""A server for connection churn and memory tests (tests/test_lifecycle.py):
async connect and close handlers that count; GET /debug reports the counts
and the server's live connections and handler Tasks; GET /slow waits until
GET /release; /ws counts the bytes its messages carry."""

import asyncio

from robyn_fast import Config, Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws", config=Config(max_message_size=1 << 20))
counts = {"connects": 0, "closes": 0, "messages": 0, "bytes": 0}
release = asyncio.Event()


@ws.on("connect")
async def on_connect(conn):
    await asyncio.sleep(0)
    counts["connects"] += 1


@ws.on("message")
def on_message(conn, msg):
    counts["messages"] += 1
    counts["bytes"] += len(msg)


@ws.on("close")
async def on_close(conn):
    await asyncio.sleep(0)
    counts["closes"] += 1


@app.get("/debug")
def debug():
    server = app.server
    return {**counts, "live": server.live_connections, "tasks": server.live_tasks}


@app.get("/slow")
async def slow():
    await release.wait()
    return "slow done"


@app.get("/release")
def do_release():
    release.set()
    return "released"


if __name__ == "__main__":
    # /debug is asked over one keep-alive connection that idles while 10,000 connections churn,
    # which on a loaded 2-core machine takes longer than the default 15 s keep-alive timeout.
    app.start(keep_alive_timeout=300)
