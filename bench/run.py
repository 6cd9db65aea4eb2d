"""Load tests: robyn_fast against other WebSocket servers, side by side.

    make bench-load                          # quick: 2 rounds of 1 s per run, ~3 minutes
    make bench-load LOAD_ARGS=--full         # 5 rounds of 3 s per run, ~13 minutes (estimated)
    .venv/bin/python bench/run.py --help     # everything else

For every round, every workload and every server, in that order (rounds are
interleaved: A B C ... A B C ...), this script

1. starts the server with ``taskset -c 0`` (``--server-core``) in a process
   group of its own, on a fresh port of 127.0.0.1;
2. waits until a real WebSocket handshake succeeds (and closes that probe with
   a Close frame built by the codec);
3. runs the load generator (``bench/rfload.py``) with ``taskset -c 1``
   (``--loadgen-core``); it samples the CPU of every process of the server's
   group over the measured window (and, in idle mode, their RSS);
4. stops the server: SIGTERM to its process group, SIGKILL after 5 s.

At the end it takes the median of each figure over the rounds, the ratio
robyn_fast / server for each workload's main figure, and writes

* ``bench/results/load-<date>.json``: configuration, machine, summary and a
  compact record of every run (committed);
* ``bench/results/load.png``: one bar chart per workload (committed);
* ``bench/results/load.md``: the Markdown table, also printed (not committed);
* ``bench/results/load-<date>.runs.jsonl`` and ``logs-<date>/``: every run's
  full JSON line and every server's output (not committed).

Peers live in ``bench/peers/``. Robyn 0.77 and Robyn 0.88 run in virtualenvs
of their own, ``bench/.venv-robyn077`` and ``bench/.venv-robyn088``, which this
script creates on first use (``pip install robyn==0.77.0`` / ``robyn==0.88.0``);
nothing outside the repository is needed.

``--reference NAME`` picks the server the ratios are taken against (default
``robyn_fast``, the legacy ``message``-handler API); ``--reference
robyn_fast-recv`` compares the receive-loop API (``@app.websocket``) with
everything else, its legacy twin included.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
# Robyn releases run in virtualenvs of their own: server name -> version
ROBYN_RELEASES = {"robyn077": "0.77.0", "robyn088": "0.88.0"}
PY = sys.executable


# -- what is compared ---------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str                 # which server flavour it needs: "echo" or "broadcast"
    args: tuple[str, ...]     # rfload arguments
    metric: str               # the main figure in rfload's JSON
    unit: str
    higher_is_better: bool = True
    latency: tuple[str, str] | None = ("p50_us", "p99_us")
    title: str = ""


WORKLOADS = [
    Workload("echo-64x1-32B", "echo", ("echo", "-c", "64", "-p", "1", "-s", "32"), "msgs_per_s", "msgs/s",
             title="echo: 64 conns, 1 in flight, 32 B"),
    Workload("echo-8x16-1KiB", "echo", ("echo", "-c", "8", "-p", "16", "-s", "1024"), "msgs_per_s", "msgs/s",
             title="echo: 8 conns, 16 in flight, 1 KiB"),
    Workload("echo-async-64x1-32B", "echo-async", ("echo", "-c", "64", "-p", "1", "-s", "32"), "msgs_per_s",
             "msgs/s", title="echo, async handler: 64 conns, 1 in flight, 32 B"),
    Workload("connect-16", "echo", ("connect", "-c", "16"), "cycles_per_s", "cycles/s",
             latency=("cycle_p50_us", "cycle_p99_us"),
             title="connect + handshake + close, 16 at once"),
    Workload("fanout-500-64B", "broadcast", ("fanout", "-c", "500", "-s", "64"), "msgs_per_s", "deliveries/s",
             title="fan-out: 500 subscribers, 64 B, closed loop"),
    Workload("fanout-2000-64B", "broadcast", ("fanout", "-c", "2000", "-s", "64", "-T", "10"), "msgs_per_s",
             "deliveries/s", title="fan-out: 2000 subscribers, 64 B, closed loop (10 s round timeout)"),
    Workload("idle-2000", "echo", ("idle", "-c", "2000"), "rss_per_conn_bytes", "B/conn",
             higher_is_better=False, latency=None,
             title="idle: server RSS growth per connection (2000)"),
]


@dataclass
class Server:
    name: str
    python: Path
    scripts: dict[str, Path]              # kind -> script
    port_from_env: bool = False           # robyn_fast's examples read ROBYN_PORT
    asyncio_based: bool = True
    check: str = ""                       # module that must import
    note: str = ""
    available: bool = True
    why_unavailable: str = ""
    version: str = ""
    cwd: Path = REPO                      # its working directory (a checkout's own for --baseline)

    def command(self, kind: str, port: int, loop: str) -> list[str]:
        cmd = [str(self.python), str(self.scripts[kind])]
        if not self.port_from_env:
            cmd.append(str(port))
            if self.asyncio_based:
                cmd += ["--loop", loop]
        return cmd


def _robyn_fast_scripts(tree: Path) -> dict[str, Path]:
    return {"echo": tree / "examples" / "echo.py", "broadcast": tree / "examples" / "broadcast.py",
            "echo-async": PEERS / "echo_async_robyn_fast.py"}


def _recv_scripts() -> dict[str, Path]:
    # The receive-loop handler is a coroutine already: the same server for "echo-async".
    echo = PEERS / "echo_recv_robyn_fast.py"
    return {"echo": echo, "broadcast": PEERS / "broadcast_recv_robyn_fast.py", "echo-async": echo}


def robyn_venv(name: str) -> Path:
    return HERE / f".venv-{name}"


def _peer_scripts(name: str, async_handlers: bool = False) -> dict[str, Path]:
    scripts = {k: PEERS / f"{k}_{name}.py" for k in ("echo", "broadcast")}
    if async_handlers:  # its echo is already an async function: the same server for "echo-async"
        scripts["echo-async"] = scripts["echo"]
    return scripts


def all_servers(baseline: Path | None = None, python: Path | None = None,
                baseline_python: Path | None = None) -> list[Server]:
    venv_py = Path(PY)
    servers = [
        Server("robyn_fast", python or venv_py, _robyn_fast_scripts(REPO), port_from_env=True, check="robyn_fast",
               note="legacy message handlers (WebSocket(app, path), @ws.on('message'))"),
        Server("robyn_fast-recv", python or venv_py, _recv_scripts(), port_from_env=True, check="robyn_fast",
               note="the receive-loop API (@app.websocket, receive_text/send_text/broadcast)"),
    ]
    if baseline is not None:
        base_py = baseline_python or baseline / ".venv" / "bin" / "python"
        servers.append(Server("robyn_fast@base", base_py, _robyn_fast_scripts(baseline),
                              port_from_env=True, check="robyn_fast", note=f"the checkout at {baseline}",
                              cwd=baseline))
    return servers + [
        Server("picows", venv_py, _peer_scripts("picows"), check="picows"),
        Server("aiohttp", venv_py, _peer_scripts("aiohttp", async_handlers=True), check="aiohttp"),
        Server("websockets", venv_py, _peer_scripts("websockets", async_handlers=True), check="websockets"),
        Server("socketify", venv_py, _peer_scripts("socketify"),
               asyncio_based=False, check="socketify", note="uWebSockets (C++) via CFFI, its own libuv loop"),
        Server("robyn077", robyn_venv("robyn077") / "bin" / "python", _peer_scripts("robyn077"),
               asyncio_based=False, check="robyn", note="Robyn 0.77 legacy WebSocket (actix-web)"),
        Server("robyn088", robyn_venv("robyn088") / "bin" / "python", _peer_scripts("robyn088", async_handlers=True),
               asyncio_based=False, check="robyn", note="Robyn 0.88 receive-loop @app.websocket (actix-web)"),
    ]


# -- environment ----------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_robyn(name: str) -> str | None:
    """Create bench/.venv-<name> with the Robyn release of ROBYN_RELEASES[name]
    if needed (the interpreter running this script makes the venv); None when
    ready, else why not."""
    version = ROBYN_RELEASES[name]
    venv = robyn_venv(name)
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import robyn, importlib.metadata as m; print(m.version('robyn'))"]
    if py.exists():
        r = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and r.stdout.strip() == version:
            return None
    log(f"creating {venv.relative_to(REPO)} with robyn=={version} ...")
    try:
        subprocess.run([PY, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"robyn=={version}"],
                       check=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return f"could not create {venv.name}: {exc}"
    r = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    return None if r.returncode == 0 else f"robyn does not import in {venv.name}: {r.stderr.strip()[-300:]}"


def probe_server(s: Server) -> None:
    if not s.python.exists():
        s.available, s.why_unavailable = False, f"{s.python} does not exist"
        return
    code = ("import importlib.metadata as m, sys; mod = sys.argv[1]; __import__(mod); "
            "print(m.version('robyn_fast' if mod == 'robyn_fast' else mod))")
    r = subprocess.run([str(s.python), "-c", code, s.check], capture_output=True, text=True, timeout=120,
                       cwd=str(s.cwd))
    if r.returncode != 0:
        s.available, s.why_unavailable = False, f"cannot import {s.check}: {r.stderr.strip().splitlines()[-1:]}"
    else:
        s.version = r.stdout.strip()


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo", encoding="ascii", errors="replace"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": load,
        "tcp_congestion_control": _read("/proc/sys/net/ipv4/tcp_congestion_control"),
    }


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return r.stdout.strip() + (" (dirty tree)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


# -- one server --------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


class Ports:
    def __init__(self, base: int, span: int = 400) -> None:
        self.base, self.span, self.i = base, span, 0

    def next(self) -> int:
        for _ in range(self.span):
            port = self.base + self.i % self.span
            self.i += 1
            if port_is_free(port):
                return port
        raise RuntimeError(f"no free port in {self.base}..{self.base + self.span - 1}")


def handshake_ok(port: int, path: str = "/ws", timeout: float = 1.0) -> bool:
    """A real opening handshake (RFC 6455 §4.1), checked down to the accept
    value, then a clean Close built by the codec."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode()
                      + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
                      + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf and len(buf) < 16384:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            head = buf.split(b"\r\n\r\n", 1)[0].lower()
            if not head.startswith(b"http/1.1 101") or b"sec-websocket-accept: " + accept.lower() not in head:
                return False
            try:
                from robyn_fast._core.codec import build_close

                s.sendall(build_close(1000, mask=os.urandom(4)))
                s.settimeout(0.3)
                while s.recv(4096):
                    pass
            except OSError:
                pass
            return True
    except OSError:
        return False


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:      # field 5: pgrp
                pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(pids)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    log_path: Path
    started_s: float


def start_server(s: Server, kind: str, port: int, core: str, loop: str, log_path: Path,
                 timeout: float) -> Running | str:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PORT=str(port))
    if s.port_from_env:
        env.update(ROBYN_PORT=str(port), ROBYN_HOST="127.0.0.1")
        if loop == "asyncio":
            env["ROBYN_FAST_LOOP"] = "asyncio"
    cmd = ["taskset", "-c", core] + s.command(kind, port, loop)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(s.cwd), env=env, stdin=subprocess.DEVNULL, stdout=logf,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_raise_nofile)
    logf.close()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode} before serving"
        if handshake_ok(port):
            return Running(proc, port, log_path, time.monotonic() - t0)
        time.sleep(0.05)
    stop_server(Running(proc, port, log_path, 0.0))
    return f"no successful handshake within {timeout:.0f} s"


def stop_server(r: Running, grace: float = 5.0) -> dict[str, Any]:
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    t0 = time.monotonic()
    pgid = r.proc.pid
    killed = False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        r.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    if group_pids(pgid):
        killed = True
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            r.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        end = time.monotonic() + 5
        while group_pids(pgid) and time.monotonic() < end:
            time.sleep(0.05)
    return {"stop_s": round(time.monotonic() - t0, 2), "needed_sigkill": killed,
            "exit_code": r.proc.returncode}


def log_excerpt(path: Path, limit: int = 1500) -> dict[str, Any]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    lines = text.splitlines()
    bad = [ln for ln in lines if any(w in ln for w in ("Traceback", "ERROR", "Error", "error:", "panicked"))]
    out: dict[str, Any] = {"log_lines": len(lines), "log_error_lines": len(bad)}
    if bad:
        out["log_first_errors"] = "\n".join(bad[:5])[:limit]
    return out


# -- one run ---------------------------------------------------------------------------


# Fields kept for every run in the committed JSON (the full lines go to *.runs.jsonl).
KEEP = (
    "opened", "msgs_per_s", "cycles_per_s", "handshakes_per_s", "rounds_per_s", "rss_per_conn_bytes",
    "rss_before_kb", "rss_after_kb", "closed_clean", "close_timeouts", "p50_us", "p99_us",
    "cycle_p50_us", "cycle_p99_us", "handshake_p50_us", "handshake_p99_us", "errors", "error_detail",
    "server_cpu_pct", "loadgen_cpu_pct", "loadgen_user_pct", "first_bad_status", "publisher_echoes",
    "server_writes_per_msg", "server_reads_per_msg", "server_cpu_us_per_msg",
)


def run_loadgen(w: Workload, port: int, pids: list[int], a: argparse.Namespace) -> tuple[int, dict | None, str]:
    # A workload may set its own -T (the round timeout it is defined with); else --timeout.
    timeout = float(w.args[w.args.index("-T") + 1]) if "-T" in w.args else a.timeout
    cmd = ["taskset", "-c", a.loadgen_core, PY, str(HERE / "rfload.py"), *w.args,
           "-u", f"ws://127.0.0.1:{port}/ws", "-w", str(a.warmup), "-d", str(a.duration),
           *(() if "-T" in w.args else ("-T", str(a.timeout))), "--parser", a.parser,
           "--server-pid", ",".join(map(str, pids))]
    bound = 15 + a.warmup + a.duration + timeout + 15 + 10
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=bound, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return -1, None, "load generator timed out"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    data = json.loads(lines[-1]) if lines else None
    return r.returncode, data, r.stderr.strip()[-500:]


def one_run(w: Workload, s: Server, rnd: int, a: argparse.Namespace, ports: Ports, logdir: Path,
            jsonl) -> dict[str, Any]:
    port = ports.next()
    log_path = logdir / f"r{rnd}-{w.name}-{s.name}.log"
    rec: dict[str, Any] = {"round": rnd, "workload": w.name, "server": s.name, "port": port}
    started = start_server(s, w.kind, port, a.server_core, a.loop, log_path, a.start_timeout)
    if isinstance(started, str):
        rec.update(failed=True, failure=f"server start: {started}", **log_excerpt(log_path))
        return rec
    rec["start_s"] = round(started.started_s, 2)
    pids = group_pids(started.proc.pid) or [started.proc.pid]
    rec["server_pids"] = len(pids)
    rc, data, err = run_loadgen(w, port, pids, a)
    alive = started.proc.poll() is None
    rec.update(stop_server(started))
    rec["loadgen_rc"] = rc
    if not alive:
        rec["server_died"] = True
    if data is None:
        rec.update(failed=True, failure=f"load generator: rc={rc} {err}")
    else:
        jsonl.write(json.dumps({"round": rnd, "workload": w.name, "server": s.name, **data}) + "\n")
        jsonl.flush()
        rec.update({k: data[k] for k in KEEP if k in data and data[k] not in (None, {})})
        value = data.get(w.metric)
        if not value or (w.metric == "cycles_per_s" and data.get("errors", 0) > data.get("cycles", 0)):
            rec["failed"] = True
            rec["failure"] = "no result" if not value else "more failed cycles than completed ones"
    rec.update(log_excerpt(log_path))
    return rec


# -- summary ----------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[dict], servers: list[Server], workloads: list[Workload],
              reference: str = "robyn_fast") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in workloads:
        rows: dict[str, Any] = {}
        for s in servers:
            if w.kind not in s.scripts:
                continue
            rs = [r for r in runs if r["workload"] == w.name and r["server"] == s.name]
            ok = [r for r in rs if not r.get("failed") and r.get(w.metric)]
            row: dict[str, Any] = {"runs": len(rs), "ok_runs": len(ok)}
            vals = [r[w.metric] for r in ok]
            row["median"] = median(vals)
            row["min"] = min(vals) if vals else None
            row["max"] = max(vals) if vals else None
            row["values"] = vals
            if w.latency:
                for key in w.latency:
                    row[key] = median([r[key] for r in ok if r.get(key) is not None])
            for key in ("server_cpu_pct", "loadgen_cpu_pct", "loadgen_user_pct",
                        "server_writes_per_msg", "server_reads_per_msg", "server_cpu_us_per_msg"):
                row[key] = median([r[key] for r in ok if r.get(key) is not None])
            row["errors"] = sum(r.get("errors", 0) or 0 for r in rs)
            detail: dict[str, int] = {}
            for r in rs:
                for k, v in (r.get("error_detail") or {}).items():
                    detail[k] = detail.get(k, 0) + v
            row["error_detail"] = detail
            if w.metric == "rss_per_conn_bytes":
                row["closed_clean"] = median([r.get("closed_clean", 0) for r in ok])
                row["close_timeouts"] = median([r.get("close_timeouts", 0) for r in ok])
            failures = sorted({r["failure"] for r in rs if r.get("failure")})
            if failures:
                row["failures"] = failures
            if any(r.get("server_died") for r in rs):
                row["server_died"] = True
            if any(r.get("log_error_lines") for r in rs):
                row["log_error_lines"] = sum(r.get("log_error_lines", 0) for r in rs)
                row["log_first_errors"] = next(r["log_first_errors"] for r in rs if r.get("log_first_errors"))
            rows[s.name] = row
        base = rows.get(reference, {}).get("median")
        base_cpu = rows.get(reference, {}).get("server_cpu_us_per_msg")
        for name, row in rows.items():
            m = row["median"]
            row["ratio_reference_over_server"] = round(base / m, 3) if base and m else None
            # On a loaded machine a server gets what the scheduler leaves it, and msgs/s
            # follows; the CPU it spends per message does not, so compare that too.
            cpu = row.get("server_cpu_us_per_msg")
            row["cpu_ratio_server_over_reference"] = round(cpu / base_cpu, 3) if cpu and base_cpu else None
        out[w.name] = {"metric": w.metric, "unit": w.unit, "higher_is_better": w.higher_is_better,
                       "title": w.title, "servers": rows}
    return out


LOADGEN_BOUND = 85.0   # % of rfload's core above which a figure may be rfload's limit


def ratio(row: dict[str, Any]) -> float | None:
    """The reference's median over this row's (results files before
    --reference existed name it ratio_robyn_fast_over_server)."""
    return row.get("ratio_reference_over_server", row.get("ratio_robyn_fast_over_server"))


def loadgen_bound(row: dict[str, Any]) -> bool:
    return (row.get("loadgen_cpu_pct") or 0) >= LOADGEN_BOUND


def fmt_num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "B/conn":
        return f"{v / 1024:,.1f} KiB"
    return f"{v:,.0f}"


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    ref = meta.get("reference", "robyn_fast")
    lines = [
        f"Load tests, {meta['date']} ({meta['preset']}: {meta['rounds']} rounds, {meta['warmup_s']} s warm-up + "
        f"{meta['duration_s']} s per run; medians over rounds; server on CPU {meta['server_core']}, "
        f"load generator on CPU {meta['loadgen_core']}; asyncio peers on {meta['loop']}).",
        "",
        f"| workload | server | median | min–max | {ref} ÷ server | p50 / p99 µs | server CPU "
        f"| server CPU µs/msg (÷ {ref}'s) | loadgen CPU | server writes / reads per msg | errors | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for wname, w in summary.items():
        unit = w["unit"]
        for sname, row in w["servers"].items():
            lat = "—"
            keys = [k for k in row if k.endswith("p50_us")]
            if keys:
                k50 = keys[0]
                k99 = k50.replace("p50", "p99")
                if row.get(k50) is not None:
                    lat = f"{row[k50]:,.0f} / {row.get(k99) or 0:,.0f}"
            r = ratio(row)
            notes = []
            if row.get("failures"):
                notes.append("FAILED: " + "; ".join(row["failures"]))
            if row["ok_runs"] < row["runs"]:
                notes.append(f"{row['runs'] - row['ok_runs']}/{row['runs']} runs failed")
            if row.get("error_detail"):
                notes.append(", ".join(f"{k} {v}" for k, v in sorted(row["error_detail"].items())))
            if unit == "B/conn" and row.get("close_timeouts"):
                notes.append(f"{row['close_timeouts']:.0f} of 2000 never closed cleanly")
            if loadgen_bound(row):
                notes.append("rfload near its limit")
            if row.get("server_died"):
                notes.append("server died")
            if row.get("log_error_lines"):
                notes.append(f"{row['log_error_lines']} error lines in server log")
            name = f"**{sname}**" if sname == ref else sname
            rng = f"{fmt_num(row['min'], unit)}–{fmt_num(row['max'], unit)}" if row["min"] is not None else "—"
            cpu = f"{row['server_cpu_pct']:.0f} %" if row.get("server_cpu_pct") is not None else "—"
            lcpu = f"{row['loadgen_cpu_pct']:.0f} %" if row.get("loadgen_cpu_pct") is not None else "—"
            per_msg = row.get("server_cpu_us_per_msg")
            cpu_ratio = row.get("cpu_ratio_server_over_reference")
            per_msg_text = "—" if per_msg is None else (
                f"{per_msg:,.2f}" + (f" ({cpu_ratio:.2f}×)" if cpu_ratio else ""))
            sys_w, sys_r = row.get("server_writes_per_msg"), row.get("server_reads_per_msg")
            if sys_w is None or sys_r is None:
                syscalls = "—"
            elif sys_w == 0 and sys_r == 0:
                syscalls = "n/a (send/recv)"  # /proc/PID/io does not count send()/recv()
            else:
                syscalls = f"{sys_w:.2f} / {sys_r:.2f}"
            lines.append(
                f"| {wname} ({unit}{', lower is better' if not w['higher_is_better'] else ''}) | {name} "
                f"| {fmt_num(row['median'], unit)} | {rng} | {f'{r:.2f}×' if r else '—'} | {lat} "
                f"| {cpu} | {per_msg_text} | {lcpu} | {syscalls} | {row['errors']} | {'; '.join(notes)} |"
            )
    lines += [
        "",
        f"`{ref} ÷ server` is {ref}'s median over the server's: above 1 {ref} is ahead for "
        f"msgs/s, cycles/s and deliveries/s; for B/conn (memory, lower is better) above 1 means {ref} "
        "uses more. Server CPU µs/msg: the server's CPU time (every process of it, /proc) over the measured "
        f"window per message, delivery or cycle, and in brackets that over {ref}'s: on a loaded machine a "
        "server's msgs/s follows the CPU share the scheduler leaves it, its CPU per message much less. "
        "\"rfload near its limit\": the load generator used >= "
        f"{LOADGEN_BOUND:.0f} % of its core, so that figure may be the generator's ceiling, not the server's. "
        "Server writes / reads per msg: the server process's write-like and read-like syscalls "
        "(/proc/PID/io syscw, syscr) over the measured window per reply, delivery or cycle; the kernel "
        "counts read/write/readv/writev there but not send/recv, so servers that use those show n/a.",
    ]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    ref = meta.get("reference", "robyn_fast")
    fig, axes = plt.subplots(2, (len(names) + 2) // 2, figsize=(5 * ((len(names) + 2) // 2), 8.5))
    flat = axes.flatten()
    for ax, wname in zip(flat, names):
        w = summary[wname]
        servers = list(w["servers"])
        rows = [w["servers"][s] for s in servers]
        # Every panel reads the same way: taller is better, and a label is how many times
        # the reference's figure is the server's (above 1: the reference ahead). A lower-is-better
        # metric (memory per connection) is shown as its inverse (connections per MiB).
        inverse = not w["higher_is_better"]
        if inverse:
            def shown(v: float | None) -> float:
                return 1048576.0 / v if v else 0.0
            meds = [shown(r["median"]) for r in rows]
            lows = [shown(r["max"] or r["median"]) for r in rows]
            highs = [shown(r["min"] or r["median"]) for r in rows]
            scale, unit = 1.0, "connections per MiB of RSS"
        else:
            meds = [r["median"] or 0 for r in rows]
            lows = [r["min"] or m for r, m in zip(rows, meds)]
            highs = [r["max"] or m for r, m in zip(rows, meds)]
            scale, unit = 1.0, w["unit"]
            if max(meds or [0]) >= 10000:
                scale, unit = 1000.0, "thousand " + unit
        colors = ["#d62728" if s == ref else "#7f7f7f" for s in servers]
        bars = ax.bar(range(len(servers)), [m / scale for m in meds], color=colors,
                      yerr=[[(m - lo) / scale for m, lo in zip(meds, lows)],
                            [(hi - m) / scale for m, hi in zip(meds, highs)]], capsize=3)
        for i, (s, row) in enumerate(zip(servers, rows)):
            if loadgen_bound(row):
                bars[i].set_hatch("//")
                bars[i].set_edgecolor("white")
            r = ratio(row)
            if not row["median"]:
                ax.text(i, 0, " failed", rotation=90, ha="center", va="bottom", fontsize=9, color="#d62728")
            elif r and s != ref:
                ax.text(i, highs[i] / scale, f"{(1 / r if inverse else r):.2f}×",
                        ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(servers)))
        ax.set_xticklabels(servers, rotation=30, ha="right", fontsize=9)
        ax.set_title((w["title"] or wname) + (",\nshown as connections per MiB" if inverse else ""), fontsize=10)
        ax.set_ylabel(unit + " (higher is better)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in flat[len(names):]:
        ax.axis("off")
    if len(names) < len(flat):
        flat[-1].text(0.0, 0.5,
                      f"{meta['date']}, {meta['preset']} run: {meta['rounds']} interleaved rounds,\n"
                      f"{meta['warmup_s']} s warm-up + {meta['duration_s']} s each; bars = median,\n"
                      f"whiskers = min-max over rounds. Every panel: higher is better;\n"
                      f"labels = {ref}'s figure ÷ the server's (> 1: {ref} ahead).\n"
                      f"Memory is shown as connections per MiB of RSS growth.\n"
                      f"Hatched: rfload used >= {LOADGEN_BOUND:.0f} % of its core, so the\n"
                      f"figure may be rfload's limit rather than the server's.\n"
                      f"2-vCPU VM shared with other work: ±30 % is noise.\n"
                      f"Server pinned to CPU {meta['server_core']}, rfload to CPU {meta['loadgen_core']}.",
                      fontsize=9, va="center", transform=flat[-1].transAxes)
    fig.suptitle(f"{ref} vs other WebSocket servers (bench/run.py)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------


PRESETS = {
    "quick": {"rounds": 2, "duration": 1.0, "warmup": 0.5},
    "full": {"rounds": 5, "duration": 3.0, "warmup": 1.0},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", dest="preset", action="store_const", const="quick",
                        help="2 rounds, 0.5 s warm-up + 1 s per run (the default)")
    preset.add_argument("--full", dest="preset", action="store_const", const="full",
                        help="5 rounds, 1 s warm-up + 3 s per run")
    p.add_argument("--rounds", type=int, help="interleaved rounds (overrides the preset)")
    p.add_argument("--duration", type=float, help="measured seconds per run (overrides the preset)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (overrides the preset)")
    p.add_argument("--timeout", type=float, default=2.0, help="rfload -T: connect/round/close timeout (s)")
    p.add_argument("--servers", default="", help="comma-separated subset (default: all)")
    p.add_argument("--reference", default="robyn_fast",
                   help="the server the ratios are taken against (default robyn_fast, the legacy message-handler "
                        "API; robyn_fast-recv for the receive-loop API)")
    p.add_argument("--workloads", default="", help="comma-separated subset of " +
                   ", ".join(w.name for w in WORKLOADS))
    p.add_argument("--parser", choices=["codec", "raw"], default="codec", help="rfload --parser")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                   help="event loop of robyn_fast and the asyncio-based peers")
    p.add_argument("--server-core", default="0")
    p.add_argument("--loadgen-core", default="1")
    p.add_argument("--port-base", type=int, default=19100)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--date", default=_dt.date.today().isoformat(), help="date in the file names")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--plot", type=Path, metavar="RESULTS_JSON",
                   help="only redraw bench/results/load.png from a results file (no load run)")
    p.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                   help="also run robyn_fast from another checkout (built with `make install` there, so that "
                        "CHECKOUT/.venv exists) as server robyn_fast@base, side by side")
    p.add_argument("--baseline-python", type=Path, metavar="PYTHON",
                   help="the interpreter for --baseline (default: CHECKOUT/.venv/bin/python)")
    p.add_argument("--python", type=Path, metavar="PYTHON",
                   help="the interpreter for this checkout's robyn_fast servers (default: this one); e.g. "
                        ".venv-3.12/bin/python after `make install PYTHON=python3.12`")
    a = p.parse_args(argv)
    if a.plot is not None:
        data = json.loads(a.plot.read_text(encoding="utf-8"))
        plot(data["summary"], data["meta"], RESULTS / "load.png")
        log(f"redrawn bench/results/load.png from {a.plot}")
        return 0
    a.preset = a.preset or "quick"
    for k, v in PRESETS[a.preset].items():
        if getattr(a, k) is None:
            setattr(a, k, v)

    if not list((HERE / "loadgen").glob("_rfload*.so")):
        log("bench/run.py: the load generator is not built; run `make bench-loadgen`")
        return 2

    if a.baseline is not None and a.baseline_python is None and not (a.baseline / ".venv" / "bin" / "python").exists():
        p.error(f"--baseline {a.baseline}: no .venv there (run `make install` in it first)")
    servers = all_servers(a.baseline.resolve() if a.baseline is not None else None,
                          a.python.absolute() if a.python else None,
                          a.baseline_python.absolute() if a.baseline_python else None)
    if a.servers:
        wanted = a.servers.split(",")
        unknown = set(wanted) - {s.name for s in servers}
        if unknown:
            p.error(f"unknown servers: {', '.join(sorted(unknown))}")
        servers = [s for s in servers if s.name in wanted]
    if a.reference not in {s.name for s in servers}:
        p.error(f"--reference {a.reference}: not among the servers run")
    workloads = WORKLOADS
    if a.workloads:
        wanted = a.workloads.split(",")
        unknown = set(wanted) - {w.name for w in WORKLOADS}
        if unknown:
            p.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        workloads = [w for w in WORKLOADS if w.name in wanted]

    for s in servers:
        if s.name in ROBYN_RELEASES:
            why = ensure_robyn(s.name)
            if why:
                s.available, s.why_unavailable = False, why
                continue
        probe_server(s)
    for s in servers:
        log(f"  {s.name:<15} {s.version or '-':<10} " + ("" if s.available else f"SKIPPED: {s.why_unavailable}"))
    skipped = {s.name: s.why_unavailable for s in servers if not s.available}
    servers = [s for s in servers if s.available]
    if not any(s.name == a.reference for s in servers):
        log(f"bench/run.py: the reference, {a.reference}, is not runnable; nothing to compare")
        return 2

    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = RESULTS / f"logs-{a.date}"
    jsonl_path = RESULTS / f"load-{a.date}.runs.jsonl"
    ports = Ports(a.port_base)
    runs: list[dict] = []
    total = a.rounds * sum(w.kind in s.scripts for w in workloads for s in servers)
    t0 = time.monotonic()
    meta = {
        "date": a.date,
        "preset": a.preset,
        "rounds": a.rounds,
        "warmup_s": a.warmup,
        "duration_s": a.duration,
        "timeout_s": a.timeout,
        "parser": a.parser,
        "loop": a.loop,
        "server_core": a.server_core,
        "loadgen_core": a.loadgen_core,
        "reference": a.reference,
        "commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(),
        "versions": {s.name: s.version for s in servers},
        "pythons": {s.name: str(s.python) for s in servers},
        "notes": {s.name: s.note for s in servers if s.note},
        "skipped": skipped,
        "workloads": {w.name: {"rfload": " ".join(w.args), "server": w.kind, "metric": w.metric,
                               "unit": w.unit} for w in workloads},
    }
    with open(jsonl_path, "w", encoding="utf-8") as jsonl:
        n = 0
        for rnd in range(1, a.rounds + 1):
            for w in workloads:
                for s in servers:
                    if w.kind not in s.scripts:
                        continue  # no server of that kind (an async handler in a callback API)
                    n += 1
                    rec = one_run(w, s, rnd, a, ports, logdir, jsonl)
                    runs.append(rec)
                    val = rec.get(w.metric)
                    shown = "FAILED: " + rec["failure"] if rec.get("failed") else f"{fmt_num(val, w.unit)} {w.unit}"
                    log(f"[{n}/{total} {time.monotonic() - t0:5.0f}s] round {rnd} {w.name:<15} {s.name:<15} "
                        f"{shown}  srv {rec.get('server_cpu_pct', '-')}% lg {rec.get('loadgen_cpu_pct', '-')}% "
                        f"err {rec.get('errors', '-')}")
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    try:
        meta["machine"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    summary = summarize(runs, servers, workloads, a.reference)
    out = {"meta": meta, "summary": summary, "runs": runs}
    json_path = RESULTS / f"load-{a.date}.json"
    json_path.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    md = markdown(summary, meta)
    (RESULTS / "load.md").write_text(md, encoding="utf-8")
    if not a.no_plot:
        try:
            plot(summary, meta, RESULTS / "load.png")
        except ImportError as exc:
            log(f"no chart: {exc}")
    print(md)
    log(f"{len(runs)} runs in {meta['elapsed_s']:.0f} s; written {json_path.relative_to(REPO)}, "
        f"bench/results/load.md" + ("" if a.no_plot else ", bench/results/load.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
