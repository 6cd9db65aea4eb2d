"""Pure-Python WebSocket frame codec (RFC 6455), the oracle for the compiled one.

Sans-I/O: :class:`FrameParser` takes bytes and returns whole messages; the
``build_*`` functions return frames as ``bytes``. Nothing here touches a
socket. The compiled codec in ``_core/codec.pyx`` has the same API and must
give the same results for every input, split at any point: the test suite runs
the same tests against both and compares them on random streams.

This module is written for clarity, not speed. Where the two differ in how they
get there (this one uses Python's incremental UTF-8 decoder, the compiled one a
C state machine), the tests are what keep them in agreement.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from typing import Final

from ..exceptions import InvalidPayloadData, MessageTooBig, ProtocolError

__all__ = [
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "RSV1",
    "RSV2",
    "RSV3",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Message",
    "FrameParser",
    "apply_mask",
    "validate_utf8",
    "is_valid_close_code",
    "build_frame",
    "build_text",
    "build_binary",
    "build_message",
    "build_ping",
    "build_pong",
    "build_close",
    "Inflater",
    "Deflater",
    "scratch_size",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

RSV1: Final = 0x40
RSV2: Final = 0x20
RSV3: Final = 0x10

DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 20

_KNOWN_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))
_MAX_CONTROL_PAYLOAD = 125
_UNLIMITED = (1 << 64) - 1

# Parser states.
_HEADER = 0
_PAYLOAD = 1
_CLOSED = 2
_FAILED = 3


class Message:
    """One complete message or control frame received from the peer.

    ``data`` is a ``str`` for text messages and ``bytes`` otherwise (for a
    Close frame, its raw payload). ``close_code`` is ``None`` unless this is a
    Close frame with a body; ``close_reason`` is its decoded reason. ``rsv``
    holds the RSV bits of the message's first frame (always 0 unless an
    extension allowed them).
    """

    __slots__ = ("opcode", "data", "rsv", "close_code", "close_reason")

    def __init__(
        self,
        opcode: int,
        data: str | bytes,
        rsv: int = 0,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None:
        self.opcode = opcode
        self.data = data
        self.rsv = rsv
        self.close_code = close_code
        self.close_reason = close_reason

    def as_tuple(self) -> tuple[int, str | bytes, int, int | None, str]:
        return (self.opcode, self.data, self.rsv, self.close_code, self.close_reason)

    def __eq__(self, other: object) -> bool:
        as_tuple = getattr(other, "as_tuple", None)
        if as_tuple is None:
            return NotImplemented
        return bool(self.as_tuple() == as_tuple())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.opcode == OP_CLOSE:
            return f"Message(opcode={self.opcode}, close_code={self.close_code}, close_reason={self.close_reason!r})"
        return f"Message(opcode={self.opcode}, data={self.data!r}, rsv={self.rsv})"


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame (RFC 6455 §7.4.1, §7.4.2).

    1000-1003 and 1007-1011 are the defined codes that may be sent; 3000-4999
    are for libraries and applications. Everything else (including 1004-1006,
    1015, and the unassigned 1012-2999) is a protocol error when received.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, phase: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte masking key (RFC 6455 §5.3).

    ``phase`` is the offset of ``data`` within the payload, so a payload can be
    unmasked in pieces.
    """
    mask = bytes(mask)
    if len(mask) != 4:
        raise ValueError("mask must be exactly 4 bytes")
    if phase < 0:
        raise ValueError("phase must be >= 0")
    view = memoryview(data).cast("B")
    n = len(view)
    if n == 0:
        return b""
    rot = (phase & 3)
    key = (mask[rot:] + mask[:rot]) * ((n + 3) // 4)
    value = int.from_bytes(view, "little") ^ int.from_bytes(key[:n], "little")
    return value.to_bytes(n, "little")


def validate_utf8(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is well-formed UTF-8 (RFC 3629: no overlong forms, no
    surrogates, nothing above U+10FFFF)."""
    try:
        codecs.decode(bytes(data), "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_eagerly(decoder: codecs.IncrementalDecoder, chunk: bytes) -> bool:
    """Feed ``chunk`` to an incremental UTF-8 decoder; False as soon as the
    input can no longer be valid UTF-8.

    CPython's decoder rejects every impossible prefix at once except ED
    followed by A0..BF (a surrogate), which it only rejects on the third byte;
    RFC 6455 §8.1 wants the failure at the first invalid byte, so check that
    prefix here.
    """
    try:
        decoder.decode(chunk, False)
    except UnicodeDecodeError:
        return False
    pending = decoder.getstate()[0]
    return not (len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0)


def _payload_bytes(data: object, what: str = "data") -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be str, bytes, bytearray or memoryview, not {type(data).__name__}")


def _check_mask(mask: object) -> bytes | None:
    if mask is None:
        return None
    if not isinstance(mask, (bytes, bytearray, memoryview)) or len(mask) != 4:
        raise ValueError("mask must be None or exactly 4 bytes")
    return bytes(mask)


def build_frame(
    opcode: int,
    payload: str | bytes | bytearray | memoryview = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """Build one frame (RFC 6455 §5.2) as a single ``bytes`` object.

    Server frames are unmasked (``mask=None``) and can be written to any
    number of connections; a client passes its 4-byte masking key. A ``str``
    payload is encoded as UTF-8.
    """
    if opcode not in _KNOWN_OPCODES:
        raise ValueError(f"unknown opcode {opcode!r}")
    if rsv & ~(RSV1 | RSV2 | RSV3):
        raise ValueError("rsv must be a combination of RSV1, RSV2 and RSV3")
    key = _check_mask(mask)
    body = _payload_bytes(payload, "payload")
    n = len(body)
    if opcode >= OP_CLOSE:
        if not fin:
            raise ValueError("control frames cannot be fragmented")
        if n > _MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame payload is {n} bytes; at most 125 are allowed")
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if key is not None else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if key is None:
        return head + body
    return head + key + apply_mask(body, key)


def build_text(data: str | bytes | bytearray | memoryview, *, mask: bytes | None = None) -> bytes:
    """A text frame; ``bytes`` input is sent as-is (it must already be UTF-8)."""
    return build_frame(OP_TEXT, data, mask=mask)


def build_binary(data: str | bytes | bytearray | memoryview, *, mask: bytes | None = None) -> bytes:
    """A binary frame."""
    return build_frame(OP_BINARY, data, mask=mask)


def build_message(data: str | bytes | bytearray | memoryview, *, mask: bytes | None = None) -> bytes:
    """A text frame for ``str``, a binary frame for bytes-like data."""
    if isinstance(data, str):
        return build_frame(OP_TEXT, data, mask=mask)
    return build_frame(OP_BINARY, data, mask=mask)


def build_ping(payload: str | bytes | bytearray | memoryview = b"", *, mask: bytes | None = None) -> bytes:
    """A Ping frame (RFC 6455 §5.5.2), payload at most 125 bytes."""
    return build_frame(OP_PING, payload, mask=mask)


def build_pong(payload: str | bytes | bytearray | memoryview = b"", *, mask: bytes | None = None) -> bytes:
    """A Pong frame (RFC 6455 §5.5.3), payload at most 125 bytes."""
    return build_frame(OP_PONG, payload, mask=mask)


def build_close(code: int | None = 1000, reason: str = "", *, mask: bytes | None = None) -> bytes:
    """A Close frame (RFC 6455 §5.5.1): a 2-byte code then a UTF-8 reason.

    ``code=None`` builds a Close frame without a body (then ``reason`` must
    be empty). The code must be one a peer accepts (see
    :func:`is_valid_close_code`) and code plus reason at most 125 bytes.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return build_frame(OP_CLOSE, b"", mask=mask)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"close code must be int, not {type(code).__name__}")
    if not is_valid_close_code(code):
        raise ValueError(f"invalid close code {code}")
    if not isinstance(reason, str):
        raise TypeError(f"close reason must be str, not {type(reason).__name__}")
    body = struct.pack("!H", code) + reason.encode("utf-8")
    if len(body) > _MAX_CONTROL_PAYLOAD:
        raise ValueError("close reason is too long: code and reason must fit in 125 bytes")
    return build_frame(OP_CLOSE, body, mask=mask)


_TAIL: Final = b"\x00\x00\xff\xff"


def scratch_size() -> int:
    """Bytes held by a (de)compression scratch buffer: this codec has none."""
    return 0


def _window(bits: int, what: str) -> int:
    if not 9 <= bits <= 15:
        raise ValueError(f"{what} must be 9..15, got {bits}")
    return bits


class Inflater:
    """The decompressor of permessage-deflate (RFC 7692 §7.2.2), sans-I/O.

    ``window_bits`` (9..15) is the largest LZ77 window it decodes. With
    ``no_context_takeover`` every message starts afresh, so one Inflater can
    serve any number of connections; without it, it keeps the peer's
    history between messages and belongs to one connection.
    """

    def __init__(self, window_bits: int = 15, *, no_context_takeover: bool = True) -> None:
        self.window_bits = _window(window_bits, "window_bits")
        self.no_context_takeover = bool(no_context_takeover)
        self.messages = 0
        self._z: zlib._Decompress | None = None

    @property
    def allocated(self) -> bool:
        """True once zlib's state exists (the first compressed message)."""
        return self._z is not None

    def _inflate_bytes(self, payload: bytes, limit: int) -> bytes:
        if self._z is None or self.no_context_takeover:
            self._z = zlib.decompressobj(-self.window_bits)
        out = bytearray()
        data = payload
        ended = False
        for part in (0, 1):
            if part == 1 and ended:
                break  # after a final block no tail is added (RFC 7692 §7.2.3.4)
            while data:
                ended = False
                try:
                    chunk = self._z.decompress(data, 0 if limit >= _UNLIMITED else limit + 1 - len(out))
                except zlib.error:
                    self._z = None
                    raise InvalidPayloadData("invalid compressed data") from None
                out += chunk
                if len(out) > limit:
                    self._z = None
                    raise MessageTooBig("message too big once decompressed")
                if self._z.eof:  # a final block: what follows starts a new stream
                    data = self._z.unused_data
                    self._z = zlib.decompressobj(-self.window_bits)
                    ended = True
                    continue
                data = self._z.unconsumed_tail
            data = _TAIL if part == 0 else b""
        return bytes(out)

    def inflate(self, payload: bytes | bytearray | memoryview, max_size: int | None = DEFAULT_MAX_MESSAGE_SIZE, *,
                text: bool = False) -> str | bytes:
        """The message ``payload`` (one message's compressed bytes, without
        the 00 00 ff ff tail) decompresses to: ``bytes``, or ``str`` with
        ``text=True``. MessageTooBig once it passes ``max_size`` (``None``:
        no bound), InvalidPayloadData for data that is not DEFLATE or text
        that is not UTF-8."""
        if max_size is None:
            limit = _UNLIMITED
        elif not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
            raise ValueError("max_size must be an int >= 0 or None")
        else:
            limit = min(max_size, _UNLIMITED)
        raw = self._inflate_bytes(bytes(payload), limit)
        self.messages += 1
        if not text:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPayloadData("invalid UTF-8 in text message") from None


class Deflater:
    """The compressor of permessage-deflate (RFC 7692 §7.2.1), sans-I/O.

    Each message is compressed with a sync flush and loses its 00 00 ff ff
    tail. With ``no_context_takeover`` (the default) every message starts
    afresh; without it, the history is kept. ``window_bits`` 9..15,
    ``mem_level`` 1..9, ``level`` 0..9 as zlib's.
    """

    def __init__(self, window_bits: int = 15, *, mem_level: int = 8, level: int = 6,
                 no_context_takeover: bool = True) -> None:
        self.window_bits = _window(window_bits, "window_bits")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be 1..9, got {mem_level}")
        if not 0 <= level <= 9:
            raise ValueError(f"level must be 0..9, got {level}")
        self.mem_level = mem_level
        self.level = level
        self.no_context_takeover = bool(no_context_takeover)
        self.compressions = 0
        self._z: zlib._Compress | None = None

    @property
    def allocated(self) -> bool:
        """True once zlib's state exists (the first compressed message)."""
        return self._z is not None

    def compress(self, data: str | bytes | bytearray | memoryview) -> bytes:
        """The compressed payload of one message (``str`` as UTF-8), without
        the 00 00 ff ff tail."""
        raw = _payload_bytes(data)
        if self._z is None or self.no_context_takeover:
            self._z = zlib.compressobj(self.level, zlib.DEFLATED, -self.window_bits, self.mem_level)
        out = self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self.compressions += 1
        return out[:-4] if out.endswith(_TAIL) else out

    def build_message(self, data: str | bytes | bytearray | memoryview, *, mask: bytes | None = None) -> bytes:
        """One final frame carrying ``data`` compressed, RSV1 set: text for
        ``str``, binary for bytes-like data (the client passes its mask)."""
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"data must be str, bytes, bytearray or memoryview, not {type(data).__name__}")
        opcode = OP_TEXT if isinstance(data, str) else OP_BINARY
        return build_frame(opcode, self.compress(data), rsv=RSV1, mask=mask)


class FrameParser:
    """Incremental RFC 6455 frame parser and message reassembler (sans-I/O).

    Feed it bytes split anywhere; it returns each complete message (text as
    ``str``, binary as ``bytes``) and each control frame, in order. Control
    frames interleaved with the fragments of a message are returned when they
    arrive. A violation raises :class:`~robyn_fast.exceptions.ProtocolError`
    (close code 1002), :class:`~robyn_fast.exceptions.MessageTooBig` (1009) or
    :class:`~robyn_fast.exceptions.InvalidPayloadData` (1007) as soon as the
    offending byte arrives; the messages completed before it in the same call
    are on the exception's ``messages``. After an error every further call
    raises the same error; after a Close frame the parser ignores further
    input (RFC 6455 §5.5.1).

    ``client=False`` (a server) requires every frame to be masked;
    ``client=True`` requires every frame to be unmasked (RFC 6455 §5.1).
    ``max_message_size`` bounds a whole message (``None``: no bound) and is
    enforced from each frame header before its payload is buffered.
    ``allowed_rsv`` lists the RSV bits an extension negotiated. With an
    ``inflater`` (permessage-deflate negotiated) RSV1 is allowed on the
    first frame of a data message, whose payload is then inflated when the
    message completes (held to ``max_message_size`` once inflated, and a
    little over it while compressed); RSV1 on a control or continuation
    frame is a ProtocolError.
    """

    def __init__(
        self,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        client: bool = False,
        allowed_rsv: int = 0,
        inflater: Inflater | None = None,
    ) -> None:
        if max_message_size is None:
            limit = _UNLIMITED
        elif not isinstance(max_message_size, int) or isinstance(max_message_size, bool):
            raise TypeError("max_message_size must be an int or None")
        elif max_message_size < 0:
            raise ValueError("max_message_size must be >= 0")
        else:
            limit = min(max_message_size, _UNLIMITED)
        if allowed_rsv & ~(RSV1 | RSV2 | RSV3):
            raise ValueError("allowed_rsv must be a combination of RSV1, RSV2 and RSV3")
        self._limit = limit
        self._inflater = inflater
        if inflater is not None:
            allowed_rsv |= RSV1
        # A compressed message may be a little larger than what it inflates to: stored blocks,
        # and up to ~10 bytes a frame with payload from a sender that flushes in every fragment
        # (16 bytes of slack each, up to limit + 1 KiB in all; an empty frame gets none).
        self._climit = limit if limit > _UNLIMITED >> 2 else limit + (limit >> 8) + 64
        self._cslack_max = 0 if limit > _UNLIMITED >> 2 else limit + 1024
        self._cslack = 0
        self._max_message_size = max_message_size
        self._client = bool(client)
        self._allowed_rsv = allowed_rsv
        self._buf = bytearray()
        self._state = _HEADER
        self._error: ProtocolError | None = None
        # Current frame.
        self._fin = False
        self._remaining = 0
        self._mask: bytes | None = None
        self._phase = 0
        # Current (possibly fragmented) data message.
        self._msg_opcode = 0
        self._msg_rsv = 0
        self._msg = bytearray()
        self._decoder: codecs.IncrementalDecoder | None = None
        self._window: bytearray | None = None

    @property
    def max_message_size(self) -> int | None:
        return self._max_message_size

    @property
    def closed(self) -> bool:
        """True once a Close frame has been parsed."""
        return self._state == _CLOSED

    @property
    def failed(self) -> bool:
        """True once a protocol error has been raised."""
        return self._state == _FAILED

    @property
    def allocated(self) -> int:
        """Bytes of buffer memory the parser holds right now."""
        return len(self._buf) + len(self._msg)

    @property
    def buffered(self) -> int:
        """Bytes held by the parser: unparsed input plus a partial message."""
        return len(self._buf) + len(self._msg)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Parse ``data``; return the messages it completed, in order."""
        if self._state == _FAILED:
            assert self._error is not None
            self._error.messages = []
            raise self._error
        if self._state == _CLOSED:
            return []
        self._buf += data
        out: list[Message] = []
        self._parse(out)
        return out

    def get_buffer(self, sizehint: int = -1) -> bytearray:
        """A writable buffer for ``asyncio.BufferedProtocol.get_buffer``."""
        size = sizehint if sizehint > 0 else 65536
        if self._window is None or len(self._window) < size:
            self._window = bytearray(size)
        return self._window

    def buffer_updated(self, nbytes: int) -> list[Message]:
        """Parse the ``nbytes`` just written into the buffer from :meth:`get_buffer`."""
        if self._window is None or not 0 <= nbytes <= len(self._window):
            raise ValueError("buffer_updated() without a matching get_buffer()")
        return self.feed(bytes(self._window[:nbytes]))

    # -- internals ---------------------------------------------------------

    def _fail(self, exc: ProtocolError, out: list[Message]) -> None:
        self._state = _FAILED
        self._error = exc
        self._buf.clear()
        self._msg.clear()
        exc.messages = out
        raise exc

    def _parse(self, out: list[Message]) -> None:
        buf = self._buf
        while True:
            if self._state == _PAYLOAD:
                if self._remaining:
                    if not buf:
                        return
                    take = min(len(buf), self._remaining)
                    chunk = bytes(buf[:take])
                    del buf[:take]
                    if self._mask is not None:
                        chunk = apply_mask(chunk, self._mask, self._phase)
                    self._phase += take
                    self._remaining -= take
                    self._msg += chunk
                    if self._compressed():
                        pass
                    elif self._decoder is not None and not _decode_eagerly(self._decoder, chunk):
                        self._fail(InvalidPayloadData("invalid UTF-8 in text message"), out)
                if self._remaining == 0:
                    self._state = _HEADER
                    if self._fin:
                        out.append(self._finish_message(out))
                continue
            if self._state != _HEADER or len(buf) < 2:
                return
            b0, b1 = buf[0], buf[1]
            fin = bool(b0 & 0x80)
            rsv = b0 & 0x70
            opcode = b0 & 0x0F
            masked = bool(b1 & 0x80)
            len7 = b1 & 0x7F
            if rsv & ~self._allowed_rsv:
                self._fail(ProtocolError("reserved bits must be 0"), out)
            if rsv & RSV1 and self._inflater is not None:
                if opcode >= OP_CLOSE:
                    self._fail(ProtocolError("RSV1 set on a control frame"), out)
                if opcode == OP_CONT:
                    self._fail(ProtocolError("RSV1 set on a continuation frame"), out)
            if opcode not in _KNOWN_OPCODES:
                self._fail(ProtocolError(f"unknown opcode {opcode}"), out)
            if masked == self._client:
                msg = "server frames must not be masked" if self._client else "client frames must be masked"
                self._fail(ProtocolError(msg), out)
            if opcode >= OP_CLOSE:
                if not fin:
                    self._fail(ProtocolError("fragmented control frame"), out)
                if len7 > _MAX_CONTROL_PAYLOAD:
                    self._fail(ProtocolError("control frame too long"), out)
            elif opcode == OP_CONT:
                if self._msg_opcode == 0:
                    self._fail(ProtocolError("unexpected continuation frame"), out)
            elif self._msg_opcode != 0:
                self._fail(ProtocolError("expected a continuation frame"), out)
            hlen = 2 + (2 if len7 == 126 else 8 if len7 == 127 else 0) + (4 if masked else 0)
            if len(buf) < hlen:
                return
            if len7 == 126:
                length = struct.unpack_from("!H", buf, 2)[0]
            elif len7 == 127:
                length = struct.unpack_from("!Q", buf, 2)[0]
                if length >> 63:
                    self._fail(ProtocolError("frame length has the most significant bit set"), out)
            else:
                length = len7
            if opcode < OP_CLOSE:
                compressed = self._inflater is not None and (rsv if opcode != OP_CONT else self._msg_rsv) & RSV1
                if compressed:
                    if opcode != OP_CONT:
                        self._cslack = 0
                    if length:
                        self._cslack = min(self._cslack + 16, self._cslack_max)
                    if self._climit <= _UNLIMITED >> 1 and length > self._climit + self._cslack - len(self._msg):
                        self._fail(MessageTooBig("message too big"), out)
                elif length > self._limit - len(self._msg):
                    self._fail(MessageTooBig("message too big"), out)
            mask = bytes(buf[hlen - 4 : hlen]) if masked else None
            if opcode >= OP_CLOSE:
                if len(buf) < hlen + length:
                    return
                payload = bytes(buf[hlen : hlen + length])
                del buf[: hlen + length]
                if mask is not None:
                    payload = apply_mask(payload, mask)
                out.append(self._control(opcode, payload, out))
                if opcode == OP_CLOSE:
                    self._state = _CLOSED
                    buf.clear()
                    return
                continue
            del buf[:hlen]
            if opcode != OP_CONT:
                self._msg_opcode = opcode
                self._msg_rsv = rsv
                self._decoder = codecs.getincrementaldecoder("utf-8")() if opcode == OP_TEXT else None
            self._state = _PAYLOAD
            self._fin = fin
            self._remaining = length
            self._mask = mask
            self._phase = 0

    def _compressed(self) -> bool:
        return self._inflater is not None and bool(self._msg_rsv & RSV1)

    def _finish_message(self, out: list[Message]) -> Message:
        data: str | bytes
        if self._compressed():
            assert self._inflater is not None
            try:
                data = self._inflater.inflate(bytes(self._msg), self._limit, text=self._msg_opcode == OP_TEXT)
            except ProtocolError as exc:
                self._fail(exc, out)
        elif self._msg_opcode == OP_TEXT:
            assert self._decoder is not None
            try:
                self._decoder.decode(b"", True)
            except UnicodeDecodeError:
                self._fail(InvalidPayloadData("invalid UTF-8 in text message"), out)
            data = bytes(self._msg).decode("utf-8")
        else:
            data = bytes(self._msg)
        message = Message(self._msg_opcode, data, self._msg_rsv)
        self._msg = bytearray()
        self._msg_opcode = 0
        self._msg_rsv = 0
        self._decoder = None
        return message

    def _control(self, opcode: int, payload: bytes, out: list[Message]) -> Message:
        if opcode != OP_CLOSE:
            return Message(opcode, payload)
        if len(payload) == 0:
            return Message(OP_CLOSE, payload, 0, None, "")
        if len(payload) == 1:
            self._fail(ProtocolError("close frame with a 1-byte payload"), out)
        code = struct.unpack_from("!H", payload)[0]
        if not is_valid_close_code(code):
            self._fail(ProtocolError(f"invalid close code {code}"), out)
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            self._fail(InvalidPayloadData("invalid UTF-8 in close reason"), out)
        return Message(OP_CLOSE, payload, 0, code, reason)
