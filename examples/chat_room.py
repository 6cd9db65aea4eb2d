"""A JSON chat room at /chat?username=<name>.

Every frame either way is a JSON object with a "type".

Server to client:

    {"type": "welcome", "username": ..., "id": ...}      to the newcomer, first
    {"type": "user_list", "users": [...]}                 to the newcomer, second (sorted, itself included)
    {"type": "user_joined", "username": ...}              to everyone else
    {"type": "message", "username": ..., "text": ...}     to everyone, the sender included
    {"type": "private_message", "from": ..., "to": ..., "text": ...}   to the addressee only
    {"type": "user_left", "username": ...}                to everyone still there
    {"type": "error", "message": ...}                     to the client whose input was refused

Client to server:

    {"type": "message", "text": ...}
    {"type": "private_message", "to": <username>, "text": ...}

Input that is not valid JSON, not an object, of an unknown type, without a
string "text", or a private message to an unknown user gets an "error" back and
the connection stays open.

Usernames: a missing or blank ``username`` becomes "guest-" followed by the
first 8 hex digits of the connection id, so a client never has to pick one.
Usernames identify users for private messages, so they are unique: a name
already in the room, or one longer than 32 characters, gets an "error" and the
connection is closed with 4000 (an application code, RFC 6455 §7.4.2) without
joining.

    python examples/chat_room.py     # ws://127.0.0.1:8080/chat?username=alice
"""

import json

from robyn_fast import Robyn, WebSocket

MAX_USERNAME = 32
CLOSE_REFUSED = 4000

app = Robyn(__file__)
ws = WebSocket(app, "/chat")

# Every handler runs on the server's event loop thread, so plain dicts suffice.
names_by_id: dict[str, str] = {}
ids_by_name: dict[str, str] = {}


def _dumps(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _error(message: str) -> dict:
    return {"type": "error", "message": message}


def _username(ws) -> str:
    name = (ws.query_params.get("username", "") or "").strip()
    return name or f"guest-{ws.id.replace('-', '')[:8]}"


@ws.on("connect")
def on_connect(ws):
    name = _username(ws)
    if len(name) > MAX_USERNAME:
        ws.close(CLOSE_REFUSED, "username too long")
        return _error(f"username longer than {MAX_USERNAME} characters")
    if name in ids_by_name:
        ws.close(CLOSE_REFUSED, "username taken")
        return _error(f"username {name!r} is taken")
    names_by_id[ws.id] = name
    ids_by_name[name] = ws.id
    ws.sync_send_to(ws.id, _dumps({"type": "welcome", "username": name, "id": ws.id}))
    joined = _dumps({"type": "user_joined", "username": name})
    for other in names_by_id:
        if other != ws.id:
            ws.sync_send_to(other, joined)
    return {"type": "user_list", "users": sorted(ids_by_name)}


@ws.on("message")
def on_message(ws, msg):
    sender = names_by_id.get(ws.id)
    if sender is None:      # refused at connect; its close is on the way
        return None
    if not isinstance(msg, str):
        return _error("binary frames are not accepted; send JSON text")
    try:
        data = json.loads(msg)
    except ValueError as exc:
        return _error(f"invalid JSON: {exc}")
    if not isinstance(data, dict):
        return _error("expected a JSON object")
    kind = data.get("type")
    text = data.get("text")
    if kind not in ("message", "private_message"):
        return _error(f"unknown message type {kind!r}")
    if not isinstance(text, str):
        return _error('"text" must be a string')
    if kind == "message":
        # One frame, built once, to every open connection.
        ws.sync_broadcast(_dumps({"type": "message", "username": sender, "text": text}))
        return None
    to = data.get("to")
    recipient = ids_by_name.get(to) if isinstance(to, str) else None
    if recipient is None:
        return _error(f"no user named {to!r}")
    ws.sync_send_to(recipient, _dumps({"type": "private_message", "from": sender, "to": to, "text": text}))
    return None


@ws.on("close")
def on_close(ws):
    name = names_by_id.pop(ws.id, None)
    if name is None:        # was refused at connect: never joined, nothing to announce
        return
    del ids_by_name[name]
    ws.sync_broadcast(_dumps({"type": "user_left", "username": name}))


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
