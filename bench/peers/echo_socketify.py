"""Echo server on socketify (uWebSockets through CFFI; its own libuv loop).

    python bench/peers/echo_socketify.py PORT

wss:// (uWebSockets' SSLApp) with $PEER_TLS_CERT and $PEER_TLS_KEY (PEM files).
"""

import os

from socketify import App, AppListenOptions, AppOptions

from _common import HOST, port


def on_message(ws, message, opcode) -> None:
    ws.send(message, opcode)


def main() -> None:
    cert = os.environ.get("PEER_TLS_CERT")
    app = App(AppOptions(cert_file_name=cert, key_file_name=os.environ.get("PEER_TLS_KEY")) if cert else None)
    app.ws("/*", {
        "compression": 0,
        "max_payload_length": 64 * 1024 * 1024,
        "idle_timeout": 600,
        "message": on_message,
    })
    p = port()
    app.listen(AppListenOptions(port=p, host=HOST), lambda config: print(f"socketify echo on {HOST}:{p}", flush=True))
    app.run()


if __name__ == "__main__":
    main()
