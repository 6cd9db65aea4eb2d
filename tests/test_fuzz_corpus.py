"""The fuzz harnesses' seed corpus, replayed through each harness's check
function with the normal build (``make fuzz`` fuzzes them for minutes under
ASan/UBSan; this keeps every ``make test`` running them on known inputs).

Each check raises only on a bug (a compiled/reference mismatch, a response
that is not valid HTTP, an exception the code under test does not document);
the coverage tests below make sure the corpus still reaches the outcomes it
was written for, so a harness change that makes every seed bounce off an
early refusal fails here instead of fuzzing nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fuzz import checks, make_corpus

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def _replay(name: str) -> list[object]:
    files = sorted((CORPUS / name).iterdir())
    assert files, f"no seeds in {CORPUS / name}"
    return [checks.HARNESSES[name](f.read_bytes()) for f in files]


@pytest.fixture(autouse=True)
def _quiet_handlers():
    # The HTTP harness has a route that fails on purpose; its tracebacks are expected.
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def test_corpus_is_what_make_corpus_writes() -> None:
    made = make_corpus.seeds()
    assert sorted(made) == sorted(checks.HARNESSES)
    for name, files in made.items():
        on_disk = {f.name: f.read_bytes() for f in (CORPUS / name).iterdir()}
        assert on_disk == files, f"fuzz/corpus/{name} is stale: run `.venv/bin/python fuzz/make_corpus.py`"
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    assert total < 200 * 1024, total


def test_frames_corpus() -> None:
    results = _replay("frames")
    endings = {end for _, end in results}
    # Each close code the parser can fail with, a Close frame, and a clean end.
    assert {("ProtocolError", 1002), ("InvalidPayloadData", 1007), ("MessageTooBig", 1009), "closed", None} <= endings
    compressed = [m for messages, _ in results for m in messages if m[2] == checks.compiled.RSV1]
    assert len(compressed) >= 4, compressed  # inflated messages, with and without context takeover


def test_roundtrip_corpus() -> None:
    results = _replay("roundtrip")
    assert {"refused", "partial", ("close", True), ("message", 1), ("message", 2)} <= set(results), results
    assert any(isinstance(r, tuple) and r[0] == "deflate" and r[1] > 1 for r in results), results


def test_handshake_corpus() -> None:
    results = set(_replay("handshake"))
    assert {(101, True), (101, False), 400, 405, 426} <= results, results


def test_http_corpus() -> None:
    statuses = {s for result in _replay("http") for s in result}  # type: ignore[attr-defined]
    assert {100, 101, 200, 400, 404, 405, 408, 413, 426, 500} <= statuses, statuses


def test_broker_corpus() -> None:
    results = _replay("broker")
    assert {(2, None), (0, "WireError"), "command", "url", "url refused"} <= set(results), results


def test_checks_catch_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    # The oracle comparison bites: a compiled parser that drops the last message is caught.
    real = checks.compiled.FrameParser

    class Lossy:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self._parser = real(*args, **kwargs)

        def __getattr__(self, name: str) -> object:
            return getattr(self._parser, name)

        def feed(self, data: bytes) -> list:
            return self._parser.feed(data)[:-1]

    monkeypatch.setattr(checks.compiled, "FrameParser", Lossy)
    with pytest.raises(AssertionError, match="compiled .* != reference"):
        for f in sorted((CORPUS / "frames").iterdir()):
            checks.check_frames(f.read_bytes())
