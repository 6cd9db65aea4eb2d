"""Run one harness of fuzz/checks.py under atheris (libFuzzer).

    python fuzz/run.py NAME [libFuzzer arguments and corpus directories]

``make fuzz`` runs this through fuzz/campaign.py, with the ASan/UBSan build
on PYTHONPATH and atheris's ASan runtime preloaded; run by hand with the
normal build it fuzzes the Python code only. A crash file is replayed with
``python fuzz/run.py NAME path/to/crash-file``.
"""

from __future__ import annotations

import logging
import sys

import atheris

# Coverage of the Python code under test (the compiled core is instrumented by clang).
with atheris.instrument_imports(include=["robyn_fast", "checks"]):
    import checks


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in checks.HARNESSES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(checks.HARNESSES)}}} [libFuzzer args]")
    check = checks.HARNESSES[sys.argv[1]]
    # Handlers that fail on purpose log tracebacks; millions of them say nothing.
    logging.disable(logging.CRITICAL)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
