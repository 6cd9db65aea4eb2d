"""Rooms and private messages on Robyn's receive-loop WebSocket API, with
robyn_fast's additions to the websocket object (``join``, ``leave``,
``rooms``, ``broadcast_to``, ``send_to``), for tests/test_ws_receive_api.py
(run as `python -m robyn_fast tests/robyn_apps/receive_rooms.py --processes 2`,
or on two servers with `--broker redis://...`).

on_connect greets with the connection id. Commands, one per message:
"join <room>" / "leave <room>" answer "joined <room>" / "left <room> <True|False>";
"rooms" answers the sorted rooms, comma-separated; "room <room> <text>" sends
"<id>@<room>: <text>" to the room (the sync variant when the text starts with
"sync:"), "others <room> <text>" to the room but the sender; "@<id> <text>"
sends "private from <id>: <text>" to that connection, answering
"no such user <id>" when nobody owns the id; "quit" returns from the handler
(the connection closes with 1000); "who [timeout]" and "members <room> [timeout]"
answer the cluster-wide presence (``cluster_connections``,
``cluster_room_members``) as JSON: {"ids": {id: node tag}, "complete",
"missing", "silent"}; "stats" answers this process's broker counters as JSON;
anything else answers "echo <text>".
`GET /` answers a blank page for a browser to run scripts in."""

from robyn import Robyn, WebSocketDisconnect

app = Robyn(__file__)


@app.websocket("/rooms")
async def rooms(websocket):
    try:
        while True:
            msg = await websocket.receive_text()
            verb, _, rest = msg.partition(" ")
            if verb == "join":
                websocket.join(rest)
                await websocket.send_text(f"joined {rest}")
            elif verb == "leave":
                await websocket.send_text(f"left {rest} {websocket.leave(rest)}")
            elif verb == "rooms":
                await websocket.send_text(",".join(sorted(websocket.rooms)))
            elif verb in ("room", "others"):
                room, _, text = rest.partition(" ")
                line = f"{websocket.id}@{room}: {text}"
                if text.startswith("sync:"):
                    websocket.sync_broadcast_to(room, line)
                else:
                    await websocket.broadcast_to(room, line, exclude_self=verb == "others")
            elif verb in ("who", "members"):
                args = rest.split()
                if verb == "who":
                    found = await websocket.cluster_connections(*(float(a) for a in args))
                else:
                    found = await websocket.cluster_room_members(args[0], *(float(a) for a in args[1:]))
                await websocket.send_json({"ids": dict(found), "complete": found.complete,
                                           "missing": found.missing, "silent": sorted(found.silent)})
            elif verb == "stats":
                await websocket.send_json(app.stats()["broker"])
            elif verb == "quit":
                return
            elif verb.startswith("@"):
                if not await websocket.send_to(verb[1:], f"private from {websocket.id}: {rest}"):
                    await websocket.send_text(f"no such user {verb[1:]}")
            else:
                await websocket.send_text(f"echo {msg}")
    except WebSocketDisconnect:
        pass


@app.get("/")
def page():
    return "rooms"


@rooms.on_connect
def hello(websocket):
    return f"welcome {websocket.id}"


if __name__ == "__main__":
    app.start(port=8080)
