"""A server for control-frame flood tests (tests/test_control_flood.py): /ws
echoes every message; its Config comes from the environment (FLOOD_BACKPRESSURE,
FLOOD_POLICY, FLOOD_PING_INTERVAL, FLOOD_PING_TIMEOUT, FLOOD_CLOSE_TIMEOUT:
unset means the defaults, "none" no keepalive; FLOOD_SNDBUF fixes the kernel's
send buffer of each connection, so that a client that never reads fills the
server's own buffers soon). GET /debug reports each open connection's
buffered bytes and pause state."""

import os
import socket

from robyn_fast import Config, Robyn, WebSocket


def _seconds(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return None if value == "none" else float(value)


config = Config(
    max_backpressure=int(os.environ.get("FLOOD_BACKPRESSURE", 4 << 20)),
    backpressure_policy=os.environ.get("FLOOD_POLICY", "close"),
    ping_interval=_seconds("FLOOD_PING_INTERVAL", None),
    ping_timeout=_seconds("FLOOD_PING_TIMEOUT", None),
    close_timeout=_seconds("FLOOD_CLOSE_TIMEOUT", 2.0),
)
app = Robyn(__file__)
ws = WebSocket(app, "/ws", config=config)


@ws.on("connect")
def fix_sndbuf(conn):
    size = os.environ.get("FLOOD_SNDBUF")
    if size is not None:
        sock = app.server.hub(ws).connections[conn.id].transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(size))


@ws.on("message")
def echo(conn, msg):
    return msg


@app.get("/debug")
def debug():
    hub = app.server.hub(ws)
    return {
        "connections": [
            {"buffered": c.buffered_amount, "reading_paused": c.reading_paused, "writing_paused": c.writing_paused}
            for c in hub.connections.values()
        ]
    }


if __name__ == "__main__":
    app.start()
