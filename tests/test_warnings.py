"""Deprecations in our own code fail the suite.

pyproject.toml's pytest ``filterwarnings`` turns a DeprecationWarning attributed
to a module of ``robyn_fast`` or ``tests`` into an error, on every Python the
suite runs on (3.14 and 3.15 deprecate asyncio's policy API and
``asyncio.iscoroutinefunction``). A warning is attributed to the module of the
frame ``stacklevel`` points at: for a deprecated library function that is its
caller. The compiled core pushes no Python frames, so a deprecated call made
from Cython would be attributed to whatever Python code called into it; the
source scan below covers those modules."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_function(module: str, source: str, name: str, **names: object) -> Callable[[], object]:
    """``name`` from ``source`` run as if it were the module ``module`` (its frames say so)."""
    namespace: dict[str, object] = {"__name__": module, "warnings": warnings, **names}
    exec(compile(source, f"<{module}>", "exec"), namespace)
    function = namespace[name]
    assert callable(function)
    return function


# A library's deprecated function warns at stacklevel=2, as the standard library does
# (warnings._deprecated, asyncio.iscoroutinefunction): the warning names its caller.
_old_api = _module_function(
    "some_library.api",
    "def old_api():\n    warnings.warn('old_api is deprecated', DeprecationWarning, stacklevel=2)\n    return 1\n",
    "old_api",
)
_CALLER = "def caller():\n    return old_api()\n"


@pytest.mark.parametrize("module", ["robyn_fast", "robyn_fast.server", "robyn_fast.compat.robyn", "tests.test_x"])
def test_a_deprecated_call_from_our_code_is_an_error(module: str) -> None:
    caller = _module_function(module, _CALLER, "caller", old_api=_old_api)
    with pytest.raises(DeprecationWarning, match="old_api is deprecated"):
        caller()


def test_a_deprecated_call_from_another_package_stays_a_warning() -> None:
    caller = _module_function("other_package.client", _CALLER, "caller", old_api=_old_api)
    with pytest.warns(DeprecationWarning, match="old_api is deprecated"):
        assert caller() == 1


# What 3.12-3.15 deprecate in asyncio (and uvloop's policy installer): none of it in our
# sources, compiled ones included.
_DEPRECATED = re.compile(
    r"\basyncio\.(iscoroutinefunction|get_event_loop_policy|set_event_loop_policy|AbstractEventLoopPolicy"
    r"|DefaultEventLoopPolicy|get_child_watcher|set_child_watcher)\b"
    r"|\buvloop\.(install|EventLoopPolicy)\b|\bget_event_loop\(\)"
)


def test_no_source_uses_the_deprecated_asyncio_api() -> None:
    # the project's own sources, not what a virtualenv or a build put beside them (bench/.venv-robyn088
    # holds Robyn 0.88 and the uvloop it pins, which do use the deprecated API)
    files = [p for folder in ("robyn_fast", "_core", "tests", "examples", "bench", "fuzz")
             for pattern in ("*.py", "*.pyx", "*.pxd", "*.pyi") for p in (ROOT / folder).rglob(pattern)
             if not any(part.startswith((".venv", "build")) or part == "site-packages"
                        for part in p.relative_to(ROOT).parts)]
    assert len(files) > 50
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files if p != Path(__file__).resolve()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if _DEPRECATED.search(line)]
    assert found == []
