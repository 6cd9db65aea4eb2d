"""``python -m robyn_fast path/to/app.py [args...]``: run a Robyn app unchanged.

Installs the ``robyn`` shim (:mod:`robyn_fast.compat`), then runs the script
as ``__main__`` the way ``python path/to/app.py [args...]`` would:
``sys.argv`` is ``[path/to/app.py, *args]`` and the script's directory comes
first on ``sys.path``. The arguments are the script's: Robyn's own flags
(``--processes``, ``--workers``, ``--dev``, ``--log-level``...) reach it
untouched, and ``app.start()`` reads them (:mod:`robyn_fast.cli`).

A usage error (no script, a script that is not a file, an option before the
script) prints one line to stderr and exits with status 2; a script that
ends without ever calling ``app.start()`` one line and status 1.
"""

from __future__ import annotations

# Only os and sys at import time: the shim and runpy load once the
# arguments are known to be good.
import os
import sys

USAGE = "usage: python -m robyn_fast path/to/app.py [args...]"


def _usage_error(message: str) -> int:
    print(f"robyn_fast: {message} ({USAGE})", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the script named by ``argv[0]`` (default ``sys.argv[1:]``) with
    the rest as its arguments; returns the exit status for usage errors.
    Whatever the script raises (``SystemExit`` included) propagates."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        return _usage_error("no script given")
    script = args[0]
    if script in ("-h", "--help"):
        from robyn_fast.cli import help_text

        print(USAGE)
        print("Runs a script written for Robyn's legacy API with robyn_fast. The arguments after the script are "
              "the script's; app.start() reads Robyn's flags among them:\n")
        print(help_text("python -m robyn_fast app.py"))
        return 0
    if script == "--version":
        from robyn_fast import __version__

        print(f"robyn_fast {__version__} (Robyn's WebSocket API; Python {sys.version.split()[0]})")
        return 0
    if script.startswith("-"):
        return _usage_error(f"unknown option {script!r}; options of the app go after the script")
    if not os.path.exists(script):
        return _usage_error(f"cannot run {script!r}: no such file")
    if not os.path.isfile(script):
        return _usage_error(f"cannot run {script!r}: not a file")

    import runpy

    from robyn_fast.compat import install

    install()
    # As for `python script.py`: the script's directory, not the current
    # one, is where its own imports are found.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    sys.argv = [script, *args[1:]]
    runpy.run_path(script, run_name="__main__")
    from robyn_fast.app import starts

    if not starts():
        # A script that ends without serving: say why instead of exiting 0 without a word.
        print(f"robyn_fast: {os.path.basename(script)} ran to its end without serving: it never called "
              "app.start(); add app.start(host=..., port=...) at its end", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
