"""Broadcast server on Robyn 0.77 (legacy WebSocket API): every message goes
to every connection of the endpoint, the sender included. Runs in
bench/.venv-robyn077.

    bench/.venv-robyn077/bin/python bench/peers/broadcast_robyn077.py PORT
"""

from _common import robyn_argv

HOST, PORT = robyn_argv()

from robyn import Robyn, WebSocket  # noqa: E402

app = Robyn(__file__)
websocket = WebSocket(app, "/ws")


# Robyn 0.77 requires all three handlers (KeyError at start otherwise); a
# return value would be sent to the client, so these return None.
@websocket.on("connect")
def connect(ws):
    return None


@websocket.on("close")
def close(ws):
    return None


@websocket.on("message")
def message(ws, msg):
    ws.sync_broadcast(msg)


if __name__ == "__main__":
    app.start(host=HOST, port=PORT)
