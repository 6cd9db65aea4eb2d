"""Broadcast server on socketify: every connection subscribes to one topic and
every message is published to it (uWebSockets' pub/sub), the sender included.

    python bench/peers/broadcast_socketify.py PORT
"""

from socketify import App, AppListenOptions

from _common import HOST, port

TOPIC = "all"


def main() -> None:
    app = App()

    def on_open(ws) -> None:
        ws.subscribe(TOPIC)

    def on_message(ws, message, opcode) -> None:
        app.publish(TOPIC, message, opcode)  # App.publish reaches the sender too

    app.ws("/*", {
        "compression": 0,
        "idle_timeout": 600,
        "max_backpressure": 1024 * 1024,
        "open": on_open,
        "message": on_message,
    })
    p = port()
    app.listen(AppListenOptions(port=p, host=HOST), lambda config: print(f"socketify broadcast on {HOST}:{p}", flush=True))
    app.run()


if __name__ == "__main__":
    main()
