from __future__ import annotations

from types import ModuleType

import pytest

from robyn_fast._core import codec as compiled_codec
from robyn_fast._reference import codec as reference_codec

from .loops import LOOPS

IMPLEMENTATIONS = {"compiled": compiled_codec, "reference": reference_codec}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """Each codec test runs once against each implementation."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Server tests run on both event loops."""
    return str(request.param)
