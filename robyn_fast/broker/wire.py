"""The bus message between nodes (worker processes, later hosts), sans-I/O.

One message carries one delivery request and the ready-built RFC 6455 frame,
so a receiving node hands the same bytes to its connection table without
parsing or re-encoding anything::

    u8  version (1)
    u8  kind      1 = every connection of an endpoint, 2 = a room, 3 = one connection, 0 = hello,
                  4 = a presence query, 5 = its reply, 6 = room interest, 7 = interest synced
    u8  key type  0 = none, 1 = str (UTF-8), 2 = int (decimal ASCII)
    u8  0
    u32 origin node tag
    u16 endpoint length, u16 key length, u32 frame length   (big-endian)
    endpoint (UTF-8), key, frame

A *hello* (kind 0, no endpoint, key or frame) opens every link and names the
dialing node. The other kinds are the brokers' own business, never handed
to a connection table:

- *query* (4): who is connected to the endpoint (no key) or in the room
  (the key); the frame is the asker's 4-byte request id (big-endian);
- *reply* (5): the answer to the query whose request id is the (int) key:
  the frame is a JSON array of connection ids (the replying node, the
  origin, holds them all);
- *interest* (6, the local bus): the origin has members in the key's room
  of the endpoint (frame ``b"\x01"``) or no longer (``b"\x00"``);
- *synced* (7, the local bus; a bare header like a hello): every interest
  of the origin has been sent on this link; deltas follow. :func:`encode` builds one message; :class:`Decoder` takes bytes
split anywhere and yields whole messages, raising :class:`WireError` for
anything malformed; :func:`decode_at` reads a whole payload (one Redis
PUBLISH) a slice of messages at a time.
"""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any, NamedTuple, Union

from ..exceptions import RobynFastError

__all__ = [
    "VERSION", "HELLO", "ALL", "ROOM", "TO", "QUERY", "REPLY", "INTEREST", "SYNCED", "Message", "WireError", "encode", "encode_hello", "Decoder", "decode_at",
    "MAX_MESSAGE", "encode_query", "query_id", "encode_reply", "reply_ids", "encode_interest", "encode_synced",
    "origin_of", "count_messages",
]

VERSION = 1
HELLO, ALL, ROOM, TO = 0, 1, 2, 3
QUERY, REPLY, INTEREST, SYNCED = 4, 5, 6, 7
_QUERY_ID = struct.Struct("!I")
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


def encode_synced(origin: int) -> bytes:
    return _HEAD.pack(VERSION, SYNCED, _NONE, 0, origin, 0, 0, 0)


def encode_query(origin: int, endpoint: str, room: Key, request: int) -> bytes:
    """Who is connected to ``endpoint`` (``room`` None) or in ``room``."""
    return encode(QUERY, origin, endpoint, room, _QUERY_ID.pack(request))


def query_id(frame: bytes) -> int:
    """The request id a query's frame carries."""
    return int(_QUERY_ID.unpack(frame)[0])


def encode_reply(origin: int, endpoint: str, request: int, ids: list[str]) -> bytes:
    """The answer to query ``request``: the ids of ``origin``'s connections."""
    return encode(REPLY, origin, endpoint, request, json.dumps(ids, separators=(",", ":")).encode("utf-8"))


def reply_ids(frame: bytes) -> list[str]:
    """The connection ids of a reply; WireError when it holds anything else."""
    try:
        ids = json.loads(frame)
    except ValueError as exc:
        raise WireError(f"a presence reply that is not JSON: {exc}") from None
    if type(ids) is not list or not all(type(i) is str for i in ids):
        raise WireError("a presence reply that is not a list of connection ids")
    return ids


def encode_interest(origin: int, endpoint: str, room: Key, wanted: bool) -> bytes:
    """``origin`` has members in ``room`` of ``endpoint`` (``wanted``) or no longer."""
    return encode(INTEREST, origin, endpoint, room, b"\x01" if wanted else b"\x00")


def origin_of(payload: bytes) -> int | None:
    """The origin node in the first header of ``payload`` (None: too short)."""
    if len(payload) < HEAD_SIZE:
        return None
    return int(_HEAD.unpack_from(payload, 0)[4])


def count_messages(payload: bytes) -> int:
    """How many messages ``payload`` holds by their headers' lengths (at
    least 1: a payload that is not whole messages counts as one)."""
    count, pos, size = 0, 0, len(payload)
    unpack = _HEAD.unpack_from
    while size - pos >= HEAD_SIZE:
        _, _, _, _, _, elen, klen, flen = unpack(payload, pos)
        pos += HEAD_SIZE + elen + klen + flen
        count += 1
    return max(count, 1)


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


def _header(buf: Any, pos: int) -> tuple[int, int, int, int, int, int]:
    """``(kind, key type, origin, endpoint length, key length, frame length)``
    of the header at ``pos``, judged before the body arrives."""
    version, kind, key_type, zero, origin, elen, klen, flen = _HEAD.unpack_from(buf, pos)
    if version != VERSION or zero != 0 or kind > SYNCED:
        raise WireError(f"not a bus message (version {version}, kind {kind})")
    total = HEAD_SIZE + elen + klen + flen
    if total > MAX_MESSAGE:
        raise WireError(f"a bus message of {total} bytes")
    return kind, key_type, origin, elen, klen, flen


def _fields(buf: Any, start: int, kind: int, key_type: int, elen: int, klen: int, flen: int) -> tuple[str, Key]:
    """The endpoint and key that follow a header, once both are in ``buf``;
    WireError when they do not fit the kind."""
    try:
        endpoint = str(buf[start : start + elen], "utf-8")
    except UnicodeDecodeError:
        raise WireError("an endpoint path that is not UTF-8") from None
    key = _decode_key(key_type, bytes(buf[start + elen : start + elen + klen]))
    if kind == HELLO or kind == SYNCED:
        if elen or klen or flen or key_type != _NONE:
            raise WireError("a hello with a body")
    elif kind > TO:
        if not endpoint:
            raise WireError("a broker message without an endpoint")
        if kind == QUERY and flen != _QUERY_ID.size:
            raise WireError("a query whose frame is not a 4-byte request id")
        if kind == REPLY and (type(key) is not int or not flen):
            raise WireError("a reply without a request id or a body")
        if kind == INTEREST and (flen != 1 or key is None):
            raise WireError("an interest without a room or a one-byte flag")
    elif not endpoint or not flen:
        raise WireError("a delivery without an endpoint or a frame")
    elif (kind == ALL) != (key is None):
        raise WireError("a key that does not fit the kind")
    return endpoint, key


def _one(buf: bytes, pos: int) -> tuple[Message, int] | None:
    """The message at ``pos`` and where the next one starts; None when
    ``buf`` holds only part of it; WireError when it is malformed."""
    if len(buf) - pos < HEAD_SIZE:
        return None
    kind, key_type, origin, elen, klen, flen = _header(buf, pos)
    start = pos + HEAD_SIZE
    body = start + elen + klen
    end = body + flen
    if len(buf) < end:
        return None
    endpoint, key = _fields(buf, start, kind, key_type, elen, klen, flen)
    return Message(kind, origin, endpoint, key, buf[body:end]), end


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
    """Whole messages out of a byte stream split anywhere.

    A frame is copied once, into its own ``bytes``: a message that arrives
    within one ``feed`` is sliced out of the chunk; a frame split over
    several feeds is kept as the chunks it came in (views of them for its
    first and last pieces) and joined once, when its last byte arrives. Only
    ``bytes`` chunks are kept across feeds (anything else is copied to
    ``bytes`` first), so a frame never aliases memory that is written again
    and may be handed to transports as it is (STYLE rule 11). A header is
    judged as soon as it is complete, and the endpoint and key as soon as they
    are, before the frame arrives."""

    __slots__ = ("_head", "_open", "_parts", "_missing", "_held")

    def __init__(self) -> None:
        self._head = bytearray()  # the start of a message whose endpoint and key are not all here yet
        self._open: tuple[int, int, str, Key] | None = None  # kind, origin, endpoint, key of a frame in pieces
        self._parts: list[bytes | memoryview] = []  # that frame's pieces so far: chunks or views of them
        self._missing = 0  # bytes of that frame still to come
        self._held = 0  # bytes of that message (header included) received so far

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message held (0 between messages)."""
        return len(self._head) + self._held

    def feed(self, data: bytes) -> list[Message]:
        """The messages ``data`` completes, in order; WireError for a
        malformed one (the stream cannot be trusted after it)."""
        if type(data) is not bytes:
            data = bytes(data)  # a caller's buffer may be written again: what we keep must not change
        end = len(data)
        pos = 0
        out: list[Message] = []
        if self._open is not None or self._head:
            pos = self._resume(data, out)
            if pos < 0:
                return out
        while end - pos >= HEAD_SIZE:
            kind, key_type, origin, elen, klen, flen = _header(data, pos)
            start = pos + HEAD_SIZE
            body = start + elen + klen
            if end < body:
                break
            endpoint, key = _fields(data, start, kind, key_type, elen, klen, flen)
            stop = body + flen
            if stop > end:
                # The frame goes on in the next feeds: keep what is here as a view of `data`.
                self._open = (kind, origin, endpoint, key)
                self._parts = [memoryview(data)[body:end]]
                self._missing = stop - end
                self._held = end - pos
                return out
            # Slicing `data` (immutable bytes) is the one copy, into the frame's own bytes.
            out.append(Message(kind, origin, endpoint, key, data[body:stop]))
            pos = stop
        if pos < end:
            self._head = bytearray(data[pos:end])  # a header (judged above if whole), or part of one
        return out

    def _resume(self, data: bytes, out: list[Message]) -> int:
        """Go on with the message an earlier feed began; where the next one
        starts in ``data``, or -1 when ``data`` did not finish this one."""
        end = len(data)
        pos = 0
        head = self._head
        if self._open is None:
            if len(head) < HEAD_SIZE:
                pos = min(HEAD_SIZE - len(head), end)
                head += data[:pos]
                if len(head) < HEAD_SIZE:
                    return -1
            kind, key_type, origin, elen, klen, flen = _header(head, 0)
            body = HEAD_SIZE + elen + klen
            take = min(body - len(head), end - pos)
            head += data[pos : pos + take]
            pos += take
            if len(head) < body:
                return -1
            endpoint, key = _fields(head, HEAD_SIZE, kind, key_type, elen, klen, flen)
            self._head = bytearray()
            if not flen:
                out.append(Message(kind, origin, endpoint, key, b""))
                return pos
            self._open = (kind, origin, endpoint, key)
            self._parts = []
            self._missing = flen
            self._held = body
        take = min(self._missing, end - pos)
        if take:
            # A chunk that is all frame is kept as it is; only a frame's first and last
            # pieces are views.
            self._parts.append(data if take == end else memoryview(data)[pos : pos + take])
            self._missing -= take
            self._held += take
            pos += take
        if self._missing:
            return -1
        kind, origin, endpoint, key = self._open
        frame = b"".join(self._parts)
        self._open = None
        self._parts = []
        self._held = 0
        out.append(Message(kind, origin, endpoint, key, frame))
        return pos
