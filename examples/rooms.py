"""Chat rooms addressed by a path parameter: /room/<room_id>?username=<name>.

A text message goes to everyone in the same room (the sender included) and to
no one in any other room. Frames from the server are JSON:

    {"type": "welcome", "room": ..., "username": ..., "members": [...]}   to the newcomer
    {"type": "joined", "room": ..., "username": ...}                     to the rest of the room
    {"type": "message", "room": ..., "username": ..., "text": ...}       to the whole room
    {"type": "left", "room": ..., "username": ...}                       to the rest of the room

A missing username becomes "user-" + 8 hex digits of the connection id.
GET /rooms lists the rooms in use and their members; an empty room is dropped.

The framework has no rooms yet, so this example keeps its own table
(room -> connection ids) and sends to each member with ``sync_send_to``.

    python examples/rooms.py     # ws://127.0.0.1:8080/room/lobby?username=alice
"""

import json

from robyn_fast import Robyn, WebSocket

app = Robyn(__file__)
ws = WebSocket(app, "/room/<room_id>")

# room id -> {connection id: username}, insertion-ordered. Event-loop thread only.
rooms: dict[str, dict[str, str]] = {}


def _send_room(ws, room_id: str, payload: dict, exclude: str | None = None) -> None:
    data = json.dumps(payload, ensure_ascii=False)
    for conn_id in list(rooms.get(room_id, ())):
        if conn_id != exclude:
            ws.sync_send_to(conn_id, data)


@ws.on("connect")
def on_connect(ws):
    room_id = ws.path_params["room_id"]
    username = ws.query_params.get("username", "") or f"user-{ws.id.replace('-', '')[:8]}"
    members = rooms.setdefault(room_id, {})
    members[ws.id] = username
    _send_room(ws, room_id, {"type": "joined", "room": room_id, "username": username}, exclude=ws.id)
    return {"type": "welcome", "room": room_id, "username": username, "members": list(members.values())}


@ws.on("message")
def on_message(ws, msg):
    room_id = ws.path_params["room_id"]
    username = rooms.get(room_id, {}).get(ws.id)
    if username is None:
        return None
    text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
    _send_room(ws, room_id, {"type": "message", "room": room_id, "username": username, "text": text})
    return None


@ws.on("close")
def on_close(ws):
    room_id = ws.path_params["room_id"]
    members = rooms.get(room_id)
    if members is None or ws.id not in members:
        return
    username = members.pop(ws.id)
    if not members:
        del rooms[room_id]
        return
    _send_room(ws, room_id, {"type": "left", "room": room_id, "username": username})


@app.get("/rooms")
def list_rooms():
    return {room_id: list(members.values()) for room_id, members in rooms.items()}


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
