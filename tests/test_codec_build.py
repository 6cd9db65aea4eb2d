"""Frame building, literal bytes, and build -> parse round trips at the
length-encoding boundaries (RFC 6455 §5.2)."""

from __future__ import annotations

from types import ModuleType

import pytest

from robyn_fast._core import codec as compiled
from robyn_fast._reference import codec as reference

from .codec_helpers import MASK, run

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]


def test_literal_server_frames(codec: ModuleType) -> None:
    assert codec.build_text("Hello") == bytes.fromhex("810548656c6c6f")
    assert codec.build_binary(b"\x00\x01") == b"\x82\x02\x00\x01"
    assert codec.build_ping(b"Hello") == bytes.fromhex("890548656c6c6f")
    assert codec.build_pong() == b"\x8a\x00"
    assert codec.build_close() == b"\x88\x02\x03\xe8"
    assert codec.build_close(1001, "bye") == b"\x88\x05\x03\xe9bye"
    assert codec.build_close(None) == b"\x88\x00"
    assert codec.build_frame(codec.OP_TEXT, "Hel", fin=False) == b"\x01\x03Hel"
    assert codec.build_frame(codec.OP_CONT, b"lo") == b"\x80\x02lo"
    assert codec.build_frame(codec.OP_BINARY, b"", rsv=codec.RSV1) == b"\xc2\x00"


def test_literal_client_frame(codec: ModuleType) -> None:
    assert codec.build_text("Hello", mask=MASK) == bytes.fromhex("818537fa213d7f9f4d5158")


def test_build_message_picks_the_opcode(codec: ModuleType) -> None:
    assert codec.build_message("é")[0] == 0x81
    for data in (b"x", bytearray(b"x"), memoryview(b"x")):
        assert codec.build_message(data) == b"\x82\x01x"


@pytest.mark.parametrize("size", SIZES)
def test_header_encoding_at_boundaries(size: int) -> None:
    frame = compiled.build_binary(b"\xab" * size)
    if size < 126:
        assert frame[:2] == bytes([0x82, size])
    elif size < 65536:
        assert frame[:4] == b"\x82\x7e" + size.to_bytes(2, "big")
    else:
        assert frame[:10] == b"\x82\x7f" + size.to_bytes(8, "big")
    assert frame == reference.build_binary(b"\xab" * size)
    assert compiled.build_binary(b"\xab" * size, mask=MASK) == reference.build_binary(b"\xab" * size, mask=MASK)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_boundaries(codec: ModuleType, size: int) -> None:
    text = ("aé" * size)[:size] if size else ""
    binary = bytes(i & 0xFF for i in range(size))
    data = codec.build_text(text, mask=MASK) + codec.build_binary(binary, mask=b"\xff\x00\xff\x00")
    limit = max(len(text.encode()), size)
    msgs, error = run(codec, [data], max_message_size=limit)
    assert error is None
    assert msgs == [(1, text, 0, None, ""), (2, binary, 0, None, "")]
    # Server frames parse in client mode.
    msgs, error = run(codec, [codec.build_binary(binary)], client=True, max_message_size=limit)
    assert (msgs, error) == ([(2, binary, 0, None, "")], None)


def test_default_limit_is_one_mebibyte(codec: ModuleType) -> None:
    assert codec.DEFAULT_MAX_MESSAGE_SIZE == 1 << 20
    ok = codec.build_binary(bytes(1 << 20), mask=MASK)
    assert run(codec, [ok])[1] is None
    too_big = codec.build_binary(bytes((1 << 20) + 1), mask=MASK)
    assert run(codec, [too_big[:14]])[1] == ("MessageTooBig", 1009, "message too big")


def test_one_frame_object_serves_many_writes(codec: ModuleType) -> None:
    frame = codec.build_text("broadcast")
    assert type(frame) is bytes


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda c: c.build_frame(3, b""), ValueError),
        (lambda c: c.build_frame(0x10, b""), ValueError),
        (lambda c: c.build_frame(1, b"", rsv=0x01), ValueError),
        (lambda c: c.build_ping(b"x" * 126), ValueError),
        (lambda c: c.build_pong(bytearray(126)), ValueError),
        (lambda c: c.build_frame(9, b"", fin=False), ValueError),
        (lambda c: c.build_close(1005), ValueError),
        (lambda c: c.build_close(999), ValueError),
        (lambda c: c.build_close(1000, "x" * 124), ValueError),
        (lambda c: c.build_close(None, "reason"), ValueError),
        (lambda c: c.build_close("1000"), TypeError),
        (lambda c: c.build_text("x", mask=b"abc"), ValueError),
        (lambda c: c.build_text("x", mask="abcd"), ValueError),
        (lambda c: c.build_text(42), TypeError),
        (lambda c: c.build_binary(None), TypeError),
        (lambda c: c.build_message(["x"]), TypeError),
        (lambda c: c.build_text("\ud800"), UnicodeEncodeError),
    ],
)
def test_builder_rejects_bad_arguments(codec: ModuleType, call, exc: type) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc):
        call(codec)


def test_close_reason_exactly_at_the_limit(codec: ModuleType) -> None:
    frame = codec.build_close(4000, "r" * 123)
    assert len(frame) == 2 + 125
    msgs, error = run(codec, [frame], client=True)
    assert error is None and msgs[0][3:] == (4000, "r" * 123)
