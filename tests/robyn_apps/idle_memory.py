"""A server for tests/test_idle_memory.py: tracemalloc runs from the start
(one frame per trace: the counts, not where), /ws echoes, and GET /traced
reports the bytes Python has allocated and still holds (after a full
collection, so garbage waiting for the collector is not counted) with the
number of live WebSocket connections."""

import gc
import tracemalloc

tracemalloc.start(1)

from robyn_fast import Robyn, WebSocket  # noqa: E402  (tracemalloc first, on purpose)

app = Robyn(__file__)
ws = WebSocket(app, "/ws")


@ws.on("message")
def echo(conn, msg):
    return msg


@app.get("/traced")
def traced():
    gc.collect()
    return {"traced": tracemalloc.get_traced_memory()[0], "live": app.server.live_connections}


if __name__ == "__main__":
    app.start()
