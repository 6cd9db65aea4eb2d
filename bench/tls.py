"""Echo over TLS (wss://): the TLS rows of the load tests (bench/run.py), and
their load generator.

    .venv/bin/python bench/tls.py                  # = bench/run.py --workloads tls-echo-64x1-32B,tls-echo-8x16-1KiB
    .venv/bin/python bench/tls.py --rounds 5 --servers robyn_fast,picows,picows-looptls,aiohttp
    .venv/bin/python bench/tls.py load --port PORT --cafile CERT ...   # the load generator alone

rfload (bench/loadgen) speaks plain TCP through its own epoll loop, so the TLS
rows have a load generator of their own, run by bench/run.py as a subprocess
(``bench/tls.py load ...``): asyncio on uvloop, ``loop.create_connection(...,
ssl=context)`` (OpenSSL through uvloop's SSL protocol, TLS 1.3 with AES-GCM on
this machine), frames built and parsed by robyn_fast's compiled codec. Each of
``-c`` connections keeps ``-p`` messages of ``-s`` bytes in flight; each echo
received is checked (length and content) and answered by the next message. It
prints one JSON line: messages/s over the measured window, the CPU of the
server's processes (``--server-pid``) and its own; near 100 % of its own core
the figure is the load generator's limit, not the server's (bench/run.py flags
it as generator-bound).

Every server serves the same certificate, made by ``make_certificate`` at the
start of a run (self-signed, for 127.0.0.1, in a temporary directory):
robyn_fast with ``--ssl-certfile``/``--ssl-keyfile``, the peers with
``$PEER_TLS_CERT``/``$PEER_TLS_KEY`` (bench/peers/_common.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as _dt
import json
import os
import resource
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from rfload import read_cpu_s


# -- the TLS load generator (a subprocess: `bench/tls.py load ...`) -------------------------------------------


class _EchoClient(asyncio.Protocol):
    """One WebSocket client connection keeping ``pipeline`` messages in flight."""

    def __init__(self, gen: _LoadGen) -> None:
        self.gen = gen
        self.unsent = gen.a.count - gen.a.pipeline if gen.a.count else -1  # -1: no fixed count
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.open = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
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
        messages = self.parser.feed(data)
        n = 0
        for m in messages:
            if m.opcode == 8 and not gen.running:   # the server's answer to our closing handshake
                continue
            if m.opcode == 9:  # a keepalive Ping (runs under valgrind last long enough to get them)
                self.transport.write(gen.codec.build_pong(m.data, mask=os.urandom(4)))  # type: ignore[union-attr]
                continue
            if m.opcode != 1 or len(m.data) != gen.size or m.data != gen.payload:
                gen.errors += 1
                continue
            n += 1
        if n:
            gen.received += n
            if self.unsent >= 0:  # a fixed count (--count): no more than it
                n = min(n, self.unsent)
                self.unsent -= n
                if gen.received >= gen.expected:
                    gen.finished.set()
            if gen.running and n:
                self.transport.write(gen.frame * n)  # type: ignore[union-attr]
                gen.sent += n

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
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
        self.sent = 0
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
            self.sent += a.pipeline
        if a.count:  # a fixed count of echoes per connection, then close: for bench/tls_count.py
            await asyncio.wait_for(self.finished.wait(), a.timeout)
            self.running = False
            for c in clients:
                c.transport.close()
            return {"msgs": self.received, "errors": self.errors}
        await asyncio.sleep(a.warmup)
        pids = tuple(int(p) for p in a.server_pid.split(",") if p)
        n0, cpu0, self0, t0 = self.received, read_cpu_s(pids), _self_cpu_s(), time.monotonic()
        await asyncio.sleep(a.duration)
        n1, cpu1, self1, t1 = self.received, read_cpu_s(pids), _self_cpu_s(), time.monotonic()
        self.running = False
        # The echoes still in flight (at most 0.5 s), then a closing handshake (RFC 6455 §7), so
        # that servers do not log lost connections or replies they could not send: a Close each,
        # at most `timeout` for the servers to close, then whatever is left is closed.
        drain_end = time.monotonic() + 0.5
        while self.received < self.sent and time.monotonic() < drain_end:
            await asyncio.sleep(0.005)
        for c in clients:
            c.transport.write(self.codec.build_close(1000, mask=os.urandom(4)))
        await asyncio.wait([c.closed for c in clients], timeout=a.timeout)
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


# -- the certificate and the command line -------------------------------------------------------------------


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


TLS_ROWS = "tls-echo-64x1-32B,tls-echo-8x16-1KiB"


def main(argv: list[str]) -> int:
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
    import run

    return run.main(["--workloads", TLS_ROWS, *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
