"""Echo server on aiohttp.web: every message on /ws comes back.

    python bench/peers/echo_aiohttp.py PORT [--loop uvloop|asyncio] [--deflate]
"""

from aiohttp import WSMsgType, web

from _common import deflate, run, serve_aiohttp


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, compress=deflate())
    await ws.prepare(request)
    async for msg in ws:  # aiohttp answers the client's Close itself (autoclose)
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    await serve_aiohttp(app)


if __name__ == "__main__":
    run(main)
