"""Echo over TLS (wss://): robyn_fast against picows and aiohttp, each serving
TLS with the same certificate, server and load generator pinned to different
cores, interleaved rounds, medians and ratios.

    .venv/bin/python bench/tls.py                 # quick: 2 rounds, 1 s + 3 s per run (~2 minutes)
    .venv/bin/python bench/tls.py --rounds 5 --duration 5

rfload (bench/loadgen) speaks plain TCP through its own epoll loop, so this
script carries its own load generator for TLS, run as a subprocess
(``bench/tls.py load ...``): asyncio on uvloop, ``loop.create_connection(...,
ssl=context)`` (OpenSSL through uvloop's SSL protocol, TLS 1.3 with
AES-GCM on this machine), frames built and parsed by robyn_fast's compiled
codec. Each of ``-c`` connections keeps ``-p`` messages of ``-s`` bytes in
flight; each echo received is checked (length and content) and answered by
the next message. It reports messages/s over the measured window and the CPU
of the server's processes and of itself; near 100 % of its own core the
figure is the load generator's limit, not the server's (the table says so).

Servers: ``robyn_fast`` (examples/echo.py with ``--ssl-certfile`` and
``--ssl-keyfile``: the command line's TLS, on aiofastnet's TLS transport
when it is installed, as ``Config.tls_transport="auto"`` picks),
``robyn_fast, loop's TLS`` (the same with ``ROBYN_FAST_TLS_TRANSPORT=loop``:
uvloop's TLS transport),
``picows`` and ``aiohttp`` (bench/peers/echo_*.py with
``$PEER_TLS_CERT``/``$PEER_TLS_KEY``), all on uvloop. picows, when the
``aiofastnet`` package is installed (it is, with picows from PyPI), serves
through aiofastnet's own TLS transport, not the loop's; ``picows, loop's
TLS`` is picows on uvloop's TLS transport, as robyn_fast and aiohttp are.
``robyn_fast plain`` (no TLS, the same load generator over TCP) shows what
TLS costs. The certificate is made at start-up with ``cryptography``
(self-signed, for 127.0.0.1), in a temporary directory.

Writes ``bench/results/tls-<date>.json`` (``--out`` to change) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as _dt
import hashlib
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
PY = sys.executable
REFERENCE = "robyn_fast"
LOADGEN_BOUND = 85.0


# -- the TLS load generator (a subprocess: `bench/tls.py load ...`) -------------------------------------------


class _EchoClient(asyncio.Protocol):
    """One WebSocket client connection keeping ``pipeline`` messages in flight."""

    def __init__(self, gen: _LoadGen) -> None:
        self.gen = gen
        self.unsent = gen.a.count - gen.a.pipeline if gen.a.count else -1  # -1: no fixed count
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.open = asyncio.get_running_loop().create_future()
        self.parser: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.gen.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        gen = self.gen
        if self.parser is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(f"handshake refused: {self.head[:60]!r}"))
                return
            self.parser = gen.codec.FrameParser(None, client=True)
            data = self.head[end + 4:]
            self.open.set_result(None)
            if not data:
                return
        if not gen.running:
            return  # a fixed count is done: the server's reply to our close is none of its business
        messages = self.parser.feed(data)
        n = 0
        for m in messages:
            if m.opcode == 9:  # a keepalive Ping (runs under valgrind last long enough to get them)
                self.transport.write(gen.codec.build_pong(m.data, mask=os.urandom(4)))  # type: ignore[union-attr]
                continue
            if m.opcode != 1 or len(m.data) != gen.size or m.data != gen.payload:
                gen.errors += 1
                continue
            n += 1
        if n:
            gen.received += n
            if self.unsent >= 0:
                n = min(n, self.unsent)
                self.unsent -= n
                if gen.received >= gen.expected:
                    gen.finished.set()
            if gen.running and n:
                self.transport.write(gen.frame * n)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        elif self.gen.running:
            self.gen.errors += 1


class _LoadGen:
    def __init__(self, a: argparse.Namespace) -> None:
        from robyn_fast import codec

        self.codec = codec
        self.a = a
        self.size = a.size
        self.payload = "x" * a.size
        self.frame = codec.build_text(self.payload, mask=os.urandom(4))
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        self.received = 0
        self.errors = 0
        self.running = True
        self.expected = a.count * a.conns
        self.finished = asyncio.Event()

    async def run(self) -> dict[str, Any]:
        a = self.a
        loop = asyncio.get_running_loop()
        context = None
        if a.cafile:
            context = ssl.create_default_context(cafile=a.cafile)
        clients = []
        for _ in range(a.conns):
            _, proto = await asyncio.wait_for(loop.create_connection(
                lambda: _EchoClient(self), "127.0.0.1", a.port, ssl=context,
                server_hostname="127.0.0.1" if context else None), a.timeout)
            await asyncio.wait_for(proto.open, a.timeout)
            clients.append(proto)
        tls = clients[0].transport.get_extra_info("ssl_object")
        for c in clients:
            c.transport.write(self.frame * a.pipeline)
        if a.count:  # a fixed count of echoes per connection, then close: for bench/tls_count.py
            await self.finished.wait()
            self.running = False
            for c in clients:
                c.transport.close()
            return {"msgs": self.received, "errors": self.errors}
        await asyncio.sleep(a.warmup)
        pids = tuple(int(p) for p in a.server_pid.split(",") if p)
        n0, cpu0, self0, t0 = self.received, _cpu_s(pids), _self_cpu_s(), time.monotonic()
        await asyncio.sleep(a.duration)
        n1, cpu1, self1, t1 = self.received, _cpu_s(pids), _self_cpu_s(), time.monotonic()
        self.running = False
        for c in clients:
            c.transport.close()
        elapsed = t1 - t0
        msgs = n1 - n0
        return {
            "msgs": msgs, "msgs_per_s": round(msgs / elapsed, 1), "errors": self.errors,
            "tls": f"{tls.version()} {tls.cipher()[0]}" if tls is not None else None,
            "server_cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1) if cpu0 is not None and cpu1 is not None
            else None,
            "server_cpu_us_per_msg": round(1e6 * (cpu1 - cpu0) / msgs, 2) if msgs and cpu0 is not None
            and cpu1 is not None else None,
            "loadgen_cpu_pct": round(100 * (self1 - self0) / elapsed, 1),
        }


def _cpu_s(pids: tuple[int, ...]) -> float | None:
    tick = os.sysconf("SC_CLK_TCK")
    total, seen = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total / tick if seen else None


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tls.py load")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", default="", help="wss with this CA; plain ws:// without")
    p.add_argument("-c", "--conns", type=int, default=8)
    p.add_argument("-p", "--pipeline", type=int, default=16)
    p.add_argument("-s", "--size", type=int, default=1024)
    p.add_argument("-w", "--warmup", type=float, default=1.0)
    p.add_argument("-d", "--duration", type=float, default=3.0)
    p.add_argument("-T", "--timeout", type=float, default=5.0)
    p.add_argument("--server-pid", default="")
    p.add_argument("-n", "--count", type=int, default=0, help="echoes per connection, then close (0: timed run)")
    a = p.parse_args(argv)
    import uvloop

    result = uvloop.run(asyncio.wait_for(_LoadGen(a).run(), a.timeout * (a.conns + 2) + a.warmup + a.duration))
    print(json.dumps(result))
    return 3 if result["errors"] else 0


# -- the runner ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    name: str
    script: Path
    tls: bool = True
    robyn_fast: bool = False
    env: tuple[tuple[str, str], ...] = ()


SERVERS = [
    Server("robyn_fast", REPO / "examples" / "echo.py", robyn_fast=True),
    Server("robyn_fast, loop's TLS", REPO / "examples" / "echo.py", robyn_fast=True,
           env=(("ROBYN_FAST_TLS_TRANSPORT", "loop"),)),
    Server("picows", PEERS / "echo_picows.py"),
    Server("picows, loop's TLS", PEERS / "echo_picows.py", env=(("PICOWS_AIOFASTNET", "0"),)),
    Server("aiohttp", PEERS / "echo_aiohttp.py"),
    Server("robyn_fast plain", REPO / "examples" / "echo.py", tls=False, robyn_fast=True),
]


@dataclass(frozen=True)
class Workload:
    name: str
    conns: int
    pipeline: int
    size: int


WORKLOADS = [
    Workload("echo 8 conns x 16 in flight, 1 KiB", 8, 16, 1024),
    Workload("echo 64 conns x 1 in flight, 32 B", 64, 1, 32),
]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "robyn_fast bench")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(s: Server, port: int, cert: Path, key: Path, a: argparse.Namespace,
          log_path: Path) -> subprocess.Popen[bytes] | str:
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROBYN_HOST="127.0.0.1", ROBYN_PORT=str(port), **dict(s.env))
    cmd = ["taskset", "-c", a.server_core, *getattr(a, "prefix", ()), PY, str(s.script)]
    if s.robyn_fast:
        if s.tls:
            cmd += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        cmd += ["--log-level", "WARNING"]
    else:
        cmd += [str(port), "--loop", "uvloop"]
        env.update(PEER_TLS_CERT=str(cert), PEER_TLS_KEY=str(key))
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    context = ssl.create_default_context(cafile=str(cert)) if s.tls else None
    deadline = time.monotonic() + a.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode} before serving"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if context is not None:
                    context.wrap_socket(sock, server_hostname="127.0.0.1").close()
                return proc
        except (OSError, ssl.SSLError):
            time.sleep(0.05)
    stop(proc)
    return "not serving in time"


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait(5)


def one_run(s: Server, w: Workload, rnd: int, cert: Path, key: Path, a: argparse.Namespace,
            logdir: Path) -> dict[str, Any]:
    port = free_port()
    rec: dict[str, Any] = {"round": rnd, "server": s.name, "workload": w.name}
    log_path = logdir / f"r{rnd}-{s.name.replace(' ', '_')}-{w.conns}x{w.pipeline}.log"
    proc = start(s, port, cert, key, a, log_path)
    if isinstance(proc, str):
        rec.update(failed=True, failure=proc)
        return rec
    try:
        cmd = ["taskset", "-c", a.loadgen_core, PY, str(Path(__file__)), "load", "--port", str(port),
               "-c", str(w.conns), "-p", str(w.pipeline), "-s", str(w.size), "-w", str(a.warmup),
               "-d", str(a.duration), "--server-pid", str(proc.pid)]
        if s.tls:
            cmd += ["--cafile", str(cert)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + a.warmup + a.duration, cwd=str(REPO))
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            rec.update(failed=True, failure=f"load generator rc={r.returncode}: {r.stderr.strip()[-400:]}")
        else:
            rec.update(json.loads(lines[-1]))
            if rec.get("errors"):
                rec.update(failed=True, failure=f"{rec['errors']} bad or lost echoes")
    except subprocess.TimeoutExpired:
        rec.update(failed=True, failure="load generator timed out")
    finally:
        alive = proc.poll() is None
        stop(proc)
    if not alive:
        rec.update(failed=True, failure="the server died")
    return rec


def median(values: list[float]) -> float | None:
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def summarize(runs: list[dict[str, Any]], servers: list[Server]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in WORKLOADS:
        rows: dict[str, Any] = {}
        for s in servers:
            ok = [r for r in runs if r["workload"] == w.name and r["server"] == s.name and not r.get("failed")]
            failed = [r["failure"] for r in runs if r["workload"] == w.name and r["server"] == s.name
                      and r.get("failed")]
            rows[s.name] = {
                "median": median([r["msgs_per_s"] for r in ok]), "values": [r["msgs_per_s"] for r in ok],
                "server_cpu_us_per_msg": median([r["server_cpu_us_per_msg"] for r in ok
                                                 if r.get("server_cpu_us_per_msg")]),
                "server_cpu_pct": median([r["server_cpu_pct"] for r in ok if r.get("server_cpu_pct") is not None]),
                "loadgen_cpu_pct": median([r["loadgen_cpu_pct"] for r in ok]),
                "tls": next((r.get("tls") for r in ok), None), "failures": failed,
            }
        base = rows.get(REFERENCE) or {"median": None, "server_cpu_us_per_msg": None}
        for row in rows.values():
            row["robyn_fast / this"] = (round(base["median"] / row["median"], 2)
                                        if base["median"] and row["median"] else None)
            row["cpu per msg / robyn_fast's"] = (
                round(row["server_cpu_us_per_msg"] / base["server_cpu_us_per_msg"], 2)
                if base["server_cpu_us_per_msg"] and row["server_cpu_us_per_msg"] else None)
        out[w.name] = rows
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Echo over TLS, {meta['date']}: {meta['rounds']} interleaved rounds, {meta['warmup_s']} s warm-up + "
             f"{meta['duration_s']} s, medians; server on CPU {meta['server_core']}, load generator on CPU "
             f"{meta['loadgen_core']}; {meta.get('tls') or 'TLS'}.", ""]
    for wname, rows in summary.items():
        lines += [f"**{wname}**", "", "| server | msgs/s | robyn_fast ÷ this | server CPU µs/msg (÷ robyn_fast's) "
                  "| server CPU | load generator CPU |", "|---|---:|---:|---:|---:|---:|"]
        for name, row in rows.items():
            f = (lambda v, fmt: "—" if v is None else format(v, fmt))
            lg = f(row["loadgen_cpu_pct"], ".0f") + " %"
            if (row["loadgen_cpu_pct"] or 0) >= LOADGEN_BOUND:
                lg += " (its limit)"
            fail = f" FAILED: {'; '.join(row['failures'])}" if row["failures"] else ""
            lines.append(f"| {name} | {f(row['median'], ',.0f')}{fail} | {f(row['robyn_fast / this'], '.2f')}× "
                         f"| {f(row['server_cpu_us_per_msg'], '.2f')} ({f(row['cpu per msg / robyn_fast' + chr(39) + 's'], '.2f')}×) "
                         f"| {f(row['server_cpu_pct'], '.0f')} % | {lg} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--server-core", default="0")
    p.add_argument("--loadgen-core", default="1")
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--date", default=_dt.date.today().isoformat())
    p.add_argument("--out", type=Path)
    p.add_argument("--server", action="append", choices=[s.name for s in SERVERS],
                   help="only this server (repeatable; default: every one)")
    a = p.parse_args(argv)
    servers = [s for s in SERVERS if not a.server or s.name in a.server]
    for module in ("picows", "aiohttp", "uvloop", "cryptography"):
        try:
            __import__(module)
        except ImportError:
            print(f"bench/tls.py: {module} is missing: pip install -e '.[bench]'", file=sys.stderr)
            return 2
    out_path = a.out or RESULTS / f"tls-{a.date}.json"
    logdir = RESULTS / f"logs-tls-{a.date}"
    logdir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="robyn_fast-tls-bench-") as tmp:
        cert, key = make_certificate(Path(tmp))
        total = a.rounds * len(WORKLOADS) * len(servers)
        for rnd in range(1, a.rounds + 1):
            for w in WORKLOADS:
                for s in servers:
                    rec = one_run(s, w, rnd, cert, key, a, logdir)
                    runs.append(rec)
                    shown = rec.get("failure") if rec.get("failed") else f"{rec['msgs_per_s']:,.0f} msgs/s"
                    print(f"[{len(runs)}/{total} {time.monotonic() - t0:4.0f}s] r{rnd} {w.name:<36} "
                          f"{s.name:<18} {shown}  srv {rec.get('server_cpu_pct', '-')}% "
                          f"lg {rec.get('loadgen_cpu_pct', '-')}%", file=sys.stderr, flush=True)
    meta = {"date": a.date, "rounds": a.rounds, "warmup_s": a.warmup, "duration_s": a.duration,
            "server_core": a.server_core, "loadgen_core": a.loadgen_core,
            "elapsed_s": round(time.monotonic() - t0, 1), "python": sys.version.split()[0],
            "openssl": ssl.OPENSSL_VERSION, "tls": next((r["tls"] for r in runs if r.get("tls")), None),
            "loadavg_at_end": os.getloadavg(), "cpus": os.cpu_count(),
            "fingerprint": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]}
    summary = summarize(runs, servers)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1) + "\n")
    print(markdown(summary, meta))
    print(f"{len(runs)} runs in {meta['elapsed_s']:.0f} s; written {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
