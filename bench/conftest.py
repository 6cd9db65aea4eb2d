"""Shared set-up for the codec micro-benchmarks (pytest-benchmark).

Run them with ``make bench``; ``pytest bench`` alone runs each benchmark once
as a smoke test, because the project's pytest options disable benchmarking
unless ``--benchmark-enable`` is given.
"""

from __future__ import annotations

import os
import sys

import pytest

# A benchmark of the compiled codec that silently measured the pure-Python one
# would be worse than no benchmark: fail the whole session at collection.
try:
    from robyn_fast._core import codec as _compiled
except ImportError as exc:  # pragma: no cover - only on a broken build
    raise pytest.UsageError(
        f"bench/: the compiled codec robyn_fast._core.codec cannot be imported ({exc}); "
        "run `make install` first"
    ) from exc

if not _compiled.__file__ or not _compiled.__file__.endswith((".so", ".pyd")):
    raise pytest.UsageError(
        f"bench/: robyn_fast._core.codec is not an extension module ({_compiled.__file__})"
    )


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what the numbers depend on beyond pytest-benchmark's defaults."""
    machine_info["cpu_affinity"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    machine_info["os_cpu_count"] = os.cpu_count()
    machine_info["compiled_codec"] = _compiled.__file__
    machine_info["python_executable"] = sys.executable
    try:
        import websockets

        machine_info["websockets_version"] = websockets.__version__
    except ImportError:  # pragma: no cover
        machine_info["websockets_version"] = None
