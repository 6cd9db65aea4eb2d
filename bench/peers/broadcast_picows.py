"""Broadcast server on picows: every message goes to every connection, the
sender included (the fan-out benchmark's server).

    python bench/peers/broadcast_picows.py PORT [--loop uvloop|asyncio]
"""

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from _common import HOST, port, run

CLIENTS: set[WSTransport] = set()


class Broadcast(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t is WSMsgType.TEXT or t is WSMsgType.BINARY:
            payload = frame.get_payload_as_bytes()  # the memoryview dies with the callback
            for client in CLIENTS:
                client.send(t, payload)
        elif t is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main() -> None:
    server = await ws_create_server(lambda _request: Broadcast(), HOST, port())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run(main)
