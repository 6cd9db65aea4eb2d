"""``--dev``: serve from a child process and start a fresh one when a source
file changes.

The child is the same command line run again (``sys.orig_argv``) with
``ROBYN_FAST_DEV_CHILD=1``, so it imports the changed code; it serves one
process on the listening sockets the reloader bound once
(:func:`robyn_fast.listener.listen`), passed down as descriptors named by
``ROBYN_FAST_LISTEN_FDS``: the address stays the reloader's across restarts
(a port of 0 stays the same port, connections made while the app restarts
wait in the backlog for the next child, and a second server on the address
cannot bind it). Every half second the reloader looks at the
modification times of the ``.py`` files and ``robyn.env`` under the app's
directory (skipping hidden directories, virtualenvs and ``__pycache__``); on
a change the child gets SIGTERM (a graceful shutdown: Close 1001 to every
WebSocket) and a new child starts. A child that crashes is reported and
restarted on the next change. SIGTERM/SIGINT to the reloader stop the child
and exit 0.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..logs import get_logger

__all__ = ["Reloader", "DEV_CHILD_ENV", "LISTEN_FDS_ENV", "is_dev_child", "inherited_fds"]

log = get_logger("robyn_fast.workers")

DEV_CHILD_ENV = "ROBYN_FAST_DEV_CHILD"
LISTEN_FDS_ENV = "ROBYN_FAST_LISTEN_FDS"  # the listening descriptors a dev child serves, comma-separated
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist"}


def is_dev_child() -> bool:
    return os.environ.get(DEV_CHILD_ENV) == "1"


def inherited_fds() -> list[int]:
    """In a dev child, the listening descriptors the reloader passed down
    (none elsewhere). ``ValueError`` when the variable is malformed."""
    text = os.environ.get(LISTEN_FDS_ENV, "").strip() if is_dev_child() else ""
    if not text:
        return []
    try:
        fds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{LISTEN_FDS_ENV}={text!r}: expected descriptor numbers separated by commas") from None
    if any(fd < 3 for fd in fds):
        raise ValueError(f"{LISTEN_FDS_ENV}={text!r}: descriptors 0, 1 and 2 are not listening sockets")
    return fds


class Reloader:
    """Runs ``argv`` as a child serving ``sockets`` (listening, named by
    ``host``; None: ``--uds`` or ``--fd`` name them, and the child gets no
    host or port) and restarts it on source changes under ``root``."""

    def __init__(self, argv: list[str], root: str, sockets: Sequence[socket.socket], host: str | None, *,
                 close_timeout: float, interval: float = 0.5, env_file_names: Sequence[str] = ()) -> None:
        self.argv = argv
        self.root = Path(root)
        self.sockets = list(sockets)
        self.host = host
        self.port: int | None = self.sockets[0].getsockname()[1] if host is not None else None
        self.close_timeout = close_timeout
        self.interval = interval
        # The variables this process took from robyn.env: not passed on, so
        # that each child reads robyn.env as it is now.
        self.env_file_names = frozenset(env_file_names)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def _files(self) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS
                           and not (Path(dirpath, d) / "pyvenv.cfg").exists()]
            for name in filenames:
                if name.endswith(".py") or name == "robyn.env":
                    yield Path(dirpath, name)

    def _snapshot(self) -> dict[Path, int]:
        stamps = {}
        for path in self._files():
            try:
                stamps[path] = path.stat().st_mtime_ns
            except OSError:
                continue
        return stamps

    def _start_child(self) -> None:
        env = {name: value for name, value in os.environ.items() if name not in self.env_file_names}
        fds = [sock.fileno() for sock in self.sockets]
        env.update({DEV_CHILD_ENV: "1", LISTEN_FDS_ENV: ",".join(map(str, fds)),
                    "ROBYN_HOST": self.host or "", "ROBYN_PORT": "" if self.port is None else str(self.port)})
        self.child = subprocess.Popen(self.argv, env=env, pass_fds=fds)
        log.info("dev: serving from pid %d", self.child.pid)

    def _stop_child(self) -> None:
        child = self.child
        self.child = None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(self.close_timeout + 5.0)
        except subprocess.TimeoutExpired:
            log.warning("dev: pid %d did not stop in time; killing it", child.pid)
            child.kill()
            child.wait()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # No lock here (an Event's could be held by the very code this
        # interrupts): a flag, and the wakeup fd ends the wait at once.
        self.stopping = True

    def _wait(self, wakeup: int) -> bool:
        """Wait one interval or until a stop signal; True to go on."""
        if not self.stopping:
            with contextlib.suppress(InterruptedError):
                select.select([wakeup], [], [], self.interval)
            with contextlib.suppress(BlockingIOError):
                while os.read(wakeup, 512):
                    pass
        return not self.stopping

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (exit status 0). The sockets stay
        open (the caller's)."""
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        old_wakeup = signal.set_wakeup_fd(wakeup_w)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stamps = self._snapshot()
            self._start_child()
            reported = False
            while self._wait(wakeup_r):
                if self.child is not None and self.child.poll() is not None and not reported:
                    log.error("dev: the app exited with status %d; waiting for a change to start it again",
                              self.child.returncode)
                    reported = True
                now = self._snapshot()
                changed = sorted(str(p) for p in now.keys() | stamps.keys() if now.get(p) != stamps.get(p))
                if changed:
                    stamps = now
                    log.warning("dev: %s changed; restarting", changed[0] if len(changed) == 1
                                else f"{changed[0]} and {len(changed) - 1} more")
                    self._stop_child()
                    self._start_child()
                    reported = False
            self._stop_child()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            os.close(wakeup_r)
            os.close(wakeup_w)
