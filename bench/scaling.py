"""Scale-out figure (issue 23): N nodes over one Redis and over a Redis
Cluster, R rooms, against the old ``<prefix>:all`` design.

    .venv/bin/python bench/scaleout.py --scaling                        # defaults below (~3 minutes)
    .venv/bin/python bench/scaleout.py --scaling --nodes 1,2,4,8 --rooms 16,256 --messages 5000 \\
        --backends redis,cluster,base --baseline /work/base22

Each node is its own process running the broker as a server's worker runs
it (a ``RedisBroker``/``RedisClusterBroker``; ``base``: the checkout given
with ``--baseline``, whose broker subscribes every node to ``:all``).
Its "clients" are room members: room ``r`` has members on ``--members``
nodes (``r % N`` and the next ones), and every node publishes
``--messages`` room messages, round-robin over the rooms it has members in
(a member speaks), at ``--rate`` messages/s. A message counts as delivered
on every *other* node with a member in its room (the sender's own members
are served locally, without the broker). What a delivery costs beyond the
broker (the WebSocket frame written to each member) is the same in every
design and does not depend on N, so it is left out: the figure is the
broker's share.

Per run it reports each node's CPU time (utime+stime of the process over
the traffic) per delivered message (mean over nodes), the messages each
node had to read (deliveries plus, with ``:all``, every other room message
it decodes and throws away), and Redis's CPU (summed over the cluster's
masters) per published message. Goal: per-node CPU per delivered message
flat as N grows for ``redis``/``cluster``; with ``base`` it grows with N.
Writes ``bench/results/scaling-<date>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENDPOINT = "/rooms"
ROOM_KIND = 2  # robyn_fast.broker.ROOM (the same in the baseline)


def members_of(room: int, nodes: int, members: int) -> list[int]:
    return sorted({(room + k) % nodes for k in range(min(members, nodes))})


# -- one node (a subprocess) ------------------------------------------------------------------------------


async def node_main(a: argparse.Namespace) -> dict[str, Any]:
    from robyn_fast.broker import ROOM
    from robyn_fast.broker.resp import parse_url

    address = parse_url(a.url)
    tag = a.index + 1
    if getattr(address, "mode", "single") == "cluster":  # (the baseline's addresses have no mode)
        from robyn_fast.broker.cluster import RedisClusterBroker
        broker: Any = RedisClusterBroker(address, tag)
    else:
        from robyn_fast.broker.redis import RedisBroker
        broker = RedisBroker(address, tag)
    mine = [r for r in range(a.rooms) if a.index in members_of(r, a.nodes, a.members)]
    mine_set = {f"room{r}" for r in mine}
    # Expected deliveries: every message another node sends to a room we have a member in.
    expected = 0
    for other in range(a.nodes):
        if other == a.index:
            continue
        theirs = [r for r in range(a.rooms) if other in members_of(r, a.nodes, a.members)]
        if theirs:
            expected += sum(1 for i in range(a.messages) if f"room{theirs[i % len(theirs)]}" in mine_set)
    counts = {"delivered": 0, "read": 0}
    done = asyncio.Event()

    def deliver(kind: int, endpoint: str, key: Any, frame: bytes) -> None:
        counts["read"] += 1
        if kind == ROOM and key in mine_set:
            counts["delivered"] += 1
            if counts["delivered"] >= expected:
                done.set()

    loop = asyncio.get_running_loop()
    await broker.start(loop, deliver)
    if hasattr(broker, "watch"):  # per-room routing (the :all design has none: every node gets everything)
        broker.watch(ENDPOINT, None)
        for r in mine:
            broker.watch(ENDPOINT, f"room{r}")
    assert await broker.wait_connected(15), "not connected"
    await asyncio.sleep(1.0)  # subscriptions made everywhere
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    frame = b"\x81\x20" + b"x" * 32
    step = 1.0 / a.rate
    for i in range(a.messages):
        if mine:
            broker.publish(ROOM, ENDPOINT, f"room{mine[i % len(mine)]}", frame)
        if i % 50 == 49:
            await asyncio.sleep(max(0.0, started + (i + 1) * step - time.monotonic()))
    if expected:
        try:
            await asyncio.wait_for(done.wait(), a.timeout)
        except asyncio.TimeoutError:
            pass
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    await broker.close()
    return {"node": a.index, "cpu_s": cpu, "expected": expected, **counts,
            "took_s": time.monotonic() - started}


# -- Redis and a Redis Cluster ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_port() -> int:
    while True:  # a cluster node also listens on port + 10000
        port = free_port()
        if port < 55535:
            return port


class Redises:
    """One redis-server (``masters`` 0) or a cluster of ``masters`` masters
    (no replicas), private ports, no persistence."""

    def __init__(self, masters: int = 0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("scaling: redis-server is not installed (make redis)")
        self.dir = tempfile.mkdtemp(prefix="rf-bench-scaling-")
        self.ports = [cluster_port() if masters else free_port() for _ in range(max(1, masters))]
        self.procs = []
        for port in self.ports:
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", f"{self.dir}/nodes-{port}.conf"] \
                if masters else []
            self.procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.dir, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        for port in self.ports:
            self._wait(lambda: self.command(port, "PING") == b"+PONG")
        if masters:
            cli = shutil.which("redis-cli")
            if cli is None:
                raise SystemExit("scaling: redis-cli is not installed")
            subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True,
                           timeout=60)
            self._wait(lambda: all(b"cluster_state:ok" in self.command(p, "CLUSTER", "INFO")
                                   for p in self.ports))
        self.url = ("redis+cluster://" if masters else "redis://") + f"127.0.0.1:{self.ports[0]}"

    @staticmethod
    def command(port: int, *args: str) -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                c.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x.encode()) for x in args))
                time.sleep(0.02)
                return c.recv(65536).strip()
        except OSError:
            return b""

    @staticmethod
    def _wait(ok: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise SystemExit("scaling: Redis did not come up")
            time.sleep(0.1)

    def cpu(self) -> float:
        total = 0
        for proc in self.procs:
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the coordinator ------------------------------------------------------------------------------------


def one_run(backend: str, url: str, redis: Redises, nodes: int, rooms: int, a: argparse.Namespace,
            prefix: str) -> dict[str, Any]:
    python, cwd = (str(a.baseline / ".venv" / "bin" / "python"), a.baseline) if backend == "base" \
        else (sys.executable, REPO)
    sep = "&" if "?" in url else "?"
    procs = []
    for i in range(nodes):
        cmd = [python, str(HERE / "scaling.py"), "--node", "--url", f"{url}{sep}prefix={prefix}", "--index", str(i),
               "--nodes", str(nodes), "--rooms", str(rooms), "--members", str(a.members),
               "--messages", str(a.messages), "--rate", str(a.rate), "--timeout", str(a.timeout)]
        procs.append(subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONPATH=str(cwd))))
    try:
        for proc in procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise SystemExit(f"scaling: a {backend} node did not start: {line!r}")
        redis_before = redis.cpu()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.stdout.read().strip().splitlines()[-1]) for proc in procs if proc.stdout]
        redis_cpu = redis.cpu() - redis_before
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    delivered = sum(r["delivered"] for r in results)
    expected = sum(r["expected"] for r in results)
    published = sum(a.messages for _ in range(nodes))
    per_delivery = [r["cpu_s"] / r["delivered"] * 1e6 for r in results if r["delivered"]]
    return {
        "backend": backend, "nodes": nodes, "rooms": rooms, "published": published, "delivered": delivered,
        "expected": expected,
        "node_us_per_delivery": sum(per_delivery) / len(per_delivery) if per_delivery else None,
        "node_reads_per_delivery": sum(r["read"] for r in results) / delivered if delivered else None,
        "node_cpu_s": [round(r["cpu_s"], 3) for r in results],
        "redis_us_per_published": redis_cpu / published * 1e6 if published else None,
    }


def markdown(runs: list[dict[str, Any]]) -> str:
    out = ["| backend | N | R | delivered / expected | node CPU per delivery (us) | reads per delivery "
           "| Redis CPU per message (us) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        per = f"{r['node_us_per_delivery']:.1f}" if r["node_us_per_delivery"] is not None else "-"
        reads = f"{r['node_reads_per_delivery']:.2f}" if r["node_reads_per_delivery"] is not None else "-"
        out.append(f"| {r['backend']} | {r['nodes']} | {r['rooms']} | {r['delivered']} / {r['expected']} | {per} "
                   f"| {reads} | {r['redis_us_per_published']:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--nodes", default="1,2,4,8", help="node counts (1..8), comma-separated")
    p.add_argument("--rooms", default="16,256", help="room counts, comma-separated")
    p.add_argument("--members", type=int, default=2, help="nodes with members in each room")
    p.add_argument("--messages", type=int, default=2000, help="room messages each node publishes")
    p.add_argument("--rate", type=float, default=2000.0, help="messages/s each node publishes at")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the last deliveries")
    p.add_argument("--backends", default="redis,cluster,base", help="redis, cluster (3 masters), base (:all)")
    p.add_argument("--baseline", type=Path, default=None, help="the checkout of the :all design (for base)")
    p.add_argument("--date", default=_dt.date.today().isoformat())
    a = p.parse_args(argv)
    if a.node:
        a.nodes, a.rooms = int(a.nodes), int(a.rooms)
        print(json.dumps(asyncio.run(node_main(a))), flush=True)
        return 0
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    unknown = set(backends) - {"redis", "cluster", "base"}
    if unknown:
        p.error(f"--backends: unknown {sorted(unknown)}")
    if "base" in backends and (a.baseline is None or not (a.baseline / ".venv" / "bin" / "python").exists()):
        p.error("--backends base needs --baseline CHECKOUT with a .venv (make install there)")
    node_counts = [int(n) for n in a.nodes.split(",")]
    if not all(1 <= n <= 8 for n in node_counts):
        p.error("--nodes: 1 to 8 each")
    runs = []
    for backend in backends:
        redis = Redises(3 if backend == "cluster" else 0)
        try:
            for rooms in [int(r) for r in a.rooms.split(",")]:
                for nodes in node_counts:
                    rec = one_run(backend, redis.url, redis, nodes, rooms, a, f"s{backend}{rooms}x{nodes}")
                    print(json.dumps(rec), file=sys.stderr, flush=True)
                    runs.append(rec)
        finally:
            redis.close()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"scaling-{a.date}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                                "runs": runs}, indent=1))
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
