"""Shared helpers for the codec tests: run a parser over chunks and reduce the
outcome to plain tuples so the compiled and reference codecs can be compared."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from robyn_fast.exceptions import ProtocolError

MASK = b"\x37\xfa\x21\x3d"  # the RFC 6455 §5.7 example key

Outcome = tuple[list[tuple[Any, ...]], tuple[str, int, str] | None]


def run(codec: ModuleType, chunks: Iterable[bytes], **parser_kw: Any) -> Outcome:
    """Feed ``chunks`` one by one; return (message tuples, error or None)."""
    parser = codec.FrameParser(**parser_kw)
    messages: list[tuple[Any, ...]] = []
    for chunk in chunks:
        try:
            messages += [m.as_tuple() for m in parser.feed(chunk)]
        except ProtocolError as exc:
            messages += [m.as_tuple() for m in exc.messages]
            return messages, (type(exc).__name__, exc.close_code, exc.reason)
    return messages, None


def splits(data: bytes) -> Iterable[list[bytes]]:
    """Every way to cut ``data`` in two, then one byte at a time."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def masked(b0: int, payload: bytes, mask: bytes = MASK) -> bytes:
    """A client frame with first byte ``b0`` and the given payload, masked."""
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body
