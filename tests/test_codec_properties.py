"""Property-based tests: random valid and invalid frame streams, cut at random
points, must give identical results from the compiled and reference codecs,
and a valid stream must give back exactly the messages that were sent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robyn_fast._core import codec as compiled
from robyn_fast._reference import codec as reference

from .codec_helpers import run

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INVALID_UTF8 = [b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\x80", b"\xe2\x82", b"\xed\xa0", b"\xf0"]

payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.tuples(st.text(max_size=20), st.sampled_from(INVALID_UTF8), st.text(max_size=20)).map(
        lambda t: t[0].encode("utf-8", "surrogatepass") + t[1] + t[2].encode("utf-8", "surrogatepass")
    ),
    st.tuples(
        st.sampled_from([1000, 1001, 1007, 1011, 3000, 4999, 0, 1005, 1012, 2999, 5000]),
        st.text(max_size=30),
    ).map(lambda t: t[0].to_bytes(2, "big") + t[1].encode("utf-8", "surrogatepass")),
    st.integers(0, 300).map(lambda n: b"z" * n),
)


@st.composite
def raw_frame(draw: st.DrawFn, client_bias: bool) -> bytes:
    """One frame, usually well formed, sometimes breaking one rule or another."""
    fin = draw(st.sampled_from([True, True, True, False]))
    rsv = draw(st.sampled_from([0, 0, 0, 0, 0, 0x40, 0x20, 0x10]))
    opcode = draw(st.sampled_from([0, 1, 2, 1, 2, 0, 8, 9, 10, 9, 3, 0xB]))
    masked = draw(st.booleans()) if draw(st.integers(0, 9)) == 0 else not client_bias
    payload = draw(payloads)
    encoding = draw(st.sampled_from(["minimal"] * 6 + ["16", "64", "top-bit"]))
    key = draw(st.binary(min_size=4, max_size=4))
    n = len(payload)
    mbit = 0x80 if masked else 0
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if encoding == "minimal":
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    elif encoding == "16" and n < 65536:
        head += bytes([mbit | 126]) + n.to_bytes(2, "big")
    elif encoding == "top-bit":
        head += bytes([mbit | 127]) + ((1 << 63) | n).to_bytes(8, "big")
    else:
        head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


@st.composite
def fragmented_text(draw: st.DrawFn, client: bool) -> bytes:
    """A text message, sometimes with invalid UTF-8, cut into fragments at
    random points (often inside a character) with control frames between."""
    targeted = draw(st.booleans())
    if not targeted:
        body = draw(payloads)
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), min_size=1, max_size=4)))
    else:
        # Cut inside an invalid sequence: the failure must come at the bad
        # byte, before any control frame that follows the fragment.
        head = draw(st.text(max_size=10)).encode()
        bad = draw(st.sampled_from(INVALID_UTF8))
        body = head + bad + draw(st.text(max_size=10)).encode()
        cuts = [len(head) + draw(st.integers(0, len(bad)))]
    parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    mask = None if client else draw(st.binary(min_size=4, max_size=4))
    out = b""
    for i, part in enumerate(parts):
        out += compiled.build_frame(1 if i == 0 else 0, part, fin=i == len(parts) - 1, mask=mask)
        if i < len(parts) - 1 and (targeted or draw(st.booleans())):
            out += compiled.build_ping(draw(st.binary(max_size=10)), mask=mask)
    return out


@st.composite
def stream_case(draw: st.DrawFn) -> tuple[list[bytes], dict]:
    client = draw(st.booleans())
    frames = draw(st.lists(st.one_of(raw_frame(client), fragmented_text(client)), min_size=1, max_size=8))
    data = b"".join(frames)
    tail = draw(st.sampled_from(["none", "none", "truncate", "garbage"]))
    if tail == "truncate" and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif tail == "garbage":
        data += draw(st.binary(min_size=1, max_size=40))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    kw = {
        "client": client,
        "max_message_size": draw(st.sampled_from([None, 0, 10, 150, 1 << 20])),
        "allowed_rsv": draw(st.sampled_from([0, 0, 0x40])),
    }
    return chunks, kw


@SETTINGS
@given(stream_case())
def test_compiled_and_reference_agree_on_random_streams(case: tuple[list[bytes], dict]) -> None:
    chunks, kw = case
    expected = run(reference, chunks, **kw)
    assert run(compiled, chunks, **kw) == expected
    # The outcome does not depend on how the input was cut.
    assert run(compiled, [b"".join(chunks)], **kw) == expected


@SETTINGS
@given(st.booleans(), st.data())
def test_agree_on_fragmented_text(client: bool, data: st.DataObject) -> None:
    stream = data.draw(fragmented_text(client))
    expected = run(reference, [stream], client=client)
    assert run(compiled, [stream], client=client) == expected
    cut = data.draw(st.integers(0, len(stream)))
    assert run(compiled, [stream[:cut], stream[cut:]], client=client) == expected


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5), st.booleans())
def test_agree_on_arbitrary_bytes(data: bytes, cuts: list[int], client: bool) -> None:
    cuts = sorted(c for c in cuts if c <= len(data))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert run(compiled, chunks, client=client) == run(reference, chunks, client=client)


messages = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300)),
    min_size=1,
    max_size=10,
)


@st.composite
def valid_stream(draw: st.DrawFn) -> tuple[bytes, list]:
    """Messages split into fragments with pings between them, as a client sends."""
    msgs = draw(messages)
    out = b""
    expected: list = []
    for msg in msgs:
        body = msg.encode() if isinstance(msg, str) else msg
        opcode = 1 if isinstance(msg, str) else 2
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
        for i, part in enumerate(parts):
            key = draw(st.binary(min_size=4, max_size=4))
            last = i == len(parts) - 1
            out += compiled.build_frame(opcode if i == 0 else 0, part, fin=last, mask=key)
            if not last and draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                out += compiled.build_ping(ping, mask=key)
                expected.append((9, ping, 0, None, ""))
        expected.append((opcode, msg, 0, None, ""))
    return out, expected


@SETTINGS
@given(valid_stream(), st.lists(st.integers(0, 5000), max_size=8))
def test_valid_streams_give_back_what_was_sent(case: tuple[bytes, list], cuts: list[int]) -> None:
    data, expected = case
    cuts = sorted(c for c in cuts if c <= len(data))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert run(compiled, chunks) == (expected, None)
    assert run(reference, chunks) == (expected, None)
