"""RFC 6455 parsing rules as literal bytes, each case re-fed split at every
offset and one byte at a time, against both codec implementations."""

from __future__ import annotations

from types import ModuleType

import pytest

from robyn_fast.exceptions import InvalidPayloadData, MessageTooBig, ProtocolError

from .codec_helpers import MASK, masked, run, splits

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10

HELLO_MASKED = bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 §5.7


def check(codec: ModuleType, data: bytes, expected: tuple, **kw: object) -> None:
    """The outcome is ``expected`` however ``data`` is split."""
    for chunks in splits(data):
        assert run(codec, chunks, **kw) == expected, [len(c) for c in chunks]


# -- valid input ----------------------------------------------------------------


def test_rfc_example_masked_hello(codec: ModuleType) -> None:
    check(codec, HELLO_MASKED, ([(TEXT, "Hello", 0, None, "")], None))


def test_rfc_examples_unmasked_in_client_mode(codec: ModuleType) -> None:
    single = bytes.fromhex("810548656c6c6f")
    fragmented = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    ping = bytes.fromhex("890548656c6c6f")
    check(codec, single, ([(TEXT, "Hello", 0, None, "")], None), client=True)
    check(codec, fragmented, ([(TEXT, "Hello", 0, None, "")], None), client=True)
    check(codec, ping, ([(PING, b"Hello", 0, None, "")], None), client=True)


def test_rfc_example_masked_pong(codec: ModuleType) -> None:
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    check(codec, pong, ([(PONG, b"Hello", 0, None, "")], None))


def test_16_and_64_bit_lengths(codec: ModuleType) -> None:
    p256 = bytes(range(256))
    assert masked(0x82, p256)[:4] == b"\x82\xfe\x01\x00"
    check(codec, masked(0x82, p256), ([(BINARY, p256, 0, None, "")], None))
    big = bytes(65536)
    frame = masked(0x82, big)
    assert frame[:10] == b"\x82\xff" + (65536).to_bytes(8, "big")
    for cut in (1, 2, 9, 10, 13, 14, 15, 1000, len(frame) - 1):
        assert run(codec, [frame[:cut], frame[cut:]]) == ([(BINARY, big, 0, None, "")], None)


def test_control_frames_interleaved_in_fragmented_message(codec: ModuleType) -> None:
    data = masked(0x01, b"Hel") + masked(0x89, b"p1") + masked(0x00, b"l") + masked(0x8A, b"") + masked(0x80, b"o")
    check(
        codec,
        data,
        ([(PING, b"p1", 0, None, ""), (PONG, b"", 0, None, ""), (TEXT, "Hello", 0, None, "")], None),
    )


def test_utf8_sequence_split_across_fragments(codec: ModuleType) -> None:
    euro = "€".encode()  # e2 82 ac
    data = masked(0x01, b"a" + euro[:1]) + masked(0x00, euro[1:2]) + masked(0x80, euro[2:] + b"b")
    check(codec, data, ([(TEXT, "a€b", 0, None, "")], None))


def test_empty_messages_and_empty_fragments(codec: ModuleType) -> None:
    data = masked(0x81, b"") + masked(0x82, b"") + masked(0x01, b"") + masked(0x00, b"") + masked(0x80, b"")
    check(
        codec,
        data,
        ([(TEXT, "", 0, None, ""), (BINARY, b"", 0, None, ""), (TEXT, "", 0, None, "")], None),
    )


def test_several_messages_in_one_buffer(codec: ModuleType) -> None:
    data = b"".join(masked(0x81, f"m{i}".encode()) for i in range(20))
    assert run(codec, [data]) == ([(TEXT, f"m{i}", 0, None, "") for i in range(20)], None)


def test_rsv_bits_allowed_when_negotiated(codec: ModuleType) -> None:
    data = masked(0xC1, b"x") + masked(0x42, b"y") + masked(0x80, b"z")
    check(
        codec,
        data,
        ([(TEXT, "x", 0x40, None, ""), (BINARY, b"yz", 0x40, None, "")], None),
        allowed_rsv=codec.RSV1,
    )


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
def test_valid_close_codes(codec: ModuleType, code: int) -> None:
    body = code.to_bytes(2, "big") + "bye ☃".encode()
    check(codec, masked(0x88, body), ([(CLOSE, body, 0, code, "bye ☃")], None))
    assert codec.is_valid_close_code(code)


def test_close_without_body(codec: ModuleType) -> None:
    check(codec, masked(0x88, b""), ([(CLOSE, b"", 0, None, "")], None))


def test_input_after_close_is_ignored(codec: ModuleType) -> None:
    close = masked(0x88, b"\x03\xe8")
    parser = codec.FrameParser()
    assert [m.close_code for m in parser.feed(close + masked(0x81, b"late") + b"\xff\xff")] == [1000]
    assert parser.closed
    assert parser.feed(masked(0x81, b"later")) == []
    assert parser.feed(b"garbage that is not a frame") == []


def test_max_message_size_boundary(codec: ModuleType) -> None:
    payload = b"x" * 100
    check(codec, masked(0x82, payload), ([(BINARY, payload, 0, None, "")], None), max_message_size=100)
    fragmented = masked(0x02, b"x" * 60) + masked(0x80, b"x" * 40)
    assert run(codec, [fragmented], max_message_size=100) == ([(BINARY, payload, 0, None, "")], None)
    # No limit at all.
    assert run(codec, [masked(0x82, payload)], max_message_size=None)[1] is None


# -- rejections -------------------------------------------------------------------


def err(cls: type, reason: str) -> tuple[str, int, str]:
    exc = cls(reason)
    return (cls.__name__, exc.close_code, reason)


def test_unmasked_client_frame(codec: ModuleType) -> None:
    check(codec, bytes.fromhex("810548656c6c6f"), ([], err(ProtocolError, "client frames must be masked")))


def test_masked_server_frame_in_client_mode(codec: ModuleType) -> None:
    check(codec, HELLO_MASKED, ([], err(ProtocolError, "server frames must not be masked")), client=True)


@pytest.mark.parametrize("b0", [0xC1, 0xA1, 0x91, 0xF1, 0xC8])
def test_reserved_bits(codec: ModuleType, b0: int) -> None:
    check(codec, masked(b0, b"x"), ([], err(ProtocolError, "reserved bits must be 0")))


def test_reserved_bits_not_negotiated_are_still_rejected(codec: ModuleType) -> None:
    check(codec, masked(0xA1, b"x"), ([], err(ProtocolError, "reserved bits must be 0")), allowed_rsv=codec.RSV1)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcodes(codec: ModuleType, opcode: int) -> None:
    check(codec, masked(0x80 | opcode, b"x"), ([], err(ProtocolError, f"unknown opcode {opcode}")))


@pytest.mark.parametrize("b0", [0x88, 0x89, 0x8A])
def test_control_frame_too_long(codec: ModuleType, b0: int) -> None:
    check(codec, masked(b0, b"x" * 126), ([], err(ProtocolError, "control frame too long")))


@pytest.mark.parametrize("b0", [0x08, 0x09, 0x0A])
def test_fragmented_control_frame(codec: ModuleType, b0: int) -> None:
    check(codec, masked(b0, b""), ([], err(ProtocolError, "fragmented control frame")))


def test_continuation_without_message(codec: ModuleType) -> None:
    check(codec, masked(0x80, b"x"), ([], err(ProtocolError, "unexpected continuation frame")))
    after_complete = masked(0x81, b"a") + masked(0x80, b"b")
    check(codec, after_complete, ([(TEXT, "a", 0, None, "")], err(ProtocolError, "unexpected continuation frame")))


@pytest.mark.parametrize("b0", [0x81, 0x82, 0x01, 0x02])
def test_new_data_frame_inside_fragmented_message(codec: ModuleType, b0: int) -> None:
    data = masked(0x01, b"a") + masked(0x89, b"") + masked(b0, b"b")
    check(codec, data, ([(PING, b"", 0, None, "")], err(ProtocolError, "expected a continuation frame")))


@pytest.mark.parametrize("limit", [1 << 20, None])
def test_64_bit_length_with_top_bit_set(codec: ModuleType, limit: int | None) -> None:
    data = b"\x82\xff" + (1 << 63).to_bytes(8, "big") + MASK
    check(
        codec,
        data,
        ([], err(ProtocolError, "frame length has the most significant bit set")),
        max_message_size=limit,
    )


def test_frame_announcing_2_pow_63_minus_1_bytes(codec: ModuleType) -> None:
    data = b"\x82\xff" + ((1 << 63) - 1).to_bytes(8, "big") + MASK + b"abc"
    check(codec, data, ([], err(MessageTooBig, "message too big")))
    # Without a limit nothing is allocated up front: memory follows what arrives.
    parser = codec.FrameParser(max_message_size=None)
    assert parser.feed(data) == []
    assert parser.buffered == 3


def test_too_big_is_detected_from_the_header(codec: ModuleType) -> None:
    header = b"\x82\xfe" + (101).to_bytes(2, "big") + MASK
    check(codec, header, ([], err(MessageTooBig, "message too big")), max_message_size=100)
    fragmented = masked(0x02, b"x" * 60) + masked(0x80, b"x" * 41)
    check(codec, fragmented, ([], err(MessageTooBig, "message too big")), max_message_size=100)


def test_too_big_ignores_control_frames(codec: ModuleType) -> None:
    data = masked(0x89, b"p" * 125)
    check(codec, data, ([(PING, b"p" * 125, 0, None, "")], None), max_message_size=10)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc0\x80",  # overlong NUL
        b"\xed\xa0\x80",  # surrogate U+D800
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xff",
        b"\x80",  # lone continuation
        b"abc\xe2\x82",  # truncated at the end of the message
        "κόσμε".encode() + b"\xf5",
    ],
)
def test_invalid_utf8_text(codec: ModuleType, payload: bytes) -> None:
    check(codec, masked(0x81, payload), ([], err(InvalidPayloadData, "invalid UTF-8 in text message")))


def test_invalid_utf8_fails_before_the_frame_ends(codec: ModuleType) -> None:
    frame = masked(0x81, b"ok" + b"\xc0" + b"x" * 200)
    parser = codec.FrameParser()
    with pytest.raises(InvalidPayloadData):
        parser.feed(frame[:2 + 2 + 4 + 3])  # header + the first invalid byte only


def test_invalid_utf8_in_first_fragment_fails_at_once(codec: ModuleType) -> None:
    parser = codec.FrameParser()
    with pytest.raises(InvalidPayloadData) as info:
        parser.feed(masked(0x01, b"\xed\xa0"))
    assert info.value.close_code == 1007


def test_invalid_prefix_at_fragment_boundary_fails_before_a_following_ping(codec: ModuleType) -> None:
    # ED A0 can only start a surrogate: the second byte is already invalid, so
    # the ping after this fragment must not be delivered.
    data = masked(0x01, b"a\xed\xa0") + masked(0x89, b"p") + masked(0x80, b"\x80")
    check(codec, data, ([], err(InvalidPayloadData, "invalid UTF-8 in text message")))


def test_truncated_utf8_at_final_fragment(codec: ModuleType) -> None:
    data = masked(0x01, b"a\xe2") + masked(0x80, b"\x82")
    check(codec, data, ([], err(InvalidPayloadData, "invalid UTF-8 in text message")))


def test_binary_messages_are_not_utf8_checked(codec: ModuleType) -> None:
    check(codec, masked(0x82, b"\xff\xc0"), ([(BINARY, b"\xff\xc0", 0, None, "")], None))


def test_close_with_one_byte_payload(codec: ModuleType) -> None:
    check(codec, masked(0x88, b"\x03"), ([], err(ProtocolError, "close frame with a 1-byte payload")))


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes(codec: ModuleType, code: int) -> None:
    check(codec, masked(0x88, code.to_bytes(2, "big")), ([], err(ProtocolError, f"invalid close code {code}")))
    assert not codec.is_valid_close_code(code)


def test_close_reason_invalid_utf8(codec: ModuleType) -> None:
    check(codec, masked(0x88, b"\x03\xe8\xff"), ([], err(InvalidPayloadData, "invalid UTF-8 in close reason")))


def test_messages_before_an_error_are_kept(codec: ModuleType) -> None:
    data = masked(0x81, b"one") + masked(0x82, b"two") + masked(0x83, b"")
    expected = ([(TEXT, "one", 0, None, ""), (BINARY, b"two", 0, None, "")], err(ProtocolError, "unknown opcode 3"))
    check(codec, data, expected)


def test_a_failed_parser_keeps_failing(codec: ModuleType) -> None:
    parser = codec.FrameParser()
    with pytest.raises(ProtocolError) as first:
        parser.feed(b"\x81\x00")
    assert parser.failed
    with pytest.raises(ProtocolError) as again:
        parser.feed(HELLO_MASKED)
    assert again.value is first.value
    assert again.value.messages == []


def test_error_classes_carry_close_codes() -> None:
    assert ProtocolError("x").close_code == 1002
    assert MessageTooBig("x").close_code == 1009
    assert InvalidPayloadData("x").close_code == 1007
    assert isinstance(MessageTooBig("x"), ValueError)
    assert "1009" in str(MessageTooBig("too big"))


# -- constructor validation ----------------------------------------------------------


def test_parser_arguments_are_validated(codec: ModuleType) -> None:
    with pytest.raises(ValueError):
        codec.FrameParser(max_message_size=-1)
    with pytest.raises(TypeError):
        codec.FrameParser(max_message_size="big")
    with pytest.raises(ValueError):
        codec.FrameParser(allowed_rsv=0x01)
    assert codec.FrameParser(max_message_size=5).max_message_size == 5
    assert codec.FrameParser(max_message_size=None).max_message_size is None


# -- BufferedProtocol path ----------------------------------------------------------------


def feed_via_buffer(parser: object, data: bytes, chunk: int) -> list:
    """Drive a parser the way asyncio/uvloop drive a BufferedProtocol."""
    out: list = []
    pos = 0
    while pos < len(data):
        window = memoryview(parser.get_buffer(-1))  # type: ignore[attr-defined]
        assert len(window) > 0
        n = min(len(window), chunk, len(data) - pos)
        window[:n] = data[pos : pos + n]
        window.release()
        out += parser.buffer_updated(n)  # type: ignore[attr-defined]
        pos += n
    return out


@pytest.mark.parametrize("chunk", [1, 7, 100, 65536])
def test_get_buffer_and_buffer_updated(codec: ModuleType, chunk: int) -> None:
    messages = [b"x" * n for n in (0, 1, 125, 126, 70000)]
    data = b"".join(masked(0x82, m) for m in messages) + masked(0x89, b"ping")
    out = feed_via_buffer(codec.FrameParser(), data, chunk)
    assert [m.data for m in out] == messages + [b"ping"]


def test_buffer_updated_rejects_more_than_the_window(codec: ModuleType) -> None:
    parser = codec.FrameParser()
    window = parser.get_buffer(-1)
    with pytest.raises(ValueError):
        parser.buffer_updated(len(window) + 1)


def test_compiled_window_cannot_move_while_exported() -> None:
    from robyn_fast._core import codec as compiled

    parser = compiled.FrameParser(max_message_size=None)
    held = memoryview(parser.get_buffer(-1))
    with pytest.raises(BufferError):
        parser.feed(b"\x82\xfe\x00\x10" + MASK + bytes(len(held) + 10))  # needs a bigger buffer
    held.release()
    assert parser.feed(masked(0x82, b"ok")) == [compiled.Message(2, b"ok")]


def test_compiled_binary_message_in_pieces_is_unmasked_into_its_own_bytes() -> None:
    """An unfragmented binary message of up to 256 KiB whose payload comes in
    several reads gets its bytes object from its header and is unmasked
    straight into it (no reassembly buffer to copy out of); a larger one
    streams through the reassembly buffer, which follows what arrives."""
    from robyn_fast._core import codec as compiled

    payload = bytes(range(256)) * 256                      # 64 KiB: 14-byte header
    data = masked(0x82, payload)
    parser = compiled.FrameParser()
    assert parser.feed(data[:1000]) == []
    assert parser.allocated == len(payload) and parser.buffered == 1000 - 14
    assert parser.feed(data[1000:40000]) == []
    assert [m.data for m in parser.feed(data[40000:])] == [payload]
    assert parser.allocated == 0 and parser.buffered == 0
    big = masked(0x82, bytes(300_000))
    assert parser.feed(big[:1000]) == []
    assert parser.allocated < 4096
    assert [len(m.data) for m in parser.feed(big[1000:])] == [300_000]
