"""Broadcast server on Robyn 0.88 (its receive-loop API, ``@app.websocket``):
every message goes to every connection of the endpoint, the sender included,
through ``websocket.broadcast()``. Runs in bench/.venv-robyn088.

    bench/.venv-robyn088/bin/python bench/peers/broadcast_robyn088.py PORT
"""

from _common import robyn_argv

HOST, PORT = robyn_argv()

from robyn import Robyn  # noqa: E402

app = Robyn(__file__)


@app.websocket("/ws")
async def fan_out(websocket):
    while True:
        await websocket.broadcast(await websocket.receive_text())


if __name__ == "__main__":
    app.start(host=HOST, port=PORT)
