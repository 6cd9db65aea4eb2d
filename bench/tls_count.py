"""Instructions per TLS echo in the server, counted by callgrind: robyn_fast on
aiofastnet's TLS transport against the loop's (and picows, for reference).

Figures of bench/tls.py move with the machine's load; instruction counts do
not. Each server runs under ``valgrind --tool=callgrind`` twice, serving
``--conns`` connections that each get a fixed count of echoes (``--counts``,
e.g. 20 and 120) from bench/tls.py's load generator (``load --count``) and
then close; the server is stopped with SIGTERM and callgrind's total is
read. (total at the larger count - total at the smaller) / the messages in
between is what one more message costs: start-up, the TLS handshakes and
shutdown cancel out.

    .venv/bin/python bench/tls_count.py                      # 64 conns x 1 in flight x 32 B
    .venv/bin/python bench/tls_count.py --conns 8 --pipeline 16 --size 1024
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (bench/run.py: the servers and how they start)
import tls  # noqa: E402  (bench/tls.py: the certificate and the load generator)
from wake_count import callgrind_total, callgrind_wrapper  # noqa: E402

TLS_SERVERS = ("robyn_fast", "robyn_fast-looptls", "picows", "picows-looptls", "aiohttp", "websockets", "socketify")


def count(server: run.Server, n: int, cert: Path, key: Path, a: argparse.Namespace, work: Path,
          ports: run.Ports) -> int:
    """callgrind's total instructions of ``server`` serving ``n`` echoes on each connection."""
    outdir = work / f"cg-{server.name}-{n}"
    outdir.mkdir()
    wrapped = dataclasses.replace(server, python=callgrind_wrapper(server.python, outdir))
    port = ports.next()
    log = work / f"server-{server.name}-{n}.log"
    r = run.start_server(wrapped, "echo-tls", port, a.server_core, "uvloop", log, 600.0, tls=(cert, key))
    if isinstance(r, str):
        raise RuntimeError(f"{server.name}: {r}: {log.read_text(errors='replace')[-800:]}")
    try:
        cmd = [sys.executable, str(Path(tls.__file__)), "load", "--port", str(port), "--cafile", str(cert),
               "-c", str(a.conns), "-p", str(a.pipeline), "-s", str(a.size), "--count", str(n), "-T", "60"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=str(run.REPO))
        result = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
        if result["errors"] or result["msgs"] < n * a.conns:
            raise RuntimeError(f"{server.name}: {result}")
    finally:
        run.stop_server(r, grace=120.0)
    return callgrind_total(outdir)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="robyn_fast,robyn_fast-looptls,picows",
                   help="comma-separated names from bench/run.py that serve wss:// (" + ", ".join(TLS_SERVERS) + ")")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--counts", default="20,120", help="two echo counts per connection, smaller first")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--server-core", default="0")
    p.add_argument("--port-base", type=int, default=19500)
    a = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench/tls_count.py: valgrind is missing (apt-get install valgrind)", file=sys.stderr)
        return 2
    low, high = (int(v) for v in a.counts.split(","))
    known = {s.name: s for s in run.all_servers() if "echo-tls" in s.scripts}
    names = a.servers.split(",")
    for name in names:
        if name not in known:
            p.error(f"unknown TLS server {name!r}: one of {', '.join(known)}")
    ports = run.Ports(a.port_base)
    rows = []
    with tempfile.TemporaryDirectory(prefix="robyn_fast-tls-count-") as tmp:
        work = Path(tmp)
        cert, key = tls.make_certificate(work)
        for name in names:
            totals = [count(known[name], n, cert, key, a, work, ports) for n in (low, high)]
            per = (totals[1] - totals[0]) / ((high - low) * a.conns)
            rows.append((name, totals, per))
            print(f"{name}: {totals[0]:,} / {totals[1]:,} instructions -> {per:,.0f} per message",
                  file=sys.stderr, flush=True)
    print(f"\n{a.conns} conns x {a.pipeline} in flight x {a.size} B, echoes per connection {low} and {high}\n")
    print("| server | instructions per message |\n|---|---:|")
    for name, _, per in rows:
        print(f"| {name} | {per:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
