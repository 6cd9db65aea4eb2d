"""The Autobahn TestSuite's core cases (categories 1-10, 301 cases), run by
kosoku against examples/echo.py, on uvloop and on asyncio.

Every case must end OK, NON-STRICT or INFORMATIONAL, and its closing handshake
OK or INFORMATIONAL. (The INFORMATIONAL cases, 7.1.6 and 7.13.x, probe
behaviour RFC 6455 leaves open.)"""

from __future__ import annotations

import asyncio
import collections

import pytest
from kosoku import FailureError, run_fuzzingclient

from .process_helpers import EXAMPLES, serve_script

CORE_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
ALLOWED = {"OK", "NON-STRICT", "INFORMATIONAL"}
ALLOWED_CLOSE = {"OK", "INFORMATIONAL"}


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_autobahn_core_cases_are_clean(loop_kind: str) -> None:
    with serve_script(EXAMPLES / "echo.py", loop_kind) as server:
        port = server.port
        try:
            results = asyncio.run(
                asyncio.wait_for(
                    run_fuzzingclient(f"ws://127.0.0.1:{port}/ws", cases=CORE_CASES, concurrency=2),
                    timeout=600,
                )
            )
        except FailureError as exc:
            results = exc.results
    summary = collections.Counter((r.behavior.value, r.behavior_close.value) for r in results)
    print(f"\nAutobahn core on {loop_kind}: {len(results)} cases: {dict(summary)}")
    bad = [
        f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value} {r.description[:80]}"
        for r in results
        if r.behavior.value not in ALLOWED or r.behavior_close.value not in ALLOWED_CLOSE
    ]
    assert not bad, "\n".join(bad)
    assert len(results) == 301
