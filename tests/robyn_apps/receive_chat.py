"""A chat written for Robyn's receive-loop WebSocket API (Robyn 0.78+),
unmodified, for tests/test_ws_receive_api.py (run as `python -m robyn_fast
tests/robyn_apps/receive_chat.py --processes 2`): on_connect greets with the
connection id, every text message is broadcast as text and every binary one
as binary, to every client on every worker."""

from robyn import Robyn, WebSocketDisconnect

app = Robyn(__file__)


@app.websocket("/chat")
async def chat(websocket):
    try:
        while True:
            msg = await websocket.receive_bytes()
            if msg.startswith(b"bin:"):
                await websocket.broadcast(msg)
            else:
                await websocket.broadcast(f"{websocket.id}: {msg.decode()}")
    except WebSocketDisconnect:
        pass


@chat.on_connect
def hello(websocket):
    return f"welcome {websocket.id}"


if __name__ == "__main__":
    app.start(port=8080)
