"""Smoke test of an installed robyn_fast wheel (tests/test_wheels.py runs it with a fresh venv's
Python inside a root with no C compiler): the compiled core is what is imported, from the venv,
and a server on 127.0.0.1 answers an HTTP route and echoes a WebSocket message. Stdlib only
besides robyn_fast: the venv holds nothing else. Prints one line per check; exits non-zero on
the first failure (an assertion's traceback)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import os
import sys
import sysconfig

import robyn_fast
from robyn_fast import Robyn, WebSocket
from robyn_fast.server import Server, new_event_loop

CORE_MODULES = ("codec", "connection", "protocol", "metrics")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def check_compiled_core() -> None:
    site = sysconfig.get_paths()["platlib"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in CORE_MODULES:
        module = importlib.import_module(f"robyn_fast._core.{name}")
        path = module.__file__ or ""
        assert path.startswith(site) and path.endswith(suffix), (name, path, site, suffix)
    assert robyn_fast.__file__ is not None and robyn_fast.__file__.startswith(site), robyn_fast.__file__
    print(f"compiled core: {', '.join(CORE_MODULES)} from {site} ({suffix})")


app = Robyn(__file__)
echo = WebSocket(app, "/echo")


@app.get("/hello/:name")
def hello(request):  # type: ignore[no-untyped-def]
    return f"hello {request.path_params['name']}"


@echo.on("message")
def on_message(ws, msg):  # type: ignore[no-untyped-def]
    return msg


async def http_get(port: int, path: str) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    body = await reader.read()
    writer.close()
    return head, body


async def ws_echo(port: int, text: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    assert b"\r\nsec-websocket-accept: " + accept.lower() + b"\r\n" in head.lower(), head
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    first, length = await reader.readexactly(2)
    assert first == 0x81 and length < 126, (first, length)  # FIN + text, unmasked from the server
    reply = (await reader.readexactly(length)).decode()
    writer.write(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))  # close 1000
    first, length = await reader.readexactly(2)
    assert first == 0x88, first
    await reader.readexactly(length)
    writer.close()
    return reply


async def serve_and_check(loop: asyncio.AbstractEventLoop) -> None:
    server = Server(app, loop)
    await server.start("127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        head, body = await http_get(port, "/hello/wheel")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert body == b"hello wheel", body
        print(f"HTTP: GET /hello/wheel -> 200 {body.decode()!r}")
        reply = await ws_echo(port, "echo from the wheel")
        assert reply == "echo from the wheel", reply
        print(f"WebSocket: /echo echoed {reply!r}")
    finally:
        await server.shutdown()


def main() -> None:
    check_compiled_core()
    loop = new_event_loop()
    try:
        print(f"event loop: {type(loop).__module__}")
        loop.run_until_complete(asyncio.wait_for(serve_and_check(loop), 60))
    finally:
        loop.close()
    print(f"smoke test passed: robyn_fast {robyn_fast.__version__} on Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
