"""Server cost of a fixed number of round trips: CPU and instructions per message.

Throughput on a shared machine says little; what a server spends per message does. This
starts a server of bench/run.py (``taskset -c --server-core``), opens ``--conns``
WebSocket connections and makes ``--count`` round trips: one ``--size`` message on every
connection, then every echo back, and again (``--conns 1``: one message on an idle
connection each time, the wake-up path). It reports, per round trip and message:

* the server's CPU time (utime + stime of its processes, /proc) over the measured
  round trips, after ``--warmup`` ones;
* with ``--callgrind`` (robyn_fast and other Python servers): instructions, counted by
  running the server under ``valgrind --tool=callgrind`` twice, with ``warmup + count``
  and ``warmup + 3 x count`` round trips, and taking the difference (start-up and
  shutdown cancel out);
* the client's round-trip p50/p99 (noisy: a Python client on a shared machine).

    python bench/wake_count.py                                   # 1 conn, 256 B, robyn_fast
    python bench/wake_count.py --servers robyn_fast,picows,socketify
    python bench/wake_count.py --conns 4 --size 65536 --binary --count 2000
    python bench/wake_count.py --callgrind --count 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (bench/run.py: the servers and how they start)

from robyn_fast._core.codec import OP_PING, FrameParser, build_binary, build_close, build_pong, build_text  # noqa: E402

MASK = b"\x37\xfa\x21\x3d"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of `pids` so far."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return user / _TICK, system / _TICK


def open_ws(port: int) -> socket.socket:
    import websocket  # websocket-client: the opening handshake, then the raw socket

    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
    sock = ws.sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Client:
    def __init__(self, port: int, conns: int, size: int, binary: bool) -> None:
        self.socks = [open_ws(port) for _ in range(conns)]
        self.parsers = [FrameParser(None, client=True) for _ in range(conns)]
        self.frame = build_binary(b"x" * size, mask=MASK) if binary else build_text("x" * size, mask=MASK)
        self.size = size

    def round_trip(self) -> None:
        for s in self.socks:
            s.sendall(self.frame)
        for s, parser in zip(self.socks, self.parsers):
            echoed = False
            while not echoed:
                for m in parser.feed(s.recv(262144)):
                    if m.opcode == OP_PING:     # the server's keepalive (a slow run under valgrind)
                        s.sendall(build_pong(m.data, mask=MASK))
                    elif echoed or len(m.data) != self.size:
                        raise SystemExit(f"unexpected reply: opcode {m.opcode}, {len(m.data)} bytes")
                    else:
                        echoed = True

    def run(self, count: int) -> list[int]:
        lat = []
        clock = time.perf_counter_ns
        for _ in range(count):
            t0 = clock()
            self.round_trip()
            lat.append(clock() - t0)
        return lat

    def close(self) -> None:
        for s in self.socks:
            try:
                s.sendall(build_close(1000, mask=MASK))
                s.settimeout(1.0)
                while s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()


def pct(values: list[int], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] / 1000.0


def measure(server: run.Server, a: argparse.Namespace, ports: run.Ports, count: int,
            wrapper: Path | None = None, start_timeout: float = 30.0) -> dict:
    if wrapper is not None:
        server = dataclasses.replace(server, python=wrapper)
    port = ports.next()
    log = Path(tempfile.gettempdir()) / f"wake_count-{server.name}-{port}.log"
    r = run.start_server(server, "echo", port, a.server_core, a.loop, log, start_timeout)
    if isinstance(r, str):
        raise SystemExit(f"{server.name}: {r} (log: {log})")
    try:
        client = Client(port, a.conns, a.size, a.binary)
        client.run(a.warmup)
        pids = run.group_pids(r.proc.pid)
        user0, sys0 = cpu_seconds(pids)
        t0 = time.monotonic()
        lat = client.run(count)
        elapsed = time.monotonic() - t0
        user1, sys1 = cpu_seconds(pids)
        user, system = user1 - user0, sys1 - sys0
        client.close()
    finally:
        run.stop_server(r, grace=120.0 if wrapper is not None else 5.0)
    msgs = count * a.conns
    return {"server": server.name, "round_trips": count, "messages": msgs,
            "server_cpu_us_per_msg": round((user + system) * 1e6 / msgs, 2),
            "server_user_us_per_msg": round(user * 1e6 / msgs, 2),
            "server_cpu_share": round((user + system) / elapsed, 3),
            "p50_us_noisy": round(pct(lat, 0.5), 1), "p99_us_noisy": round(pct(lat, 0.99), 1)}


def callgrind_wrapper(python: Path, outdir: Path) -> Path:
    """A script that runs ``python`` under callgrind, its output files in ``outdir``."""
    wrapper = outdir.parent / f"{outdir.name}.sh"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --trace-children=no "
                       f"--callgrind-out-file={outdir}/cg.%p {python} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def callgrind_total(outdir: Path) -> int:
    total = 0
    for f in outdir.iterdir():
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                total += int(m.group(1))
                break
    return total


def instructions(server: run.Server, a: argparse.Namespace, ports: run.Ports) -> float:
    totals = []
    for reps in (1, 3):
        outdir = Path(tempfile.mkdtemp(prefix="wake_cg-"))
        wrapper = callgrind_wrapper(server.python, outdir)
        measure(server, a, ports, a.count * reps, wrapper=wrapper, start_timeout=300.0)
        totals.append(callgrind_total(outdir))
    return (totals[1] - totals[0]) / (2 * a.count * a.conns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="robyn_fast", help="comma-separated names from bench/run.py")
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--binary", action="store_true")
    p.add_argument("--count", type=int, default=20000, help="measured round trips")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--server-core", default="0")
    p.add_argument("--client-core", default="1")
    p.add_argument("--port-base", type=int, default=19400)
    p.add_argument("--callgrind", action="store_true", help="instructions per message too (slow)")
    a = p.parse_args(argv)
    if a.conns < 1 or a.count < 1 or a.size < 0:
        p.error("--conns and --count must be >= 1, --size >= 0")
    os.sched_setaffinity(0, {int(c) for c in a.client_core.split(",")})
    known = {s.name: s for s in run.all_servers()}
    ports = run.Ports(a.port_base)
    for name in a.servers.split(","):
        if name not in known:
            p.error(f"unknown server {name!r}: one of {', '.join(known)}")
        row = measure(known[name], a, ports, a.count)
        if a.callgrind:
            row["instructions_per_msg"] = round(instructions(known[name], a, ports))
        row.update(loop=a.loop, conns=a.conns, size=a.size, binary=a.binary)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
