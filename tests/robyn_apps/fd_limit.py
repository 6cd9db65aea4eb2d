"""A server for tests/test_fd_exhaustion.py (the test lowers its RLIMIT_NOFILE
once it listens): GET / answers "ok", /ws echoes every message. Connections
that send nothing are kept for a minute (header_timeout, handshake_timeout), so the test decides
when the file descriptors come back."""

from robyn_fast import Config, Robyn, WebSocket

app = Robyn(__file__, config=Config(header_timeout=60.0, handshake_timeout=60.0, keep_alive_timeout=60.0))
ws = WebSocket(app, "/ws")


@app.get("/")
def index():
    return "ok"


@ws.on("message")
def echo(ws, msg):
    return msg


if __name__ == "__main__":
    app.start()
