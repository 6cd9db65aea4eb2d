"""permessage-deflate (RFC 7692), side by side: robyn_fast in each compression
mode against websockets and aiohttp with compression on.

    .venv/bin/python bench/compression.py            # 3 interleaved rounds, 1 s + 3 s per run (~4 minutes)
    .venv/bin/python bench/compression.py --rounds 3 --workloads echo-16KiB --servers "robyn_fast shared,aiohttp"

Every client offers permessage-deflate as browsers do
(``permessage-deflate; client_max_window_bits``) and uses what the server
answers: ``rfload --deflate`` inflates the server's messages with the codec's
Inflater (keeping the context unless the server said
``server_no_context_takeover``) and sends its own compressed, from payloads
compressed once at start-up. Payloads are JSON documents (``rfload --json``:
256 of them, alike in structure and not in values, sent in turn).

Servers (each pinned to ``--server-core``, rfload to ``--loadgen-core``):

* ``robyn_fast shared``: ``Config(compression="shared")``, the default: no
  context takeover either way, one compressor per loop, a broadcast
  compressed once (``bench/peers/deflate_robyn_fast.py``);
* ``robyn_fast dedicated``: contexts per connection (12-bit window, memLevel 5);
* ``robyn_fast off``: the offer is declined; the uncompressed baseline;
* ``websockets`` (``compression="deflate"``, its default: 12-bit windows,
  memLevel 5, zlib's default level, context takeover both ways);
* ``aiohttp`` (``WebSocketResponse(compress=True)``: 15-bit window, level 1,
  context takeover).

Workloads:

* ``fanout-500-2KiB``: 500 subscribers + 1 publisher, a 2 KiB JSON message
  broadcast to all, closed loop (``rfload fanout``). Every 10th subscriber
  inflates and checks what it gets; the others count the compressed frames
  unread (``--inflate-every 10``), so that inflating 500 copies does not make
  the load generator the bottleneck. Deliveries/s, server CPU per delivery,
  bytes on the wire per delivery.
* ``echo-16KiB``: 8 connections x 4 messages in flight, 16 KiB JSON each way.
* ``idle-2000``: 2000 connections, each first sends one 2 KiB message and gets
  it back compressed (``rfload idle --exchange``), so that every context a mode
  allocates lazily exists; then the server's RSS growth per connection. A
  warm-up of 16 such connections runs first on the same server, so that
  one-time allocations (shared contexts, scratch buffers) are not counted.

Writes ``bench/results/compression-<date>.json`` (``--out`` to change) and
prints Markdown tables. Needs the load generator (``make bench-loadgen``) and
websockets and aiohttp (the ``[bench]`` extras).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as _run  # noqa: E402  (bench/run.py: server start/stop helpers)

REPO = HERE.parent
PEERS = HERE / "peers"
PY = sys.executable
REFERENCE = "robyn_fast shared"      # the default mode: ratios are taken against it


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str                 # "echo" or "broadcast" server
    args: tuple[str, ...]     # rfload arguments
    metric: str
    unit: str
    higher_is_better: bool = True
    warm_up: tuple[str, ...] = ()   # an rfload run before the measured one, on the same server


WORKLOADS = [
    Workload("fanout-500-2KiB", "broadcast",
             ("fanout", "-c", "500", "-s", "2048", "--json", "--deflate", "--inflate-every", "10"),
             "msgs_per_s", "deliveries/s"),
    Workload("echo-16KiB", "echo", ("echo", "-c", "8", "-p", "4", "-s", "16384", "--json", "--deflate"),
             "msgs_per_s", "msgs/s"),
    Workload("idle-2000", "echo", ("idle", "-c", "2000", "-s", "2048", "--json", "--deflate", "--exchange"),
             "rss_per_conn_bytes", "B/conn", higher_is_better=False,
             warm_up=("idle", "-c", "16", "-s", "2048", "--json", "--deflate", "--exchange", "--settle", "0")),
]


@dataclass(frozen=True)
class Server:
    name: str
    kind_script: dict[str, Path]
    mode: str = ""            # robyn_fast: Config.compression; "" for a peer
    check: str = ""

    def command(self, kind: str, port: int, loop: str) -> list[str]:
        if self.mode:
            return [PY, str(self.kind_script[kind]), kind, self.mode]
        return [PY, str(self.kind_script[kind]), str(port), "--loop", loop, "--deflate"]


ROBYN = {k: PEERS / "deflate_robyn_fast.py" for k in ("echo", "broadcast")}
SERVERS = [
    Server("robyn_fast shared", ROBYN, "shared", "robyn_fast"),
    Server("robyn_fast dedicated", ROBYN, "dedicated", "robyn_fast"),
    Server("robyn_fast off", ROBYN, "off", "robyn_fast"),
    Server("websockets", {k: PEERS / f"{k}_websockets.py" for k in ("echo", "broadcast")}, check="websockets"),
    Server("aiohttp", {k: PEERS / f"{k}_aiohttp.py" for k in ("echo", "broadcast")}, check="aiohttp"),
]

# Kept from every rfload line (the whole line goes to the runs' "rfload" field only with --keep-all).
KEEP = (
    "opened", "msgs", "msgs_per_s", "rounds_per_s", "p50_us", "p99_us", "errors", "error_detail",
    "server_cpu_pct", "server_cpu_us_per_msg", "loadgen_cpu_pct", "wire_rx_per_msg", "wire_tx_per_msg",
    "payload_per_msg", "rx_compressed_msgs", "deflate_response", "deflate_conns", "late", "publisher_echoes",
    "rss_per_conn_bytes", "rss_before_kb", "rss_after_kb", "exchanged", "exchanged_compressed", "closed_clean",
    "close_timeouts", "setup_s", "first_bad_status",
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def version(module: str) -> str | None:
    code = ("import importlib.metadata as m, sys; mod = sys.argv[1]; __import__(mod); "
            "print(m.version('robyn_fast' if mod == 'robyn_fast' else mod))")
    r = subprocess.run([PY, "-c", code, module], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    return r.stdout.strip() if r.returncode == 0 else None


def start(s: Server, kind: str, port: int, a: argparse.Namespace, log_path: Path) -> _run.Running | str:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PORT=str(port), ROBYN_PORT=str(port), ROBYN_HOST="127.0.0.1")
    if a.loop == "asyncio":
        env["ROBYN_FAST_LOOP"] = "asyncio"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as logf:
        t0 = time.monotonic()
        proc = subprocess.Popen(["taskset", "-c", a.server_core] + s.command(kind, port, a.loop), cwd=str(REPO),
                                env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_run._raise_nofile)
    deadline = t0 + a.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode} before serving"
        if _run.handshake_ok(port):
            return _run.Running(proc, port, log_path, time.monotonic() - t0)
        time.sleep(0.05)
    _run.stop_server(_run.Running(proc, port, log_path, 0.0))
    return f"no successful handshake within {a.start_timeout:.0f} s"


def rfload(args: tuple[str, ...], port: int, pids: list[int], a: argparse.Namespace,
           measured: bool = True) -> tuple[int, dict | None, str]:
    cmd = ["taskset", "-c", a.loadgen_core, PY, str(HERE / "rfload.py"), *args,
           "-u", f"ws://127.0.0.1:{port}/ws", "-T", str(a.timeout), "--server-pid", ",".join(map(str, pids))]
    if measured and args[0] != "idle":
        cmd += ["-w", str(a.warmup), "-d", str(a.duration)]
    bound = 15 + a.warmup + a.duration + a.timeout + 15 + 10
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=bound, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return -1, None, "load generator timed out"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    return r.returncode, (json.loads(lines[-1]) if lines else None), r.stderr.strip()[-500:]


def one_run(w: Workload, s: Server, rnd: int, a: argparse.Namespace, ports: _run.Ports, logdir: Path) -> dict:
    port = ports.next()
    log_path = logdir / f"r{rnd}-{w.name}-{s.name.replace(' ', '_')}.log"
    rec: dict[str, Any] = {"round": rnd, "workload": w.name, "server": s.name, "port": port}
    started = start(s, w.kind, port, a, log_path)
    if isinstance(started, str):
        rec.update(failed=True, failure=f"server start: {started}", **_run.log_excerpt(log_path))
        return rec
    pids = _run.group_pids(started.proc.pid) or [started.proc.pid]
    if w.warm_up:
        rc, data, err = rfload(w.warm_up, port, pids, a, measured=False)
        rec["warm_up"] = {"rc": rc, **({k: data[k] for k in ("opened", "exchanged", "errors") if k in data}
                                       if data else {"stderr": err})}
    rc, data, err = rfload(w.args, port, pids, a)
    alive = started.proc.poll() is None
    rec.update(_run.stop_server(started))
    rec["loadgen_rc"] = rc
    if not alive:
        rec["server_died"] = True
    if data is None:
        rec.update(failed=True, failure=f"load generator: rc={rc} {err}")
    else:
        rec.update({k: data[k] for k in KEEP if k in data and data[k] not in (None, {})})
        if not data.get(w.metric):
            rec.update(failed=True, failure="no result")
    rec.update(_run.log_excerpt(log_path))
    return rec


median = _run.median


def summarize(runs: list[dict], servers: list[Server], workloads: list[Workload]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in workloads:
        rows: dict[str, Any] = {}
        for s in servers:
            rs = [r for r in runs if r["workload"] == w.name and r["server"] == s.name]
            ok = [r for r in rs if not r.get("failed")]
            vals = [r[w.metric] for r in ok]
            row: dict[str, Any] = {"runs": len(rs), "ok_runs": len(ok), "median": median(vals),
                                   "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                                   "values": vals}
            for key in ("server_cpu_pct", "server_cpu_us_per_msg", "loadgen_cpu_pct", "wire_rx_per_msg",
                        "wire_tx_per_msg", "payload_per_msg", "p50_us", "p99_us"):
                row[key] = median([r[key] for r in ok if r.get(key) is not None])
            if row["wire_rx_per_msg"] and row["payload_per_msg"]:
                row["compression_ratio_rx"] = round(row["payload_per_msg"] / row["wire_rx_per_msg"], 2)
            responses = sorted({r["deflate_response"] for r in ok if r.get("deflate_response")})
            row["deflate_response"] = responses[0] if len(responses) == 1 else (responses or None)
            row["compressed_share"] = median([r.get("rx_compressed_msgs", r.get("exchanged_compressed", 0))
                                              / max(1, r.get("msgs", r.get("exchanged", 0)) or 1) for r in ok])
            row["errors"] = sum(r.get("errors", 0) or 0 for r in rs)
            detail: dict[str, int] = {}
            for r in rs:
                for k, v in (r.get("error_detail") or {}).items():
                    detail[k] = detail.get(k, 0) + v
            row["error_detail"] = detail
            failures = sorted({r["failure"] for r in rs if r.get("failure")})
            if failures:
                row["failures"] = failures
            if any(r.get("log_error_lines") for r in rs):
                row["log_error_lines"] = sum(r.get("log_error_lines", 0) for r in rs)
                row["log_first_errors"] = next(r["log_first_errors"] for r in rs if r.get("log_first_errors"))
            rows[s.name] = row
        for ref in ("robyn_fast shared", "robyn_fast dedicated"):
            base = rows.get(ref, {}).get("median")
            for row in rows.values():
                m = row["median"]
                row[f"ratio {ref} / this"] = round(base / m, 3) if base and m else None
        # CPU per message holds up better than messages/s when other work takes CPU time
        # from both cores: this server's over robyn_fast shared's.
        base = rows.get(REFERENCE, {}).get("server_cpu_us_per_msg")
        for row in rows.values():
            m = row["server_cpu_us_per_msg"]
            row["cpu_per_msg_over_shared"] = round(m / base, 2) if base and m else None
        out[w.name] = {"metric": w.metric, "unit": w.unit, "higher_is_better": w.higher_is_better,
                       "rfload": " ".join(w.args), "servers": rows}
    return out


def _f(v: Any, fmt: str = ",.0f", none: str = "—") -> str:
    return none if v is None else format(v, fmt)


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"permessage-deflate, {meta['date']}: {meta['rounds']} interleaved rounds, "
             f"{meta['warmup_s']} s warm-up + {meta['duration_s']} s per run, medians; server on CPU "
             f"{meta['server_core']}, rfload on CPU {meta['loadgen_core']}.", ""]
    for wname, w in summary.items():
        unit = w["unit"]
        lines += [f"**{wname}** (`rfload {w['rfload']}`)", ""]
        if unit == "B/conn":
            lines += ["| server | RSS per idle connection | min–max | shared ÷ this | dedicated ÷ this "
                      "| compressed echoes | errors | agreed |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        else:
            lines += [f"| server | {unit} | min–max | shared ÷ this | dedicated ÷ this | server CPU "
                      "| server CPU µs/msg (÷ shared's) | wire B/msg in (payload ÷ wire) | wire B/msg out "
                      "| rfload CPU | errors | agreed |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for sname, row in w["servers"].items():
            errs = str(row["errors"]) + (" " + ", ".join(f"{k} {v}" for k, v in row["error_detail"].items())
                                         if row["error_detail"] else "")
            if row.get("failures"):
                errs += " FAILED: " + "; ".join(row["failures"])
            if row.get("log_error_lines"):
                errs += f"; {row['log_error_lines']} error lines in its log"
            r1, r2 = row.get("ratio robyn_fast shared / this"), row.get("ratio robyn_fast dedicated / this")
            agreed = row.get("deflate_response") or "declined"
            if unit == "B/conn":
                kib = (lambda v: None if v is None else v / 1024)
                lines.append(f"| {sname} | {_f(kib(row['median']), ',.1f')} KiB "
                             f"| {_f(kib(row['min']), ',.1f')}–{_f(kib(row['max']), ',.1f')} "
                             f"| {_f(r1, '.2f')}× | {_f(r2, '.2f')}× | {_f(row['compressed_share'], '.0%')} "
                             f"| {errs} | `{agreed}` |")
            else:
                ratio = f" ({row['compression_ratio_rx']:.2f}×)" if row.get("compression_ratio_rx") else ""
                lg = _f(row["loadgen_cpu_pct"], ".0f") + " %"
                if (row["loadgen_cpu_pct"] or 0) >= _run.LOADGEN_BOUND:
                    lg += " (near its limit)"
                lines.append(f"| {sname} | {_f(row['median'])} | {_f(row['min'])}–{_f(row['max'])} "
                             f"| {_f(r1, '.2f')}× | {_f(r2, '.2f')}× | {_f(row['server_cpu_pct'], '.0f')} % "
                             f"| {_f(row['server_cpu_us_per_msg'], '.1f')} ({_f(row['cpu_per_msg_over_shared'], '.2f')}×) "
                             f"| {_f(row['wire_rx_per_msg'])}{ratio} "
                             f"| {_f(row['wire_tx_per_msg'], ',.1f')} | {lg} | {errs} | `{agreed}` |")
        lines.append("")
    lines.append("`shared ÷ this`: robyn_fast (shared, the default)'s median over this server's; above 1 "
                 "robyn_fast is ahead for messages/s and uses more for memory. Wire bytes: WebSocket frames "
                 "(headers included, not TCP/IP) per message received by the clients (in) and sent by them "
                 "(out; fan-out: the publisher's one message per round spread over 500 deliveries).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per run (default 3)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (default 1)")
    p.add_argument("--timeout", type=float, default=2.0, help="rfload -T (s)")
    p.add_argument("--servers", default="", help="comma-separated subset of: " + ", ".join(s.name for s in SERVERS))
    p.add_argument("--workloads", default="", help="comma-separated subset of: " +
                   ", ".join(w.name for w in WORKLOADS))
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--server-core", default="0")
    p.add_argument("--loadgen-core", default="1")
    p.add_argument("--port-base", type=int, default=19600)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--date", default=_dt.date.today().isoformat())
    p.add_argument("--out", type=Path, help="JSON output (default bench/results/compression-<date>.json)")
    a = p.parse_args(argv)

    if not list((HERE / "loadgen").glob("_rfload*.so")):
        log("bench/compression.py: the load generator is not built; run `make bench-loadgen`")
        return 2
    def pick(items: list[Any], csv: str | None, what: str) -> list[Any]:
        """The items named in ``csv`` (all when it is empty); a usage error for an unknown name."""
        if not csv:
            return items
        wanted = [x.strip() for x in csv.split(",")]
        unknown = set(wanted) - {item.name for item in items}
        if unknown:
            p.error(f"unknown {what}: {', '.join(sorted(unknown))}")
        return [item for item in items if item.name in wanted]

    servers = pick(SERVERS, a.servers, "servers")
    workloads = pick(WORKLOADS, a.workloads, "workloads")
    versions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for mod in sorted({s.check for s in servers}):
        v = version(mod)
        if v is None:
            skipped[mod] = f"cannot import {mod}"
        else:
            versions[mod] = v
    servers = [s for s in servers if s.check in versions]
    for mod, why in skipped.items():
        log(f"  SKIPPED {mod}: {why}")

    out_path = a.out or _run.RESULTS / f"compression-{a.date}.json"
    logdir = _run.RESULTS / f"logs-compression-{a.date}"
    ports = _run.Ports(a.port_base)
    meta = {
        "date": a.date, "rounds": a.rounds, "warmup_s": a.warmup, "duration_s": a.duration,
        "timeout_s": a.timeout, "loop": a.loop, "server_core": a.server_core, "loadgen_core": a.loadgen_core,
        "commit": _run.git_commit(),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": _run.machine_info(), "versions": versions, "skipped": skipped,
        "servers": {s.name: " ".join(Path(x).name if i < 2 else x
                                     for i, x in enumerate(s.command("echo", 0, a.loop))) for s in servers},
        "workloads": {w.name: {"rfload": " ".join(w.args), "server": w.kind, "metric": w.metric, "unit": w.unit,
                               "warm_up": " ".join(w.warm_up) or None} for w in workloads},
    }
    runs: list[dict] = []
    total = a.rounds * len(workloads) * len(servers)
    t0 = time.monotonic()
    n = 0
    for rnd in range(1, a.rounds + 1):
        for w in workloads:
            for s in servers:
                n += 1
                rec = one_run(w, s, rnd, a, ports, logdir)
                runs.append(rec)
                val = rec.get(w.metric)
                shown = ("FAILED: " + rec["failure"] if rec.get("failed")
                         else f"{val:,.0f} {w.unit}" if val is not None else "-")
                log(f"[{n}/{total} {time.monotonic() - t0:4.0f}s] r{rnd} {w.name:<16} {s.name:<21} {shown}  "
                    f"srv {rec.get('server_cpu_pct', '-')}% {rec.get('server_cpu_us_per_msg', '-')} us/msg "
                    f"wire {rec.get('wire_rx_per_msg', '-')} B  lg {rec.get('loadgen_cpu_pct', '-')}% "
                    f"err {rec.get('errors', '-')}")
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    try:
        meta["machine"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    summary = summarize(runs, servers, workloads)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1) + "\n",
                        encoding="utf-8")
    print(markdown(summary, meta))
    log(f"{len(runs)} runs in {meta['elapsed_s']:.0f} s; written {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
