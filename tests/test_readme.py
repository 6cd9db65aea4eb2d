"""README.md's settings tables are the declarations of robyn_fast.settings, row for row: the
Config table (every field, its default and doc line) and the command line's table (every flag
and environment variable). A setting changed or added in its declaration fails here until the
README shows it; the failure prints the rows to paste.

The Config table's defaults are also read back and compared with Config's own:

The table is found under "Every limit and timeout lives in `robyn_fast.Config`". A row's
first cell names one or more fields (`a` / `b`), its second cell their defaults in the same
order, each one of: a number with an optional unit (KiB, MiB, s, bytes, messages) or a
Python literal in backticks (`None`, `"close"`, `()`).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

from robyn_fast import cli
from robyn_fast.config import SETTINGS, Config
from robyn_fast.settings import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
UNITS = {"": 1, "KiB": 1024, "MiB": 1024 * 1024, "s": 1, "bytes": 1, "messages": 1}


def _config_table() -> list[tuple[list[str], list[str]]]:
    text = README.read_text(encoding="utf-8")
    anchor = text.index("Every limit and timeout lives in `robyn_fast.Config`")
    lines = text[anchor:].splitlines()
    start = lines.index("| setting | default | what happens |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, line
        names = [name.strip().strip("`") for name in cells[0].split(" / ")]
        defaults = [value.strip() for value in cells[1].split(" / ")]
        assert len(names) == len(defaults), f"{len(names)} names but {len(defaults)} defaults: {line}"
        rows.append((names, defaults))
    return rows


def _value(shown: str) -> Any:
    if shown.startswith("`") and shown.endswith("`"):
        return ast.literal_eval(shown[1:-1])
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(?: (\w+))?", shown)
    assert m and (m.group(2) or "") in UNITS, f"cannot read the default {shown!r}"
    return float(m.group(1)) * UNITS[m.group(2) or ""]


def test_the_config_table_lists_every_field_once() -> None:
    listed = [name for names, _ in _config_table() for name in names]
    fields = [field.name for field in dataclasses.fields(Config)]
    assert sorted(listed) == sorted(fields)  # missing and unknown names both show in the diff
    assert len(listed) == len(set(listed))


def test_the_config_table_shows_every_default() -> None:
    defaults = {field.name: field.default for field in dataclasses.fields(Config)}
    wrong = {}
    for names, shown in _config_table():
        for name, value in zip(names, shown):
            if name in defaults and _value(value) != defaults[name]:
                wrong[name] = (value, defaults[name])
    assert wrong == {}


def _table_at(header: str) -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_the_config_table_is_the_declaration_of_every_setting() -> None:
    expected = markdown_table(SETTINGS)
    assert _table_at(expected[0]) == expected, "README's Config table should be:\n" + "\n".join(expected)


def test_the_command_line_table_is_the_declaration_of_every_flag_and_variable() -> None:
    expected = cli.command_line_table()
    assert _table_at(expected[0]) == expected, "README's command-line table should be:\n" + "\n".join(expected)
    variables = [s.env for s in cli.SETTINGS if s.env]
    assert len(variables) == len(set(variables)) and all(f"`{name}`" in "\n".join(expected) for name in variables)
