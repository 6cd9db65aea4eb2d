"""Broadcast server: every WebSocket message on /ws goes to every connection of
the endpoint, the sender included (the fan-out benchmark's server).

    python examples/broadcast.py     # ws://127.0.0.1:8080/ws (ROBYN_HOST/ROBYN_PORT override)
"""

from robyn_fast import Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws")


@ws.on("message")
def fan_out(ws, msg):
    ws.sync_broadcast(msg)


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
