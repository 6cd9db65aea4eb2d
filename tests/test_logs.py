"""robyn_fast.logs: client- and handler-derived text cannot reach a log as control characters.

Unit tests of printable(), exception_text() and the SafeRecords filter, then end-to-end tests:
a real server whose HTTP and WebSocket handlers raise exceptions with hostile messages, and a
refused handshake with a hostile path and Origin, every record formatted by a plain
logging.Formatter and searched for raw control characters and forged lines."""

from __future__ import annotations

import logging
import re
import unicodedata
from urllib.parse import quote
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robyn_fast import Config, Robyn, WebSocket
from hypothesis import given, settings
from hypothesis import strategies as st

from robyn_fast.logs import DEFAULT_LIMIT, SafeRecords, exception_text, field, get_logger, printable

from .codec_helpers import masked
from .server_helpers import connect, recv_all, running, upgrade_request, wait_for, ws_connect

FORGED = "2026-01-01 00:00:00 CRITICAL root: FORGED admin logged in"
HOSTILE = f"boom\x1b[2J\x1b]0;title\x07\r\n{FORGED}\rtail"


def _raw_controls(text: str) -> list[str]:
    """Characters a terminal or a log reader would act on, other than the newline."""
    return [
        ch for ch in text
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
    ]


def _assert_safe_line(text: str) -> None:
    assert _raw_controls(text) == []
    assert "\n" not in text


# --- printable -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\r\nb", "a\\r\\nb"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("tab\t", "tab\\t"),
        ("c1\x85\x9b", "c1\\u0085\\u009b"),  # NEL and CSI, the one-character C1 controls
        ("abc\u202edef", "abc\\u202edef"),  # RIGHT-TO-LEFT OVERRIDE
        ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),  # line and paragraph separators
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("lone\ud800", "lone\\ud800"),
        ("private\ue000", "private\\ue000"),
        ("\U000e0001tag", "\\U000e0001tag"),  # LANGUAGE TAG, a format character outside the BMP
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),  # printable text is kept
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    _assert_safe_line(printable(raw))


def test_printable_bytes_undecodable_and_c1_read_differently() -> None:
    assert printable(b"ok\xff\xfe") == "ok\\xff\\xfe"
    assert printable(b"\x80") == "\\x80"  # a byte that is not UTF-8
    assert printable(b"\xc2\x80") == "\\u0080"  # U+0080, a C1 control, well encoded
    assert printable(bytearray(b"\x1b[0m")) == "\\x1b[0m"
    assert printable(memoryview(b"\r\n")) == "\\r\\n"
    # a str that carries undecodable bytes (surrogateescape) shows them as the same bytes
    assert printable(b"\xff".decode("utf-8", "surrogateescape")) == "\\xff"


def test_printable_backslash_is_escaped_so_escapes_cannot_be_forged() -> None:
    # the text "\x1b" (four characters) and the ESC character must not look alike
    assert printable("\\x1b") == "\\\\x1b"
    assert printable("\x1b") == "\\x1b"
    assert printable("\\x1b") != printable("\x1b")
    assert printable("a\\nb") != printable("a\nb")


def test_printable_limit_cuts_whole_escapes_and_counts_what_was_left_out() -> None:
    assert printable("x" * (DEFAULT_LIMIT + 5)) == "x" * DEFAULT_LIMIT + "...[5 more]"
    assert printable("abcdef", limit=3) == "abc...[3 more]"
    assert printable("abc", limit=3) == "abc"
    assert printable("\x1b" * 10, limit=2) == "\\x1b\\x1b...[8 more]"
    assert printable("\\" * 10, limit=3) == "\\\\" * 3 + "...[7 more]"
    assert printable("y" * 5000, limit=None) == "y" * 5000
    assert printable(b"\xff" * 100, limit=1) == "\\xff...[99 more]"
    with pytest.raises(ValueError, match="limit"):
        printable("x", limit=-1)


def test_printable_survives_a_broken_str() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert printable(Broken()) == "<Broken with unprintable str(): RuntimeError>"
    assert printable(42) == "42"
    assert printable(None) == "None"


# --- exception_text ----------------------------------------------------------------------------

def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def _frames_only_span_lines(text: str) -> None:
    """Every line is a traceback line, an exception line, or a chaining sentence; none is forged."""
    assert _raw_controls(text) == []
    for line in text.splitlines():
        assert not line.startswith(FORGED[:10]), line


def test_exception_text_escapes_the_message_and_keeps_the_frames() -> None:
    exc = _raised(ValueError(HOSTILE))
    text = exception_text(exc)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "test_logs.py" in text and "_raised" in text
    assert lines[-1] == "ValueError: " + printable(HOSTILE)
    _frames_only_span_lines(text)


def test_exception_text_of_a_chain_with_hostile_messages() -> None:
    try:
        try:
            try:
                raise KeyError(f"first\r\n{FORGED}")
            except KeyError:
                raise OSError(f"second\x1b[1A{FORGED}")  # context
        except OSError as inner:
            raise RuntimeError(f"third\u202e\u2028{FORGED}") from inner  # cause
    except RuntimeError as caught:
        text = exception_text(caught)
    _frames_only_span_lines(text)
    assert text.count("Traceback (most recent call last):") == 3
    assert "During handling of the above exception, another exception occurred:" in text
    assert "The above exception was the direct cause of the following exception:" in text
    # oldest first, as Python prints it
    assert text.index("KeyError") < text.index("OSError: second") < text.index("RuntimeError: third")
    assert "\\u202e\\u2028" in text and "\\x1b[1A" in text


def test_exception_text_of_a_cycle_ends() -> None:
    a, b = ValueError("a\n"), ValueError("b\n")
    a.__context__, b.__context__ = b, a
    text = exception_text(a)
    assert text.count("ValueError") == 2
    _frames_only_span_lines(text)


def test_exception_text_escapes_notes() -> None:
    exc = ValueError("plain")
    exc.add_note(f"note\r\n{FORGED}")
    text = exception_text(exc)
    assert text.splitlines() == ["ValueError: plain", "note\\r\\n" + FORGED]
    assert _raw_controls(text) == []


def test_exception_text_survives_a_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("nope")

    text = exception_text(_raised(Broken()))
    assert text.splitlines()[-1].endswith("Broken: <Broken with unprintable str(): RuntimeError>")


def test_exception_text_shows_group_members_escaped() -> None:
    group = _raised(ExceptionGroup(f"group\r\n{FORGED}", [ValueError(f"one\x1b[2J\n{FORGED}"), TypeError("two")]))
    text = exception_text(group)
    _frames_only_span_lines(text)
    assert "1 of 2" in text and "2 of 2" in text
    assert "  | ValueError: one\\x1b[2J\\n" + FORGED in text


# --- the filter ----------------------------------------------------------------------------

def _format(record: logging.LogRecord) -> str:
    return logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)


def _record(msg: object, args: Any, exc_info: Any = None) -> logging.LogRecord:
    record = logging.LogRecord("robyn_fast.test", logging.ERROR, __file__, 1, msg, args, exc_info)
    assert SafeRecords().filter(record) is True
    return record


def test_filter_escapes_args_and_keeps_numbers_numeric() -> None:
    record = _record("%s %d %.1f %x %s %s", (HOSTILE, 7, 2.25, 255, None, True))
    text = _format(record)
    assert text == f"ERROR robyn_fast.test: {printable(HOSTILE)} 7 2.2 ff None True"
    _assert_safe_line(text)


def test_filter_escapes_dict_args() -> None:
    record = _record("%(path)s took %(ms)d ms", {"path": "/a\r\nb\x1b", "ms": 12})
    assert record.getMessage() == "/a\\r\\nb\\x1b took 12 ms"


def test_filter_repr_args_are_escaped_once() -> None:
    record = _record("%r %r %r", ("a\x1b\n", b"\r\n", ["x\ny"]))
    text = record.getMessage()
    assert text == "'a\\x1b\\n' b'\\r\\n' ['x\\\\ny']"
    _assert_safe_line(text)


def test_filter_escapes_exception_args_and_non_str_messages() -> None:
    exc = ValueError(HOSTILE)
    assert _record("failed: %s", (exc,)).getMessage() == "failed: " + printable(HOSTILE)
    assert _record(exc, None).getMessage() == printable(HOSTILE, limit=None)


def test_filter_renders_tracebacks_with_exception_text() -> None:
    exc = _raised(RuntimeError(HOSTILE))
    record = _record("handler raised", None, (type(exc), exc, exc.__traceback__))
    text = _format(record)
    assert text.startswith("ERROR robyn_fast.test: handler raised\nTraceback (most recent call last):\n")
    _frames_only_span_lines(text)


def test_filtering_twice_changes_nothing() -> None:
    record = _record("%s %r", ("a\\b\x1b", "c\\d"))
    once = record.getMessage()
    assert SafeRecords().filter(record) is True
    assert record.getMessage() == once == "a\\\\b\\x1b 'c\\\\d'"


def test_get_logger_attaches_the_filter_once() -> None:
    logger = get_logger("robyn_fast.test.once")
    assert get_logger("robyn_fast.test.once") is logger
    assert [f for f in logger.filters if isinstance(f, SafeRecords)] == logger.filters[:1]
    assert len(logger.filters) == 1


def test_every_robyn_fast_logger_is_filtered() -> None:
    root = Path(__file__).resolve().parent.parent
    sources = [*(root / "robyn_fast").rglob("*.py"), *(root / "_core").glob("*.py[xd]")]
    # no named logger is made any other way (a logger's records are filtered by that logger only;
    # logging.getLogger() without a name, the root logger, is only configured, never logged to)
    plain = [str(p.relative_to(root)) for p in sources
             if re.search(r"getLogger\(\s*\S", p.read_text().replace("getLogger()", "")) and p.name != "logs.py"]
    assert plain == []
    names = {name for p in sources for name in re.findall(r'get_logger\("([\w.]+)"\)', p.read_text())}
    assert {"robyn_fast.server", "robyn_fast.http", "robyn_fast.websocket", "robyn_fast.app", "robyn_fast.broker",
            "robyn_fast.bus", "robyn_fast.workers"} <= names
    import robyn_fast.app  # noqa: F401 - loads the modules that create the loggers
    import robyn_fast.broker.local  # noqa: F401
    import robyn_fast.broker.redis  # noqa: F401
    import robyn_fast.compat.robyn  # noqa: F401
    import robyn_fast.server  # noqa: F401
    import robyn_fast.workers.reloader  # noqa: F401
    import robyn_fast.workers.supervisor  # noqa: F401

    unfiltered = [name for name in sorted(names) if not any(
        isinstance(f, SafeRecords) for f in logging.getLogger(name).filters)]
    assert unfiltered == []


# --- end to end ------------------------------------------------------------------------------

class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.texts.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger("robyn_fast")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _assert_output_safe(texts: list[str]) -> None:
    for text in texts:
        assert _raw_controls(text) == [], text
        lines = text.split("\n")
        for line in lines:
            assert not line.startswith(FORGED[:10]), text
            assert not re.match(r"\d{4}-\d\d-\d\d", line) or line is lines[0], text
        # only a traceback spans lines, and then each further line is a frame, its source, an
        # exception line or a chaining sentence, never a forged record
        for line in lines[1:]:
            assert (line.startswith(("Traceback", "  ", "During handling", "The above exception"))
                    or line == "" or re.match(r"[\w.]+(Error|Exception)\b", line)), text


def test_hostile_handler_exceptions_and_handshake_are_logged_safely(loop_kind: str, captured: _Capture) -> None:
    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")
    WebSocket(app, "/guarded", config=Config(allowed_origins=frozenset({"https://good.example"})))

    @app.get("/items/<item>")
    def item(request: Any) -> str:
        wanted = request.path_params["item"]  # percent-decoded: the client chose every character
        try:
            raise KeyError(HOSTILE)
        except KeyError as inner:
            raise ValueError(f"no item {wanted}") from inner

    @ws.on("message")
    async def message(conn: Any, msg: Any) -> str:
        raise RuntimeError(f"ws\x1b]8;;evil\x07\u202e{msg}\r\n{FORGED}")

    # raw ESC/CR/LF cannot cross HTTP/1.1 (httptools refuses them), but percent-escapes in a
    # path decode to them, and header values may carry any byte over 0x7f: U+202E (bidi
    # override), U+2028 (line separator), the 8-bit CSI byte 0x9b.
    quoted_path = "/items/" + quote(f"x\x1b[2J\r\n{FORGED}", safe="")
    origin = b"https://evil.example\xe2\x80\xae\x9b[1A\xe2\x80\xa8" + FORGED.encode()

    with running(app, loop_kind) as srv:
        sock = connect(srv.port)
        sock.sendall(f"GET {quoted_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert recv_all(sock).startswith(b"HTTP/1.1 500 ")
        sock.close()

        conn, _ = ws_connect(srv.port)
        conn.sendall(masked(0x81, "hi\u2029\x1b[0m".encode()))
        assert wait_for(lambda: any("RuntimeError" in t for t in captured.texts))
        conn.close()

        sock = connect(srv.port)
        sock.sendall(upgrade_request("/guarded?x=%1b", extra="Origin: ORIGIN\r\n").replace(b"ORIGIN", origin))
        assert recv_all(sock).startswith(b"HTTP/1.1 403 ")
        sock.close()
        assert wait_for(lambda: any("refused" in t for t in captured.texts))

    texts = captured.texts
    http = [t for t in texts if "ValueError" in t]
    wsl = [t for t in texts if "RuntimeError" in t]
    refused = [t for t in texts if "refused" in t]
    assert http and wsl and refused, texts
    assert "ValueError: no item x\\x1b[2J\\r\\n" + FORGED in http[0] and "KeyError" in http[0]
    assert "\\x1b]8;;evil\\x07\\u202ehi\\u2029\\x1b[0m\\r\\n" + FORGED in wsl[0]
    assert "evil.example\\u202e\\x9b[1A\\u2028" + FORGED in refused[0] and "/guarded?x=%1b" in refused[0]
    _assert_output_safe(texts)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200) | st.sampled_from(['a b', '"', '\\x20', '\\', '\\\\x22', "\udcff\udc80", "-"]))
def test_an_access_log_field_is_one_field_that_reads_back_exactly(value: str) -> None:
    from .test_metrics import unescape_field

    shown = field(value)
    assert " " not in shown and '"' not in shown and shown.isprintable(), shown
    assert unescape_field(shown) == value
    assert SafeRecords().filter(_access_record("%s", shown)) and _access_text("%s", shown) == shown


def _access_record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("robyn_fast.access", logging.INFO, __file__, 1, msg, args, None)


def _access_text(msg: str, *args: object) -> str:
    record = _access_record(msg, *args)
    SafeRecords().filter(record)
    return record.getMessage()
