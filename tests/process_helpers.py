"""Servers in subprocesses for tests, always bounded in time.

:class:`ServerProcess` starts a script (or ``python -m robyn_fast script``)
with ``ROBYN_PORT=0``: the server binds a port the kernel picks and announces
it (``robyn_fast: serving on http://127.0.0.1:PORT``, or ``https://``; an app whose logging hides that
record prints ``listening on http://127.0.0.1:PORT`` itself), so no port is chosen
before it is bound (no race with other processes). A thread drains the
process's output (stdout and stderr, merged) as it comes, so a chatty server
never blocks on a full pipe; tests read it with :meth:`ServerProcess.output`
or wait for a line with :meth:`ServerProcess.wait_output`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from .server_helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# robyn_fast's INFO record, or the line of a test app that says where it listens whatever logging shows
_SERVING = re.compile(r"(?:serving|listening) on https?://127\.0\.0\.1:(\d+)")


class ServerProcess:
    """A server script in a subprocess (see the module docstring).

    ``port`` is None until the server announced it (:meth:`wait_listening`).
    """

    def __init__(
        self,
        args: list[str],
        loop_kind: str = "uvloop",
        env: dict[str, str] | None = None,
        port: int = 0,
        cwd: Path = ROOT,
        pass_fds: tuple[int, ...] = (),
        prefix: list[str] | None = None,
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(
            {"ROBYN_HOST": "127.0.0.1", "ROBYN_PORT": str(port), "ROBYN_FAST_LOOP": loop_kind,
             "PYTHONUNBUFFERED": "1"}
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, *args],  # prefix: a program that starts Python (systemd-socket-activate)
            pass_fds=pass_fds,
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: stop() can kill what it forked too
        )
        self.port: int | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._drained = threading.Event()
        self._reader = threading.Thread(target=self._drain, name=f"drain-{self.proc.pid}", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            with self._changed:
                self._lines.append(line)
                if self.port is None:
                    m = _SERVING.search(line)
                    if m:
                        self.port = int(m.group(1))
                self._changed.notify_all()
        with self._changed:
            self._drained.set()
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def output(self) -> str:
        """Everything the process printed so far."""
        with self._lock:
            return "".join(self._lines)

    def wait_output(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until a line matching ``pattern`` (a regex) was printed."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(regex.search(line) for line in self._lines) or self._drained.is_set(), timeout
            )
            for line in self._lines:
                m = regex.search(line)
                if m:
                    return m
        raise AssertionError(f"no line matching {pattern!r} after {timeout}s ({found=}):\n{self.output()}")

    def wait_listening(self, timeout: float = 20.0) -> int:
        """Wait for the server's announcement; return its port."""
        with self._changed:
            self._changed.wait_for(lambda: self.port is not None or self._drained.is_set(), timeout)
            port = self.port
        if port is None:
            self.proc.poll()
            raise AssertionError(
                f"the server did not announce a port within {timeout}s (exit status {self.proc.returncode}):\n"
                f"{self.output()}"
            )
        return port

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit and its output to be drained; its status."""
        code = self.proc.wait(timeout)
        self._drained.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` (SIGTERM by default), wait; SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # workers included: nothing outlives the test
                self.proc.wait(5)
        return self.wait(5)


@contextlib.contextmanager
def serve_script(
    script: Path,
    loop_kind: str = "uvloop",
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    *,
    module: bool = False,
    cwd: Path = ROOT,
) -> Iterator[ServerProcess]:
    """Run ``script`` (through ``python -m robyn_fast`` when ``module``),
    wait until it listens, yield it; stop it (SIGTERM) on exit."""
    argv = (["-m", "robyn_fast"] if module else []) + [str(script), *(args or [])]
    server = ServerProcess(argv, loop_kind, env, cwd=cwd)
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's children: its workers."""
    with open(f"/proc/{supervisor}/task/{supervisor}/children") as f:
        return sorted(int(pid) for pid in f.read().split())


_ESTABLISHED = "01"  # st in /proc/net/tcp


def _server_sockets(server_port: int, established: bool = False) -> Iterator[tuple[int, int]]:
    """(client port, inode) of every TCP socket whose local end is
    ``server_port`` (the kernel's socket table), only the established ones
    if ``established``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if int(local.rsplit(":", 1)[1], 16) == server_port and (state == _ESTABLISHED or not established):
                yield int(remote.rsplit(":", 1)[1], 16), inode


def _server_inode(server_port: int, client_port: int) -> int | None:
    return next((inode for port, inode in _server_sockets(server_port) if port == client_port), None)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            inodes.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return inodes


def connections_per_process(server_port: int, pids: list[int]) -> dict[int, int]:
    """How many established connections to ``server_port`` each of ``pids``
    holds the server end of (whoever the clients are: a proxy's too)."""
    held = {pid: _socket_inodes(pid) for pid in pids}
    counts = dict.fromkeys(pids, 0)
    for _port, inode in _server_sockets(server_port, established=True):
        for pid in pids:
            if f"socket:[{inode}]" in held[pid]:
                counts[pid] += 1
    return counts


def owner(client: socket.socket | None, server_port: int, pids: list[int]) -> int:
    """The worker process whose fd table holds the server end of the TCP
    connection ``client`` (a client's connected socket) to ``server_port``."""
    assert client is not None, "a client that is not connected"
    inode = _server_inode(server_port, client.getsockname()[1])
    assert inode, "no server-side socket for this client in /proc/net/tcp"
    wanted = f"socket:[{inode}]"
    for pid in pids:
        if wanted in _socket_inodes(pid):
            return pid
    raise AssertionError(f"no worker among {pids} holds {wanted}")


def process_rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """Open file descriptors of process ``pid`` (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


__all__ = [
    "ROOT", "EXAMPLES", "ServerProcess", "serve_script", "worker_pids", "owner", "connections_per_process", "process_rss", "open_fds", "wait_for",
]
