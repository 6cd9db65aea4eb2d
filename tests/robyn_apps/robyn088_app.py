"""A Robyn 0.80+ app (written for Robyn 0.88, ``from robyn import ...``):
sub-routers without a file, nested ones, typed ("easy access") handler
parameters, route status codes and OpenAPI arguments, TypedDict bodies,
before-request middlewares answering with plain values.
Run by tests/test_robyn088.py through ``python -m robyn_fast``."""

import enum
from typing import TypedDict

from robyn import Request, Robyn, SubRouter, WebSocketDisconnect
from robyn.robyn import Response

app = Robyn(__file__)

api = SubRouter("/api", tags=["api"])  # Robyn 0.80+: the prefix alone, positional
v1 = SubRouter(prefix="/v1")
legacy = SubRouter(__file__, prefix="/legacy")  # the older form still works


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@v1.before_request()
def v1_mark(request: Request):
    request.headers.set("x-v1", "yes")
    return request


@v1.after_request("/items/:id")
def v1_after(response: Response):
    response.headers.set("x-v1-after", "yes")
    return response


@v1.get("/items/:id", openapi_tags=["items"])
def item(request: Request, id: int, q: str, page: int = 1, color: Color = Color.RED):
    """One item"""
    return {"id": id, "q": q, "page": page, "color": color.value, "v1": request.headers.get("x-v1")}


@v1.get("/tags")
def tags(tag: list[str], limit: int | None = None, exact: bool = False):
    return {"tags": tag, "limit": limit, "exact": exact}


def added():
    return {"added": True}


v1.add_route("GET", "/added", added)
v1.inject(V1_DEP="v1 dependency")


@v1.get("/dep")
def dep(router_dependencies):
    return router_dependencies["V1_DEP"]


@v1.websocket("/ws")
async def v1_ws(websocket, room: str = "lobby"):
    try:
        while True:
            msg = await websocket.receive_text()
            await websocket.send_text(f"{room}: {msg}")
    except WebSocketDisconnect:
        pass


@v1_ws.on_connect
def v1_ws_connect(websocket):
    return "v1 hello"


@api.get("/top")
def top(request: Request):
    return request.headers.get("x-v1") or "not v1"


api.include_router(v1)


@legacy.get("/ping")
def legacy_ping():
    return "pong"


@app.get("/unknown")
def unknown(vishnu):  # Robyn 0.80+: a required str query parameter
    return vishnu


@app.post("/created", status_code=201, openapi_tags=["extras"])
def created():
    return {"created": True}


@app.get("/deprecated", deprecated=True, responses={404: "No such thing"})
def deprecated_route():
    return "old"


@app.get("/hidden", include_in_schema=False)
def hidden():
    return "hidden"


class Pair(TypedDict):
    name: str
    value: int


@app.post("/pair")
def pair(data: Pair):
    return {"name": data["name"], "doubled": data["value"] * 2}


@app.before_request("/blocked")
def blocked(request: Request):
    return ("denied", {"x-why": "blocked"}, 403)


@app.get("/blocked")
def never():
    return "never"


@app.after_request("/blocked")
def after_blocked(response: Response):
    response.headers.set("x-after", "ran")
    return response


app.include_router(api)
app.include_router(legacy)

if __name__ == "__main__":
    app.start(port=8080)
