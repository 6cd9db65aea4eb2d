"""Worker processes, side by side: robyn_fast with 1 worker process vs 2.

    .venv/bin/python bench/workers.py               # 3 interleaved rounds of 3 s per run (~2 minutes)
    .venv/bin/python bench/workers.py --rounds 5 --duration 5

The machine has 2 cores: the server (every worker) is pinned to core 0 and
the load generator to core 1, so two workers share one core. What this
measures is therefore the *cost* of spreading an app over processes, not a
speed-up: the server's CPU time per delivered message (summed over every
process of the server: supervisor and workers), and deliveries/s and round
latency at the same total CPU budget.

Workloads (``rfload``):

* ``fanout-500-64B``: 500 subscribers + 1 publisher on one port. With 2
  workers the kernel spreads the connections over both (``SO_REUSEPORT``;
  the split is read from the kernel's socket table mid-run and reported), so
  every broadcast is delivered locally by the publisher's worker and crosses
  the bus once to the other worker, which delivers its share.
* ``fanout-4-64B``: the same with 4 subscribers, where the per-message path
  (one bus message per broadcast) dominates the cost of the deliveries.
* ``echo-64x1-32B``: 64 connections echoing; nothing crosses the bus (a
  handler's return value goes to its own connection): the cost of the
  supervisor and a second event loop alone.

From the fan-out pairs it derives the extra server CPU per broadcast round
that 2 workers cost, i.e. the cross-process path (publish on one worker, the
bus write, the read, decode and local fan-out setup on the other), and the
CPU per delivery made through the bus vs made in process.

Writes ``bench/results/workers-<date>.json`` and prints a Markdown table.
Needs the load generator (``make bench-loadgen``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as _run  # noqa: E402  (bench/run.py: server start/stop helpers)

REPO = HERE.parent
PY = sys.executable

WORKLOADS = {
    "fanout-500-64B": ("broadcast", ("fanout", "-c", "500", "-s", "64")),
    "fanout-4-64B": ("broadcast", ("fanout", "-c", "4", "-s", "64")),
    "echo-64x1-32B": ("echo", ("echo", "-c", "64", "-p", "1", "-s", "32")),
}
SCRIPTS = {"broadcast": REPO / "examples" / "broadcast.py", "echo": REPO / "examples" / "echo.py"}
CONFIGS = {"1 worker": 1, "2 workers": 2}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def socket_owners(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to ``port`` each process holds
    (the kernel's socket table: /proc/net/tcp inodes matched to fds)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(int(fields[9]))
    counts = {}
    for pid in pids:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                    n += 1
        except OSError:
            continue
        counts[pid] = n
    return counts


def wait_serving(log_path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """None once the server announced it serves (every worker up, the bus
    meshed), else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode} before serving"
        try:
            if "serving on" in log_path.read_text(errors="replace"):
                return None
        except OSError:
            pass
        time.sleep(0.05)
    return f"not serving within {timeout:.0f} s"


def one_run(workload: str, config: str, rnd: int, a: argparse.Namespace, ports: _run.Ports,
            logdir: Path) -> dict[str, Any]:
    kind, rfargs = WORKLOADS[workload]
    processes = CONFIGS[config]
    port = ports.next()
    log_path = logdir / f"r{rnd}-{workload}-{processes}w.log"
    rec: dict[str, Any] = {"round": rnd, "workload": workload, "config": config, "processes": processes}
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROBYN_HOST="127.0.0.1", ROBYN_PORT=str(port))
    cmd = ["taskset", "-c", a.server_core, PY, str(SCRIPTS[kind]), "--processes", str(processes),
           "--log-level", "WARNING"]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    running = _run.Running(proc, port, log_path, 0.0)
    why = wait_serving(log_path, proc, a.start_timeout) if processes > 1 else None
    if why is None and not _wait_handshake(port, a.start_timeout):
        why = "no successful handshake"
    if why is not None:
        _run.stop_server(running)
        rec.update(failed=True, failure=why, **_run.log_excerpt(log_path))
        return rec
    pids = _run.group_pids(proc.pid)
    workers = [p for p in pids if p != proc.pid] or [proc.pid]
    lg = ["taskset", "-c", a.loadgen_core, PY, str(HERE / "rfload.py"), *rfargs, "-u", f"ws://127.0.0.1:{port}/ws",
          "-w", str(a.warmup), "-d", str(a.duration), "--server-pid", ",".join(map(str, pids))]
    loadgen = subprocess.Popen(lg, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    split: dict[int, int] = {}
    try:
        # Mid-run, who holds the connections.
        end = time.monotonic() + a.warmup + a.duration / 2
        while time.monotonic() < end and loadgen.poll() is None:
            time.sleep(0.1)
        split = socket_owners(workers, port)
        out, err = loadgen.communicate(timeout=a.warmup + a.duration + 60)
    except subprocess.TimeoutExpired:
        loadgen.kill()
        out, err = loadgen.communicate()
    alive = proc.poll() is None
    rec.update(_run.stop_server(running))
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    data = json.loads(lines[-1]) if lines else None
    if data is None or not data.get("msgs_per_s") or not alive:
        rec.update(failed=True, failure=f"load generator rc={loadgen.returncode}: {err.strip()[-300:]}"
                   + ("" if alive else " (the server died)"), **_run.log_excerpt(log_path))
        return rec
    rec.update({k: data[k] for k in ("msgs_per_s", "rounds_per_s", "p50_us", "p99_us", "server_cpu_pct",
                                     "loadgen_cpu_pct", "errors") if k in data})
    rec["split"] = sorted(split.values(), reverse=True)
    if data.get("server_cpu_pct") is not None:
        cpu_s = data["server_cpu_pct"] / 100.0  # server CPU seconds per second of the window
        rec["cpu_us_per_delivery"] = round(1e6 * cpu_s / data["msgs_per_s"], 3)
        if data.get("rounds_per_s"):
            rec["cpu_us_per_round"] = round(1e6 * cpu_s / data["rounds_per_s"], 2)
    rec.update(_run.log_excerpt(log_path))
    return rec


def _wait_handshake(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _run.handshake_ok(port):
            return True
        time.sleep(0.05)
    return False


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for workload in WORKLOADS:
        out[workload] = {}
        for config in CONFIGS:
            ok = [r for r in runs if r["workload"] == workload and r["config"] == config and not r.get("failed")]
            row: dict[str, Any] = {"ok_runs": len(ok)}
            for key in ("msgs_per_s", "rounds_per_s", "p50_us", "p99_us", "server_cpu_pct", "cpu_us_per_delivery",
                        "cpu_us_per_round"):
                values = [r[key] for r in ok if r.get(key) is not None]
                row[key] = statistics.median(values) if values else None
            row["splits"] = [r.get("split") for r in ok]
            out[workload][config] = row
    return out


def derived(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The cross-process path's cost, from the fan-out pairs: the extra CPU
    per round that 2 workers spend over 1, per round (one bus message) and
    per delivery made through the bus (about half the subscribers)."""
    out: dict[str, Any] = {}
    for workload in ("fanout-500-64B", "fanout-4-64B"):
        one, two = summary[workload]["1 worker"], summary[workload]["2 workers"]
        if not one.get("cpu_us_per_round") or not two.get("cpu_us_per_round"):
            continue
        subs = int(WORKLOADS[workload][1][2])
        extra = two["cpu_us_per_round"] - one["cpu_us_per_round"]
        out[workload] = {
            "in_process_cpu_us_per_delivery": one["cpu_us_per_delivery"],
            "two_workers_cpu_us_per_delivery": two["cpu_us_per_delivery"],
            "extra_cpu_us_per_round": round(extra, 2),
            "extra_cpu_us_per_remote_delivery": round(extra / (subs / 2), 3),
            "deliveries_ratio_2w_over_1w": round(two["msgs_per_s"] / one["msgs_per_s"], 3),
        }
    return out


def markdown(summary: dict[str, dict[str, dict[str, Any]]], extra: dict[str, Any]) -> str:
    def f(v: Any, nd: int = 1) -> str:
        return "-" if v is None else (f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}")

    lines = ["| workload | config | msgs/s (deliveries) | p50 µs | p99 µs | server CPU % | CPU µs/delivery | "
             "CPU µs/round | connections per worker |", "|---|---|---|---|---|---|---|---|---|"]
    for workload, rows in summary.items():
        for config, row in rows.items():
            splits = "; ".join("/".join(map(str, s)) for s in row["splits"] if s) or "-"
            lines.append(f"| {workload} | {config} | {f(row['msgs_per_s'], 0)} | {f(row['p50_us'], 0)} | "
                         f"{f(row['p99_us'], 0)} | {f(row['server_cpu_pct'])} | {f(row['cpu_us_per_delivery'], 3)} | "
                         f"{f(row['cpu_us_per_round'], 1)} | {splits} |")
    lines.append("")
    for workload, d in extra.items():
        lines.append(f"- {workload}: CPU per delivery {d['in_process_cpu_us_per_delivery']} µs in one process, "
                     f"{d['two_workers_cpu_us_per_delivery']} µs over 2 workers; the cross-process path costs "
                     f"{d['extra_cpu_us_per_round']} µs of CPU per broadcast "
                     f"({d['extra_cpu_us_per_remote_delivery']} µs per delivery made through the bus); "
                     f"deliveries/s 2 workers / 1 worker = {d['deliveries_ratio_2w_over_1w']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    p.add_argument("--server-core", default="0")
    p.add_argument("--loadgen-core", default="1")
    p.add_argument("--port-base", type=int, default=19600)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--date", default=_dt.date.today().isoformat())
    a = p.parse_args(argv)
    names = [w for w in a.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or a.rounds < 1 or a.duration <= 0:
        p.error(f"unknown workloads {unknown}" if unknown else "--rounds and --duration must be positive")
    if not (HERE / "loadgen" / ".rfload-built").exists():
        p.error("the load generator is not built: run `make bench-loadgen`")
    for w in list(WORKLOADS):
        if w not in names:
            del WORKLOADS[w]
    logdir = HERE / "results" / f"logs-workers-{a.date}"
    logdir.mkdir(parents=True, exist_ok=True)
    ports = _run.Ports(a.port_base)
    runs = []
    for rnd in range(1, a.rounds + 1):
        for workload in WORKLOADS:
            for config in CONFIGS:
                rec = one_run(workload, config, rnd, a, ports, logdir)
                runs.append(rec)
                log(f"round {rnd} {workload} {config}: " + (rec.get("failure") or
                    f"{rec['msgs_per_s']:,.0f} msgs/s, p50 {rec.get('p50_us')} µs, "
                    f"CPU {rec.get('server_cpu_pct')} %, split {rec.get('split')}"))
    summary = summarize(runs)
    extra = derived(summary)
    meta = {"date": a.date, "rounds": a.rounds, "duration_s": a.duration, "warmup_s": a.warmup,
            "server_core": a.server_core, "loadgen_core": a.loadgen_core, "git_commit": _run.git_commit(),
            "machine": _run.machine_info(), "python": sys.version.split()[0]}
    out = HERE / "results" / f"workers-{a.date}.json"
    out.write_text(json.dumps({"meta": meta, "summary": summary, "derived": extra, "runs": runs}, indent=1) + "\n")
    print(markdown(summary, extra))
    log(f"wrote {out.relative_to(REPO)}")
    return 0 if all(not r.get("failed") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
