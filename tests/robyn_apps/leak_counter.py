"""A server for the leak-counter tests (tests/test_memory_release.py), in the
spirit of uvloop's debug build that counts live handles: the cyclic garbage
collector is disabled before anything else, so whatever a closed connection
leaves in a reference cycle stays alive, and GET /alive counts the live
objects by type (through gc.get_objects(), which collects nothing) together
with how many collections ever ran, after giving free heap pages back to the
kernel (malloc_trim), so that RSS counts what is referenced; GET /state
reports the counts below, the live connections and the read/reassembly
buffer bytes they hold.

/ws (max_message_size 1 MiB, compression "dedicated": a client that keeps
its context gets a compressor and a decompressor of its own) counts connects
and closes; its close handler keeps the last closed connector, as user code
may, and GET /probe uses that connector as handlers would once its
connection is closed (each answer is what the closed behaviour documents),
then lets it go."""

import ctypes
import gc

gc.disable()

from robyn_fast import Config, Robyn, WebSocket  # noqa: E402  (after gc.disable(), on purpose)

_libc = ctypes.CDLL("libc.so.6")
app = Robyn(__file__)
ws = WebSocket(app, "/ws", config=Config(max_message_size=1 << 20, compression="dedicated", access_log=True))
counts = {"connects": 0, "closes": 0}
kept = []            # the last closed connector, as a user's close handler may keep it

# The types of the connection layer the collector tracks (Inflater and Deflater
# hold no Python objects, so it does not see them; they die with their owner).
TYPES = ("BufferedConnection", "Connection", "FrameParser", "_ReadWindow", "WebSocketConnector", "HttpProtocol",
         "HttpRequestParser")


@ws.on("connect")
def on_connect(conn):
    counts["connects"] += 1


@ws.on("message")
def on_message(conn, msg):
    return msg


@ws.on("close")
async def on_close(conn):
    counts["closes"] += 1
    kept[:] = [conn]


@app.get("/state")
def state():
    return {
        **counts,
        "live": app.server.live_connections,
        "buffered": sum(c.read_buffer_size for c in app.server.hub(ws).connections.values()),
    }


@app.get("/alive")
def alive():
    # Free heap pages go back to the kernel first, so that RSS shows what is
    # still referenced, not what glibc keeps for reuse (a round's buffers land
    # on the heap or in mmaps depending on its adaptive threshold).
    _libc.malloc_trim(0)
    found = dict.fromkeys(TYPES, 0)
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        found[name] = found.get(name, 0) + 1
    return {
        "alive": found,
        "gc_enabled": gc.isenabled(),
        "collections": sum(stats["collections"] for stats in gc.get_stats()),
    }


@app.get("/probe")
def probe():
    if not kept:
        return {"kept": False}
    conn = kept.pop()
    return {
        "kept": True,
        "closed": conn.closed,
        "close": conn.close(1000, "again"),
        "join": conn.join("room"),
        "leave": conn.leave("room"),
        "rooms": sorted(conn.rooms),
        "send_to_self": conn.sync_send_to(conn.id, "hello"),
        "compression": conn.compression is not None,
        "id": conn.id,
    }


if __name__ == "__main__":
    app.start()
