"""HTTP req/s with wrk: one server process pinned to one core, wrk to another.

    python bench/http_wrk.py --python BASE=/path/to/base/.venv/bin/python \
        --python NEW=.venv/bin/python --rounds 5 --seconds 4

Every (label, scenario, path) case runs once per round, rounds interleaved
(odd rounds in reverse order), so a load change on the (shared) machine hits
every case alike; the median of the rounds is reported with the min-max
spread, and each case's median ratio to the first label's first scenario on
the same path in the same round. A label's scenarios
beyond ``none`` run only when given as ``LABEL:scenario,...``. A label that names a
peer with an app in ``peers/http_<label>.py`` (``socketify``) runs that app
(``--python socketify=/path/with/socketify/python``).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PATHS = ("/plaintext", "/json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {deadline} s")


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?%)\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str) -> dict[str, Any] | None:
    """wrk's report: ``requests`` (completed), ``seconds`` (its measured time),
    ``requests_per_s``, ``latency_us`` (the ``--latency`` distribution: {"50%": µs, ...};
    empty without it), ``non_2xx`` (non-2xx/3xx answers) and ``socket_errors``
    ({"connect"|"read"|"write"|"timeout": n}). None when there is no
    ``Requests/sec`` line (wrk failed)."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = _TOTAL.search(text)
    if rps is None or total is None:
        return None
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = _SOCKET_ERRORS.search(text)
    return {
        "requests": int(total.group(1)),
        "seconds": float(total.group(2)) * _UNITS_US[total.group(3)] / 1e6,
        "requests_per_s": float(rps.group(1)),
        "latency_us": {q: round(float(v) * _UNITS_US[unit], 1) for q, v, unit in _PERCENTILE.findall(text)},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
        if sock else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }


def run_case(label: str, python: str, scenario: str, path: str, seconds: int, server_cpu: str, wrk_cpu: str) -> float:
    port = free_port()
    # A label named after a peer in bench/peers (http_<label>.py, socketify) serves the same routes there.
    app = HERE / "peers" / f"http_{label}.py"
    if not app.exists():
        app = HERE / "http_app.py"
    proc = subprocess.Popen(["taskset", "-c", server_cpu, python, str(app), str(port), scenario],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        headers = ["-H", "Authorization: Bearer secret"] if scenario == "auth" else []
        url = f"http://127.0.0.1:{port}{path}"
        subprocess.run(["taskset", "-c", wrk_cpu, "wrk", "-t1", "-c32", "-d1s", *headers, url],
                       check=True, capture_output=True)  # warm-up
        out = subprocess.run(["taskset", "-c", wrk_cpu, "wrk", "-t1", "-c32", f"-d{seconds}s", *headers, url],
                             check=True, capture_output=True, text=True).stdout
        parsed = parse_wrk(out)
        if parsed is None:
            raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
        if parsed["non_2xx"]:
            raise RuntimeError(f"{scenario} {path}: non-2xx answers\n{out}")
        return float(parsed["requests_per_s"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", required=True,
                        help="LABEL=/path/to/python or LABEL:none,after,auth=/path/to/python")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--wrk-cpu", default="1")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    cases: list[tuple[str, str, str, str]] = []
    for spec in args.python:
        head, sep, python = spec.partition("=")
        if not sep:
            parser.error(f"--python {spec!r}: expected LABEL=/path/to/python")
        label, _, scenarios = head.partition(":")
        for scenario in (scenarios.split(",") if scenarios else ["none"]):
            for path in PATHS:
                cases.append((label, scenario, path, python))
    results: dict[str, list[float]] = {f"{l} {s} {p}": [] for l, s, p, _ in cases}
    for r in range(args.rounds):
        # Odd rounds run the cases in reverse, so a drift in the machine's load
        # over a round does not always favour the same cases.
        for label, scenario, path, python in (cases if r % 2 == 0 else cases[::-1]):
            rps = run_case(label, python, scenario, path, args.seconds, args.server_cpu, args.wrk_cpu)
            results[f"{label} {scenario} {path}"].append(rps)
            print(f"round {r + 1} {label:>6} {scenario:>5} {path:<10} {rps:9.0f} req/s", flush=True)
    # Each case against the first label's first scenario on the same path in the
    # same round: the ratio cancels most of the load the machine had then.
    first_label, first_scenario = cases[0][0], cases[0][1]
    print("\ncase                         median    min    max (req/s)   ratio to "
          f"{first_label} {first_scenario}: median (min-max) of the rounds")
    for key, values in results.items():
        path = key.rsplit(" ", 1)[1]
        ref = results[f"{first_label} {first_scenario} {path}"]
        ratios = [v / b for v, b in zip(values, ref)]
        print(f"{key:<26} {statistics.median(values):8.0f} {min(values):6.0f} {max(values):6.0f}   "
              f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
