"""A real ``redis-server`` (Debian's package; ``make test`` installs it) for
the broker tests: started on 127.0.0.1 at a port that is retried until one
is free, and on a Unix socket in a private directory; stopped, killed,
paused and restarted on the same address by the tests. A test that cannot
start it fails: it never skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import hiredis

from robyn_fast.broker.resp import command

__all__ = ["RedisServer", "redis_server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``url``/``unix_url`` reach it."""

    def __init__(self, password: str | None = None, extra: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
        self.binary = binary
        self.password = password
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="rf-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, on the same port once it had one); wait for PING."""
        for _ in range(20):
            port = self.port or _free_port()
            args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
                    "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir,
                    *(("--requirepass", self.password) if self.password else ()), *self.extra]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    if self.command("PING") in (b"PONG", "PONG"):
                        self.port = port
                        return
                time.sleep(0.02)
            out = self._stop()
            if b"Address already in use" not in out or self.port:
                raise AssertionError(f"redis-server did not start on port {port}: {out.decode(errors='replace')}")
        raise AssertionError("no free port for redis-server after 20 tries")

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        """One command over the Unix socket (logged in); the reply."""
        reader = hiredis.Reader()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            first = command("AUTH", self.password) if self.password else b""
            s.sendall(first + command(*args))
            replies = []
            while len(replies) < (2 if self.password else 1):
                data = s.recv(65536)
                if not data:
                    raise OSError("redis closed the connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    replies.append(reply)
        reply = replies[-1]
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _stop(self, sig: int = signal.SIGKILL) -> bytes:
        proc, self.proc = self.proc, None
        if proc is None:
            return b""
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        return out or b""

    def kill(self) -> None:
        """Gone at once, as a crash (SIGKILL)."""
        self._stop(signal.SIGKILL)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self._stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(password: str | None = None, extra: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    server = RedisServer(password, extra)
    try:
        server.start()
        yield server
    finally:
        server.close()
