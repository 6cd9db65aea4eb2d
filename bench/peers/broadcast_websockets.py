"""Broadcast server on websockets: every message goes to every connection
(the sender included) through websockets.broadcast().

    python bench/peers/broadcast_websockets.py PORT [--loop uvloop|asyncio] [--deflate]
"""

import asyncio

from websockets.asyncio.server import broadcast, serve

from _common import HOST, deflate, port, run

CLIENTS: set = set()


async def handler(ws) -> None:
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            broadcast(CLIENTS, msg)
    finally:
        CLIENTS.discard(ws)


async def main() -> None:
    async with serve(handler, HOST, port(), compression="deflate" if deflate() else None, backlog=1024):
        await asyncio.Event().wait()


if __name__ == "__main__":
    run(main)
