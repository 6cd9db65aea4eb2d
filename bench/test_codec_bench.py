"""Micro-benchmarks of the WebSocket frame codec (pytest-benchmark).

Each group times the same work done by several implementations, so that
``bench/ratios.py`` can report ratios taken within one run:

* ``compiled``   - ``robyn_fast._core.codec`` (Cython + C), what the server uses;
* ``reference``  - ``robyn_fast._reference.codec`` (pure Python, the test oracle);
* ``websockets`` - the ``websockets`` library's sans-I/O layer (its C
  ``speedups.apply_mask`` where it has one), ``websockets-py`` its pure-Python
  ``utils.apply_mask``;
* ``memcpy``     - ``bytes(bytearray)`` of the same size: allocate a new bytes
  object and copy into it, the floor for anything that returns new bytes.

Every implementation's output is checked once, outside the timed part, before
it is timed. Rounds are sized from a time budget per benchmark
(:func:`_measure`), so the slow pure-Python entries stay bounded and
``make bench`` stays short.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from robyn_fast._core import codec as C
from robyn_fast._reference import codec as R

ws_apply_mask_c: Callable[..., bytes] | None
try:
    from websockets.speedups import apply_mask as ws_apply_mask_c
except ImportError:  # pragma: no cover - websockets built without its C extension
    ws_apply_mask_c = None
from websockets.utils import apply_mask as ws_apply_mask_py

# Wall-clock budget per benchmark (seconds) and bounds on its rounds.
BUDGET = 1.0
MIN_ROUNDS = 15
MAX_ROUNDS = 5000
# A round shorter than this is repeated `iterations` times so that the timer's
# resolution and per-round overhead stay well below 1% of what is measured.
MIN_ROUND_TIME = 50e-6

MASK = b"\x01\x02\x03\x04"
N_FRAMES = 1000
TEXT_32 = '{"op":"chat","text":"hello, 42"}'
assert len(TEXT_32.encode()) == 32
BINARY_32 = random.Random(32).randbytes(32)


def _measure(benchmark, fn: Callable[..., Any], *args: Any, setup: Callable[[], tuple] | None = None) -> None:
    """Time ``fn(*args)`` (or ``fn(*setup())``, with the setup untimed) within
    :data:`BUDGET` seconds.

    pytest-benchmark's own calibration runs each benchmark for ``max_time``
    whatever its cost; here the rounds come from a quick estimate instead, so
    a 4 ms pure-Python call gets a few hundred rounds and a 0.3 us C call
    gets thousands of rounds of many iterations.
    """
    if setup is not None:
        fn(*setup())  # warm up (and first-call allocations)
        t0 = time.perf_counter()
        for _ in range(3):
            fn(*setup())
        per_call = (time.perf_counter() - t0) / 3
        rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, BUDGET / max(per_call, 1e-9))))
        benchmark.pedantic(fn, setup=lambda: (setup(), {}), rounds=rounds, warmup_rounds=2)
        benchmark.extra_info["rounds_planned"] = rounds
        return
    fn(*args)
    t0 = time.perf_counter()
    n = 0
    while True:
        fn(*args)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed > 2e-3 or n >= 1000:
            break
    per_call = elapsed / n
    iterations = max(1, int(MIN_ROUND_TIME / max(per_call, 1e-9)))
    round_time = per_call * iterations
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, BUDGET / round_time)))
    benchmark.pedantic(fn, args=args, rounds=rounds, iterations=iterations, warmup_rounds=1)
    benchmark.extra_info["rounds_planned"] = rounds
    benchmark.extra_info["iterations"] = iterations


def _tag(benchmark, impl: str, **info: Any) -> None:
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info.update(info)


# -- parse-1000-small ---------------------------------------------------------
# One read's worth of 1000 small client frames (masked, each with its own key),
# parsed by a fresh server-side parser each round. Building the parser is set-up,
# not timed; feeding the buffer and getting every message back is.


def _client_stream(opcode: int, payload: bytes, n: int = N_FRAMES) -> bytes:
    rng = random.Random(opcode)
    masks = [rng.randbytes(4) for _ in range(n)]
    stream = b"".join(R.build_frame(opcode, payload, mask=m) for m in masks)
    assert stream == b"".join(C.build_frame(opcode, payload, mask=m) for m in masks)
    return stream


TEXT_STREAM = _client_stream(R.OP_TEXT, TEXT_32.encode())
BINARY_STREAM = _client_stream(R.OP_BINARY, BINARY_32)


def _ws_parse(proto: ServerProtocol, buf: bytes) -> list:
    proto.receive_data(buf)
    return proto.events_received()


def _ws_parse_decode(proto: ServerProtocol, buf: bytes) -> list:
    # What a websockets connection does on top of the sans-I/O layer before the
    # application sees a whole unfragmented text message: decode it to str.
    proto.receive_data(buf)
    events = proto.events_received()  # only Frames once the state is OPEN
    return [f.data.decode() if f.opcode is Opcode.TEXT else f.data for f in events]  # type: ignore[union-attr]


def _ws_proto() -> ServerProtocol:
    return ServerProtocol(state=State.OPEN, max_size=C.DEFAULT_MAX_MESSAGE_SIZE)


def _ours_parse(parser, buf: bytes) -> list:
    return parser.feed(buf)


PARSE_IMPLS = ["compiled", "reference", "websockets", "websockets+decode"]


def _parse_case(impl: str, buf: bytes, expected_data: Any, expected_opcode: int):
    """(fn, setup) for one implementation, after checking once that it returns
    the expected N_FRAMES messages."""
    fn: Callable[..., list[Any]]
    setup: Callable[[], tuple[Any, bytes]]
    if impl in ("compiled", "reference"):
        mod = C if impl == "compiled" else R
        fn, setup = _ours_parse, lambda: (mod.FrameParser(), buf)
        out = fn(*setup())
        assert len(out) == N_FRAMES
        assert all(m.opcode == expected_opcode and m.data == expected_data for m in out)
    elif impl == "websockets":
        fn, setup = _ws_parse, lambda: (_ws_proto(), buf)
        out = fn(*setup())
        assert len(out) == N_FRAMES
        expected_bytes = expected_data.encode() if isinstance(expected_data, str) else expected_data
        assert all(f.opcode == expected_opcode and f.fin and f.data == expected_bytes for f in out)
    elif impl == "websockets+decode":
        fn, setup = _ws_parse_decode, lambda: (_ws_proto(), buf)
        out = fn(*setup())
        assert out == [expected_data] * N_FRAMES
    else:  # pragma: no cover
        raise AssertionError(impl)
    return fn, setup


@pytest.mark.benchmark(group="parse-1000-small")
@pytest.mark.parametrize("impl", PARSE_IMPLS)
def test_parse_1000_text_32B(benchmark, impl):
    fn, setup = _parse_case(impl, TEXT_STREAM, TEXT_32, R.OP_TEXT)
    _tag(benchmark, impl, messages=N_FRAMES, bytes=len(TEXT_STREAM))
    _measure(benchmark, fn, setup=setup)


@pytest.mark.benchmark(group="parse-1000-small-binary")
@pytest.mark.parametrize("impl", ["compiled", "reference", "websockets"])
def test_parse_1000_binary_32B(benchmark, impl):
    fn, setup = _parse_case(impl, BINARY_STREAM, BINARY_32, R.OP_BINARY)
    _tag(benchmark, impl, messages=N_FRAMES, bytes=len(BINARY_STREAM))
    _measure(benchmark, fn, setup=setup)


# -- unmask-* -----------------------------------------------------------------
# XOR a payload with a 4-byte key into a new bytes object.

UNMASK_SIZES = {"1KiB": 1 << 10, "64KiB": 1 << 16, "1MiB": 1 << 20}
UNMASK_IMPLS = ["compiled", "reference", "websockets", "websockets-py", "memcpy"]


def _unmask_case(impl: str, data: bytes):
    if impl == "compiled":
        return C.apply_mask, (data, MASK)
    if impl == "reference":
        return R.apply_mask, (data, MASK)
    if impl == "websockets":
        if ws_apply_mask_c is None:  # pragma: no cover
            pytest.skip("websockets.speedups (its C extension) is not installed")
        return ws_apply_mask_c, (data, MASK)
    if impl == "websockets-py":
        return ws_apply_mask_py, (data, MASK)
    if impl == "memcpy":
        # bytes(bytes) returns the same object; from a bytearray it allocates
        # and copies, which is the floor for apply_mask's own output.
        return bytes, (bytearray(data),)
    raise AssertionError(impl)  # pragma: no cover


@pytest.mark.parametrize("impl", UNMASK_IMPLS)
@pytest.mark.parametrize(
    "size",
    [pytest.param(n, id=name, marks=pytest.mark.benchmark(group=f"unmask-{name}")) for name, n in UNMASK_SIZES.items()],
)
def test_unmask(benchmark, size, impl):
    data = random.Random(size).randbytes(size)
    fn, args = _unmask_case(impl, data)
    out = fn(*args)
    assert type(out) is bytes and len(out) == size
    if impl == "memcpy":
        assert out == data and out is not args[0]
    else:
        assert out == R.apply_mask(data, MASK)
    _tag(benchmark, impl, bytes=size)
    _measure(benchmark, fn, *args)


# -- build-frame-* ------------------------------------------------------------
# An unmasked server frame as one bytes object: a 32 B text message from a str,
# and a 64 KiB binary message from bytes. websockets builds its Frame from
# bytes, so its text case includes the str.encode() its send path does.

BINARY_64K = random.Random(64).randbytes(1 << 16)


def _ws_build_text(s: str) -> bytes:
    return Frame(Opcode.TEXT, s.encode()).serialize(mask=False)


def _ws_build_binary(b: bytes) -> bytes:
    return Frame(Opcode.BINARY, b).serialize(mask=False)


@pytest.mark.benchmark(group="build-frame-32B-text")
@pytest.mark.parametrize("impl", ["compiled", "reference", "websockets"])
def test_build_text_32B(benchmark, impl):
    fn = {"compiled": C.build_text, "reference": R.build_text, "websockets": _ws_build_text}[impl]
    assert fn(TEXT_32) == b"\x81\x20" + TEXT_32.encode()
    _tag(benchmark, impl, bytes=32)
    _measure(benchmark, fn, TEXT_32)


@pytest.mark.benchmark(group="build-frame-64KiB-binary")
@pytest.mark.parametrize("impl", ["compiled", "reference", "websockets", "memcpy"])
def test_build_binary_64KiB(benchmark, impl):
    expected = b"\x82\x7f" + len(BINARY_64K).to_bytes(8, "big") + BINARY_64K
    if impl == "memcpy":
        # Copy of the whole frame's size into a new bytes object.
        fn, arg = bytes, bytearray(expected)
    else:
        fn = {"compiled": C.build_binary, "reference": R.build_binary, "websockets": _ws_build_binary}[impl]
        arg = BINARY_64K
    assert fn(arg) == expected
    _tag(benchmark, impl, bytes=len(BINARY_64K))
    _measure(benchmark, fn, arg)
