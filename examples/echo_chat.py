"""Echo chat: a page at GET / and a WebSocket at /ws that echoes and announces.

On connect every client (the newcomer included) gets "User <id> joined the
chat"; each text message comes back to its sender only as "Echo: <message>"
(a binary message comes back unchanged); when a client leaves, the others get
"User <id> left the chat". <id> is the connection's uuid4.

    python examples/echo_chat.py     # open http://127.0.0.1:8080 (ROBYN_HOST/ROBYN_PORT override)
"""

from robyn_fast import Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/ws")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>robyn_fast echo chat</title>
<style>
body{font-family:sans-serif;max-width:40em;margin:2em auto}
#log{border:1px solid #ccc;min-height:12em;padding:.5em;white-space:pre-wrap}
#log .system{color:#666;font-style:italic}
</style>
</head>
<body>
<h1>robyn_fast echo chat</h1>
<p>Status: <span id="status">connecting…</span></p>
<form id="form">
<input id="message" autocomplete="off" placeholder="Type a message" autofocus>
<button id="send" type="submit" disabled>Send</button>
</form>
<div id="log" aria-live="polite"></div>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
const send = document.getElementById("send");
const input = document.getElementById("message");
const scheme = location.protocol === "https:" ? "wss" : "ws";
const sock = new WebSocket(`${scheme}://${location.host}/ws`);

function append(text, cls) {
  const line = document.createElement("div");
  line.className = cls;
  line.textContent = text;   // textContent, never innerHTML: messages are untrusted
  log.appendChild(line);
}

sock.onopen = () => { status.textContent = "connected"; send.disabled = false; };
sock.onclose = (e) => { status.textContent = `closed (${e.code})`; send.disabled = true; };
sock.onmessage = (e) => {
  const text = String(e.data);
  append(text, text.startsWith("Echo: ") ? "echo" : "system");
};
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  if (input.value && sock.readyState === WebSocket.OPEN) {
    sock.send(input.value);
    append(`You: ${input.value}`, "sent");
    input.value = "";
  }
};
</script>
</body>
</html>
"""


@app.get("/")
def index():
    return PAGE


@ws.on("connect")
def on_connect(ws):
    # The new connection is already registered, so it gets the notice too.
    ws.sync_broadcast(f"User {ws.id} joined the chat")


@ws.on("message")
def on_message(ws, msg):
    if isinstance(msg, str):
        return f"Echo: {msg}"
    return msg


@ws.on("close")
def on_close(ws):
    # By now the closed connection has left the endpoint: only the others hear it.
    ws.sync_broadcast(f"User {ws.id} left the chat")


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
