"""robyn_fast echo in Robyn's receive-loop API (``@app.websocket``): one
handler per connection pulls each message with ``receive_text()`` and sends
it back with ``send_text()``. Port from ROBYN_PORT.

    ROBYN_PORT=8080 python bench/peers/echo_recv_robyn_fast.py

The legacy ``message``-handler echo it is compared with is
``examples/echo.py`` (and ``echo_async_robyn_fast.py`` for an async one).
With ``ECHO_BINARY=1`` (bench/run.py's binary-echo row) it echoes with
``receive_bytes()`` and ``send_bytes()`` instead.
"""

import os

from robyn_fast import Config, Robyn, WebSocketAdapter

BINARY = os.environ.get("ECHO_BINARY") == "1"

app = Robyn(__file__)


@app.websocket("/ws", config=Config(max_message_size=64 * 1024 * 1024))
async def echo(websocket: WebSocketAdapter) -> None:
    if BINARY:
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())
    while True:
        await websocket.send_text(await websocket.receive_text())


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
