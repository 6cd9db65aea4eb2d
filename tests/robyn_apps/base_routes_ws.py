"""A Robyn app, written for Robyn's legacy WebSocket API (Robyn <= 0.77), that
robyn_fast must run without a line changed:

    python -m robyn_fast tests/robyn_apps/base_routes_ws.py [--processes 2 --dev ...]

It recreates the WebSocket endpoints of Robyn's own integration tests
(``integration_tests/base_routes.py`` of the legacy era, exercised by
``integration_tests/test_web_sockets.py``):

/web_socket                 "Hello world, from ws" on connect; each message moves a
                            per-connection state 0 -> 1 -> 2 -> 3 -> 0:
                            0: broadcast "This is a broadcast message", send
                               "This is a message to self" to itself, reply "Whaaat??"
                            1: reply "Whooo??"
                            2: broadcast the query parameter ``one``, send ``two``
                               to itself, reply "*chika* *chika* Slim Shady."
                            3: close the connection (1000)
/web_socket_json            same greeting; replies JSON {"ws_id", "resp", "msg"}
                            cycling through the three replies above
/web_socket_di              dependencies injected on the endpoint: the connect
                            handler greets with both, each message is answered
                            with both, the close handler records the global one
/web_socket_empty_returns   every handler returns nothing: nothing is sent
/web_socket_raise           a handler that raises on "boom" (not in Robyn's tests:
                            Robyn's process died of it; the connection must live on)

HTTP: GET /sync/queries (the query string as JSON), GET /web_socket_di/closes
(what the DI close handler saw), GET /argv (this script's sys.argv).
"""

import sys
from collections import defaultdict

from robyn import Request, Robyn, WebSocket, WebSocketConnector, html, jsonify
from robyn.robyn import QueryParams
from robyn.ws import WebSocket as LegacyWebSocket

app = Robyn(__file__)
websocket = WebSocket(app, "/web_socket")
# Creating a WebSocket for JSON replies, while /web_socket stays "raw".
websocket_json = WebSocket(app, "/web_socket_json")
websocket_di = LegacyWebSocket(app, "/web_socket_di")
websocket_empty = WebSocket(app, "/web_socket_empty_returns")
websocket_raise = WebSocket(app, "/web_socket_raise")

websocket_di.inject_global(GLOBAL_DEPENDENCY="GLOBAL DEPENDENCY")
websocket_di.inject(ROUTER_DEPENDENCY="ROUTER DEPENDENCY")

# Per connection id, so several test runs against one server do not mix.
websocket_state = defaultdict(int)
di_closes = []

REPLIES = ("Whaaat??", "Whooo??", "*chika* *chika* Slim Shady.")


# ===== /web_socket =====


@websocket.on("connect")
def connect():
    return "Hello world, from ws"


@websocket.on("message")
async def message(ws: WebSocketConnector, msg: str, global_dependencies) -> str:
    websocket_id = ws.id
    state = websocket_state[websocket_id]
    websocket_state[websocket_id] = (state + 1) % 4
    if state == 0:
        await ws.async_broadcast("This is a broadcast message")
        ws.sync_send_to(websocket_id, "This is a message to self")
        return REPLIES[0]
    if state == 1:
        return REPLIES[1]
    if state == 2:
        params: QueryParams = ws.query_params
        await ws.async_broadcast(params.get("one"))
        ws.sync_send_to(websocket_id, params.get("two"))
        return REPLIES[2]
    ws.close()
    return None


@websocket.on("close")
def close():
    return "GoodBye world, from ws"


# ===== /web_socket_json =====


@websocket_json.on("connect")
def jsonws_connect():
    return "Hello world, from ws"


@websocket_json.on("message")
async def jsonws_message(ws, msg: str) -> str:
    websocket_id = ws.id
    state = websocket_state[websocket_id]
    websocket_state[websocket_id] = (state + 1) % 3
    return jsonify({"ws_id": websocket_id, "resp": REPLIES[state], "msg": msg})


@websocket_json.on("close")
def jsonws_close():
    return "GoodBye world, from ws"


# ===== /web_socket_di =====


@websocket_di.on("connect")
async def di_message_connect(global_dependencies, router_dependencies):
    return global_dependencies["GLOBAL_DEPENDENCY"] + " " + router_dependencies["ROUTER_DEPENDENCY"]


@websocket_di.on("message")
async def di_message(ws, msg, global_dependencies, router_dependencies):
    return f"handler: {global_dependencies['GLOBAL_DEPENDENCY']} {router_dependencies['ROUTER_DEPENDENCY']}"


@websocket_di.on("close")
def di_message_close(global_dependencies):
    di_closes.append(global_dependencies.get("GLOBAL_DEPENDENCY", "MISSING GLOBAL"))


@app.get("/web_socket_di/closes")
def di_closes_seen():
    return jsonify(di_closes)


# ===== /web_socket_empty_returns =====


@websocket_empty.on("connect")
async def empty_connect():
    pass


@websocket_empty.on("message")
def empty_message(ws, msg):
    return None


@websocket_empty.on("close")
async def empty_close():
    return None


# ===== /web_socket_raise =====


@websocket_raise.on("message")
def raise_message(ws, msg):
    if msg == "boom":
        raise ValueError("boom, as asked")
    return msg


# ===== HTTP =====


@app.get("/sync/queries")
def sync_queries(request: Request):
    return jsonify(request.query_params.to_dict())


@app.get("/sync/html")
def sync_html():
    return html("<h1>Hello, world! \u00e9</h1>")


@app.get("/argv")
def argv():
    return jsonify(sys.argv)


if __name__ == "__main__":
    app.start(port=8080, host="127.0.0.1")
