"""Echo server on Robyn 0.88 (its receive-loop API, ``@app.websocket``, on
actix-web and Rust channels). Runs in bench/.venv-robyn088 (created by
bench/run.py).

    bench/.venv-robyn088/bin/python bench/peers/echo_robyn088.py PORT

With ``ECHO_BINARY=1`` (bench/run.py's binary-echo row) it echoes with
``receive_bytes()`` and ``send_bytes()`` instead.
"""

import os

from _common import robyn_argv

HOST, PORT = robyn_argv()

from robyn import Robyn  # noqa: E402

app = Robyn(__file__)
BINARY = os.environ.get("ECHO_BINARY") == "1"


@app.websocket("/ws")
async def echo(websocket):
    if BINARY:
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())
    while True:
        await websocket.send_text(await websocket.receive_text())


if __name__ == "__main__":
    app.start(host=HOST, port=PORT)
