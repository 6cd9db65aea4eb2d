"""Soak test: a 2-worker robyn_fast server under mixed load for N minutes.

    .venv/bin/python bench/soak.py --minutes 10        # or: make soak SOAK_MINUTES=10

Starts ``bench/soak_app.py --processes 2`` as a subprocess (as a user would),
pinned to one set of CPUs while this load generator runs on another, and
drives, all at once (rates in ``--help``):

* echo clients: request/reply on ``/echo``, round-trip latency per message;
* a publisher broadcasting on ``/bcast`` to many subscribers spread over both
  workers: delivery latency from the send time each message carries, and
  sequence gaps (a lost broadcast is an error);
* churn: connections opened and closed continuously, cleanly, by TCP RST
  after the handshake, or by RST in the middle of the handshake;
* slow readers: "stoppers" that stop reading a stream on ``/slow`` (the
  server's ``"close"`` policy must close them: 1008, or an abort after its
  close timeout) and "droppers" that read ``/slowdrop`` too slowly (the
  ``"drop"`` policy: counted as gaps in the stream's numbering);
* ping floods: a few clients keeping a window of Pings in flight.

Every ``--interval`` seconds it records the RSS and open fds of the server's
processes (``/proc``), each worker's asyncio task count and ``app.stats()``
(``GET /soak/stats`` on fresh connections until every worker has answered),
latency percentiles and counts. At the end it writes
``bench/results/soak-<date>.json`` and ``.png`` and judges (``soak_judge``):
flat memory and no error; the exit status is 1 if either fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak_judge  # noqa: E402  (bench/ is not a package)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Close codes a ping flooder may get from a server that bounds Pings (policy, try again later, too big).
PING_POLICY_CODES = (1008, 1013, 1009)


def now() -> float:
    return time.perf_counter()


class Recorder:
    """Latencies and counts of the current interval, and totals of the run."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = collections.defaultdict(list)
        self.counts: collections.Counter[str] = collections.Counter()
        self.totals: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.unexpected: collections.Counter[str] = collections.Counter()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.examples: list[str] = []

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        self.totals[name] += n

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}"[:300])

    def closed_unexpectedly(self, who: str, exc: BaseException) -> None:
        self.unexpected[who] += 1
        if len(self.examples) < 20:
            self.examples.append(f"unexpected close of {who}: {exc!r}"[:300])

    def take(self) -> tuple[dict[str, list[float]], collections.Counter[str]]:
        lat, counts = self.lat, self.counts
        self.lat, self.counts = collections.defaultdict(list), collections.Counter()
        return lat, counts


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    values = sorted(values)
    n = len(values)

    def at(q: float) -> float:
        return round(values[min(n - 1, int(q * n))] * 1000, 3)

    return {"n": n, "p50": at(0.50), "p99": at(0.99), "max": round(values[-1] * 1000, 3)}


def text(msg: str | bytes) -> str:
    if not isinstance(msg, str):
        raise ValueError(f"expected a text message, got {msg[:40]!r}")
    return msg


def close_code(exc: ConnectionClosed) -> int:
    return exc.rcvd.code if exc.rcvd is not None else 1006


async def small_rcvbuf_connect(port: int, rcvbuf: int) -> socket.socket:
    """A socket connected to the server with a small receive buffer (set
    before connect, so the TCP window is small from the start): a client that
    stops reading pushes back on the server within a few kilobytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 10)
    except BaseException:
        sock.close()
        raise
    return sock


def reset(transport: asyncio.BaseTransport) -> None:
    """Closes with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class Load:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args = args
        self.port = port
        self.rec = Recorder()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        # Connections that wait in recv() for the server (subscribers): closed by finish().
        self.listening: set[ClientConnection] = set()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def open(self, path: str, **kw: Any) -> ClientConnection:
        kw.setdefault("open_timeout", 10)
        return await connect(self.url(path), compression=None, ping_interval=None, close_timeout=10, **kw)

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def session(self, who: str, body: Any, *, retry: float = 0.5) -> None:
        """Runs ``body()`` until the soak stops, again after an unexpected
        close or error (counted), so one failure does not end that client."""
        while not self.stop.is_set():
            try:
                await body()
            except ConnectionClosed as exc:
                if not self.stop.is_set():
                    self.rec.closed_unexpectedly(who, exc)
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake, ValueError) as exc:
                if not self.stop.is_set():
                    self.rec.error(f"{who}: {type(exc).__name__}", repr(exc))
            await self.pause(retry)

    # -- echo ---------------------------------------------------------------

    async def echo_client(self, i: int) -> None:
        period = 1.0 / self.args.echo_rate
        pad = "e" * 48

        async def body() -> None:
            async with await self.open("/echo") as ws:
                seq = 0
                while not self.stop.is_set():
                    msg = f"{i}:{seq}:{pad}"
                    t0 = now()
                    await ws.send(msg)
                    reply = await asyncio.wait_for(ws.recv(), 10)
                    dt = now() - t0
                    if reply != msg:
                        self.rec.error("echo: wrong reply", f"{reply!r:.80} for {msg!r:.80}")
                    self.rec.lat["echo"].append(dt)
                    self.rec.count("echo")
                    seq += 1
                    await self.pause(max(0.0, period - dt))

        await self.session("echo", body)

    # -- broadcast ----------------------------------------------------------

    async def subscriber(self, i: int, ready: asyncio.Event, joined: list[int]) -> None:
        async def body() -> None:
            async with await self.open("/bcast") as ws:
                joined[0] += 1
                if joined[0] >= self.args.subscribers:
                    ready.set()
                last = None
                self.listening.add(ws)
                try:
                    while not self.stop.is_set():
                        msg = text(await ws.recv())
                        t = now()
                        seq_s, sent_s, _ = msg.split(":", 2)
                        seq = int(seq_s)
                        self.rec.lat["bcast"].append(t - float(sent_s))
                        self.rec.count("bcast_delivered")
                        if last is not None and seq != last + 1:
                            if seq > last + 1:
                                self.rec.error("bcast: lost", f"subscriber {i}: {seq - last - 1} after #{last}")
                            else:
                                self.rec.error("bcast: out of order", f"subscriber {i}: #{seq} after #{last}")
                        last = seq
                finally:
                    joined[0] -= 1
                    self.listening.discard(ws)

        await self.session("subscriber", body)

    async def publisher(self, ready: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ready.wait(), 30)
        period = 1.0 / self.args.bcast_rate
        pad = "b" * 64
        seq = [0]

        async def body() -> None:
            async with await self.open("/bcast") as ws:
                # The publisher is on the endpoint too: it gets its own broadcasts and must read them.
                drain = asyncio.ensure_future(self._discard(ws))
                try:
                    while not self.stop.is_set():
                        t0 = now()
                        await ws.send(f"{seq[0]}:{now()!r}:{pad}")
                        seq[0] += 1
                        self.rec.count("bcast_sent")
                        await self.pause(max(0.0, period - (now() - t0)))
                finally:
                    drain.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await drain

        await self.session("publisher", body)

    @staticmethod
    async def _discard(ws: ClientConnection) -> None:
        async for _ in ws:
            pass

    # -- churn --------------------------------------------------------------

    async def churn(self) -> None:
        period = 1.0 / self.args.churn_rate
        modes = ("clean", "rst", "rst_handshake")
        pending: set[asyncio.Task[None]] = set()
        n = 0
        while not self.stop.is_set():
            mode = modes[n % len(modes)]
            n += 1
            task = asyncio.ensure_future(self._churn_one(mode))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await self.pause(period)
        if pending:
            await asyncio.wait(pending, timeout=15)

    async def _churn_one(self, mode: str) -> None:
        try:
            if mode == "rst_handshake":
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
                writer.write(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgr")
                await asyncio.sleep(0.01)
                reset(writer.transport)
            else:
                ws = await self.open("/echo")
                await ws.send("churn")
                if await asyncio.wait_for(ws.recv(), 10) != "churn":
                    self.rec.error("churn: wrong reply")
                if mode == "clean":
                    await ws.close()
                    if ws.close_code != 1000:
                        self.rec.error("churn: close code", f"{ws.close_code}")
                else:
                    reset(ws.transport)
            self.rec.count(f"churn_{mode}")
        except ConnectionClosed as exc:
            self.rec.closed_unexpectedly(f"churn {mode}", exc)
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
            self.rec.error(f"churn {mode}: {type(exc).__name__}", repr(exc))

    # -- slow readers -------------------------------------------------------

    async def stopper(self, i: int) -> None:
        """Reads a little of a fast stream on /slow, stops reading for
        ``--stall`` seconds, then drains: the server must have closed it."""
        a = self.args

        async def body() -> None:
            sock = await small_rcvbuf_connect(self.port, a.slow_rcvbuf)
            ws = await self.open("/slow", sock=sock, max_queue=4)
            try:
                await ws.send(f"feed {a.stopper_size} {a.stopper_interval_ms}")
                for _ in range(3):
                    await asyncio.wait_for(ws.recv(), 10)
                self.rec.count("stopper_started")
                await self.pause(a.stall)
                if self.stop.is_set():
                    return
                deadline = now() + a.stall
                while now() < deadline:
                    try:
                        await asyncio.wait_for(ws.recv(), max(0.01, deadline - now()))
                    except asyncio.TimeoutError:
                        break
                    except ConnectionClosed as exc:
                        code = close_code(exc)
                        outcome = "closed_1008" if code == 1008 else "aborted" if code == 1006 else f"closed_{code}"
                        self.rec.outcomes[f"stopper_{outcome}"] += 1
                        self.rec.count("stopper_closed")
                        if outcome not in ("closed_1008", "aborted"):
                            self.rec.error("stopper: unexpected close code", str(code))
                        return
                self.rec.outcomes["stopper_not_closed"] += 1
                self.rec.error("stopper: not closed by the backpressure policy",
                               f"stopper {i} still open {2 * a.stall:.0f} s after it stopped reading")
            finally:
                reset(ws.transport)

        await self.session("stopper", body, retry=0.2)

    async def dropper(self, i: int) -> None:
        """Reads a stream on /slowdrop slower than it comes for
        ``--dropper-life`` seconds: the server drops messages (gaps in the
        numbering), then the client closes cleanly."""
        a = self.args

        async def body() -> None:
            sock = await small_rcvbuf_connect(self.port, a.slow_rcvbuf)
            ws = await self.open("/slowdrop", sock=sock, max_queue=4)
            try:
                await ws.send(f"feed {a.dropper_size} {a.dropper_interval_ms}")
                end = now() + a.dropper_life
                last = -1
                while now() < end and not self.stop.is_set():
                    msg = text(await asyncio.wait_for(ws.recv(), 10))
                    seq = int(msg.split(":", 1)[0])
                    if seq <= last:
                        self.rec.error("dropper: out of order", f"#{seq} after #{last}")
                    elif seq > last + 1:
                        self.rec.count("dropper_gaps", seq - last - 1)
                    last = seq
                    self.rec.count("dropper_read")
                    await self.pause(a.dropper_read_delay_ms / 1000)
            finally:
                # Read what is still on its way while closing, or the Close would wait behind it.
                drain = asyncio.ensure_future(self._discard(ws))
                await ws.close()
                with contextlib.suppress(ConnectionClosed):
                    await drain
            if ws.close_code != 1000:
                self.rec.error("dropper: close code", f"{ws.close_code}")
            self.rec.outcomes["dropper_sessions"] += 1

        await self.session("dropper", body, retry=0.2)

    # -- ping floods --------------------------------------------------------

    async def ping_flooder(self, i: int) -> None:
        a = self.args

        async def body() -> None:
            ws = await self.open("/echo")
            try:
                n = 0
                while not self.stop.is_set():
                    t0 = now()
                    waiters = []
                    for _ in range(a.ping_window):
                        waiters.append(await ws.ping(struct.pack("!IQ", i, n)))
                        n += 1
                    self.rec.count("pings", len(waiters))
                    await asyncio.wait_for(asyncio.gather(*waiters), 10)
                    dt = now() - t0
                    self.rec.lat["ping"].append(dt)
                    self.rec.count("pongs", len(waiters))
                    await self.pause(max(0.0, a.ping_window / a.ping_rate - dt))
            except ConnectionClosed as exc:
                if close_code(exc) in PING_POLICY_CODES and not self.stop.is_set():
                    self.rec.outcomes[f"ping_flooder_closed_{close_code(exc)}"] += 1
                    return
                raise
            finally:
                await ws.close()

        await self.session("ping flooder", body)

    # -- run ----------------------------------------------------------------

    def start(self) -> None:
        a = self.args
        ready, joined = asyncio.Event(), [0]
        spawn = self.tasks.append
        for i in range(a.subscribers):
            spawn(asyncio.ensure_future(self.subscriber(i, ready, joined)))
        spawn(asyncio.ensure_future(self.publisher(ready)))
        for i in range(a.echo_clients):
            spawn(asyncio.ensure_future(self.echo_client(i)))
        spawn(asyncio.ensure_future(self.churn()))
        for i in range(a.stoppers):
            spawn(asyncio.ensure_future(self.stopper(i)))
        for i in range(a.droppers):
            spawn(asyncio.ensure_future(self.dropper(i)))
        for i in range(a.ping_flooders):
            spawn(asyncio.ensure_future(self.ping_flooder(i)))

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*(ws.close() for ws in list(self.listening)), return_exceptions=True)
        done, pending = await asyncio.wait(self.tasks, timeout=30)
        for task in pending:
            task.cancel()
            self.rec.error("load: client did not stop within 30 s")
        for task in done:
            if task.exception() is not None:
                self.rec.error(f"load: client crashed: {type(task.exception()).__name__}", repr(task.exception()))


# -- the server and its processes -------------------------------------------

def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return sorted(out)


def proc_sample(pid: int) -> dict[str, Any] | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError):
        return None
    return {"pid": pid, "rss": rss, "fds": fds, "cpu_s": cpu}


async def http_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(b"GET /soak/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"GET /soak/stats answered {head[:40]!r}")
    return json.loads(body)


async def worker_stats(port: int, pids: list[int], rec: Recorder) -> dict[int, dict[str, Any]]:
    """Asks on fresh connections (the kernel spreads them over the workers'
    SO_REUSEPORT sockets by their ports) until every worker in ``pids`` has
    answered, 64 tries at most."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(64):
        if all(p in seen for p in pids):
            break
        try:
            answer = await http_stats(port)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            rec.error(f"stats: {type(exc).__name__}", repr(exc))
            continue
        seen[answer["pid"]] = answer
    return seen


class Server:
    def __init__(self, args: argparse.Namespace, log_path: Path) -> None:
        env = dict(os.environ, ROBYN_HOST="127.0.0.1", ROBYN_PORT="0", PYTHONUNBUFFERED="1")
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115  (closed in stop())
        cpus = args.server_cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "soak_app.py"), "--processes", str(args.processes)],
            cwd=str(BENCH.parent), env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=pin, start_new_session=True,
        )
        self.port = 0

    def lines(self) -> list[str]:
        return self.log_path.read_text("utf-8", "replace").splitlines()

    def wait_serving(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                m = SERVING.search(line)
                if m:
                    self.port = int(m.group(1))
                    return self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"soak: the server did not start; its log:\n" + "\n".join(self.lines()[-30:]))

    def stop(self, timeout: float = 40) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            code = None
        self.log.close()
        return code


# -- sampling ---------------------------------------------------------------

class Sampler:
    def __init__(self, server: Server, load: Load, interval: float) -> None:
        self.server, self.load, self.interval = server, load, interval
        self.roles: dict[str, int] = {"master": server.proc.pid}
        self.samples: list[dict[str, Any]] = []
        self.t0 = now()
        self.last_t = self.t0
        self.last_cpu: dict[int, float] = {}
        self.load_cpu = time.process_time()

    def assign_workers(self) -> list[int]:
        """Keeps a role per worker; a new pid in place of a gone one takes
        its role, so the judge sees the pid change (a restart)."""
        kids = children(self.server.proc.pid)
        current = {role: pid for role, pid in self.roles.items() if role != "master"}
        for pid in kids:
            if pid not in current.values():
                free = [r for r, p in current.items() if p not in kids]
                role = free[0] if free else f"worker-{len(current)}"
                current[role] = pid
                self.roles[role] = pid
        return kids

    async def sample(self) -> dict[str, Any]:
        t = now()
        kids = self.assign_workers()
        lat, counts = self.load.rec.take()
        span = t - self.last_t
        self.last_t = t
        procs: dict[str, Any] = {}
        for role, pid in sorted(self.roles.items()):
            s = proc_sample(pid) if (role == "master" or pid in kids) else None
            if s is not None:
                prev = self.last_cpu.get(pid)
                s["cpu_pct"] = None if prev is None or span < 0.5 else round(100 * (s["cpu_s"] - prev) / span, 1)
                self.last_cpu[pid] = s["cpu_s"]
            procs[role] = s
        stats = await worker_stats(self.server.port, kids, self.load.rec)
        for role, pid in self.roles.items():
            if role != "master" and procs.get(role) is not None:
                answer = stats.get(pid)
                if answer is None:
                    self.load.rec.error("stats: a worker did not answer in 64 tries", f"{role} (pid {pid})")
                procs[role]["asyncio_tasks"] = None if answer is None else answer["asyncio_tasks"]
                procs[role]["app_stats"] = None if answer is None else answer["stats"]
        cpu = time.process_time()
        sample = {
            "t": round(t - self.t0, 3),
            "processes": procs,
            "latency_ms": {k: percentiles(v) for k, v in sorted(lat.items())},
            "counts": dict(sorted(counts.items())),
            "rates": {k: round(v / span, 1) for k, v in sorted(counts.items())} if span >= 0.5 else {},
            "errors": sum(self.load.rec.errors.values()),
            "unexpected_closes": sum(self.load.rec.unexpected.values()),
            "loadgen_cpu_pct": round(100 * (cpu - self.load_cpu) / span, 1) if span >= 0.5 else None,
        }
        self.load_cpu = cpu
        return sample

    async def run(self, duration: float) -> None:
        end = self.t0 + duration
        while True:
            await self.load.pause(max(0.0, min(self.interval, end - now())))
            sample = await self.sample()
            self.samples.append(sample)
            print(progress_line(sample), flush=True)
            if now() >= end - 0.01:
                return


def progress_line(s: dict[str, Any]) -> str:
    rss = " ".join(f"{r}={p['rss'] / 2**20:.1f}M/{p['fds']}fd" + (f"/{p.get('asyncio_tasks')}t" if "asyncio_tasks" in p else "")
                   for r, p in s["processes"].items() if p)
    lat = " ".join(f"{k} p99={v['p99']}ms" for k, v in s["latency_ms"].items())
    rates = s["rates"]
    return (f"[{s['t']:7.1f}s] {rss} | {lat} | echo {rates.get('echo', 0)}/s bcast {rates.get('bcast_delivered', 0)}/s"
            f" pings {rates.get('pongs', 0)}/s | errors {s['errors']} unexpected {s['unexpected_closes']}"
            f" | loadgen {s['loadgen_cpu_pct']}% cpu")


async def wait_drained(port: int, pids: list[int], rec: Recorder, timeout: float) -> tuple[bool, dict[str, Any]]:
    """Every worker reports no live WebSocket connection (the soak's clients
    have all gone) within ``timeout`` seconds."""
    deadline = now() + timeout
    last: dict[int, dict[str, Any]] = {}
    while True:
        last = await worker_stats(port, pids, rec)
        if all(p in last for p in pids) and all(last[p]["stats"]["connections"] == 0 for p in pids):
            return True, {str(p): last[p] for p in pids}
        if now() >= deadline:
            return False, {str(p): v for p, v in last.items()}
        await asyncio.sleep(0.5)


async def soak(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    load = Load(args, server.port)
    sampler = Sampler(server, load, args.interval)
    sampler.samples.append(await sampler.sample())  # the idle baseline, t = 0
    print(progress_line(sampler.samples[0]), flush=True)
    load.start()
    await sampler.run(args.minutes * 60)
    await load.finish()
    workers = [pid for role, pid in sampler.roles.items() if role != "master"]
    drained, after = await wait_drained(server.port, workers, load.rec, args.drain_timeout)
    final = await sampler.sample()
    return {"samples": sampler.samples, "after_load": final, "drained": drained, "drain_stats": after,
            "roles": sampler.roles, "recorder": load.rec}


# -- output -----------------------------------------------------------------

def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] / 60 for s in samples]
    roles = sorted({r for s in samples for r in s["processes"]})
    workers = [r for r in roles if r != "master"]

    def series(role: str, key: str, scale: float = 1.0) -> list[float | None]:
        out = []
        for s in samples:
            p = s["processes"].get(role)
            v = None if p is None else p.get(key)
            out.append(None if v is None else v / scale)
        return out

    def legend(ax: Any) -> None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, borderaxespad=0)

    fig, axes = plt.subplots(6, 1, figsize=(13, 18), sharex=True)
    verdict = result["verdict"]
    cfg = result["config"]
    fig.suptitle(f"robyn_fast soak: {cfg['processes']} workers, {cfg['minutes']:g} min ({result['date']} UTC) - "
                 f"flat memory {'PASS' if verdict['flat_memory']['ok'] else 'FAIL'}, "
                 f"no error {'PASS' if verdict['no_error']['ok'] else 'FAIL'}", fontsize=14)
    ax = axes[0]
    rss_all = []
    for role in roles:
        values = series(role, "rss", 2**20)
        rss_all += [v for v in values if v is not None]
        ax.plot(t, values, marker=".", label=role)
    if rss_all:  # at least 8 MiB of range, so that noise of a few pages does not look like a slope
        mid, half = (max(rss_all) + min(rss_all)) / 2, max(4.0, (max(rss_all) - min(rss_all)) / 2 + 1)
        ax.set_ylim(mid - half, mid + half)
    ax.axvline(cfg["warmup"] / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("RSS per server process")
    legend(ax)
    ax = axes[1]
    for role in roles:
        ax.plot(t, series(role, "fds"), marker=".", label=role)
    ax.set_ylabel("open fds")
    ax.set_title("open file descriptors per process")
    legend(ax)
    ax = axes[2]
    right = ax.twinx()
    for n, role in enumerate(workers):
        color = f"C{n + 1}"
        ax.plot(t, series(role, "asyncio_tasks"), marker=".", color=color, label=f"{role} asyncio tasks (left)")
        conns = [None if (p := s["processes"].get(role)) is None or not p.get("app_stats")
                 else p["app_stats"]["connections"] for s in samples]
        right.plot(t, conns, linestyle="--", color=color, alpha=0.6, label=f"{role} WebSockets (right)")
    ax.set_ylabel("asyncio tasks")
    right.set_ylabel("live WebSocket connections")
    ax.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    ax.set_title("asyncio tasks (len(asyncio.all_tasks())) and live WebSocket connections per worker")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=9,
              borderaxespad=0)
    ax = axes[3]
    for n, key in enumerate(("echo", "bcast", "ping")):
        ax.plot(t, [s["latency_ms"].get(key, {}).get("p99") for s in samples], color=f"C{n}", marker=".",
                label=f"{key} p99")
        ax.plot(t, [s["latency_ms"].get(key, {}).get("p50") for s in samples], color=f"C{n}", linestyle=":",
                label=f"{key} p50")
    ax.set_ylabel("ms (log)")
    ax.set_yscale("log")
    ax.set_title("latency per interval (echo: round trip; bcast: publish to delivery; ping: a window of Pings)")
    legend(ax)
    ax = axes[4]
    for key, label in (("echo", "echo replies"), ("bcast_delivered", "broadcast deliveries"), ("pongs", "pongs"),
                       ("dropper_read", "slow-reader reads"), ("dropper_gaps", "dropped (drop policy)")):
        ax.plot(t, [s["rates"].get(key, 0) for s in samples], marker=".", label=label)
    churn = [sum(v for k, v in s["rates"].items() if k.startswith("churn_")) for s in samples]
    ax.plot(t, churn, marker=".", label="churned connections")
    ax.set_ylabel("per second (symlog)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("throughput")
    legend(ax)
    ax = axes[5]
    for role in roles:
        ax.plot(t, series(role, "cpu_pct"), marker=".", label=f"server {role}")
    ax.plot(t, [s.get("loadgen_cpu_pct") for s in samples], marker=".", color="black", label="load generator")
    ax.set_ylabel("% of one CPU")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("minutes since the load started")
    ax.set_title(f"CPU (server on CPUs {cfg['server_cpus'] or 'any'}, load generator on {cfg['load_cpus'] or 'any'})")
    legend(ax)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=72)
    plt.close(fig)


def summary_lines(result: dict[str, Any]) -> list[str]:
    v = result["verdict"]
    out = [f"flat memory: {'PASS' if v['flat_memory']['ok'] else 'FAIL'} (after a {v['flat_memory']['warmup_s']:.0f} s warm-up, "
           f"mean RSS of the first vs the last quarter)"]
    for role, pv in v["flat_memory"]["processes"].items():
        out.append(f"  {role}: {pv['reason']}")
    out.append(f"no error: {'PASS' if v['no_error']['ok'] else 'FAIL'}")
    out.extend(f"  {r}" for r in v["no_error"]["reasons"])
    tot = result["totals"]
    out.append("totals: " + ", ".join(f"{k} {n}" for k, n in sorted(tot.items())))
    out.append("outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(result["outcomes"].items())))
    out.append(f"server log: {result['log']['warnings']} warning(s), {result['log']['errors']} error line(s), "
               f"{result['log']['tracebacks']} traceback(s)")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="duration of the load (default 10)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds left out of the memory verdict (default: a quarter of the run, at most 60)")
    p.add_argument("--processes", type=int, default=2, help="server worker processes (default 2)")
    p.add_argument("--server-cpus", default="1", help="CPUs for the server, e.g. '1' or '2-3' ('' = no pinning)")
    p.add_argument("--load-cpus", default="0", help="CPUs for this load generator ('' = no pinning)")
    p.add_argument("--echo-clients", type=int, default=16)
    p.add_argument("--echo-rate", type=float, default=50.0, help="messages per second per echo client")
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--bcast-rate", type=float, default=10.0, help="broadcasts per second")
    p.add_argument("--churn-rate", type=float, default=20.0, help="connections opened (and closed) per second")
    p.add_argument("--stoppers", type=int, default=2, help="slow readers that stop reading (close policy)")
    p.add_argument("--stopper-size", type=int, default=8192)
    p.add_argument("--stopper-interval-ms", type=int, default=10)
    p.add_argument("--stall", type=float, default=15.0, help="seconds a stopper stops reading")
    p.add_argument("--droppers", type=int, default=2, help="slow readers that read too slowly (drop policy)")
    # What the kernel buffers for a slow reader (several MB on loopback) must be read within the
    # server's keepalive (a Ping waits behind it: 20 s, then 20 s for the Pong): 800 KB/s read here.
    p.add_argument("--dropper-size", type=int, default=16384)
    p.add_argument("--dropper-interval-ms", type=int, default=10)
    p.add_argument("--dropper-read-delay-ms", type=int, default=20)
    p.add_argument("--dropper-life", type=float, default=40.0)
    p.add_argument("--slow-rcvbuf", type=int, default=16384, help="SO_RCVBUF of slow readers' sockets")
    p.add_argument("--ping-flooders", type=int, default=2)
    p.add_argument("--ping-window", type=int, default=16, help="Pings in flight per flooder")
    p.add_argument("--ping-rate", type=float, default=500.0, help="Pings per second per flooder, at most")
    p.add_argument("--rss-abs-limit-mib", type=float, default=4.0)
    p.add_argument("--rss-rel-limit", type=float, default=0.10)
    p.add_argument("--drain-timeout", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=None, help="output path without suffix (default bench/results/soak-<date>)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0:
        p.error("--minutes and --interval must be positive")
    args.warmup = min(60.0, args.minutes * 15) if args.warmup is None else args.warmup
    args.server_cpus = parse_cpus(p, args.server_cpus)
    args.load_cpus = parse_cpus(p, args.load_cpus)
    return args


def parse_cpus(p: argparse.ArgumentParser, text: str) -> set[int]:
    cpus: set[int] = set()
    try:
        for part in filter(None, text.split(",")):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        p.error(f"bad CPU list {text!r}")
    available = os.sched_getaffinity(0)
    if cpus and not cpus <= available:
        print(f"soak: CPUs {sorted(cpus - available)} are not available here ({sorted(available)}); not pinning",
              file=sys.stderr)
        return set()
    return cpus


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    out = args.out or RESULTS / f"soak-{date}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.load_cpus:
        os.sched_setaffinity(0, args.load_cpus)
    server = Server(args, out.with_suffix(".server.log"))
    exit_code: int | None = None
    try:
        server.wait_serving()
        print(f"soak: server pid {server.proc.pid} on port {server.port}, CPUs {sorted(args.server_cpus) or 'any'}; "
              f"load generator CPUs {sorted(args.load_cpus) or 'any'}; {args.minutes} min", flush=True)
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        result = runner(soak(args, server))
    finally:
        exit_code = server.stop()
    rec: Recorder = result.pop("recorder")
    log = soak_judge.scan_log(server.lines())
    verdict = soak_judge.judge(
        result["samples"], warmup_s=args.warmup, errors=rec.errors, unexpected_closes=rec.unexpected, log=log,
        exit_code=exit_code, drained=result["drained"], abs_limit=args.rss_abs_limit_mib * soak_judge.MiB,
        rel_limit=args.rss_rel_limit,
    )
    config = {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result.update({
        "date": date, "config": config, "versions": {"python": sys.version.split()[0], "websockets": websockets.__version__},
        "totals": dict(rec.totals), "errors": dict(rec.errors), "unexpected_closes": dict(rec.unexpected),
        "outcomes": dict(rec.outcomes), "examples": rec.examples, "log": log, "server_exit_code": exit_code,
        "verdict": verdict, "server_log": str(server.log_path),
    })
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))  # before the chart, which may fail
    chart(result, out.with_suffix(".png"))
    for line in summary_lines(result):
        print(line)
    for ex in rec.examples[:10]:
        print("  e.g. " + ex)
    print(f"soak: wrote {out.with_suffix('.json')}, {out.with_suffix('.png')}, {server.log_path}")
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
