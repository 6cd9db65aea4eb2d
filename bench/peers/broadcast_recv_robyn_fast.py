"""robyn_fast broadcast in Robyn's receive-loop API (``@app.websocket``):
every message received goes to every connection of the endpoint, the sender
included, through ``websocket.broadcast()``. Port from ROBYN_PORT.

    ROBYN_PORT=8080 python bench/peers/broadcast_recv_robyn_fast.py

The legacy ``message``-handler server it is compared with is
``examples/broadcast.py``.
"""

from robyn_fast import Robyn, WebSocketAdapter

app = Robyn(__file__)


@app.websocket("/ws")
async def fan_out(websocket: WebSocketAdapter) -> None:
    while True:
        await websocket.broadcast(await websocket.receive_text())


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
