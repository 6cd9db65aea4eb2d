"""A server for the Redis broker's flood test (tests/test_redis_faults.py),
run with ``--broker URL``: /ws echoes every message; GET /stats is
``app.stats()`` (the broker's counters and ``unknown_endpoint``)."""

from robyn_fast import Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws")


@ws.on("message")
def echo(conn, msg):
    return msg


@app.get("/stats")
def stats():
    s = app.stats()
    return {"unknown_endpoint": s["unknown_endpoint"], "broker": s["broker"]}


if __name__ == "__main__":
    app.start()
