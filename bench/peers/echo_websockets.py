"""Echo server on websockets (its asyncio implementation).

    python bench/peers/echo_websockets.py PORT [--loop uvloop|asyncio] [--deflate]

wss:// with $PEER_TLS_CERT and $PEER_TLS_KEY (bench/peers/_common.py).
"""

import asyncio

from websockets.asyncio.server import serve

from _common import HOST, deflate, port, run, tls_context


async def echo(ws) -> None:
    async for msg in ws:
        await ws.send(msg)


async def main() -> None:
    async with serve(echo, HOST, port(), compression="deflate" if deflate() else None, max_size=64 * 1024 * 1024, backlog=1024,
                     ssl=tls_context()):
        await asyncio.Event().wait()


if __name__ == "__main__":
    run(main)
