"""Instructions and CPU per HTTP request, where wrk on a shared machine cannot resolve them.

    python bench/http_count.py [--path /plaintext] [--scenario none] [PYTHON ...]
        # callgrind: instructions per request through HttpProtocol (no sockets)
    python bench/http_count.py --cpu [--requests 40000] [--conns 64] [PYTHON ...]
        # a real server (bench/http_app.py): its CPU µs per request over a fixed count

The callgrind workload opens ``--conns`` HTTP connections on fake transports through a
``Server`` (not listening) as its listener would, then sends each, from a loop callback as a
socket's read would arrive, the request wrk sends (``GET <path> HTTP/1.1`` with ``Host``), one
per read, ``ROUNDS`` times; each round waits until every response is written. It runs under
``valgrind --tool=callgrind`` with 1 and with 3 repetitions and prints (total 3 - total 1) /
requests of 2 repetitions, so start-up cancels out. The kernel and the loop's own socket work
are not in it (they are in ``--cpu``).

``--cpu`` starts ``bench/http_app.py`` pinned to CPU 0 and sends ``--requests`` keep-alive
requests over ``--conns`` connections (each waits for its response before the next, as wrk
does) from a client in this process on CPU 1, then reads the server's utime+stime from
/proc: CPU µs per request, user and system. Each interpreter is measured ``--repeat`` times,
interleaved; the median is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROUNDS = 200


def workload(path: str, scenario: str, conns: int, reps: int, loop_name: str) -> None:
    import asyncio

    sys.argv = ["http_app.py", "0", scenario]
    from robyn_fast import Robyn
    from robyn_fast.http.protocol import HttpProtocol
    from robyn_fast.server import Server, new_event_loop

    app = _app(Robyn, scenario)
    request = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" % path.encode()
    if scenario == "auth":
        request += b"Authorization: Bearer secret\r\n"
    request += b"\r\n"
    written = [0]
    responses = [0]

    class Transport(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.protocol: HttpProtocol | None = None

        def write(self, data: bytes | bytearray | memoryview) -> None:
            written[0] += len(data)
            responses[0] += 1

        def get_write_buffer_size(self) -> int:
            return 0

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 40000) if name == "peername" else default

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            raise SystemExit("the server closed a keep-alive connection")

        def abort(self) -> None:
            raise SystemExit("the server aborted a keep-alive connection")

        def pause_reading(self) -> None: ...

        def resume_reading(self) -> None: ...

    loop = new_event_loop(loop_name)
    asyncio.set_event_loop(loop)
    server = Server(app, loop)
    protocols = []
    for _ in range(conns):
        protocol = HttpProtocol(server)
        protocol.connection_made(Transport())
        protocols.append(protocol)

    def feed() -> None:
        for protocol in protocols:
            protocol.data_received(request)

    async def rounds() -> None:
        for _ in range(ROUNDS):
            target = responses[0] + conns
            loop.call_soon(feed)
            for _ in range(1000):
                await asyncio.sleep(0)
                if responses[0] >= target:
                    break
            if responses[0] != target:
                raise SystemExit(f"{responses[0]} responses written, {target} expected")

    for _ in range(reps):
        loop.run_until_complete(rounds())
    for protocol in protocols:
        protocol.closing = True  # not a fault: the workload ends
        protocol.connection_lost(None)
    loop.close()


def _app(robyn: type, scenario: str) -> object:
    """bench/http_app.py's app, without its start()."""
    source = (HERE / "http_app.py").read_text().replace("app.start(", "(lambda *a, **k: None)(")
    namespace: dict[str, object] = {"__name__": "http_app", "__file__": str(HERE / "http_app.py")}
    exec(compile(source, str(HERE / "http_app.py"), "exec"), namespace)
    return namespace["app"]


def count(python: str, args: argparse.Namespace, reps: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, __file__, "--run",
               "--path", args.path, "--scenario", args.scenario, "--conns", str(args.conns), "--reps", str(reps),
               "--loop", args.loop]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=tmp)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode != 0 or not m:
            raise SystemExit(f"{python}: callgrind failed\n{r.stderr[-3000:]}")
        return int(m.group(1))


def cpu_of(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def drive(port: int, path: str, conns: int, total: int, extra: bytes) -> None:
    """``total`` requests over ``conns`` keep-alive connections, one outstanding on each."""
    request = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (path.encode(), port, extra)
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    sent = 0
    for s in socks:
        s.sendall(request)
        sent += 1
    done = 0
    deadline = time.monotonic() + 300
    while done < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {total} responses in 300 s")
        for key, _ in sel.select(5):
            buf: bytearray = key.data
            chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
            if not chunk:
                raise SystemExit("the server closed a connection")
            buf += chunk
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                m = re.search(rb"content-length: (\d+)", bytes(buf[:end]), re.I)
                size = end + 4 + (int(m.group(1)) if m else 0)
                if len(buf) < size:
                    break
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"unexpected answer {bytes(buf[:200])!r}")
                del buf[:size]
                done += 1
                if sent < total:
                    key.fileobj.send(request)  # type: ignore[union-attr]
                    sent += 1
    for s in socks:
        s.close()


def cpu_case(python: str, args: argparse.Namespace) -> tuple[float, float]:
    from http_wrk import free_port, wait_listening  # type: ignore[import-not-found]

    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", python, str(HERE / "http_app.py"), str(port), args.scenario],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        extra = b"Authorization: Bearer secret\r\n" if args.scenario == "auth" else b""
        drive(port, args.path, args.conns, 2000, extra)  # warm-up
        u0, s0 = cpu_of(proc.pid)
        drive(port, args.path, args.conns, args.requests, extra)
        u1, s1 = cpu_of(proc.pid)
        return (u1 - u0) * 1e6 / args.requests, (s1 - s0) * 1e6 / args.requests
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pythons", nargs="*", default=[sys.executable])
    parser.add_argument("--path", default="/plaintext")
    parser.add_argument("--scenario", default="none")
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        workload(args.path, args.scenario, args.conns, args.reps, args.loop)
        return
    if args.cpu:
        os.sched_setaffinity(0, {1})
        sys.path.insert(0, str(HERE))
        found: dict[str, list[tuple[float, float]]] = {p: [] for p in args.pythons}
        for _ in range(args.repeat):
            for python in args.pythons:
                found[python].append(cpu_case(python, args))
        for python, runs in found.items():
            user = statistics.median(u for u, _ in runs)
            system = statistics.median(s for _, s in runs)
            print(f"{python}: {args.scenario} {args.path}: server CPU {user + system:.1f} µs/request "
                  f"(user {user:.1f}, system {system:.1f}; median of {len(runs)})")
        return
    requests = args.conns * ROUNDS * 2
    for python in args.pythons:
        per = (count(python, args, 3) - count(python, args, 1)) / requests
        print(f"{python}: {args.scenario} {args.path}: {per:,.0f} instructions per request ({args.loop})")


if __name__ == "__main__":
    main()
