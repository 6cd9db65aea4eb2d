"""Echo server on aiohttp.web: every message on /ws comes back.

    python bench/peers/echo_aiohttp.py PORT [--loop uvloop|asyncio] [--deflate]
"""

import asyncio

from aiohttp import WSMsgType, web

from _common import HOST, deflate, port, run, tls_context


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
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, HOST, port(), backlog=1024, ssl_context=tls_context()).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    run(main)
