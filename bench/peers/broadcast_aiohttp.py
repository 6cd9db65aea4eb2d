"""Broadcast server on aiohttp.web: every message goes to every connection,
the sender included.

    python bench/peers/broadcast_aiohttp.py PORT [--loop uvloop|asyncio] [--deflate]
"""

from aiohttp import WSMsgType, web

from _common import deflate, run, serve_aiohttp

CLIENTS: set[web.WebSocketResponse] = set()


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=deflate())
    await ws.prepare(request)
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                for client in list(CLIENTS):
                    if not client.closed:
                        await client.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                for client in list(CLIENTS):
                    if not client.closed:
                        await client.send_bytes(msg.data)
    finally:
        CLIENTS.discard(ws)
    return ws


async def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    await serve_aiohttp(app)


if __name__ == "__main__":
    run(main)
