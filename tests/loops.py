"""The event loops that loop-parametrized tests run on.

Both, uvloop and asyncio, unless ``ROBYN_FAST_TEST_LOOPS`` names a subset
(``uvloop``, ``asyncio`` or both, comma-separated): ``.ci/run`` runs both on
one Python and uvloop alone on the others, to keep CI within its hour. An
unknown name is an error, not a silently empty matrix."""

from __future__ import annotations

import os

ALL_LOOPS = ("uvloop", "asyncio")


def _chosen() -> list[str]:
    text = os.environ.get("ROBYN_FAST_TEST_LOOPS", "").strip()
    if not text:
        return list(ALL_LOOPS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_LOOPS]
    if unknown or not names:
        raise ValueError(f"ROBYN_FAST_TEST_LOOPS={text!r}: name uvloop and/or asyncio, comma-separated")
    return [n for n in ALL_LOOPS if n in names]


LOOPS = _chosen()
