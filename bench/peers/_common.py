"""Shared by the peer servers: port and event loop from the command line.

    python PEER.py PORT [--loop uvloop|asyncio] [--deflate]     (PORT may also come from $PORT)

The echo peers serve wss:// when $PEER_TLS_CERT (and $PEER_TLS_KEY) name PEM
files (the TLS rows of bench/run.py).

Every peer listens on 127.0.0.1 only and serves its WebSocket on /ws (most
accept any path). The asyncio-based peers run on uvloop by default, like
robyn_fast, so that the comparison is between WebSocket layers, not loops.
"""

from __future__ import annotations

import asyncio
import os
import sys

HOST = "127.0.0.1"


def port() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    value = args[0] if args else os.environ.get("PORT", "")
    if not value.isdigit():
        sys.exit(f"usage: {os.path.basename(sys.argv[0])} PORT [--loop uvloop|asyncio] [--deflate]  (or set $PORT)")
    return int(value)


def robyn_argv() -> tuple[str, int]:
    """For the Robyn peers (0.77, 0.88): Robyn reads ROBYN_HOST/ROBYN_PORT and
    parses the command line itself (``--processes``...), so the port goes to
    the environment and the command line is cut to the script's name.
    Returns (host, port)."""
    number = port()
    os.environ["ROBYN_PORT"] = str(number)
    os.environ["ROBYN_HOST"] = HOST
    del sys.argv[1:]
    return HOST, number


def deflate() -> bool:
    """``--deflate``: answer permessage-deflate offers (RFC 7692) with the
    library's own defaults; without it compression is off."""
    return "--deflate" in sys.argv[1:]


def tls_context():
    """``$PEER_TLS_CERT`` and ``$PEER_TLS_KEY`` (PEM files, the TLS rows of bench/run.py): a
    server-side ssl.SSLContext to serve wss with; None (plain TCP) when unset."""
    cert = os.environ.get("PEER_TLS_CERT")
    if not cert:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, os.environ.get("PEER_TLS_KEY") or None)
    return context


async def serve_aiohttp(app) -> None:
    """Serve an ``aiohttp.web.Application`` on HOST:port() until stopped: no access
    log, backlog 1024, wss/https with ``tls_context()``."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, HOST, port(), backlog=1024, ssl_context=tls_context()).start()
    await asyncio.Event().wait()


def loop_name() -> str:
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a.startswith("--loop="):
            return a.split("=", 1)[1]
        if a == "--loop" and i + 1 < len(argv):
            return argv[i + 1]
    return os.environ.get("PEER_LOOP", "uvloop")


def run(main) -> None:
    """Run the coroutine function ``main`` on the chosen loop until SIGTERM/SIGINT."""
    if loop_name() == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    try:
        runner(main())
    except KeyboardInterrupt:
        pass
