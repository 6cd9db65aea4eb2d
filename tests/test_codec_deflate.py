"""permessage-deflate in the codec (RFC 7692 §7), sans-I/O: the Inflater and
Deflater, and a FrameParser given an inflater. Every rule is checked on the
compiled codec and the pure-Python reference alike, and random compressed
streams cut anywhere must give both the same outcome."""

from __future__ import annotations

import os
import random
import zlib
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robyn_fast._core import codec as compiled
from robyn_fast._reference import codec as reference
from robyn_fast.exceptions import InvalidPayloadData, MessageTooBig, ProtocolError

from .codec_helpers import MASK, masked, run, splits

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = ('{"type":"tick","symbol":"EURUSD","bid":1.08412,"ask":1.08419,"ts":1733490000123,'
        '"book":[[1.0841,2500000],[1.0840,1000000],[1.0839,750000]]}')


def zlib_compress(data: bytes, bits: int = 15, level: int = 6, mem: int = 8) -> bytes:
    """What any RFC 7692 sender puts in a frame: a sync flush without its tail."""
    c = zlib.compressobj(level, zlib.DEFLATED, -bits, mem)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def zlib_inflate(payload: bytes, bits: int = 15) -> bytes:
    return zlib.decompressobj(-bits).decompress(payload + b"\x00\x00\xff\xff")


# -- Deflater / Inflater ----------------------------------------------------------


@pytest.mark.parametrize("bits", [9, 10, 12, 15])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_deflater_output_is_zlib_s_sync_flush_without_the_tail(codec: ModuleType, bits: int, level: int) -> None:
    d = codec.Deflater(bits, level=level, mem_level=5)
    for data in (JSON.encode(), os.urandom(3000), b"a" * 70000, b"x"):
        if level:  # (level 0's stored blocks are cut by the output space zlib is given)
            assert d.compress(data) == zlib_compress(data, bits, level, 5)
        assert zlib_inflate(d.compress(data), bits) == data
    assert d.compressions == (8 if level else 4)


def test_an_empty_message_compresses_to_one_zero_byte(codec: ModuleType) -> None:
    # RFC 7692 §7.2.3.6: an empty message is the single byte 0x00 once the tail is removed.
    assert codec.Deflater().compress(b"") == b"\x00"
    assert codec.Inflater().inflate(b"\x00") == b""
    assert codec.Inflater().inflate(b"") == b""


def test_frames_carry_rsv1_and_the_compressed_payload(codec: ModuleType) -> None:
    d = codec.Deflater()
    frame = d.build_message(JSON)
    assert frame[0] == 0x80 | 0x40 | codec.OP_TEXT
    assert zlib_inflate(frame[2:]) == JSON.encode()
    frame = d.build_message(b"\x00" * 1000, mask=MASK)
    assert frame[0] == 0x80 | 0x40 | codec.OP_BINARY and frame[1] & 0x80
    parser = codec.FrameParser(inflater=codec.Inflater())
    [m] = parser.feed(frame)
    assert (m.opcode, m.data, m.rsv) == (codec.OP_BINARY, b"\x00" * 1000, codec.RSV1)
    with pytest.raises(TypeError):
        d.build_message(12)


def test_context_takeover_keeps_history_and_no_context_takeover_does_not(codec: ModuleType) -> None:
    keep = codec.Deflater(no_context_takeover=False)
    fresh = codec.Deflater()
    first, second = keep.compress(JSON), keep.compress(JSON)
    assert len(second) < len(first) // 3  # the second refers to the first
    assert fresh.compress(JSON) == fresh.compress(JSON) == first
    reader = codec.Inflater(no_context_takeover=False)
    assert reader.inflate(first, text=True) == JSON
    assert reader.inflate(second, text=True) == JSON
    # A decoder without the history cannot read the second message.
    with pytest.raises(InvalidPayloadData):
        codec.Inflater().inflate(second)


def test_a_smaller_window_is_read_by_a_larger_one(codec: ModuleType) -> None:
    data = (JSON * 50).encode()
    for bits in range(9, 16):
        assert codec.Inflater(15).inflate(zlib_compress(data, bits), None) == data


def test_a_final_block_ends_one_stream_and_the_next_message_starts_another(codec: ModuleType) -> None:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    with_bfinal = c.compress(b"hello") + c.flush(zlib.Z_FINISH)
    inflater = codec.Inflater(no_context_takeover=False)
    assert inflater.inflate(with_bfinal) == b"hello"
    assert inflater.inflate(zlib_compress(b"again")) == b"again"


def test_inflation_stops_at_the_limit(codec: ModuleType) -> None:
    payload = zlib_compress(b"\x00" * (8 << 20), level=9)
    assert len(payload) < 16 << 10
    with pytest.raises(MessageTooBig) as info:
        codec.Inflater().inflate(payload, 1 << 20)
    assert info.value.close_code == 1009
    assert codec.scratch_size() <= 256 << 10  # the scratch buffer shrank back
    assert codec.Inflater().inflate(zlib_compress(b"y" * 1000), 1000) == b"y" * 1000
    with pytest.raises(MessageTooBig):
        codec.Inflater().inflate(zlib_compress(b"y" * 1001), 1000)


@pytest.mark.parametrize("junk", [b"\xff\xff\xff", b"\x07" * 10, zlib.compress(b"zlib header, not raw")])
def test_data_that_is_not_deflate_is_invalid_payload(codec: ModuleType, junk: bytes) -> None:
    with pytest.raises(InvalidPayloadData) as info:
        codec.Inflater().inflate(junk)
    assert info.value.close_code == 1007


def test_text_is_checked_as_utf8_once_inflated(codec: ModuleType) -> None:
    bad = zlib_compress(b"caf\xc3 \xa9" * 200)
    assert codec.Inflater().inflate(bad) == b"caf\xc3 \xa9" * 200
    with pytest.raises(InvalidPayloadData, match="UTF-8"):
        codec.Inflater().inflate(bad, text=True)


@pytest.mark.parametrize("kw", [{"window_bits": 8}, {"window_bits": 16}, {"mem_level": 0}, {"mem_level": 10},
                                {"level": -1}, {"level": 10}])
def test_bad_settings_are_refused(codec: ModuleType, kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        codec.Deflater(**kw)
    if "window_bits" in kw:
        with pytest.raises(ValueError):
            codec.Inflater(kw["window_bits"])


def test_zlib_state_is_allocated_on_first_use_only(codec: ModuleType) -> None:
    d, i = codec.Deflater(), codec.Inflater()
    assert not d.allocated and not i.allocated
    i.inflate(d.compress(b"x" * 100))
    assert d.allocated and i.allocated


# -- the parser with an inflater ----------------------------------------------------------


def compressed_frame(data: bytes, opcode: int = 0x1, fin: bool = True, bits: int = 15) -> bytes:
    return masked((0x80 if fin else 0) | 0x40 | opcode, zlib_compress(data, bits))


def test_compressed_messages_parse_split_anywhere(codec: ModuleType) -> None:
    text = JSON.encode()
    stream = compressed_frame(text) + masked(0x82, b"plain, RSV1 clear") + compressed_frame(b"\x01\x02" * 40, 0x2)
    expected = [(1, JSON, 0x40, None, ""), (2, b"plain, RSV1 clear", 0, None, ""), (2, b"\x01\x02" * 40, 0x40, None, "")]
    for chunks in splits(stream):
        assert run(codec, chunks, inflater=codec.Inflater()) == (expected, None)


def test_a_fragmented_compressed_message_with_a_ping_inside(codec: ModuleType) -> None:
    payload = zlib_compress(JSON.encode() * 10)
    a, b, c = payload[:10], payload[10:30], payload[30:]
    stream = (masked(0x40 | 0x1, a) + masked(0x89, b"hi") + masked(0x00, b) + masked(0x80, c))
    for chunks in splits(stream):
        assert run(codec, chunks, inflater=codec.Inflater()) == (
            [(9, b"hi", 0, None, ""), (1, JSON * 10, 0x40, None, "")], None)


@pytest.mark.parametrize("frame, reason", [
    (masked(0xC9, b""), "RSV1 set on a control frame"),
    (masked(0xC8, b"\x03\xe8"), "RSV1 set on a control frame"),
    (masked(0x41, b"ab") + masked(0xC0, b"cd"), "RSV1 set on a continuation frame"),
    (masked(0xA1, b"ab"), "reserved bits must be 0"),  # RSV2 was not negotiated
])
def test_rsv_rules_with_deflate_negotiated(codec: ModuleType, frame: bytes, reason: str) -> None:
    assert run(codec, [frame], inflater=codec.Inflater()) == ([], ("ProtocolError", 1002, reason))


def test_rsv1_without_negotiation_is_a_protocol_error(codec: ModuleType) -> None:
    assert run(codec, [compressed_frame(b"hello")]) == ([], ("ProtocolError", 1002, "reserved bits must be 0"))


def test_a_bomb_fails_1009_from_a_small_frame(codec: ModuleType) -> None:
    frame = compressed_frame(b"\x00" * (50 << 20), 0x2)
    assert len(frame) < 64 << 10
    messages, error = run(codec, [frame], max_message_size=1 << 20, inflater=codec.Inflater())
    assert (messages, error) == ([], ("MessageTooBig", 1009, "message too big once decompressed"))


def test_the_compressed_size_is_bounded_too_with_slack_for_stored_blocks(codec: ModuleType) -> None:
    noise = random.Random(7).randbytes(4096)
    stored = zlib_compress(noise, level=0)  # stored blocks: a little larger than the data
    assert len(stored) > len(noise)
    assert run(codec, [masked(0xC2, stored)], max_message_size=4096, inflater=codec.Inflater())[1] is None
    huge = masked(0xC2, b"\x00" * 70000)
    assert run(codec, [huge[:20]], max_message_size=4096, inflater=codec.Inflater())[1] == (
        "MessageTooBig", 1009, "message too big")


@pytest.mark.parametrize("fragment", [10, 100])
def test_a_message_flushed_in_every_fragment_fits_when_it_inflates_within_the_limit(
        codec: ModuleType, fragment: int) -> None:
    # websockets compresses each fragment with a sync flush of its own: incompressible data then
    # grows by a few bytes a frame, which the compressed-size bound must allow for.
    data = random.Random(3).randbytes(99_000)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    pieces = [c.compress(data[i:i + fragment]) + c.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(data), fragment)]
    pieces[-1] = pieces[-1][:-4]
    assert sum(map(len, pieces)) > 100_000 + (100_000 >> 8) + 64  # more than the old bound
    stream = b"".join(
        masked((0x80 if i == len(pieces) - 1 else 0) | (0x40 | 0x2 if i == 0 else 0), piece)
        for i, piece in enumerate(pieces))
    assert run(codec, [stream], max_message_size=100_000, inflater=codec.Inflater()) == (
        [(2, data, 0x40, None, "")], None)
    # Inflated past the limit, it is still refused.
    assert run(codec, [stream], max_message_size=98_999, inflater=codec.Inflater())[1] == (
        "MessageTooBig", 1009, "message too big once decompressed")


def test_empty_continuation_frames_give_a_compressed_message_no_slack(codec: ModuleType) -> None:
    # 16 bytes of slack a frame, empty ones included, let 1000 empty continuation frames raise the bound of a
    # 4 KiB compressed message by 16,000 bytes (issue 16: 2,000,000 of them let 30 MiB in against 1 MiB).
    start = masked(0x42, b"\x00")                    # RSV1, binary, not final: one byte (16 bytes of slack)
    header = masked(0x00, b"\x00" * 10_000)[:8]       # a continuation announcing 10,000 bytes: its header only
    assert run(codec, [start + masked(0x00, b"") * 1000, header], max_message_size=4096,
               inflater=codec.Inflater()) == ([], ("MessageTooBig", 1009, "message too big"))
    # The bound, exactly: 4096 + 4096/256 + 64, plus 16 for each of the two frames with payload, less the
    # byte held. Every split of the input gives the same answer.
    bound = 4096 + 16 + 64 + 2 * 16 - 1
    for length, error in ((bound, None), (bound + 1, ("MessageTooBig", 1009, "message too big"))):
        data = start + masked(0x00, b"") * 10 + masked(0x00, b"\x00" * length)[:8]
        for chunks in splits(data):
            assert run(codec, chunks, max_message_size=4096, inflater=codec.Inflater()) == ([], error)


def test_the_slack_of_frames_with_payload_is_capped(codec: ModuleType) -> None:
    # Frames of 16 bytes each earned their 16 bytes back: the message never hit its bound. Now the slack
    # stops at max_message_size + 1 KiB: the compressed bytes of a message stay under twice the limit.
    parser = codec.FrameParser(4096, inflater=codec.Inflater())
    parser.feed(masked(0x42, b"\x00" * 16))
    accepted = 1
    with pytest.raises(MessageTooBig, match="message too big"):
        while accepted < 2000:
            parser.feed(masked(0x00, b"\x00" * 16))
            accepted += 1
    # 4096 + 4096/256 + 64 + (4096 + 1024) bytes of slack: 581 frames of 16 bytes fit, the 582nd does not.
    assert accepted * 16 == 4096 + 16 + 64 + 4096 + 1024


def test_invalid_utf8_after_inflation_is_1007(codec: ModuleType) -> None:
    assert run(codec, [compressed_frame(b"ok \xed\xa0\x80")], inflater=codec.Inflater()) == (
        [], ("InvalidPayloadData", 1007, "invalid UTF-8 in text message"))


def test_corrupt_compressed_data_is_1007(codec: ModuleType) -> None:
    assert run(codec, [masked(0xC2, b"\xff\xfe\xfd")], inflater=codec.Inflater()) == (
        [], ("InvalidPayloadData", 1007, "invalid compressed data"))


def test_a_dedicated_inflater_follows_the_peer_s_context(codec: ModuleType) -> None:
    c = zlib.compressobj(6, zlib.DEFLATED, -12, 5)
    frames = b""
    for i in range(5):
        out = c.compress(f"{JSON} #{i}".encode()) + c.flush(zlib.Z_SYNC_FLUSH)
        frames += masked(0xC1, out[:-4])
    messages, error = run(codec, [frames], inflater=codec.Inflater(12, no_context_takeover=False))
    assert error is None and [m[1] for m in messages] == [f"{JSON} #{i}" for i in range(5)]


def test_the_compiled_deflater_makes_frames_the_reference_parser_reads(codec: ModuleType) -> None:
    other = reference if codec is compiled else compiled
    d = codec.Deflater(12, mem_level=5, no_context_takeover=False)
    parser = other.FrameParser(inflater=other.Inflater(12, no_context_takeover=False))
    msgs = [JSON * k for k in range(1, 6)] + ["", "é" * 3000]
    got = []
    for text in msgs:
        got += parser.feed(d.build_message(text, mask=MASK))
    assert [m.data for m in got] == msgs


# -- the compiled codec against the reference on random streams ------------------------------------------


@st.composite
def deflate_stream(draw: st.DrawFn) -> tuple[bytes, list[int], int]:
    """Compressed and plain messages (sometimes fragmented, sometimes broken) and where to cut."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "binary", "plain", "bad-utf8", "junk", "rsv-cont", "big"]))
        data = draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
        if kind == "plain":
            out += masked(0x82, data)
            continue
        if kind == "bad-utf8":
            data += b"\xc0\x80"
        if kind == "big":
            data = b"Q" * draw(st.integers(1000, 5000))
        payload = draw(st.binary(min_size=1, max_size=20)) if kind == "junk" else zlib_compress(data)
        opcode = 0x2 if kind == "binary" else 0x1
        if kind == "rsv-cont" or draw(st.booleans()):
            cut = draw(st.integers(0, len(payload)))
            cont = 0xC0 if kind == "rsv-cont" else 0x80
            out += masked(0x40 | opcode, payload[:cut]) + masked(cont, payload[cut:])
        else:
            out += masked(0xC0 | opcode, payload)
    cuts = sorted(draw(st.lists(st.integers(0, len(out)), max_size=6)))
    return out, cuts, draw(st.sampled_from([100, 2000, 1 << 20]))


@given(deflate_stream())
@SETTINGS
def test_compiled_and_reference_agree_on_compressed_streams(case: tuple[bytes, list[int], int]) -> None:
    data, cuts, limit = case
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    got = run(compiled, chunks, max_message_size=limit, inflater=compiled.Inflater())
    want = run(reference, chunks, max_message_size=limit, inflater=reference.Inflater())
    assert got == want


@given(st.binary(max_size=3000), st.sampled_from([9, 12, 15]), st.integers(1, 9))
@SETTINGS
def test_compiled_and_reference_compress_alike(data: bytes, bits: int, level: int) -> None:
    assert compiled.Deflater(bits, level=level).compress(data) == reference.Deflater(bits, level=level).compress(data)


def test_exceptions_are_the_codec_s_own() -> None:
    assert issubclass(MessageTooBig, ProtocolError) and issubclass(InvalidPayloadData, ProtocolError)


@given(st.lists(st.binary(max_size=400), min_size=1, max_size=6), st.sampled_from([9, 12, 15]),
       st.lists(st.integers(0, 4000), max_size=5))
@SETTINGS
def test_compiled_and_reference_agree_on_context_takeover_streams(messages: list[bytes], bits: int,
                                                                  cuts: list[int]) -> None:
    # Several messages on one context-keeping stream, each one frame, cut at random points.
    c = zlib.compressobj(6, zlib.DEFLATED, -bits, 5)
    data = b""
    for m in messages:
        out = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        data += masked(0xC2, out[:-4])
    bounds = [0, *sorted(x for x in cuts if x <= len(data)), len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    got = run(compiled, chunks, inflater=compiled.Inflater(bits, no_context_takeover=False))
    want = run(reference, chunks, inflater=reference.Inflater(bits, no_context_takeover=False))
    assert got == want == ([(2, m, 0x40, None, "") for m in messages], None)
