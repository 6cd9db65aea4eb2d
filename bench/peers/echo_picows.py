"""Echo server on picows: every data frame comes back as it was (frame by frame).

    python bench/peers/echo_picows.py PORT [--loop uvloop|asyncio]

picows serves through aiofastnet's transports when that package is installed
(its default); PICOWS_AIOFASTNET=0 makes it use the event loop's own (bench/tls.py).
"""

import asyncio
import os

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from _common import HOST, port, run, tls_context


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t is WSMsgType.TEXT or t is WSMsgType.BINARY or t is WSMsgType.CONTINUATION:
            transport.send(t, frame.get_payload_as_memoryview(), frame.fin)
        elif t is WSMsgType.CLOSE:
            # Echo the code, then close TCP first, as a server should (RFC 6455 §7.1.1).
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main() -> None:
    server = await ws_create_server(lambda _request: Echo(), HOST, port(), max_frame_size=64 * 1024 * 1024,
                                    ssl=tls_context(),
                                    **({"use_aiofastnet": False} if os.environ.get("PICOWS_AIOFASTNET") == "0" else {}))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run(main)
