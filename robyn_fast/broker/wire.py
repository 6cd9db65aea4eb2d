"""The bus message between nodes (worker processes, later hosts), sans-I/O.

One message carries one delivery request and the ready-built RFC 6455 frame,
so a receiving node hands the same bytes to its connection table without
parsing or re-encoding anything::

    u8  version (1)
    u8  kind      1 = every connection of an endpoint, 2 = a room, 3 = one connection, 0 = hello
    u8  key type  0 = none, 1 = str (UTF-8), 2 = int (decimal ASCII)
    u8  0
    u32 origin node tag
    u16 endpoint length, u16 key length, u32 frame length   (big-endian)
    endpoint (UTF-8), key, frame

A *hello* (kind 0, no endpoint, key or frame) opens every link and names the
dialing node. :func:`encode` builds one message; :class:`Decoder` takes bytes
split anywhere and yields whole messages, raising :class:`WireError` for
anything malformed; :func:`decode_at` reads a whole payload (one Redis
PUBLISH) a slice of messages at a time.
"""

from __future__ import annotations

import contextlib
import struct
from typing import NamedTuple, Union

from ..exceptions import RobynFastError

__all__ = [
    "VERSION", "HELLO", "ALL", "ROOM", "TO", "Message", "WireError", "encode", "encode_hello", "Decoder", "decode_at",
    "MAX_MESSAGE",
]

VERSION = 1
HELLO, ALL, ROOM, TO = 0, 1, 2, 3
_NONE, _STR, _INT = 0, 1, 2

_HEAD = struct.Struct("!BBBBIHHI")
HEAD_SIZE = _HEAD.size  # 16
MAX_MESSAGE = 1 << 30  # a frame is at most max_message_size plus a header; this bounds a corrupt length

Key = Union[str, int, None]


class WireError(RobynFastError, ValueError):
    """A bus message that is not one: the link it came on is closed."""


class Message(NamedTuple):
    kind: int
    origin: int
    endpoint: str
    key: Key
    frame: bytes


def _key_bytes(key: Key) -> tuple[int, bytes]:
    if key is None:
        return _NONE, b""
    if type(key) is str:
        return _STR, key.encode("utf-8")
    if type(key) is int:
        return _INT, str(key).encode("ascii")
    raise TypeError(f"a room or id on the bus is a str or an int, not {type(key).__name__}")


def encode(kind: int, origin: int, endpoint: str, key: Key, frame: bytes) -> bytes:
    """One message (see the module docstring)."""
    key_type, raw_key = _key_bytes(key)
    raw_endpoint = endpoint.encode("utf-8")
    if len(raw_endpoint) > 0xFFFF or len(raw_key) > 0xFFFF:
        raise ValueError("an endpoint path or a room name on the bus is at most 65535 bytes of UTF-8")
    head = _HEAD.pack(VERSION, kind, key_type, 0, origin, len(raw_endpoint), len(raw_key), len(frame))
    return b"".join((head, raw_endpoint, raw_key, frame))


def encode_hello(origin: int) -> bytes:
    return _HEAD.pack(VERSION, HELLO, _NONE, 0, origin, 0, 0, 0)


def _decode_key(key_type: int, raw: bytes) -> Key:
    try:
        if key_type == _NONE:
            if raw:
                raise WireError("a key without a key type")
            return None
        if key_type == _STR:
            return raw.decode("utf-8")
        if key_type == _INT:
            if raw.removeprefix(b"-").isdigit():
                with contextlib.suppress(ValueError):  # more digits than int() converts
                    return int(raw)
            raise WireError(f"an int key that is not decimal: {raw[:20]!r}")
    except UnicodeDecodeError as exc:
        raise WireError(f"a str key that is not UTF-8: {exc}") from None
    raise WireError(f"unknown key type {key_type}")


def _one(buf: bytes | bytearray, pos: int) -> tuple[Message, int] | None:
    """The message at ``pos`` and where the next one starts; None when
    ``buf`` holds only part of it; WireError when it is malformed."""
    if len(buf) - pos < HEAD_SIZE:
        return None
    version, kind, key_type, zero, origin, elen, klen, flen = _HEAD.unpack_from(buf, pos)
    if version != VERSION or zero != 0 or kind > TO:
        raise WireError(f"not a bus message (version {version}, kind {kind})")
    total = HEAD_SIZE + elen + klen + flen
    if total > MAX_MESSAGE:
        raise WireError(f"a bus message of {total} bytes")
    if len(buf) - pos < total:
        return None
    end = pos + total
    if kind == HELLO:
        if elen or klen or flen or key_type != _NONE:
            raise WireError("a hello with a body")
        return Message(HELLO, origin, "", None, b""), end
    start = pos + HEAD_SIZE
    try:
        endpoint = bytes(buf[start : start + elen]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("an endpoint path that is not UTF-8") from None
    key = _decode_key(key_type, bytes(buf[start + elen : start + elen + klen]))
    if not endpoint or not flen:
        raise WireError("a delivery without an endpoint or a frame")
    if (kind == ALL) != (key is None):
        raise WireError("a key that does not fit the kind")
    return Message(kind, origin, endpoint, key, bytes(buf[start + elen + klen : end])), end


def decode_at(payload: bytes, pos: int, limit: int) -> tuple[list[Message], int]:
    """Up to ``limit`` messages of a whole ``payload`` (one Redis PUBLISH),
    from ``pos``; and where the rest starts (``len(payload)`` once all are
    read). A malformed or truncated message stops the slice before it, and
    raises WireError when it is the first one of the slice, so the messages
    before it are delivered and the rest of the payload is not.

    The common message (a delivery) is read inline, with each endpoint path
    decoded once per slice; anything else goes through the general path.
    A flood of messages costs a few microseconds each."""
    out: list[Message] = []
    append = out.append
    unpack = _HEAD.unpack_from
    size = len(payload)
    names: dict[bytes, str] = {}
    try:
        while pos < size and len(out) < limit:
            if size - pos >= HEAD_SIZE:
                version, kind, key_type, zero, origin, elen, klen, flen = unpack(payload, pos)
                start = pos + HEAD_SIZE
                kstart = start + elen
                fstart = kstart + klen
                end = fstart + flen
                if version == VERSION and not zero and ALL <= kind <= TO and end <= size and elen and flen:
                    raw = payload[start:kstart]
                    endpoint = names.get(raw)
                    if endpoint is None:
                        try:
                            endpoint = names[raw] = raw.decode("utf-8")
                        except UnicodeDecodeError:
                            raise WireError("an endpoint path that is not UTF-8") from None
                    key = _decode_key(key_type, payload[kstart:fstart]) if key_type or klen else None
                    if (kind == ALL) != (key is None):
                        raise WireError("a key that does not fit the kind")
                    append(Message(kind, origin, endpoint, key, payload[fstart:end]))
                    pos = end
                    continue
            got = _one(payload, pos)  # a hello, or what is wrong with it, said by the general path
            if got is None:
                raise WireError(f"{size - pos} byte(s) of a truncated message")
            append(got[0])
            pos = got[1]
    except WireError:
        if not out:
            raise
    return out, pos


class Decoder:
    """Whole messages out of a byte stream split anywhere."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """The messages ``data`` completes, in order; WireError for a
        malformed one (the stream cannot be trusted after it)."""
        buf = self._buf
        buf += data
        pos = 0
        out: list[Message] = []
        try:
            while True:
                got = _one(buf, pos)
                if got is None:
                    break
                out.append(got[0])
                pos = got[1]
        finally:
            del buf[:pos]
        return out
