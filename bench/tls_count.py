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
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tls  # noqa: E402  (bench/tls.py: the servers, the certificate, the load generator)

KINDS = {s.name: s for s in tls.SERVERS if s.tls}


def count(server: tls.Server, n: int, cert: Path, key: Path, a: argparse.Namespace, work: Path) -> int:
    """callgrind's total instructions of ``server`` serving ``n`` echoes on each connection."""
    out = work / f"callgrind.{n}.out"
    a.prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--trace-children=no"]
    port = tls.free_port()
    proc = tls.start(server, port, cert, key, a, work / f"server-{n}.log")
    if isinstance(proc, str):
        raise RuntimeError(f"{server.name}: {proc}: {(work / f'server-{n}.log').read_text()[-800:]}")
    try:
        cmd = [tls.PY, str(Path(tls.__file__)), "load", "--port", str(port), "--cafile", str(cert),
               "-c", str(a.conns), "-p", str(a.pipeline), "-s", str(a.size), "--count", str(n), "-T", "60"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=str(tls.REPO))
        result = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
        if result["errors"] or result["msgs"] < n * a.conns:
            raise RuntimeError(f"{server.name}: {result}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(a.timeout)
    text = out.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if found is None:
        raise RuntimeError(f"no total in {out}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", action="append", choices=list(KINDS), help="repeatable; default: robyn_fast, "
                   "robyn_fast on the loop's TLS, picows")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--counts", default="20,120", help="two echo counts per connection, smaller first")
    p.add_argument("--timeout", type=float, default=900.0)
    a = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench/tls_count.py: valgrind is missing (apt-get install valgrind)", file=sys.stderr)
        return 2
    low, high = (int(v) for v in a.counts.split(","))
    a.server_core, a.start_timeout = "0", 600.0
    names = a.server or ["robyn_fast", "robyn_fast, loop's TLS", "picows"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="robyn_fast-tls-count-") as tmp:
        work = Path(tmp)
        cert, key = tls.make_certificate(work)
        for name in names:
            totals = [count(KINDS[name], n, cert, key, a, work) for n in (low, high)]
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
