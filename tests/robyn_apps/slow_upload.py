"""A server for the pipelined-body test of tests/test_http_rules.py:
POST /upload?n=N answers "N:<body length>"; after GET /hold it waits until
GET /release before answering (the requests pipelined behind it wait in
their connection's queue)."""

import asyncio

from robyn_fast import Request, Robyn

app = Robyn(__file__)
gate = asyncio.Event()
gate.set()


@app.post("/upload")
async def upload(request: Request) -> str:
    await gate.wait()
    return f"{request.query_params.get('n')}:{len(request.raw_body)}"


@app.get("/hold")
def hold() -> str:
    gate.clear()
    return "holding"


@app.get("/release")
def release() -> str:
    gate.set()
    return "released"


if __name__ == "__main__":
    app.start()
