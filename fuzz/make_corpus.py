"""Write the seed corpus, fuzz/corpus/<harness>/, from real traffic built
with the reference codec and literal requests (run it after changing a
harness's input layout; the files are committed):

    .venv/bin/python fuzz/make_corpus.py

Each seed starts with the option bytes its check function reads (see
fuzz/checks.py), then the data. The whole corpus stays small (a few KB).
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

from robyn_fast._reference import codec as ref
from robyn_fast.broker import resp, wire

CORPUS = Path(__file__).resolve().parent / "corpus"
MASK = b"\x37\xfa\x21\x3d"


def frame(opcode: int, payload: bytes | str, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    return ref.build_frame(opcode, payload, fin=fin, rsv=rsv, mask=MASK if masked else None)


def frames_seeds() -> list[bytes]:
    seeds = []
    for client in (False, True):
        m = not client
        streams = [
            frame(ref.OP_TEXT, "Hello, world", masked=m),
            frame(ref.OP_BINARY, bytes(range(200)), masked=m),  # 16-bit length
            frame(ref.OP_TEXT, "fragmented ", fin=False, masked=m) + frame(ref.OP_PING, b"in between", masked=m)
            + frame(ref.OP_CONT, "text ", fin=False, masked=m) + frame(ref.OP_CONT, "héllo", masked=m),
            frame(ref.OP_PING, b"ping", masked=m) + frame(ref.OP_PONG, b"", masked=m)
            + ref.build_close(1000, "bye", mask=MASK if m else None),
            frame(ref.OP_TEXT, b"bad \xed\xa0\x80 utf-8", masked=m),
            ref.build_close(1001, "", mask=MASK if m else None) + frame(ref.OP_TEXT, "after close", masked=m),
            frame(ref.OP_CLOSE, b"\x03", masked=m),
            frame(ref.OP_CLOSE, b"\x03\xed", masked=m),
            frame(ref.OP_BINARY, b"x", rsv=ref.RSV2, masked=m),
            bytes([0x83, 0x80 if m else 0]) + (MASK if m else b""),  # unknown opcode
            bytes([0x82, (0x80 if m else 0) | 127]) + struct.pack("!Q", 1 << 40),  # a huge announced length
            bytes([0x82, (0x80 if m else 0) | 126, 0x01]),  # a header cut short
        ]
        for i, stream in enumerate(streams):
            seeds.append(bytes([int(client) | 0x50, 0 if i % 2 else 0x5B, 0]) + stream)
        seeds.append(bytes([int(client) | 0x08 | 0x10, 0x21, 0]) + streams[2])  # get_buffer path
    # permessage-deflate, server and client side, with and without context takeover.
    for client in (False, True):
        mask = None if client else MASK
        for nct in (True, False):
            deflater = ref.Deflater(12, no_context_takeover=nct)
            stream = deflater.build_message("compressed text, " * 8, mask=mask) + deflater.build_message(
                b"compressed binary " * 4, mask=mask
            )
            compressed = deflater.compress("a fragmented compressed message")
            stream += ref.build_frame(ref.OP_TEXT, compressed[:10], fin=False, rsv=ref.RSV1, mask=mask)
            stream += ref.build_frame(ref.OP_CONT, compressed[10:], mask=mask)
            stream += ref.build_frame(ref.OP_PING, b"", rsv=ref.RSV1, mask=mask)  # RSV1 on a control frame: 1002
            opts = int(client) | 0x02 | (0x04 if nct else 0) | 0x50
            seeds.append(bytes([opts, 0x37, 3]) + stream)
        bomb = ref.Deflater(9).build_message(b"\0" * 20000, mask=mask)  # inflates past the 1000-byte limit
        seeds.append(bytes([int(client) | 0x02 | 0x04 | 0x40, 0, 0]) + bomb)
    return seeds


def roundtrip_seeds() -> list[bytes]:
    return [
        bytes([0x09, 0x00, 0x00]) + MASK + "plain text é".encode(),  # text, fin, unmasked
        bytes([0x1A, 0x00, 0x00]) + MASK + bytes(range(256)),  # binary, fin, masked
        bytes([0x0B, 0x00, 0x00]) + MASK + b"\x03\xe8goodbye",  # close 1000
        bytes([0x0C, 0x00, 0x00]) + MASK + b"ping" * 40,  # ping too long: ValueError
        bytes([0x89, 0x00, 0x00]) + MASK + b"rsv",  # RSV bits
        bytes([0x01, 0x00, 0x00]) + MASK + b"unfinished",
        bytes([0x08, 0x03, 0x03]) + MASK + "deflate this text " .encode() * 10,
        bytes([0x18, 0x35, 0x1E]) + MASK + b"context takeover " * 12,
    ]


def handshake_seeds() -> list[bytes]:
    base = [
        b"Host:example.com", b"Upgrade:websocket", b"Connection:Upgrade",
        b"Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version:13",
    ]
    variants = [
        base,
        base + [b"Sec-WebSocket-Extensions:permessage-deflate; client_max_window_bits"],
        base + [b"Sec-WebSocket-Extensions:permessage-deflate; server_max_window_bits=10; "
                b"server_no_context_takeover, permessage-deflate", b"Sec-WebSocket-Protocol:superchat, chat",
                b"Origin:https://example.com"],
        base + [b'Sec-WebSocket-Extensions:permessage-deflate; client_max_window_bits="12", x-webkit-deflate-frame'],
        base + [b"Sec-WebSocket-Extensions:permessage-deflate;;", b"Origin:https://EXAMPLE.com"],
        base + [b"User-Agent:Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/15.2 Safari/605.1.15",
                b"Sec-WebSocket-Extensions:permessage-deflate"],
        base[:3] + [b"Sec-WebSocket-Key:short==", b"Sec-WebSocket-Version:8"],
        [b"Host:a", b"Host:b", b"Upgrade:h2c, WebSocket", b"Connection:keep-alive, upgrade"],
    ]
    seeds = []
    for i, lines in enumerate(variants):
        # GET (or HEAD, 405) over HTTP/1.1 (or "HTTP/1.1"); shared / dedicated compression, subprotocols, origins.
        seeds.append(bytes([[0x00, 0x10, 0x00, 0x03][i % 4], [0x01, 0x46, 0xC6, 0x0A][i % 4]]) + b"\n".join(lines))
    return seeds


def http_seeds() -> list[bytes]:
    # (options, request): option bit 0 small limits, bit 1 the client half-closes at the end.
    reqs = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /echo/abc?x=1&y=%20 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo/abc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /echo/e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n" + frame(ref.OP_TEXT, "early"),
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://x/fail HTTP/1.1\r\nHost: x\r\n\r\n",
        b"DELETE / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",  # unfinished head: the header timeout
    ]
    seeds = []
    for i, req in enumerate(reqs):
        opts = 1 if b"99999999" in req or b"Content-Length: 5" in req else 2 if i % 3 == 0 else 0
        seeds.append(bytes([0 if i % 2 else 0x5B, opts]) + req)
    return seeds


def broker_seeds() -> list[bytes]:
    hello = wire.encode_hello(0x12345678)
    frame_ = ref.build_text("from another node")
    seeds = [
        bytes([0]) + hello + wire.encode(wire.ALL, 7, "/chat", None, frame_),
        bytes([0x2C]) + wire.encode(wire.ROOM, 7, "/chat", "room é", frame_)
        + wire.encode(wire.TO, 9, "/ws/:id", 123456789012, frame_),
        bytes([4]) + wire.encode(wire.TO, 1, "/x", -5, b"\x81\x00")[:-1],
        bytes([8]) + b"\x02" + hello[1:],
        bytes([0]) + hello[:2] + b"\x01" + hello[3:],  # a hello with a str key type (found by the fuzzer)
        bytes([2]) + b"\0".join([b"PUBLISH", b"robyn_fast:all", hello]),
        bytes([6]) + b"SUBSCRIBE\0\0x",
        bytes([3]) + b"redis://user:secret@localhost:6380/2?prefix=app",
        bytes([7]) + b"rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false",
        bytes([11]) + b"unix:///tmp/redis.sock?db=3",
        bytes([15]) + b"http://[::1:6379",
        bytes([3]) + b"redis+sentinel://:pw@s1:26380,s2/mymaster/2?sentinel_password=x&prefix=app",
        bytes([7]) + b"rediss+cluster://a:7000,[::1]:7001?ssl_cert_reqs=none",
    ]
    return seeds


def seeds() -> dict[str, dict[str, bytes]]:
    """Every seed by harness, each named by its SHA-1 (so the same input is one file)."""
    return {
        name: {hashlib.sha1(seed).hexdigest()[:16]: seed for seed in made}
        for name, made in (("frames", frames_seeds()), ("roundtrip", roundtrip_seeds()),
                           ("handshake", handshake_seeds()), ("http", http_seeds()), ("broker", broker_seeds()))
    }


def main() -> None:
    shutil.rmtree(CORPUS, ignore_errors=True)
    total = 0
    for name, files in seeds().items():
        folder = CORPUS / name
        folder.mkdir(parents=True)
        for file_name, seed in files.items():
            (folder / file_name).write_bytes(seed)
            total += len(seed)
        print(f"{name}: {len(files)} seeds")
    print(f"{total} bytes in all")


if __name__ == "__main__":
    main()
