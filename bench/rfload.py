"""rfload: robyn_fast's WebSocket load generator (one thread, epoll, 127.0.0.1 only).

    python bench/rfload.py MODE [options]        # build first: make bench-loadgen

MODE:
  echo     -c connections, -p messages in flight on each, -s payload bytes;
           msgs/s and round-trip latency percentiles.
  fanout   -c subscribers + 1 publisher (spread over the -u URLs); the server must send
           every message to every connection. Closed loop: the next message is
           published when every open subscriber got the previous one.
           Deliveries/s and publish -> last-subscriber latency.
  connect  -c slots, each repeating: TCP connect, handshake, Close(1000), wait
           for the server's Close and its TCP close. Cycles/s.
  idle     open -c connections (default 2000), keep them idle for --settle s,
           report the growth of the server's RSS per connection (--server-pid),
           then close them all with Close(1000). --exchange: each connection
           first sends one -s message and waits for its echo (an echo server).

--deflate offers permessage-deflate (RFC 7692) as browsers do; what the server
answers is used: its messages are inflated, ours are sent compressed. --json
makes the payloads JSON documents (records of a made-up feed) instead of "x"s:
256 of them, alike in structure and not in values, sent in turn.

Prints one JSON line. Exit status: 0 clean, 3 errors were counted, 1 no
connection opened, 2 bad usage. The run is bounded: set-up (--setup-timeout),
warm-up + duration, then at most ~0.5 s of closing (idle: -T); alarm() kills
the process if it is still alive 10 s after that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def parse_url(url: str) -> tuple[int, bytes]:
    """Port and request target of a ws:// URL on 127.0.0.1; anything else is refused."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// URLs are supported, not {parts.scheme!r}")
    if parts.hostname not in ALLOWED_HOSTS:
        raise ValueError(f"refusing host {parts.hostname!r}: rfload only connects to 127.0.0.1")
    if parts.port is None:
        raise ValueError("the URL needs an explicit port")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.port, target.encode("ascii")


def read_rss_kb(pids: tuple[int, ...]) -> int | None:
    """Sum of VmRSS (kB) of the given processes; None if none could be read."""
    total, seen = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        seen = True
                        break
        except (OSError, ValueError):
            continue
    return total if seen else None


_TICK = os.sysconf("SC_CLK_TCK")

BROWSER_OFFER = "permessage-deflate; client_max_window_bits"   # what Chrome and Firefox send
SEQ_OFFSET_JSON = 8                                           # after '{"seq":"'
JSON_DOCS = 256      # --json: distinct documents, sent in turn (message n carries document n % 256)


def json_payload(size: int, seed: int = 7) -> bytes:
    """A JSON document of exactly `size` bytes: a sequence-number field whose 16
    digits start at byte 8 (rfload writes them per message), then records of a
    made-up trading feed (ids, user names, symbols, prices, timestamps) as an
    application would broadcast; deterministic for a given size and seed. It
    compresses about 3.5x at zlib level 1 (2 KiB: 3.3x, 16 KiB: 3.9x)."""
    if size < 64:
        raise ValueError("a JSON payload needs at least 64 bytes")
    rnd = random.Random(seed)
    out = '{"seq":"0000000000000000","type":"update","items":['
    first = True
    while True:
        item = json.dumps({
            "id": 100000 + rnd.randrange(900000), "user": f"user_{rnd.randrange(10000):04d}",
            "symbol": rnd.choice(["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META"]),
            "price": round(rnd.uniform(10, 1000), 2), "qty": rnd.randrange(1, 500),
            "side": rnd.choice(["buy", "sell"]), "ts": 1733500000000 + rnd.randrange(10**6),
        }, separators=(",", ":"))
        nxt = out + ("" if first else ",") + item
        if len(nxt) + len('],"pad":""}') > size:
            break
        out, first = nxt, False
    words = ["fill", "order", "quote", "match", "cancel", "book", "depth", "level", "trade", "venue"]
    note = ""
    while len(note) < size:
        note += rnd.choice(words) + " "
    out += '],"pad":"' + note[:size - len(out) - len('],"pad":""}')] + '"}'
    data = out.encode()
    assert len(data) == size and data[SEQ_OFFSET_JSON:SEQ_OFFSET_JSON + 16] == b"0" * 16
    json.loads(data)
    return data


def read_cpu_s(pids: tuple[int, ...]) -> float | None:
    """User + system CPU seconds of the given processes (all their threads)."""
    total, seen = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total / _TICK if seen else None


def read_syscalls(pids: tuple[int, ...]) -> tuple[int, int] | None:
    """(read-like, write-like) syscalls made so far by the given processes
    (``syscr``/``syscw`` of /proc/PID/io: read/recv and write/send/writev)."""
    reads = writes = 0
    seen = False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io", encoding="ascii") as f:
                for line in f:
                    if line.startswith("syscr:"):
                        reads += int(line.split()[1])
                    elif line.startswith("syscw:"):
                        writes += int(line.split()[1])
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return (reads, writes) if seen else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rfload", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["echo", "fanout", "connect", "idle"])
    p.add_argument("-u", "--url", action="append", default=None,
                   help="ws://127.0.0.1:PORT/PATH (default ws://127.0.0.1:8080/ws); repeat it to spread the "
                        "connections over several servers: connection i dials URL i mod N (fanout: the "
                        "publisher is the last connection); every URL has the same path")
    p.add_argument("-c", "--conns", type=int, default=None,
                   help="connections / subscribers / slots (default 64; idle: 2000)")
    p.add_argument("-p", "--pipeline", type=int, default=1, help="echo: messages in flight per connection")
    p.add_argument("-s", "--size", type=int, default=32, help="payload bytes")
    p.add_argument("-b", "--binary", action="store_true", help="binary frames (default: text)")
    p.add_argument("-w", "--warmup", type=float, default=1.0, help="warm-up seconds, not measured")
    p.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("-T", "--timeout", type=float, default=2.0,
                   help="seconds allowed for a connect+handshake, a fanout round, a close (idle: the final close)")
    p.add_argument("--settle", type=float, default=1.0, help="idle: seconds between the last handshake and the RSS reading")
    p.add_argument("--setup-timeout", type=float, default=15.0, help="seconds allowed to open all connections")
    p.add_argument("--max-pending", type=int, default=64, help="connections opening at once")
    p.add_argument("--parser", choices=["codec", "raw"], default="codec",
                   help="read server frames with robyn_fast's FrameParser (codec) or a minimal header parser (raw)")
    p.add_argument("--json", action="store_true",
                   help=f"payloads are JSON documents of -s bytes (>= 64; compress ~3.5x) instead of 'x' * s: "
                        f"{JSON_DOCS} of them with the same structure and other values, sent in turn")
    p.add_argument("--deflate", action="store_true",
                   help=f"offer permessage-deflate ({BROWSER_OFFER!r}, as browsers do) and use what is agreed")
    p.add_argument("--deflate-offer", default=None, metavar="VALUE",
                   help="offer this Sec-WebSocket-Extensions value instead (implies --deflate)")
    p.add_argument("--inflate-every", type=int, default=1, metavar="N",
                   help="with --deflate: only every Nth connection (and the publisher) inflates and checks what "
                        "it gets; the others count compressed messages unread (the raw parser), so that "
                        "inflating a big fan-out does not make rfload the bottleneck")
    p.add_argument("--exchange", action="store_true",
                   help="idle: each connection sends one -s message and waits for its echo before the reading")
    p.add_argument("--server-pid", default="",
                   help="comma-separated pids of the server's processes: their CPU is sampled over the "
                        "measured window, and idle mode reads their VmRSS")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    urls = args.url or ["ws://127.0.0.1:8080/ws"]
    try:
        parsed = [parse_url(url) for url in urls]
        if len({target for _, target in parsed}) > 1:
            raise ValueError("every -u URL must have the same path and query")
    except ValueError as exc:
        print(f"rfload: {exc}", file=sys.stderr)
        return 2
    ports, target = [port for port, _ in parsed], parsed[0][1]
    if args.conns is None:
        args.conns = 2000 if args.mode == "idle" else 64
    pids = tuple(int(x) for x in args.server_pid.split(",") if x.strip())
    if args.mode == "idle" and not pids:
        print("rfload: idle mode needs --server-pid (the RSS it reports is the server's)", file=sys.stderr)
        return 2
    for name in ("warmup", "duration", "timeout", "settle", "setup_timeout"):
        if getattr(args, name) < 0:
            print(f"rfload: --{name.replace('_', '-')} must be >= 0", file=sys.stderr)
            return 2

    # Enough descriptors for the connections (the soft limit may be 1024).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))

    offer = args.deflate_offer if args.deflate_offer is not None else (BROWSER_OFFER if args.deflate else None)
    payloads = None
    if args.json:
        if args.binary:
            print("rfload: --json payloads are text", file=sys.stderr)
            return 2
        try:
            payloads = [json_payload(args.size, seed) for seed in range(JSON_DOCS)]
        except ValueError as exc:
            print(f"rfload: {exc}", file=sys.stderr)
            return 2

    sys.path.insert(0, str(HERE / "loadgen"))
    try:
        import _rfload
    except ImportError as exc:
        print(f"rfload: the compiled core is missing or stale ({exc}); run `make bench-loadgen`", file=sys.stderr)
        return 2
    except ValueError as exc:  # Cython's "size changed" check: built against another codec
        print(f"rfload: built against a different robyn_fast codec ({exc}); run `make bench-loadgen`",
              file=sys.stderr)
        return 2

    try:
        runner = _rfload.Runner(
            args.mode, ports, target, args.conns, pipeline=args.pipeline, size=args.size, binary=args.binary,
            warmup=args.warmup, duration=args.duration, timeout=args.timeout, settle=args.settle,
            setup_timeout=args.setup_timeout, max_pending=args.max_pending, parser=args.parser,
            server_pids=pids, rss_reader=read_rss_kb, cpu_reader=read_cpu_s, io_reader=read_syscalls,
            payloads=payloads, seq_offset=SEQ_OFFSET_JSON if payloads is not None else 0, deflate_offer=offer,
            inflate_every=args.inflate_every, exchange=args.exchange,
        )
    except ValueError as exc:
        print(f"rfload: {exc}", file=sys.stderr)
        return 2

    # Last resort: SIGALRM's default action ends the process even if the loop
    # never returns to Python.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    bound = args.setup_timeout + args.warmup + args.duration + args.settle + args.timeout + 10
    signal.alarm(int(math.ceil(bound)))
    t0 = time.monotonic()
    result = runner.run()
    signal.alarm(0)
    report = {
        "mode": args.mode,
        "url": urls[0] if len(urls) == 1 else urls,
        "conns": args.conns,
        "pipeline": args.pipeline if args.mode == "echo" else None,
        "size": args.size if args.mode in ("echo", "fanout") else None,
        "binary": args.binary,
        "json": args.json,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "wall_s": round(time.monotonic() - t0, 3),
        **result,
    }
    print(json.dumps(report, separators=(",", ":")))
    if not result.get("opened"):
        return 1
    return 3 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
