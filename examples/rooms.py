"""Chat rooms addressed by a path parameter: /room/<room_id>?username=<name>.

Each connection joins the room named by its path (``ws.join(room_id)``); a
message goes to everyone in the same room (the sender included) and to no one
in any other room (``ws.sync_broadcast_to``). A closed connection leaves its
rooms by itself. Frames from the server are JSON:

    {"type": "welcome", "room": ..., "username": ..., "members": [...]}   to the newcomer
    {"type": "joined", "room": ..., "username": ...}                     to the rest of the room
    {"type": "message", "room": ..., "username": ..., "text": ...}       to the whole room
    {"type": "left", "room": ..., "username": ...}                       to the rest of the room

A missing username becomes "user-" + 8 hex digits of the connection id.
GET /rooms lists the rooms in use and their members; an empty room is dropped.

    python examples/rooms.py     # ws://127.0.0.1:8080/room/lobby?username=alice
"""

import json

from robyn_fast import Robyn, WebSocket

app = Robyn(__file__)
chat = WebSocket(app, "/room/<room_id>")

usernames: dict[str, str] = {}  # connection id -> username (event-loop thread only)


def _payload(**fields) -> str:
    return json.dumps(fields, ensure_ascii=False)


@chat.on("connect")
def on_connect(ws, room_id):
    username = ws.query_params.get("username", "") or f"user-{ws.id.replace('-', '')[:8]}"
    usernames[ws.id] = username
    ws.join(room_id)
    ws.sync_broadcast_to(room_id, _payload(type="joined", room=room_id, username=username), exclude_self=True)
    members = [usernames[i] for i in chat.room_members(room_id)]
    return {"type": "welcome", "room": room_id, "username": username, "members": members}


@chat.on("message")
def on_message(ws, msg, room_id):
    text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
    ws.sync_broadcast_to(room_id, _payload(type="message", room=room_id, username=usernames[ws.id], text=text))


@chat.on("close")
def on_close(ws, room_id):
    # The connection has already left the room: this reaches the others only.
    username = usernames.pop(ws.id, None)
    if username is not None:
        ws.sync_broadcast_to(room_id, _payload(type="left", room=room_id, username=username))



@app.get("/rooms")
def list_rooms():
    return {room: [usernames[i] for i in chat.room_members(room)] for room in chat.rooms()}


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
