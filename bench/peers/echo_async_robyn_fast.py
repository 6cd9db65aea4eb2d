"""robyn_fast echo with an async handler (what Robyn apps usually write):
every message on /ws comes back, returned by a coroutine that does not
suspend. Measures the cost of running a handler as a coroutine (a Task per
message, started eagerly on Python >= 3.12). Port from ROBYN_PORT.

    ROBYN_PORT=8080 python bench/peers/echo_async_robyn_fast.py
"""

from robyn_fast import Config, Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws", config=Config(max_message_size=64 * 1024 * 1024))


@ws.on("message")
async def echo(ws, msg):
    return msg


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
