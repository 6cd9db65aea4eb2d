"""ROBYN_FAST_TEST_SCOPE (tests/scope.py): what it skips and the reason it gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import scope

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value", ["", "full", " full "])
def test_full_is_the_default(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ROBYN_FAST_TEST_SCOPE", value)
    assert scope._chosen() == (True, "")


def test_core_names_the_python_that_runs_the_full_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBYN_FAST_TEST_SCOPE", "core:3.11")
    full, reason = scope._chosen()
    assert not full and reason.endswith(".ci/run runs it on Python 3.11")
    monkeypatch.setenv("ROBYN_FAST_TEST_SCOPE", "core")
    full, reason = scope._chosen()
    assert not full and reason.endswith("ROBYN_FAST_TEST_SCOPE=full runs it")


@pytest.mark.parametrize("value", ["fast", "core:", "core:3", "Core", "core,full"])
def test_an_unknown_scope_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ROBYN_FAST_TEST_SCOPE", value)
    with pytest.raises(ValueError, match="ROBYN_FAST_TEST_SCOPE"):
        scope._chosen()


def test_core_scope_skips_a_full_scope_test_with_its_reason() -> None:
    """The real hook (conftest.py) on a real full_scope test: skipped before its ~100 s fixture."""
    test = "tests/test_packaging.py::test_the_license_is_mit_and_ships_in_the_wheel"
    env = {**os.environ, "ROBYN_FAST_TEST_SCOPE": "core:3.11"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "interpreter-independent and heavy; .ci/run runs it on Python 3.11" in result.stdout
