"""Safe log text: the one place that makes client- or handler-derived text harmless in a log.

A client controls paths, headers, query strings, close reasons and message bodies; a handler's
exception text often echoes them. Written verbatim, such text can carry terminal escape
sequences, carriage returns and newlines that forge whole log lines. Every log line of
robyn_fast goes through :func:`printable` (for values) and :func:`exception_text` (for
tracebacks), directly or through the :class:`SafeRecords` filter that :func:`get_logger`
attaches to each of robyn_fast's loggers.

This module is a leaf: it imports nothing of robyn_fast, so every layer (the compiled core
included) may use it.
"""

from __future__ import annotations

import logging
import traceback
import unicodedata
from types import TracebackType

__all__ = ["printable", "exception_text", "SafeRecords", "get_logger"]

#: Longest text :func:`printable` keeps by default; longer text is cut and marked.
DEFAULT_LIMIT = 1000

_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _unsafe(ch: str) -> bool:
    # Cc: C0/C1 controls and DEL (ESC, CR, LF, ...); Cf: format characters (bidi overrides,
    # zero-width joiners); Zl/Zp: line and paragraph separators; Cs: lone surrogates;
    # Co/Cn: private-use and unassigned code points, which terminals may render as anything.
    return ch == "\\" or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def printable(value: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """``value`` as one line of log-safe text.

    ``bytes``-like values are decoded as UTF-8 (undecodable bytes become ``\\xNN``); anything
    else goes through ``str()``. Control, format and separator characters, and the backslash
    itself (so the escaping cannot be forged), are written as Python-style escapes. Text
    longer than ``limit`` characters is cut and ends with ``...[N more]``.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        # undecodable bytes become lone surrogates, written back as \xNN below
        text = bytes(value).decode("utf-8", "surrogateescape")
    else:
        text = value if isinstance(value, str) else _str(value)
    if text.isprintable() and "\\" not in text:
        out = text
    else:
        out = "".join(_escape_char(ch) if _unsafe(ch) else ch for ch in text)
    if limit is not None and len(out) > limit:
        return f"{out[:limit]}...[{len(out) - limit} more]"
    return out


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:  # a broken __str__ must not break logging
        return f"<{type(value).__name__} with unprintable str(): {type(exc).__name__}>"


def _exception_line(exc: BaseException) -> str:
    kind = type(exc)
    name = kind.__qualname__
    module = kind.__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    message = _str(exc)
    line = f"{name}: {printable(message)}" if message else name
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, (list, tuple)):
        line += "".join(f"\n{printable(note)}" for note in notes)
    return line


def exception_text(exc: BaseException, tb: TracebackType | None = None) -> str:
    """A traceback of ``exc`` (and its causes), in the usual layout, with every exception
    message passed through :func:`printable`: only the frames (code locations, which the
    client does not control) span lines."""
    # newest first: (exception, the sentence linking it to the older one it was raised from)
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < 32:
        seen.add(id(current))
        older: BaseException | None = None
        sentence: str | None = None
        if current.__cause__ is not None:
            older = current.__cause__
            sentence = "The above exception was the direct cause of the following exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            older = current.__context__
            sentence = "During handling of the above exception, another exception occurred:"
        chain.append((current, sentence if older is not None and id(older) not in seen else None))
        current = older
    # sentences go between an older exception and the newer one raised from it
    out: list[str] = []
    pieces = list(reversed(chain))
    for position, (item, _) in enumerate(pieces):
        newer_sentence = pieces[position][1] if position > 0 else None
        frames = tb if (item is exc and tb is not None) else item.__traceback__
        if newer_sentence:
            out.append(f"\n{newer_sentence}\n\n")
        if frames is not None:
            out.append("Traceback (most recent call last):\n")
            out.extend(traceback.format_tb(frames))
        out.append(_exception_line(item) + "\n")
    return "".join(out).rstrip("\n")


class SafeRecords(logging.Filter):
    """Escapes a record's arguments and renders its traceback with :func:`exception_text`.

    Messages are robyn_fast's own constant templates; the arguments and exceptions are where
    client-derived text arrives, so they are what this filter makes safe.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_safe_arg(a) for a in args)
        elif isinstance(args, dict) and args:
            record.args = {k: _safe_arg(v) for k, v in args.items()}
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None and not record.exc_text:
            record.exc_text = exception_text(exc_info[1], exc_info[2])
        return True


def _safe_arg(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # keeps %d and %.1f working
    if value is None or isinstance(value, bool):
        return value
    return printable(value)


_FILTER = SafeRecords()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :class:`SafeRecords` attached (once)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
