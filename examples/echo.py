"""Echo server: every WebSocket message on /ws comes back unchanged.

This is the server the Autobahn TestSuite runs against (the maximum message
size is raised to 64 MiB; the suite needs >= 16 MiB). GET / serves a small page
to try it from a browser.

    python examples/echo.py          # http://127.0.0.1:8080 (ROBYN_HOST/ROBYN_PORT override)
    python examples/echo.py --ssl-certfile cert.pem --ssl-keyfile key.pem   # https:// and wss://

permessage-deflate is answered in the default "shared" mode; ECHO_COMPRESSION
picks another (off, shared or dedicated) and ECHO_COMPRESSION_THRESHOLD the
size from which replies are compressed (default 1024); ECHO_KEEPALIVE=0 turns
the keepalive pings off, as the Autobahn tests do.
"""

import os

from robyn_fast import Config, Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws", config=Config(max_message_size=64 * 1024 * 1024,
                                         compression=os.environ.get("ECHO_COMPRESSION", "shared"),  # type: ignore[arg-type]
                                         compression_threshold=int(os.environ.get("ECHO_COMPRESSION_THRESHOLD", 1024)),
                                         ping_interval=None if os.environ.get("ECHO_KEEPALIVE") == "0" else 20.0))

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>robyn_fast echo</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}#log{border:1px solid #ccc;min-height:10em;padding:.5em;white-space:pre-wrap}</style>
</head>
<body>
<h1>robyn_fast echo</h1>
<p id="status">connecting…</p>
<form id="form"><input id="message" autocomplete="off" placeholder="Type a message" autofocus>
<button id="send" type="submit">Send</button></form>
<div id="log"></div>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
const sock = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
sock.onopen = () => { status.textContent = "connected"; };
sock.onclose = (e) => { status.textContent = `closed (${e.code})`; };
sock.onmessage = (e) => {
  const line = document.createElement("div");
  line.className = "received";
  line.textContent = e.data;
  log.appendChild(line);
};
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("message");
  if (input.value) { sock.send(input.value); input.value = ""; }
};
</script>
</body>
</html>
"""


@app.get("/")
def index():
    return PAGE


@ws.on("message")
def echo(ws, msg):
    return msg


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
