"""Echo server on Robyn 0.77 (the legacy WebSocket API, actix-web in Rust).
Runs in bench/.venv-robyn077 (created by bench/run.py).

    bench/.venv-robyn077/bin/python bench/peers/echo_robyn077.py PORT

A message handler's return value is sent back to the client.
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
    return msg


if __name__ == "__main__":
    app.start(host=HOST, port=PORT)
