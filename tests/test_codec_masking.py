"""Masking (RFC 6455 §5.3) and UTF-8 validation against naive oracles."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from robyn_fast._core import codec as compiled
from robyn_fast._reference import codec as reference


def naive_mask(data: bytes, mask: bytes, phase: int = 0) -> bytes:
    return bytes(b ^ mask[(i + phase) % 4] for i, b in enumerate(data))


def test_every_length_at_every_alignment() -> None:
    """Lengths 0..257 at buffer alignments 0..63, compiled vs reference vs a
    byte-at-a-time oracle."""
    rng = random.Random(6455)
    mask = bytes(rng.randrange(256) for _ in range(4))
    backing = bytearray(rng.randrange(256) for _ in range(64 + 257))
    for align in range(64):
        for n in range(258):
            view = memoryview(backing)[align : align + n]
            got = compiled.apply_mask(view, mask)
            assert got == reference.apply_mask(view, mask), (align, n)
            assert got == naive_mask(bytes(view), mask), (align, n)


@pytest.mark.parametrize("phase", [0, 1, 2, 3, 4, 7, 1001])
def test_phase_continues_the_mask(codec: ModuleType, phase: int) -> None:
    rng = random.Random(phase)
    data = bytes(rng.randrange(256) for _ in range(200))
    mask = b"\x01\x80\xfe\x7f"
    assert codec.apply_mask(data, mask, phase) == naive_mask(data, mask, phase)


def test_masking_in_pieces_equals_masking_whole(codec: ModuleType) -> None:
    data = bytes(range(256)) * 5
    mask = b"abcd"
    whole = codec.apply_mask(data, mask)
    for cut in (1, 3, 8, 13, 100, 1279):
        assert codec.apply_mask(data[:cut], mask) + codec.apply_mask(data[cut:], mask, cut) == whole


def test_mask_is_an_involution_on_large_input(codec: ModuleType) -> None:
    data = random.Random(1).randbytes(1 << 20)
    mask = b"\x12\x34\x56\x78"
    assert codec.apply_mask(codec.apply_mask(data, mask), mask) == data


def test_apply_mask_accepts_bytes_like(codec: ModuleType) -> None:
    for data in (b"hello", bytearray(b"hello"), memoryview(b"hello")):
        assert codec.apply_mask(data, b"\x00\x00\x00\x00") == b"hello"


def test_apply_mask_rejects_bad_masks(codec: ModuleType) -> None:
    for bad in (b"", b"abc", b"abcde"):
        with pytest.raises(ValueError):
            codec.apply_mask(b"data", bad)
    with pytest.raises(ValueError):
        codec.apply_mask(b"data", b"abcd", -1)


UTF8_CASES = [
    (b"", True),
    (b"plain ascii " * 10, True),
    ("κόσμε".encode(), True),
    ("€𝄞\U0010ffff\u07ff\u0800\uffff".encode(), True),
    (b"\xc0\x80", False),
    (b"\xc1\xbf", False),
    (b"\xe0\x80\x80", False),
    (b"\xe0\x9f\xbf", False),
    (b"\xed\xa0\x80", False),
    (b"\xed\xbf\xbf", False),
    (b"\xef\xbf\xbf", True),
    (b"\xf0\x80\x80\x80", False),
    (b"\xf0\x8f\xbf\xbf", False),
    (b"\xf4\x90\x80\x80", False),
    (b"\xf5\x80\x80\x80", False),
    (b"\xfe", False),
    (b"\xff", False),
    (b"\x80", False),
    (b"abcdefgh\xe2\x82", False),
    (b"abcdefghijklmnop\xe2\x82\xac", True),
]


@pytest.mark.parametrize(("data", "valid"), UTF8_CASES)
def test_validate_utf8_vectors(codec: ModuleType, data: bytes, valid: bool) -> None:
    assert codec.validate_utf8(data) is valid


def test_validate_utf8_agrees_with_python_on_random_bytes() -> None:
    rng = random.Random(3629)
    alphabet = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF,
                0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    for _ in range(20000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
        try:
            data.decode("utf-8")
            expected = True
        except UnicodeDecodeError:
            expected = False
        assert compiled.validate_utf8(data) is expected, data
        assert reference.validate_utf8(data) is expected, data
