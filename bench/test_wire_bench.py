"""Micro-benchmarks of the bus decoder (``robyn_fast.broker.wire.Decoder``,
pytest-benchmark): what a worker spends turning what its bus links read into
messages, no sockets. Each round decodes a fresh stream and checks the count.

Groups ``bus-decode-<case>``:

* ``1MiB-whole``: one 1 MiB frame in one chunk;
* ``1MiB-64KiB-reads``: the same frame in 64 KiB chunks (a frame split over
  reads is kept as its chunks and joined once);
* ``1000x1KiB-256KiB-reads``: 1000 messages of 1 KiB in 256 KiB chunks (what
  a link reads from a busy peer);
* ``1000x32B-room``: 1000 small room messages in one chunk (the per-message
  cost).

``extra_info["messages"]`` is the messages per round (``bench/ratios.py``
prints messages/s).
"""

from __future__ import annotations

import pytest

from robyn_fast.broker import wire

_TAG = 0x12340300


def _text(size: int) -> bytes:
    head = bytes([0x81, size]) if size < 126 else b"\x81\x7e" + size.to_bytes(2, "big")
    return head + b"x" * size


def _pieces(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


_BIG = wire.encode(wire.ALL, _TAG, "/chat", None, b"\x82\x7f" + (1 << 20).to_bytes(8, "big") + b"y" * (1 << 20))
_SMALL = b"".join(wire.encode(wire.ALL, _TAG, "/chat", None, _text(1020)) for _ in range(1000))
_ROOM = b"".join(wire.encode(wire.ROOM, _TAG, "/chat", "lobby", _text(30)) for _ in range(1000))

CASES = {
    "1MiB-whole": ([_BIG], 1),
    "1MiB-64KiB-reads": (_pieces(_BIG, 65536), 1),
    "1000x1KiB-256KiB-reads": (_pieces(_SMALL, 262144), 1000),
    "1000x32B-room": ([_ROOM], 1000),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bus_decode(benchmark: pytest.FixtureRequest, case: str) -> None:
    pieces, count = CASES[case]
    benchmark.group = f"bus-decode-{case}"  # type: ignore[attr-defined]
    benchmark.extra_info["messages"] = count  # type: ignore[attr-defined]

    def decode() -> int:
        decoder = wire.Decoder()
        n = 0
        for piece in pieces:
            n += len(decoder.feed(piece))
        assert decoder.buffered == 0
        return n

    assert benchmark(decode) == count  # type: ignore[operator]
