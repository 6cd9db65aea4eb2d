"""Echo server on Robyn 0.88 (its receive-loop API, ``@app.websocket``, on
actix-web and Rust channels). Runs in bench/.venv-robyn088 (created by
bench/run.py).

    bench/.venv-robyn088/bin/python bench/peers/echo_robyn088.py PORT
"""

from _common import robyn_argv

HOST, PORT = robyn_argv()

from robyn import Robyn  # noqa: E402

app = Robyn(__file__)


@app.websocket("/ws")
async def echo(websocket):
    while True:
        await websocket.send_text(await websocket.receive_text())


if __name__ == "__main__":
    app.start(host=HOST, port=PORT)
