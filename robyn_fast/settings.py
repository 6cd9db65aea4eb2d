"""The one declaration of every setting, and what is derived from it.

A :class:`Setting` is one knob: its name, default, doc line, the check a
value given in code must pass, and, when it has them, its command-line
flag, its environment variable and how their text becomes a value.
``Config``'s fields are declared with :func:`setting` (the dataclass field
*is* the declaration: its annotation is the type), the settings that say
how to serve rather than how to behave (host, port, processes...) in
:data:`robyn_fast.cli.LAUNCH`. From these come ``Config``'s validation and
docstring, the command line and ``--help``, the parsing of the environment
and ``robyn.env``, and the README's two settings tables
(:func:`markdown_table`; ``tests/test_readme.py`` checks them).

Text from a flag and from its variable goes through the same
:attr:`Setting.parse`, so a variable is validated exactly like its flag.

This module imports nothing of robyn_fast: ``config`` and ``cli`` build on it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Setting", "setting", "declared", "markdown_table",
    "positive", "optional_positive", "int_range", "one_of", "boolean", "url_path", "strings", "origins", "anything",
    "whole_number", "seconds", "switch_text", "text", "choice",
]

_KEY = "robyn_fast.setting"

Check = Callable[[Any, str], Any]
Parse = Callable[[str], Any]


@dataclass(frozen=True)
class Setting:
    """One setting, declared once."""

    name: str  # the Config field, or the launch setting's name
    default: Any  # what applies when nothing sets it
    doc: str  # one line: the README table's cell, the docstring's and --help's text
    check: Check  # a value from code -> the value (normalized); TypeError/ValueError naming `where`
    parse: Parse | None = None  # text of the flag or the variable -> value; ValueError: the one-line reason
    flag: str | None = None  # "--name"; a bool setting without parse is a switch (no argument)
    env: str | None = None  # the environment variable (also read from robyn.env)
    metavar: str | None = None  # the flag's argument in --help
    shown: str | None = None  # the default as the README shows it (default: derived from `default`)
    redact: Callable[[str], str] | None = None  # how an error shows the text (a secret is never printed)
    strip: bool = True  # the variable's surrounding whitespace is not part of the value
    owner: str = ""  # "Config" for Config's fields (set by declared())

    @property
    def switch(self) -> bool:
        """A flag without an argument (``--access-log``): every bool setting's flag."""
        return isinstance(self.default, bool)

    def from_text(self, text: str) -> Any:
        """The value of a flag's argument or a variable's text: parsed, then
        checked as a value from code is; ValueError with the reason."""
        if self.parse is None:
            raise ValueError(f"{self.name} cannot be given as text")
        value = self.parse(text)
        try:
            return self.check(value, self.where)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    @property
    def where(self) -> str:
        """How messages name it: ``Config.header_timeout``, ``processes``."""
        return f"{self.owner}.{self.name}" if self.owner else self.name

    def shown_text(self, text: str) -> str:
        """``text`` as an error message may show it."""
        return self.redact(text) if self.redact is not None else text

    def described(self) -> str:
        """The doc line, led by the Config field it sets (for the command line's table and --help)."""
        return f"`{self.owner}({self.name}=...)`: {self.doc}" if self.owner else self.doc

    def default_text(self) -> str:
        """The default as the README's tables show it."""
        if self.shown is not None:
            return self.shown
        value = self.default
        if isinstance(value, bool) or value is None or isinstance(value, (str, tuple, frozenset)):
            return f"`{value!r}`"
        return str(value)


def setting(default: Any, doc: str, check: Check, **declared: Any) -> Any:
    """A dataclass field that declares a setting (``max_body_size: int =
    setting(16 * MiB, "...", positive)``); the field's name is its name."""
    spec = Setting("", default, doc, check, **declared)
    return dataclasses.field(default=default, metadata={_KEY: spec})


def declared(cls: type) -> tuple[Setting, ...]:
    """The settings declared by the fields of dataclass ``cls``, in order."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with robyn_fast.settings.setting()")
        out.append(dataclasses.replace(spec, name=f.name, owner=cls.__name__))
    return tuple(out)


def markdown_table(settings: Iterable[Setting], command_line: bool = False) -> list[str]:
    """The README's table of ``settings``: ``| setting | default | what
    happens |``, or with ``command_line`` ``| flag | variable | default |
    what happens |`` (only the settings that have a flag or a variable)."""
    if command_line:
        rows = ["| flag | variable | default | what happens |", "| --- | --- | --- | --- |"]
        for s in settings:
            if s.flag is None and s.env is None:
                continue
            flag = f"`{s.flag}{' ' + s.metavar if s.metavar else ''}`" if s.flag else ""
            env = f"`{s.env}`" if s.env else ""
            rows.append(f"| {flag} | {env} | {s.default_text()} | {s.described()} |")
        return rows
    rows = ["| setting | default | what happens |", "| --- | --- | --- |"]
    rows += [f"| `{s.name}` | {s.default_text()} | {s.doc} |" for s in settings]
    return rows


# -- checks: a value given in code ----------------------------------------------------------------------


def _type_name(value: object) -> str:
    return type(value).__name__


def positive(value: Any, where: str) -> Any:
    """A positive finite number (int or float, not bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number, not {_type_name(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where} must be a positive finite number, got {value!r}")
    return value


def optional_positive(value: Any, where: str) -> Any:
    """``None`` or :func:`positive`."""
    return None if value is None else positive(value, where)


def int_range(low: int, high: int | None = None) -> Check:
    """An int (not bool) of ``low``..``high`` (``None``: no upper bound)."""
    def check(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an int, not {_type_name(value)}")
        if high is None and value < low:
            raise ValueError(f"{where} must be >= {low}, got {value!r}")
        if high is not None and not low <= value <= high:
            raise ValueError(f"{where} must be {low}..{high}, got {value!r}")
        return value
    return check


def one_of(*values: str) -> Check:
    """One of ``values``."""
    def check(value: Any, where: str) -> Any:
        if value not in values:
            names = " or ".join(", ".join(repr(v) for v in values).rsplit(", ", 1))
            raise ValueError(f"{where} must be {names}, got {value!r}")
        return value
    return check


def boolean(value: Any, where: str) -> Any:
    """``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{where} must be a bool, not {_type_name(value)}")
    return value


def url_path(value: Any, where: str) -> Any:
    """``None`` or a path such as ``/metrics``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str or None, not {_type_name(value)}")
    if not value.startswith("/") or "?" in value or "#" in value or not value.isprintable() or " " in value:
        raise ValueError(f"{where} must be a path such as '/metrics' (starting with '/', no query, spaces or "
                         f"control characters), got {value!r}")
    return value


def strings(value: Any, where: str) -> Any:
    """A collection of non-empty strings, as a tuple."""
    if isinstance(value, str) or not all(isinstance(p, str) and p for p in value):
        raise TypeError(f"{where} must be a tuple of non-empty strings")
    return tuple(value)


def origins(value: Any, where: str) -> Any:
    """``None`` or a collection of origins, as a frozenset."""
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{where} must be a collection of origins, not a string")
    return frozenset(value)


def anything(value: Any, where: str) -> Any:
    """No check here (the value is checked where it is used)."""
    return value


# -- parsers: the text of a flag or a variable ------------------------------------------------------------

_WHOLE = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def whole_number(minimum: int, maximum: int | None = None) -> Parse:
    """ASCII digits (no ``_`` separators, no other scripts' digits, no sign
    but ``+``), within ``minimum``..``maximum``."""
    def parse(text: str) -> int:
        if not _WHOLE.fullmatch(text):
            raise ValueError(f"expected a whole number, got {text!r}")
        value = int(text)
        if maximum is None and value < minimum:
            raise ValueError(f"expected {minimum} or more, got {value}")
        if maximum is not None and not minimum <= value <= maximum:
            raise ValueError(f"expected {minimum}..{maximum}, got {value}")
        return value
    return parse


def seconds(text: str) -> float:
    """A decimal number (ASCII; no ``inf``, ``nan`` or ``_``); the setting's
    check then bounds it."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"expected a number of seconds, got {text!r}")
    return float(text)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def switch_text(text: str) -> bool:
    """A variable that turns a switch on or off: 1/true/yes/on or 0/false/no/off (any case)."""
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false (or 1/0, yes/no, on/off), got {text!r}")


def text(what: str, spaces: bool = False) -> Parse:
    """Printable text (a path, an address): no control characters, NUL
    included; no whitespace unless ``spaces``."""
    def parse(value: str) -> str:
        if not value.isprintable() or (not spaces and any(c.isspace() for c in value)):
            raise ValueError(f"expected {what}, got {value!r}")
        return value
    return parse


def choice(names: Sequence[str]) -> Parse:
    """One of ``names``, in any case; the value is the upper-case name."""
    def parse(value: str) -> str:
        name = value.upper()
        if name not in names:
            raise ValueError(f"expected one of {', '.join(names)}, got {value!r}")
        return name
    return parse
