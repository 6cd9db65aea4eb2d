"""How much of the suite runs: ``ROBYN_FAST_TEST_SCOPE``.

``full`` (the default) runs every test. ``core`` skips the tests marked
``full_scope``: heavy tests whose subject does not depend on the interpreter
(building the sdist and a wheel from it, Autobahn's compression selection,
long fault and churn tests). ``.ci/run`` runs the full scope on one Python
and ``core:<that Python>`` (e.g. ``core:3.11``) on the others, so every skip
says which Python runs the test. Anything else is an error, not a silently
different suite."""

from __future__ import annotations

import os
import re


def _chosen() -> tuple[bool, str]:
    """(full, the skip reason when not)."""
    text = os.environ.get("ROBYN_FAST_TEST_SCOPE", "").strip()
    if text in ("", "full"):
        return True, ""
    match = re.fullmatch(r"core(?::(3\.\d+))?", text)
    if match is None:
        raise ValueError(f"ROBYN_FAST_TEST_SCOPE={text!r}: full, core or core:<Python version running the full scope>")
    where = f".ci/run runs it on Python {match[1]}" if match[1] else "ROBYN_FAST_TEST_SCOPE=full runs it"
    return False, f"ROBYN_FAST_TEST_SCOPE={text}: interpreter-independent and heavy; {where}"


FULL, SKIP_REASON = _chosen()
