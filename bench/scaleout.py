"""Scale-out, side by side: robyn_fast in one process, with 2 worker
processes (local bus), and as 2 servers joined by Redis (``--broker``).

    .venv/bin/python bench/scaleout.py              # 3 interleaved rounds of 3 s per run (~4 minutes)
    .venv/bin/python bench/scaleout.py --rounds 5 --duration 5 --configs "1 worker,2 servers + Redis"
    .venv/bin/python bench/scaleout.py --scaling --baseline /work/base22   # N nodes x R rooms (bench/scaling.py)

The machine has 2 cores: the server side (every worker, every server and
redis-server) is pinned to core 0 and the load generator to core 1, so two
workers share one core. What this
measures is therefore the *cost* of spreading an app over processes, not a
speed-up: the server's CPU time per delivered message (summed over every
process of the server: supervisor and workers), and deliveries/s and round
latency at the same total CPU budget.

Workloads (``rfload``):

* ``fanout-500-64B``: 500 subscribers + 1 publisher. With 2 workers the
  kernel spreads the connections over both (``SO_REUSEPORT``; the split is
  read from the kernel's socket table mid-run and reported), so every
  broadcast is delivered locally by the publisher's worker and crosses the
  bus once to the other worker, which delivers its share. With 2 servers the
  load generator spreads the connections over both ports (250 + 251), and
  every broadcast crosses Redis once.
* ``fanout-4-64B``: the same with 4 subscribers, where the per-message path
  (one bus message per broadcast) dominates the cost of the deliveries.
* ``echo-64x1-32B``: 64 connections echoing; nothing crosses the bus (a
  handler's return value goes to its own connection): the cost of the
  supervisor and a second event loop alone.

From the fan-out pairs it derives the extra server CPU per broadcast round
that 2 workers cost, i.e. the cross-process path (publish on one worker, the
bus write, the read, decode and local fan-out setup on the other), and the
CPU per delivery made through the bus vs made in process.

Redis's own CPU over each run is reported beside the server's. Writes
``bench/results/scaleout-<date>.json`` and prints a Markdown table. Needs the
load generator (``make bench-loadgen``) and, for the Redis configurations,
``redis-server`` (Debian's package; ``make redis``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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
CONFIGS: dict[str, dict[str, Any]] = {
    "1 worker": {"servers": 1, "processes": 1, "redis": False},
    "2 workers": {"servers": 1, "processes": 2, "redis": False},  # one server, the local bus
    "2 servers + Redis": {"servers": 2, "processes": 1, "redis": True},  # two "hosts", 250 + 251 connections
}


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


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (/proc), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


class Redis:
    """A private redis-server for the Redis configurations, pinned to the server core."""

    def __init__(self, core: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("scaleout: redis-server is not installed (make redis)")
        self.dir = tempfile.mkdtemp(prefix="rf-bench-redis-")
        self.port = _run.Ports(19900).next()
        self.proc = subprocess.Popen(
            ["taskset", "-c", core, binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise SystemExit("scaleout: redis-server did not answer PING within 10 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# The servers log at WARNING but for robyn_fast.server's INFO records: "serving on ... with N worker
# processes" is what wait_serving() waits for (a root at WARNING alone silences it).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {"robyn_fast.server": {"level": "INFO"}},
}


def one_run(workload: str, config: str, rnd: int, a: argparse.Namespace, ports: _run.Ports,
            logdir: Path, redis: Redis | None) -> dict[str, Any]:
    kind, rfargs = WORKLOADS[workload]
    shape = CONFIGS[config]
    rec: dict[str, Any] = {"round": rnd, "workload": workload, "config": config}
    started: list[_run.Running] = []
    why = None
    log_config = logdir / "logging.json"
    log_config.write_text(json.dumps(LOG_CONFIG))
    for i in range(shape["servers"]):
        port = ports.next()
        log_path = logdir / f"r{rnd}-{workload}-{config.replace(' ', '_')}-{i}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", ROBYN_HOST="127.0.0.1", ROBYN_PORT=str(port))
        cmd = ["taskset", "-c", a.server_core, PY, str(SCRIPTS[kind]), "--processes", str(shape["processes"]),
               "--log-config", str(log_config)]
        if shape["redis"]:
            assert redis is not None
            cmd += ["--broker", f"{redis.url}?prefix=bench-r{rnd}"]  # the servers of one run share a prefix
        with open(log_path, "wb") as logf:
            proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started.append(_run.Running(proc, port, log_path, 0.0))
    for r in started:
        if why is None and shape["processes"] > 1:
            why = wait_serving(r.log_path, r.proc, a.start_timeout)
        if why is None and not _wait_handshake(r.port, a.start_timeout):
            why = "no successful handshake"
    if why is not None:
        for r in started:
            _run.stop_server(r)
        rec.update(failed=True, failure=why, **_run.log_excerpt(started[0].log_path))
        return rec
    pids = sorted(p for r in started for p in _run.group_pids(r.proc.pid))
    workers = [p for p in pids if p not in {r.proc.pid for r in started}] or pids
    lg = ["taskset", "-c", a.loadgen_core, PY, str(HERE / "rfload.py"), *rfargs,
          *(x for r in started for x in ("-u", f"ws://127.0.0.1:{r.port}/ws")),
          "-w", str(a.warmup), "-d", str(a.duration), "--server-pid", ",".join(map(str, pids))]
    redis_before = cpu_ticks(redis.proc.pid) if redis is not None and shape["redis"] else None
    t0 = time.monotonic()
    loadgen = subprocess.Popen(lg, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    split: dict[int, int] = {}
    try:
        # Mid-run, who holds the connections.
        end = time.monotonic() + a.warmup + a.duration / 2
        while time.monotonic() < end and loadgen.poll() is None:
            time.sleep(0.1)
        for r in started:
            for pid, n in socket_owners(workers, r.port).items():
                split[pid] = split.get(pid, 0) + n
        out, err = loadgen.communicate(timeout=a.warmup + a.duration + 60)
    except subprocess.TimeoutExpired:
        loadgen.kill()
        out, err = loadgen.communicate()
    wall = time.monotonic() - t0
    if redis_before is not None and redis is not None:
        after = cpu_ticks(redis.proc.pid)
        if after is not None:
            rec["redis_cpu_pct"] = round(100.0 * (after - redis_before) / os.sysconf("SC_CLK_TCK") / wall, 1)
    alive = all(r.proc.poll() is None for r in started)
    for r in started:
        rec.update(_run.stop_server(r))
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    data = json.loads(lines[-1]) if lines else None
    if data is None or not data.get("msgs_per_s") or not alive:
        rec.update(failed=True, failure=f"load generator rc={loadgen.returncode}: {err.strip()[-300:]}"
                   + ("" if alive else " (a server died)"), **_run.log_excerpt(started[0].log_path))
        return rec
    rec.update({k: data[k] for k in ("msgs_per_s", "rounds_per_s", "p50_us", "p99_us", "server_cpu_pct",
                                     "loadgen_cpu_pct", "errors") if k in data})
    rec["split"] = sorted(split.values(), reverse=True)
    if data.get("server_cpu_pct") is not None:
        cpu_s = data["server_cpu_pct"] / 100.0  # server CPU seconds per second of the window
        rec["cpu_us_per_delivery"] = round(1e6 * cpu_s / data["msgs_per_s"], 3)
        if data.get("rounds_per_s"):
            rec["cpu_us_per_round"] = round(1e6 * cpu_s / data["rounds_per_s"], 2)
    for r in started:
        excerpt = _run.log_excerpt(r.log_path)
        if excerpt.get("log_error_lines"):
            rec.update(excerpt)
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
                        "cpu_us_per_round", "redis_cpu_pct"):
                values = [r[key] for r in ok if r.get(key) is not None]
                row[key] = statistics.median(values) if values else None
            row["splits"] = [r.get("split") for r in ok]
            out[workload][config] = row
    return out


def derived(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The cross-process (or cross-host) path's cost, from the fan-out runs:
    the extra server CPU per round that a spread configuration spends over
    one process, per round (one bus or Redis message) and per delivery made
    through it (about half the subscribers)."""
    out: dict[str, Any] = {}
    for workload in ("fanout-500-64B", "fanout-4-64B"):
        if workload not in summary:
            continue
        one = summary[workload].get("1 worker", {})
        for config in ("2 workers", "2 servers + Redis"):
            two = summary[workload].get(config, {})
            if not one.get("cpu_us_per_round") or not two.get("cpu_us_per_round"):
                continue
            subs = int(WORKLOADS[workload][1][2])
            extra = two["cpu_us_per_round"] - one["cpu_us_per_round"]
            out[f"{workload}, {config}"] = {
                "in_process_cpu_us_per_delivery": one["cpu_us_per_delivery"],
                "spread_cpu_us_per_delivery": two["cpu_us_per_delivery"],
                "extra_cpu_us_per_round": round(extra, 2),
                "extra_cpu_us_per_remote_delivery": round(extra / (subs / 2), 3),
                "deliveries_ratio_vs_1_worker": round(two["msgs_per_s"] / one["msgs_per_s"], 3),
                "redis_cpu_pct": two.get("redis_cpu_pct"),
            }
    return out


def markdown(summary: dict[str, dict[str, dict[str, Any]]], extra: dict[str, Any]) -> str:
    def f(v: Any, nd: int = 1) -> str:
        return "-" if v is None else (f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}")

    lines = ["| workload | config | msgs/s (deliveries) | p50 µs | p99 µs | server CPU % | CPU µs/delivery | "
             "CPU µs/round | Redis CPU % | connections per process |", "|---|---|---|---|---|---|---|---|---|---|"]
    for workload, rows in summary.items():
        for config, row in rows.items():
            splits = "; ".join("/".join(map(str, s)) for s in row["splits"] if s) or "-"
            lines.append(f"| {workload} | {config} | {f(row['msgs_per_s'], 0)} | {f(row['p50_us'], 0)} | "
                         f"{f(row['p99_us'], 0)} | {f(row['server_cpu_pct'])} | {f(row['cpu_us_per_delivery'], 3)} | "
                         f"{f(row['cpu_us_per_round'], 1)} | {f(row['redis_cpu_pct'])} | {splits} |")
    lines.append("")
    for name, d in extra.items():
        lines.append(f"- {name}: server CPU per delivery {d['in_process_cpu_us_per_delivery']} µs in one process, "
                     f"{d['spread_cpu_us_per_delivery']} µs spread; the crossing costs "
                     f"{d['extra_cpu_us_per_round']} µs of server CPU per broadcast "
                     f"({d['extra_cpu_us_per_remote_delivery']} µs per delivery made through it)"
                     + (f", plus Redis at {d['redis_cpu_pct']} % of a core" if d["redis_cpu_pct"] is not None else "")
                     + f"; deliveries/s vs 1 worker = {d['deliveries_ratio_vs_1_worker']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--scaling" in args:  # the N-node / R-room figure of issue 23 (bench/scaling.py)
        import scaling
        return scaling.main([x for x in args if x != "--scaling"])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
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
    configs = [c for c in a.configs.split(",") if c]
    if any(c not in CONFIGS for c in configs):
        p.error(f"unknown configs {[c for c in configs if c not in CONFIGS]}; known: {list(CONFIGS)}")
    for w in list(WORKLOADS):
        if w not in names:
            del WORKLOADS[w]
    for c in list(CONFIGS):
        if c not in configs:
            del CONFIGS[c]
    logdir = HERE / "results" / f"logs-scaleout-{a.date}"
    logdir.mkdir(parents=True, exist_ok=True)
    ports = _run.Ports(a.port_base)
    redis = Redis(a.server_core) if any(CONFIGS[c]["redis"] for c in CONFIGS) else None
    runs = []
    try:
        for rnd in range(1, a.rounds + 1):
            for workload in WORKLOADS:
                for config in CONFIGS:
                    rec = one_run(workload, config, rnd, a, ports, logdir, redis)
                    runs.append(rec)
                    log(f"round {rnd} {workload} {config}: " + (rec.get("failure") or
                        f"{rec['msgs_per_s']:,.0f} msgs/s, p50 {rec.get('p50_us')} µs, "
                        f"CPU {rec.get('server_cpu_pct')} %, Redis {rec.get('redis_cpu_pct')} %, "
                        f"split {rec.get('split')}"))
    finally:
        if redis is not None:
            redis.close()
    summary = summarize(runs)
    extra = derived(summary)
    meta = {"date": a.date, "rounds": a.rounds, "duration_s": a.duration, "warmup_s": a.warmup,
            "server_core": a.server_core, "loadgen_core": a.loadgen_core, "git_commit": _run.git_commit(),
            "machine": _run.machine_info(), "python": sys.version.split()[0]}
    out = HERE / "results" / f"scaleout-{a.date}.json"
    out.write_text(json.dumps({"meta": meta, "summary": summary, "derived": extra, "runs": runs}, indent=1) + "\n")
    print(markdown(summary, extra))
    log(f"wrote {out.relative_to(REPO)}")
    return 0 if all(not r.get("failed") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
