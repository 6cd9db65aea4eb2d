"""Safe log text: the one place that makes client- or handler-derived text harmless in a log.

A client controls paths, headers, query strings, close reasons and message bodies; a handler's
exception text often echoes them. Written verbatim, such text can carry terminal escape
sequences, carriage returns and newlines that forge whole log lines. Every log line of
robyn_fast goes through :func:`printable` (for values) and :func:`exception_text` (for
tracebacks), directly or through the :class:`SafeRecords` filter that :func:`get_logger`
attaches to each of robyn_fast's loggers.

It also holds the entry points' one logging decision, :func:`configure_logging`: robyn_fast
configures logging only when the user has not (or never, with ``log_config=None``).

This module is a leaf: it imports nothing of robyn_fast, so every layer (the compiled core
included) may use it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
import traceback
import unicodedata
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Union

__all__ = ["printable", "field", "exception_text", "SafeRecords", "get_logger", "Throttle", "more_since",
           "LogConfig", "AUTO", "FORMAT", "WORKERS_FORMAT", "configure_logging", "load_log_config"]

#: Longest text :func:`printable` keeps by default; longer text is cut and marked.
DEFAULT_LIMIT = 1000

_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    # \xNN is reserved for what is a byte either way: ASCII controls, and the bytes that
    # were not UTF-8 (which surrogateescape carries as U+DC80..U+DCFF); a C1 control
    # (U+0080..U+009F) is \u0080.., so b"\x80" and b"\xc2\x80" read differently.
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
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
    else goes through ``str()`` (a ``str()`` that raises gives a placeholder naming the type).
    Control, format and separator characters, and the backslash itself (so the escaping
    cannot be forged), are written as Python-style escapes: ``\\n``, ``\\x1b``, ``\\u202e``.
    When the text has more than ``limit`` characters, the first ``limit`` are kept (an
    escape is never cut in two) and ``...[N more]`` says how many were left out.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, not {limit!r}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        # undecodable bytes become lone surrogates, written back as \xNN below
        text = bytes(value).decode("utf-8", "surrogateescape")
    else:
        text = value if isinstance(value, str) else _str(value)
    left_out = 0
    if limit is not None and len(text) > limit:
        left_out = len(text) - limit
        text = text[:limit]  # cut before escaping: huge input costs no more than the limit
    if not text.isprintable() or "\\" in text:
        text = "".join(_escape_char(ch) if _unsafe(ch) else ch for ch in text)
    return f"{text}...[{left_out} more]" if left_out else text


def field(value: object) -> str:
    """``value`` as one space-free field of a log line whose fields are separated by spaces and
    quotes (the access log): :func:`printable`, with the space, the double quote and every
    other space character escaped too (``\\x20``, ``\\x22``, ``\\u00a0``), so that text
    derived from a request (a percent-decoded target) cannot end its field or forge another.
    The escapes are Python's, the backslash itself included, so a reader recovers the exact
    value (``\\xNN`` of U+DC80..U+DCFF: a byte that was not UTF-8). Never cut (a cut marker
    would be text a reader cannot tell from the value's own): pass values with a bound of
    their own (a request target is bounded by ``Config.max_request_line``). The result passes
    through :class:`SafeRecords` untouched."""
    text = printable(value, limit=None)
    if not text.isprintable() or " " in text or '"' in text:
        # what printable() leaves that a reader would take for a separator: the space, the quote,
        # and the other spaces (U+00A0, U+2003...; str.split() splits on them too)
        text = "".join(_escape_char(ch) if ch == '"' or ch.isspace() or unicodedata.category(ch) == "Zs" else ch
                       for ch in text)
    escaped = _Escaped(text)
    escaped._repr = repr(text)
    return escaped


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
    try:
        notes = getattr(exc, "__notes__", None)
    except Exception:  # a hostile __getattr__ or property: no notes rather than no log line
        notes = None
    if isinstance(notes, (list, tuple)):
        line += "".join(f"\n{printable(note)}" for note in notes)
    return line


#: How many exceptions of one chain, and how deep into exception groups, a traceback shows.
_MAX_CHAIN = 32
_MAX_GROUP_DEPTH = 8
_MAX_GROUP_ITEMS = 16


def exception_text(exc: BaseException, tb: TracebackType | None = None) -> str:
    """A traceback of ``exc`` (its causes and contexts, and the members of an exception group),
    in the usual layout, with every exception message and note passed through
    :func:`printable`: only the frames (code locations, which the client does not control)
    span lines. ``tb`` replaces ``exc.__traceback__`` for ``exc`` itself."""
    return "".join(_chain_text(exc, tb, 0)).rstrip("\n")


def _chain_text(exc: BaseException, tb: TracebackType | None, depth: int) -> list[str]:
    # newest first: (exception, the sentence linking it to the older one it was raised from)
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
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
    # oldest first; a sentence goes between an older exception and the newer one raised from it
    out: list[str] = []
    for position, (item, sentence) in enumerate(reversed(chain)):
        frames = tb if (item is exc and tb is not None) else item.__traceback__
        if sentence and position > 0:
            out.append(f"\n{sentence}\n\n")
        if frames is not None:
            out.append("Traceback (most recent call last):\n")
            out.extend(traceback.format_tb(frames))
        out.append(_exception_line(item) + "\n")
        members = getattr(item, "exceptions", None) if isinstance(item, BaseExceptionGroup) else None
        if isinstance(members, tuple) and members:
            out.extend(_group_text(members, depth + 1))
    return out


def _group_text(members: tuple[BaseException, ...], depth: int) -> list[str]:
    if depth > _MAX_GROUP_DEPTH:
        return ["  | ... (exception groups nested deeper are not shown)\n"]
    out: list[str] = []
    for number, member in enumerate(members[:_MAX_GROUP_ITEMS], 1):
        out.append(f"  +---------------- {number} of {len(members)} ----------------\n")
        for line in "".join(_chain_text(member, None, depth)).splitlines():
            out.append(f"  | {line}\n")
    if len(members) > _MAX_GROUP_ITEMS:
        out.append(f"  +---------------- ... {len(members) - _MAX_GROUP_ITEMS} more ----------------\n")
    return out


class SafeRecords(logging.Filter):
    """Makes a record safe to format: escapes its arguments with :func:`printable` (numbers,
    ``None`` and booleans stay as they are, so ``%d`` and ``%.1f`` work; ``%r`` shows an escaped
    ``repr()``), and renders its traceback with :func:`exception_text`.

    A message that is not a ``str`` (``log.error(exc)``) is escaped too. A ``str`` message is
    taken to be robyn_fast's own constant template: client-derived text belongs in the
    arguments, never formatted into the template. Filtering a record twice changes nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            record.msg = printable(record.msg, limit=None)
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_safe_arg(a) for a in args)
        elif isinstance(args, Mapping) and args:
            record.args = {k: _safe_arg(v) for k, v in args.items()}
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None and not record.exc_text:
            record.exc_text = exception_text(exc_info[1], exc_info[2])
        return True


class _Escaped(str):
    """An argument already made safe: ``%s`` gives the escaped text, ``%r`` an escaped
    ``repr()`` of the original value."""

    _repr: str  # (a str subclass can have no __slots__)

    def __repr__(self) -> str:
        return self._repr


def _safe_arg(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, _Escaped)):
        return value  # numbers keep %d, %x and %.1f working; their str() is code, not client text
    escaped = _Escaped(printable(value))
    if isinstance(value, (str, bytes)):
        # repr() of str and bytes escapes every unprintable character and the backslash
        shown = repr(value[:DEFAULT_LIMIT])
        escaped._repr = shown if len(value) <= DEFAULT_LIMIT else f"{shown}...[{len(value) - DEFAULT_LIMIT} more]"
    else:
        escaped._repr = printable(_repr(value))
    return escaped


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} with unprintable repr(): {type(exc).__name__}>"


_FILTER = SafeRecords()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :class:`SafeRecords` attached (once).

    Every logger of robyn_fast comes from here. The filter belongs to the logger, so it
    makes safe the records that logger creates, whichever handlers they reach."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


class Throttle:
    """At most one log line per ``every`` seconds for one kind of event, however many happen
    (a flood of foreign messages must cost a counter bump each, not a line each).

    ``hit()`` counts one event and returns ``None`` while a line is not due, or, when one is,
    how many events went unreported since the last line (0 for the first): the caller logs
    then, saying ``(N more since the last report)`` when N is not 0. ``count`` is every event."""

    __slots__ = ("every", "count", "_last", "_unreported")

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.count = 0
        self._last: float | None = None
        self._unreported = 0

    def hit(self, now: float | None = None) -> int | None:
        self.count += 1
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last < self.every:
            self._unreported += 1
            return None
        self._last = now
        unreported, self._unreported = self._unreported, 0
        return unreported


def more_since(unreported: int) -> str:
    """The tail of a throttled line: `` (N more since the last report)``, or nothing."""
    return f" ({unreported} more since the last report)" if unreported else ""


# -- the entry points' logging decision ---------------------------------------------------------

#: What ``log_config`` may be: :data:`AUTO`, ``None`` (never configure), a ``dictConfig`` dict,
#: or the path of a ``.json``, ``.yaml``/``.yml`` (with PyYAML) or ``fileConfig`` ``.ini`` file.
LogConfig = Union[str, "os.PathLike[str]", Mapping[str, Any], None]

#: ``log_config="auto"``: configure logging only when the root logger has no handler yet.
AUTO = "auto"

#: The format of the handler :func:`configure_logging` installs (one process).
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The same with each worker's pid, when several processes write to one stderr.
WORKERS_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

#: The logger every logger of robyn_fast descends from (what ``--log-level`` sets when the user configured logging).
_OURS = "robyn_fast"


def configure_logging(log_config: LogConfig = AUTO, level: int | None = None, *, level_given: bool = False,
                      processes: int = 1) -> bool:
    """The one logging decision of robyn_fast's entry points (``app.start()``, ``app.serve()``).

    - ``"auto"`` (the default): when the root logger has no handler (the user configured
      nothing: no ``basicConfig``, no ``dictConfig``), one handler on stderr with
      :data:`FORMAT` (:data:`WORKERS_FORMAT` for several ``processes``), and the root
      logger's level set to ``level`` (INFO when None). When the root logger has a handler,
      the user's configuration stands: nothing is touched.
    - ``None``: never configure.
    - a dict: ``logging.config.dictConfig(log_config)``; a path: that file
      (:func:`load_log_config`).

    Whenever robyn_fast did not install its own handler and the level was given explicitly
    (``level_given``: ``--log-level``), that level is set on the ``robyn_fast`` logger only,
    as uvicorn does for its own: the user's root level and handlers stay as they are.
    Worker processes are forked after this, so they inherit the decision.
    Returns True when robyn_fast installed its handler. ``ValueError`` for a configuration
    that cannot be loaded (its message names the file and the reason)."""
    if isinstance(log_config, str) and log_config == AUTO:
        root = logging.getLogger()
        if not root.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(WORKERS_FORMAT if processes > 1 else FORMAT))
            root.addHandler(handler)
            root.setLevel(logging.INFO if level is None else level)
            return True
    elif log_config is not None:
        load_log_config(log_config)
    if level_given and level is not None:
        logging.getLogger(_OURS).setLevel(level)
    return False


def load_log_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
    """Apply a logging configuration: a ``dictConfig`` dict, or a file by its suffix
    (``.json``; ``.yaml``/``.yml``, which needs PyYAML; anything else is a ``fileConfig``
    ``.ini`` file, read with ``disable_existing_loggers=False`` so robyn_fast's loggers,
    created at import, stay enabled). ``ValueError`` naming the file and the reason."""
    if isinstance(source, Mapping):
        try:
            logging.config.dictConfig(dict(source))
        except Exception as exc:
            raise ValueError(f"log_config: dictConfig() refused it: {exc}") from None
        return
    path = os.fspath(source)
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix in (".json", ".yaml", ".yml"):
            with open(path, encoding="utf-8") as f:
                if suffix == ".json":
                    loaded = json.load(f)
                else:
                    try:
                        import yaml  # type: ignore[import-untyped,unused-ignore]
                    except ImportError:
                        raise ValueError("a YAML logging configuration needs PyYAML (pip install pyyaml); "
                                         "or write it as .json") from None
                    loaded = yaml.safe_load(f)
            if not isinstance(loaded, dict):
                raise ValueError(f"expected a dictConfig mapping, got {type(loaded).__name__}")
            logging.config.dictConfig(loaded)
        else:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no such file: {path!r}")
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except Exception as exc:  # json, yaml, configparser and dictConfig each have their own errors
        raise ValueError(f"{path}: {exc}") from None
