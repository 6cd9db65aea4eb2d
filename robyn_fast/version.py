"""robyn_fast's version, in one place (a leaf: the package root and the command line both read it)."""

from __future__ import annotations

import sys

__all__ = ["__version__", "version_line"]

__version__ = "0.1.0"


def version_line() -> str:
    """What ``--version`` prints."""
    return f"robyn_fast {__version__} (Robyn's WebSocket API; Python {sys.version.split()[0]})"
