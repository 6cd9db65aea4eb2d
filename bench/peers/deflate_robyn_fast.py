"""robyn_fast with permessage-deflate in a chosen mode, for bench/compression.py:
an echo server (every message on /ws comes back) or a broadcast server (every
message goes to every connection, the sender included), with
``Config(compression=MODE)``. Port from ROBYN_PORT, like examples/.

    ROBYN_PORT=8080 python bench/peers/deflate_robyn_fast.py echo shared
    ROBYN_PORT=8080 python bench/peers/deflate_robyn_fast.py broadcast dedicated

MODE is ``shared`` (the default: no context takeover, one compressor per loop,
a broadcast compressed once), ``dedicated`` (contexts per connection) or
``off`` (offers declined). Everything else is Config's default: threshold
1024 bytes, zlib level 1, window 12 bits and memLevel 5 for dedicated contexts.
"""

import sys

from robyn_fast import Config, Robyn, WebSocket

KINDS = ("echo", "broadcast")
MODES = ("shared", "dedicated", "off")

if len(sys.argv) != 3 or sys.argv[1] not in KINDS or sys.argv[2] not in MODES:
    sys.exit(f"usage: ROBYN_PORT=PORT {sys.argv[0]} {{{','.join(KINDS)}}} {{{','.join(MODES)}}}")
KIND, MODE = sys.argv[1], sys.argv[2]
del sys.argv[1:3]  # app.start() reads the rest of the command line (Robyn's CLI options)

app = Robyn(__file__)
ws = WebSocket(app, "/ws", config=Config(compression=MODE))  # type: ignore[arg-type]

if KIND == "echo":
    @ws.on("message")
    def echo(ws, msg):
        return msg
else:
    @ws.on("message")
    def fan_out(ws, msg):
        ws.sync_broadcast(msg)


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
