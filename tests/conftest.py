from __future__ import annotations

import os
from types import ModuleType

import pytest

from robyn_fast._core import codec as compiled_codec
from robyn_fast._reference import codec as reference_codec

from .loops import LOOPS
from .scope import FULL as FULL_SCOPE
from .scope import SKIP_REASON

# tests/test_wheels.py needs the manylinux wheels `make wheels` builds (and root, debootstrap):
# `make wheels-test` runs it (ROBYN_FAST_REQUIRE_WHEELS=1, a missing wheel fails); `make test`
# does not collect it, so nothing there skips for want of wheels.
collect_ignore = [] if os.environ.get("ROBYN_FAST_REQUIRE_WHEELS", "") not in ("", "0") else ["test_wheels.py"]

IMPLEMENTATIONS = {"compiled": compiled_codec, "reference": reference_codec}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """Each codec test runs once against each implementation."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Server tests run on both event loops."""
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``ROBYN_FAST_TEST_SCOPE=core`` skips the ``full_scope`` tests (tests/scope.py)."""
    if FULL_SCOPE:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("full_scope") is not None:
            item.add_marker(skip)
