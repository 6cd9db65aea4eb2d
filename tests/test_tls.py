"""TLS: HTTPS and WSS on both loops, through the command line and worker
processes, with real clients (``websockets``, ``urllib``/``http.client``,
Chromium), against a CA and certificates this module makes (``trustme`` on
``cryptography``) for 127.0.0.1 and localhost.

With TLS the transport our protocols get is an SSL application transport
(asyncio's ``_SSLProtocolTransport``, uvloop's ``SSLProtocol``), not a TCP
one: reading into our own buffers (``BufferedProtocol``; asyncio's slices
the buffer it is given), handing the transport from HTTP to the WebSocket
after the 101 with frames already behind the upgrade request, flow control
(``get_write_buffer_size``) and closing all go through it and are checked
here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from robyn_fast import Config, Robyn, WebSocket, WebSocketAdapter
from robyn_fast.cli import Options, UsageError, resolve
from robyn_fast.exceptions import ConfigError, RobynFastError
from robyn_fast.tls import server_context

from .process_helpers import EXAMPLES, ServerProcess, owner, serve_script, worker_pids
from .codec_helpers import masked
from .server_helpers import eventually, read_frame, recv_until, running, upgrade_request

TIMEOUT = 10.0
PASSWORD = "s3cret pass"
CHROMIUM = "/usr/bin/chromium"
TRANSPORTS = ["aiofastnet", "loop"]  # Config.tls_transport: aiofastnet's and the event loop's


@dataclass
class Pki:
    """A CA, a server certificate signed by it, and the same key in every
    form the command line takes, as files in a private directory."""

    dir: Path
    ca: trustme.CA
    ca_file: Path
    cert: Path  # the server certificate (127.0.0.1 and localhost)
    key: Path
    combined: Path  # certificate and key in one file
    encrypted_key: Path  # the key, encrypted with PASSWORD
    other_key: Path  # a key of another certificate
    spki_sha256: str  # base64 SHA-256 of the certificate's public key (Chromium's pin)

    def server_context(self) -> ssl.SSLContext:
        return server_context(self.cert, self.key)

    def client_context(self) -> ssl.SSLContext:
        """A client that trusts this CA only."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    (d / "combined.pem").write_bytes(leaf.cert_chain_pems[0].bytes() + leaf.private_key_pem.bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    (d / "encrypted-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode())))
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(d / "other-key.pem"))
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for f in d.iterdir():
        f.chmod(0o600)
    return Pki(d, ca, d / "ca.pem", d / "cert.pem", d / "key.pem", d / "combined.pem", d / "encrypted-key.pem",
               d / "other-key.pem", base64.b64encode(hashlib.sha256(spki).digest()).decode())


def cleartext_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` unencrypted to the TLS port and return all the server
    sends back until it closes (a reset ends it too)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                got += chunk
        return got


def tls_app(pki: Pki, context: ssl.SSLContext | None = None, **config: Any) -> tuple[Robyn, WebSocket, dict[str, Any]]:
    """An app over TLS: ``/ws`` echoes (``broadcast:<text>`` goes to every
    connection, ``flood:<n>`` sends n 64 KiB messages, one per loop
    iteration, and answers with how many were accepted), ``/`` tells the
    request's scheme, ``POST /len`` the body's length. The dict holds what
    the flood accepted."""
    state: dict[str, Any] = {}
    app = Robyn(__file__, config=Config(ssl=context or pki.server_context(), **config))
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    async def message(ws: Any, msg: Any) -> Any:
        if isinstance(msg, str) and msg.startswith("broadcast:"):
            ws.sync_broadcast(msg)
            return None
        if isinstance(msg, str) and msg.startswith("flood:"):
            chunk = b"\x00" * 65536
            accepted = 0
            for _ in range(int(msg[6:])):
                if not ws.sync_send_to(ws.id, chunk):
                    break
                accepted += 1
                await asyncio.sleep(0)
            state["flooded"] = accepted
            return None
        return msg

    @app.get("/")
    def index(request: Any) -> str:
        return f"scheme={request.url.scheme}"

    @app.post("/len")
    def length(request: Any) -> str:
        return str(len(request.body))

    return app, ws, state


# -- WSS and HTTPS in-process, on both loops --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wss_echo_broadcast_a_1_mib_message_and_compression(pki: Pki, loop_kind: str, transport: str) -> None:
    app, _, _ = tls_app(pki, max_message_size=4 * 1024 * 1024, tls_transport=transport)

    async def scenario(url: str) -> None:
        ctx = pki.client_context()
        async with ws_connect(url, ssl=ctx, compression="deflate", max_size=None, open_timeout=TIMEOUT) as a, \
                ws_connect(url, ssl=ctx, compression=None, max_size=None, open_timeout=TIMEOUT) as b:
            ssl_object = a.transport.get_extra_info("ssl_object")
            assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            assert a.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            assert "Sec-WebSocket-Extensions" not in b.response.headers
            for text in ("hello ✓", "x" * 70_000):
                await a.send(text)
                assert await asyncio.wait_for(a.recv(), TIMEOUT) == text
            # 1 MiB, compressible and not, both ways, over the compressed and the plain connection.
            big_text = "".join(f"record {i} ✓;" for i in range(90_000))[: 1 << 20]
            big_binary = os.urandom(1 << 20)
            for conn in (a, b):
                await conn.send(big_text)
                assert await asyncio.wait_for(conn.recv(), TIMEOUT) == big_text
                await conn.send(big_binary)
                assert await asyncio.wait_for(conn.recv(), TIMEOUT) == big_binary
            await b.send("broadcast:to everyone")
            assert await asyncio.wait_for(a.recv(), TIMEOUT) == "broadcast:to everyone"
            assert await asyncio.wait_for(b.recv(), TIMEOUT) == "broadcast:to everyone"

    with running(app, loop_kind) as srv:
        assert srv.ws_url.startswith("wss://")
        asyncio.run(scenario(srv.ws_url + "/ws"))
        # The server compressed for the client that asked (the 70 KB and 1 MiB texts at least).
        assert app.stats()["compressions"] >= 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wss_to_a_receive_loop_endpoint(pki: Pki, loop_kind: str, transport: str) -> None:
    """``@app.websocket`` over TLS: permessage-deflate, a 1 MiB message, and
    300 messages echoed in order while the handler's queue pauses and
    resumes the TLS transport's reading (read_high_water=4)."""
    app = Robyn(__file__, config=Config(ssl=pki.server_context(), read_high_water=4, read_low_water=2,
                                        tls_transport=transport))

    @app.websocket("/recv")
    async def echo(websocket: WebSocketAdapter) -> None:
        await websocket.send_json({"compression": websocket.connector.compression is not None})
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())

    async def scenario(url: str) -> None:
        async with ws_connect(url, ssl=pki.client_context(), compression="deflate", max_size=None,
                              open_timeout=TIMEOUT) as conn:
            assert conn.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            assert await asyncio.wait_for(conn.recv(), TIMEOUT) == '{"compression":true}'
            messages = [f"{i:04d}".encode() + os.urandom(16 * 1024) for i in range(300)] + [b"x" * (1 << 20)]

            async def send_all() -> None:
                for m in messages:
                    await conn.send(m)

            sender = asyncio.create_task(send_all())
            echoed = [await asyncio.wait_for(conn.recv(), TIMEOUT) for _ in messages]
            await sender
            assert echoed == messages

    with running(app, loop_kind) as srv:
        asyncio.run(scenario(srv.ws_url + "/recv"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_frames_behind_the_upgrade_request_in_the_same_tls_record(pki: Pki, loop_kind: str, transport: str) -> None:
    """The upgrade request and a masked frame in one write: the HTTP protocol
    reads both from the TLS transport and hands the frame to the WebSocket
    with the transport."""
    app, _, _ = tls_app(pki, tls_transport=transport)
    mask = b"\x01\x02\x03\x04"
    payload = b"right behind"
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    with running(app, loop_kind) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(upgrade_request() + frame)
            data = b""
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + 2 + len(payload):
                chunk = conn.recv(65536)
                assert chunk, f"closed after {data!r}"
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert rest[:2 + len(payload)] == bytes([0x81, len(payload)]) + payload


def test_https_requests_keep_alive_and_a_large_body(pki: Pki, loop_kind: str) -> None:
    app, _, _ = tls_app(pki)
    with running(app, loop_kind) as srv:
        assert srv.url.startswith("https://")
        with urllib.request.urlopen(srv.url + "/", context=pki.client_context(), timeout=TIMEOUT) as r:
            assert r.status == 200 and r.read() == b"scheme=https"
        conn = http.client.HTTPSConnection("localhost", srv.port, context=pki.client_context(), timeout=TIMEOUT)
        try:
            body = os.urandom(3 * 1024 * 1024)
            for _ in range(3):  # one TLS connection, kept alive
                conn.request("POST", "/len", body=body)
                r = conn.getresponse()
                assert (r.status, r.read()) == (200, str(len(body)).encode())
            assert conn.sock is not None and conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            conn.close()


def test_a_plain_tcp_client_on_the_tls_port_fails_cleanly(
        pki: Pki, loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = tls_app(pki)
    with running(app, loop_kind) as srv:
        for request in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", upgrade_request(), b"\x00" * 10_000):
            got = cleartext_exchange(srv.port, request)
            # No HTTP answer in the clear: at most a TLS alert record, then the server closed.
            assert not got.startswith(b"HTTP"), got
        with pytest.raises(Exception) as info:  # ws:// to a wss:// server
            with sync_connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=TIMEOUT):
                pass
        assert not isinstance(info.value, InvalidStatus)
        # The server still serves.
        with sync_connect(srv.ws_url + "/ws", ssl=pki.client_context(), open_timeout=TIMEOUT) as c:
            c.send("still here")
            assert c.recv(TIMEOUT) == "still here"
    assert not [r for r in caplog.records if r.levelno >= 40], caplog.text


def test_a_client_that_does_not_trust_the_ca_fails_verification(pki: Pki, loop_kind: str) -> None:
    app, _, _ = tls_app(pki)
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)  # another CA, not ours
    with running(app, loop_kind) as srv:
        for ctx in (ssl.create_default_context(), stranger):
            with pytest.raises(urllib.error.URLError) as info:
                urllib.request.urlopen(srv.url + "/", context=ctx, timeout=TIMEOUT)
            assert isinstance(info.value.reason, ssl.SSLCertVerificationError), info.value
            with pytest.raises(ssl.SSLCertVerificationError):
                with sync_connect(srv.ws_url + "/ws", ssl=ctx, open_timeout=TIMEOUT):
                    pass
        # A name the certificate does not carry.
        with pytest.raises(ssl.SSLCertVerificationError):
            with sync_connect(srv.ws_url + "/ws", ssl=pki.client_context(), server_hostname="example.com",
                              open_timeout=TIMEOUT):
                pass
        with urllib.request.urlopen(srv.url + "/", context=pki.client_context(), timeout=TIMEOUT) as r:
            assert r.read() == b"scheme=https"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_max_backpressure_holds_over_tls(pki: Pki, loop_kind: str, transport: str) -> None:
    """A client that stops reading: the TLS transport's write buffer must be
    seen (get_write_buffer_size on the SSL transport), so the server stops
    at max_backpressure (plus what the kernel's socket buffers took) instead
    of buffering all 1,000 x 64 KiB (64 MiB)."""
    app, ws, state = tls_app(pki, max_backpressure=1024 * 1024, close_timeout=1.0, tls_transport=transport)
    with running(app, loop_kind) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(upgrade_request())
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            assert head.startswith(b"HTTP/1.1 101 ")
            text = b"flood:1000"
            mask = b"\x00\x00\x00\x00"
            conn.sendall(bytes([0x81, 0x80 | len(text)]) + mask + text)  # then never read again
            accepted = eventually(lambda: state.get("flooded"), lambda n: n is not None, timeout=30)
            assert 16 <= accepted < 300, accepted
            # Closed with 1008, which the client never reads: aborted after close_timeout.
            eventually(lambda: srv.hub(ws).live, lambda n: n == 0, timeout=15)


# -- the TLS transport: aiofastnet's and the loop's ----------------------------------------------------------



def _client_hello(pki: Pki) -> bytes:
    """The first flight of a real TLS client (its ClientHello record)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_log_names_the_tls_transport(pki: Pki, loop_kind: str, transport: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = tls_app(pki, tls_transport=transport)
    caplog.set_level("INFO", logger="robyn_fast.server")
    with running(app, loop_kind) as srv:
        with sync_connect(srv.ws_url + "/ws", ssl=pki.client_context(), open_timeout=TIMEOUT) as c:
            c.send("named")
            assert c.recv(TIMEOUT) == "named"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TLS through ")]
    assert len(said) == 1, said
    assert ("aiofastnet 1." in said[0]) == (transport == "aiofastnet"), said


def test_auto_takes_aiofastnet_when_installed(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    import aiofastnet

    assert Config().tls_transport == "auto"
    app, _, _ = tls_app(pki)
    caplog.set_level("INFO", logger="robyn_fast.server")
    with running(app) as srv:
        with urllib.request.urlopen(srv.url + "/", context=pki.client_context(), timeout=TIMEOUT) as r:
            assert r.read() == b"scheme=https"
    assert f"TLS through aiofastnet {aiofastnet.__version__}'s TLS transport" in caplog.text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fragmented_records_and_messages_of_every_size(pki: Pki, loop_kind: str, transport: str) -> None:
    """The upgrade request 7 bytes per TLS record, then binary messages of
    0 B to 200 KiB, each written in records of 1 to 3000 bytes (the server
    decrypts many small records into one frame, and one record holding the
    end of a frame and the start of the next); each echo is exact."""
    app, _, _ = tls_app(pki, tls_transport=transport)
    with running(app, loop_kind) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            request = upgrade_request()
            for i in range(0, len(request), 7):
                conn.sendall(request[i:i + 7])
            head, _, rest = recv_until(conn, b"\r\n\r\n").partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            sizes = [0, 1, 125, 126, 65535, 65536, 200 * 1024]
            rnd = os.urandom(2)
            for size in sizes:
                payload = os.urandom(size)
                wire = masked(0x82, payload, os.urandom(4))
                at, step = 0, 1 + rnd[0] % 7
                while at < len(wire):
                    piece = min(len(wire) - at, step)
                    conn.sendall(wire[at:at + piece])
                    at += piece
                    step = 1 + (step * 7919 + 13) % 3000
                first, echoed, rest = read_frame(conn, rest)
                assert (first, echoed) == (0x82, payload), size
            # Two messages in one record.
            a, b = os.urandom(40), os.urandom(3000)
            conn.sendall(masked(0x82, a) + masked(0x82, b))
            first, echoed, rest = read_frame(conn, rest)
            assert (first, echoed) == (0x82, a)
            assert read_frame(conn, rest)[:2] == (0x82, b)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_notify_follows_the_close_handshake(pki: Pki, loop_kind: str, transport: str) -> None:
    """After the Close handshake the server ends TLS with a close_notify
    (a ragged TCP close would raise SSLEOFError here, as
    suppress_ragged_eofs is off), over WSS and after an HTTPS request with
    ``Connection: close``."""
    app, ws, _ = tls_app(pki, tls_transport=transport)
    with running(app, loop_kind) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as conn:
            conn.sendall(upgrade_request())
            rest = recv_until(conn, b"\r\n\r\n").partition(b"\r\n\r\n")[2]
            conn.sendall(masked(0x88, (1000).to_bytes(2, "big") + b"bye"))
            assert read_frame(conn, rest)[:2] == (0x88, (1000).to_bytes(2, "big"))
            assert conn.recv(65536) == b""  # close_notify: a clean end of TLS, not an SSLEOFError
        eventually(lambda: srv.hub(ws).live, lambda n: n == 0, timeout=TIMEOUT)
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := conn.recv(65536):
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"scheme=https"), got


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_bad_client_hello_is_closed_and_the_server_serves_on(
        pki: Pki, loop_kind: str, transport: str, caplog: pytest.LogCaptureFixture) -> None:
    """A handshake record that is not a ClientHello, a ClientHello cut and
    then corrupted, and a record claiming 16 KiB but ending early: each
    connection is closed by the server (at most an alert), nothing is
    logged at ERROR, and the next client is served."""
    hello = _client_hello(pki)
    corrupt = hello[:9] + bytes(b ^ 0x5A for b in hello[9:60]) + hello[60:]
    bad = [b"\x16\x03\x01\x00\x05hello", corrupt, b"\x16\x03\x01\x40\x00" + b"\x01" * 64 + b"\xff" * 20_000]
    app, _, _ = tls_app(pki, tls_transport=transport)
    with running(app, loop_kind) as srv:
        for record in bad:
            got = cleartext_exchange(srv.port, record)
            assert got == b"" or got[:1] == b"\x15", got[:40]  # nothing, or a TLS alert record
        with sync_connect(srv.ws_url + "/ws", ssl=pki.client_context(), open_timeout=TIMEOUT) as c:
            c.send("still serving")
            assert c.recv(TIMEOUT) == "still serving"
    assert not [r for r in caplog.records if r.levelno >= 40], caplog.text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_client_stalled_mid_handshake_is_dropped_at_handshake_timeout(
        pki: Pki, loop_kind: str, transport: str, caplog: pytest.LogCaptureFixture) -> None:
    """Half a ClientHello, then silence: the server closes the connection
    once ``handshake_timeout`` (0.5 s) has passed, not before, not much
    after; so it does to a client that completes TCP and sends nothing."""
    hello = _client_hello(pki)
    app, _, _ = tls_app(pki, tls_transport=transport, handshake_timeout=0.5)
    with running(app, loop_kind) as srv:
        for first in (hello[:len(hello) // 2], b""):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
                start = time.monotonic()
                sock.sendall(first)
                got = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(65536):
                        got += chunk
                waited = time.monotonic() - start
                assert 0.4 <= waited < 4.0, waited
                assert got == b"" or got[:1] == b"\x15", got[:40]
        with sync_connect(srv.ws_url + "/ws", ssl=pki.client_context(), open_timeout=TIMEOUT) as c:
            c.send("after the stalls")
            assert c.recv(TIMEOUT) == "after the stalls"
    assert not [r for r in caplog.records if r.levelno >= 40], caplog.text


def test_a_context_with_an_sni_callback_runs_on_the_loops_transport(
        pki: Pki, loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """The ``ssl`` module's callbacks (here ``sni_callback``) run only on its
    own connection objects: ``"auto"`` serves such a context on the loop's
    transport (and says why), where the callback sees the client's name;
    ``"aiofastnet"`` refuses to start with it."""
    names: list[str | None] = []
    context = pki.server_context()
    context.sni_callback = lambda obj, name, ctx: names.append(name)  # type: ignore[assignment, func-returns-value]
    app, _, _ = tls_app(pki, context)
    caplog.set_level("INFO", logger="robyn_fast.server")
    with running(app, loop_kind) as srv:
        with sync_connect(f"wss://localhost:{srv.port}/ws", ssl=pki.client_context(), open_timeout=TIMEOUT) as c:
            c.send("sni")
            assert c.recv(TIMEOUT) == "sni"
    assert names == ["localhost"]
    assert "TLS through the event loop's TLS transport (the context has an sni_callback)" in caplog.text
    app = Robyn(__file__, config=Config(ssl=context, tls_transport="aiofastnet"))
    with pytest.raises(ConfigError, match="tls_transport='aiofastnet': the context has an sni_callback"):
        with running(app, loop_kind):
            pass


def test_client_certificates_on_both_transports(pki: Pki, loop_kind: str) -> None:
    """A context that requires client certificates (``verify_mode =
    CERT_REQUIRED``): a client with one signed by the CA is served, one
    without is refused in the handshake, on either transport."""
    for transport in TRANSPORTS:
        context = pki.server_context()
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(pki.ca_file))
        app, _, _ = tls_app(pki, context, tls_transport=transport)
        with running(app, loop_kind) as srv:
            with_cert = pki.client_context()
            pki.ca.issue_cert("client@example.com").configure_cert(with_cert)
            with sync_connect(srv.ws_url + "/ws", ssl=with_cert, open_timeout=TIMEOUT) as c:
                c.send("certified")
                assert c.recv(TIMEOUT) == "certified"
            # Without a certificate: refused (TLS 1.3: the client's side of the handshake ends first, so the
            # refusal shows at its first read: an alert, a reset, a broken pipe (sid's OpenSSL writes while
            # reading) or the end of the stream; neither loop's transport nor aiofastnet's sends the alert
            # before closing); never a 101.
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
            with contextlib.closing(raw):
                got = b""
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                        conn.sendall(upgrade_request())
                        while chunk := conn.recv(65536):
                            got += chunk
                assert got == b"", got


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wss_over_a_unix_socket(pki: Pki, tmp_path: Path, transport: str) -> None:
    """``--uds`` with TLS, the transport chosen by ``ROBYN_FAST_TLS_TRANSPORT``:
    a TLS client over AF_UNIX upgrades and gets its echo."""
    path = str(tmp_path / "tls.sock")
    args = ["--uds", path, "--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)]
    server = ServerProcess([str(EXAMPLES / "echo.py"), *args], "uvloop",
                           {"ROBYN_HOST": "", "ROBYN_PORT": "", "ROBYN_FAST_TLS_TRANSPORT": transport})
    try:
        server.wait_output(rf"serving on unix:{path}")
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(TIMEOUT)
        raw.connect(path)
        with pki.client_context().wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(upgrade_request() + masked(0x81, b"over a unix socket"))
            head, _, rest = recv_until(conn, b"\r\n\r\n").partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert read_frame(conn, rest)[:2] == (0x81, b"over a unix socket")
        assert server.stop() == 0
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_tls_transport_setting_from_the_command_line_and_environment(tmp_path: Path, pki: Pki) -> None:
    result = _start(tmp_path, ["--ssl-certfile", str(pki.combined), "--tls-transport", "fastest"])
    assert result.returncode == 2 and "tls_transport must be 'auto', 'aiofastnet' or 'loop'" in result.stderr, \
        result.stderr
    result = _start(tmp_path, ["--ssl-certfile", str(pki.combined)], env={"ROBYN_FAST_TLS_TRANSPORT": "nope"})
    assert result.returncode == 2 and "ROBYN_FAST_TLS_TRANSPORT" in result.stderr, result.stderr
    # aiofastnet asked for by name and missing (hidden from the import system): exit 2, one line.
    script = tmp_path / "hidden.py"
    script.write_text("import sys\nsys.modules['aiofastnet'] = None\n"
                      "from robyn_fast import Robyn, WebSocket\napp = Robyn(__file__)\nWebSocket(app, '/ws')\n"
                      "app.start(host='127.0.0.1', port=0)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBYN")}
    result = subprocess.run([sys.executable, str(script), "--ssl-certfile", str(pki.combined), "--tls-transport",
                             "aiofastnet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "aiofastnet is not installed (pip install 'robyn_fast[tls]')" in result.stderr
    assert "Traceback" not in result.stderr


# -- the command line, worker processes ---------------------------------------------------------------------


def test_the_command_line_serves_https_and_wss(pki: Pki, loop_kind: str) -> None:
    """``python examples/echo.py --ssl-certfile ... --ssl-keyfile ...``: the
    start-up line says https:// and wss://; SIGTERM closes with 1001."""
    args = ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)]
    server = ServerProcess([str(EXAMPLES / "echo.py"), *args], loop_kind)
    try:
        port = server.wait_listening()
        line = server.wait_output(r"serving on (\S+); WebSocket: (\S+)")
        assert line.groups() == (f"https://127.0.0.1:{port}", f"wss://127.0.0.1:{port}/ws")
        with urllib.request.urlopen(f"https://localhost:{port}/", context=pki.client_context(), timeout=TIMEOUT) as r:
            assert b"robyn_fast echo" in r.read()
        with sync_connect(f"wss://localhost:{port}/ws", ssl=pki.client_context(), open_timeout=TIMEOUT,
                          max_size=None) as c:
            c.send("over the command line")
            assert c.recv(TIMEOUT) == "over the command line"
            assert server.stop() == 0
            with pytest.raises(Exception):
                c.recv(TIMEOUT)
            assert c.close_code == 1001
    finally:
        server.stop()
    out = server.output()
    assert "Traceback" not in out, out


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_an_encrypted_key_with_its_password(pki: Pki, tmp_path: Path, how: str) -> None:
    args = ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.encrypted_key)]
    env = {}
    if how == "flag":
        args += ["--ssl-keyfile-password", PASSWORD]
    else:
        env["ROBYN_FAST_SSL_KEYFILE_PASSWORD"] = PASSWORD
    with serve_script(EXAMPLES / "echo.py", env=env, args=args) as server:
        with sync_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context(),
                          open_timeout=TIMEOUT) as c:
            c.send("decrypted")
            assert c.recv(TIMEOUT) == "decrypted"


def test_two_worker_processes_serve_wss(pki: Pki, loop_kind: str) -> None:
    """``python -m robyn_fast app.py --processes 2 --ssl-certfile combined.pem``
    (the key in the certificate file): both workers, forked with the
    context loaded once, complete TLS handshakes and serve wss; a broadcast
    crosses them."""
    script = EXAMPLES / "broadcast.py"
    args = ["--processes", "2", "--ssl-certfile", str(pki.combined)]
    with serve_script(script, loop_kind, args=args, module=True) as server:
        port = server.port
        assert port is not None
        assert server.wait_output(r"serving on https://127\.0\.0\.1:\d+ with 2 worker processes .*; WebSocket: wss://")
        pids = worker_pids(server.pid)
        assert len(pids) == 2
        clients: dict[int, list[Any]] = {pid: [] for pid in pids}
        with contextlib.ExitStack() as stack:
            opened = 0
            while any(not c for c in clients.values()):
                assert opened < 40, "40 connections and the kernel never picked one of the workers"
                c = stack.enter_context(
                    sync_connect(f"wss://127.0.0.1:{port}/ws", ssl=pki.client_context(), open_timeout=TIMEOUT))
                opened += 1
                clients[owner(c.socket, port, pids)].append(c)
            first, second = clients[pids[0]][0], clients[pids[1]][0]
            first.send("from the first worker's client")
            assert second.recv(TIMEOUT) == "from the first worker's client"
            assert first.recv(TIMEOUT) == "from the first worker's client"


def _start(tmp_path: Path, args: list[str], env: dict[str, str] | None = None,
           body: str = "app.start(host='127.0.0.1', port=0)") -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text("from robyn_fast import Robyn, WebSocket\napp = Robyn(__file__)\n"
                      "WebSocket(app, '/ws')\n" + body + "\n")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROBYN")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=60)


def test_command_line_errors_are_one_line_and_status_2(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    cases = [
        (["--ssl-certfile", str(missing)], {}, f"TLS certificate file {missing}: no such file"),
        (["--ssl-keyfile", str(pki.key)], {}, "--ssl-keyfile (or ROBYN_FAST_SSL_KEYFILE) needs --ssl-certfile"),
        (["--ssl-keyfile-password", "x"], {}, "needs --ssl-certfile"),
        (["--ssl-certfile", str(pki.cert)], {}, "no private key in it"),
        (["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.encrypted_key)], {},
         "the private key is encrypted; give its password"),
        (["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.encrypted_key), "--ssl-keyfile-password",
          "wrong"], {}, "cannot decrypt the private key (wrong password?)"),
        (["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.other_key)], {},
         "the private key does not match the certificate"),
        ([], {"ROBYN_FAST_SSL_CERTFILE": str(pki.key)}, "no PEM certificate in it"),
        (["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(tmp_path)], {}, "is a directory"),
    ]
    for args, env, says in cases:
        result = _start(tmp_path, args, env)
        err = result.stderr
        assert result.returncode == 2, (args, result.stdout, err)
        assert says in err and "Traceback" not in err and "serving on" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err


def test_app_start_ssl_argument(pki: Pki, tmp_path: Path) -> None:
    result = _start(tmp_path, [], body="app.start(host='127.0.0.1', port=0, ssl='cert.pem')")
    assert result.returncode == 2 and "app.start(ssl=...): expected an ssl.SSLContext, not str" in result.stderr
    body = ("import ssl\nctx = ssl.create_default_context()\n"
            "app.start(host='127.0.0.1', port=0, ssl=ctx)")
    result = _start(tmp_path, [], body=body)
    assert result.returncode == 2 and "client-side context" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_app_start_ssl_context_serves(pki: Pki, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "from robyn_fast import Robyn\nfrom robyn_fast.tls import server_context\n"
        "app = Robyn(__file__)\n@app.get('/')\ndef index(request):\n    return request.url.scheme\n"
        f"app.start(host='127.0.0.1', port=0, ssl=server_context({str(pki.cert)!r}, {str(pki.key)!r}))\n")
    with serve_script(script, cwd=tmp_path) as server:
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/", context=pki.client_context(),
                                    timeout=TIMEOUT) as r:
            assert r.read() == b"https"


# -- the API's own checks --------------------------------------------------------------------------------------


def test_server_context_errors_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    assert issubclass(ConfigError, RobynFastError) and issubclass(ConfigError, ValueError)
    bad = tmp_path / "garbage.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_bytes(pki.key.read_bytes())
    unreadable.chmod(0)
    cases: list[tuple[tuple[Any, ...], str]] = [
        ((tmp_path / "none.pem",), "no such file"),
        ((pki.cert,), "no private key in it"),
        ((pki.cert, pki.encrypted_key), "is encrypted; give its password"),
        ((pki.cert, pki.encrypted_key, "nope"), "wrong password"),
        ((pki.cert, pki.other_key), "does not match the certificate"),
        ((bad, pki.key), "OpenSSL cannot load them"),
        ((pki.cert, pki.encrypted_key, 42), "TLS key file"),
    ]
    if os.geteuid() != 0:  # root reads any file
        cases.append(((pki.cert, unreadable), "cannot read it: Permission denied"))
    for args, says in cases:
        with pytest.raises(ConfigError) as info:
            server_context(*args)
        assert says in str(info.value), (args, str(info.value))
        # One line, no chained traceback of ssl's (or of our own checks).
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
    assert isinstance(server_context(pki.combined), ssl.SSLContext)
    assert isinstance(server_context(pki.cert, pki.encrypted_key, PASSWORD.encode()), ssl.SSLContext)


def test_config_and_endpoint_ssl_checks(pki: Pki) -> None:
    with pytest.raises(TypeError, match="Config.ssl must be an ssl.SSLContext"):
        Config(ssl="cert.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="client-side context"):
        Config(ssl=ssl.create_default_context())
    app = Robyn(__file__)
    with pytest.raises(ValueError, match="not on one WebSocket endpoint"):
        WebSocket(app, "/ws", config=Config(ssl=pki.server_context()))
    ctx = pki.server_context()
    app = Robyn(__file__, config=Config(ssl=ctx))
    WebSocket(app, "/ws", config=Config(ssl=ctx, max_message_size=10))  # the app's own: accepted


def test_resolve_precedence(pki: Pki) -> None:
    """A flag over the environment over app.start(ssl=...)."""
    given = pki.server_context()
    assert resolve(Options(), {}, "127.0.0.1", 0, ssl=given).ssl is given
    assert resolve(Options(), {}, "127.0.0.1", 0).ssl is None
    from_env = resolve(Options(), {"ROBYN_FAST_SSL_CERTFILE": str(pki.combined)}, "127.0.0.1", 0, ssl=given).ssl
    assert isinstance(from_env, ssl.SSLContext) and from_env is not given
    with pytest.raises(UsageError, match="missing.pem: no such file"):
        resolve(Options(ssl_certfile="missing.pem"), {"ROBYN_FAST_SSL_CERTFILE": str(pki.combined)}, "h", 0)


# -- Chromium ------------------------------------------------------------------------------------------------

ECHO_JS = """
async () => {
  const ws = new WebSocket(`wss://${location.host}/ws`);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("no connection")); });
  const big = "é".repeat(300000);
  const echoes = [];
  const done = new Promise((ok, fail) => {
    ws.onmessage = (e) => { echoes.push(e.data); if (echoes.length === 2) ok(); };
    ws.onclose = (e) => fail(new Error(`closed ${e.code} after ${echoes.length} echoes`));
    setTimeout(() => fail(new Error("no echo within 20 s")), 20000);
  });
  ws.send("hello over wss ✓");
  ws.send(big);
  await done;
  ws.close(1000);
  return {protocol: location.protocol, extensions: ws.extensions, small: echoes[0], bigOk: echoes[1] === big};
}
"""


def test_chromium_over_https_and_wss(pki: Pki, tmp_path: Path) -> None:
    """Chromium trusts exactly our certificate (its SPKI pinned with
    --ignore-certificate-errors-spki-list), loads the echo page over https
    and echoes over wss (the page's own socket and one more, with
    permessage-deflate)."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` installs Debian's chromium"
    import playwright.sync_api as playwright_api

    from .test_examples import CHROMIUM_ARGS

    profile = tmp_path / "chromium-profile"
    args = ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)]
    with serve_script(EXAMPLES / "echo.py", args=args) as server, playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, timeout=30_000,
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pki.spki_sha256}"])
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"https://127.0.0.1:{server.port}/", wait_until="load")
            expect = playwright_api.expect
            expect(page.locator("#status")).to_have_text("connected", timeout=10_000)
            page.fill("#message", "typed in the page")
            page.click("#send")
            expect(page.locator("#log")).to_contain_text("typed in the page", timeout=10_000)
            result = page.evaluate(ECHO_JS)
        finally:
            context.close()
    assert result["protocol"] == "https:"
    assert result["extensions"].startswith("permessage-deflate")
    assert result["small"] == "hello over wss ✓" and result["bigOk"], result
    assert "Traceback" not in server.output()
    shutil.rmtree(profile, ignore_errors=True)
