"""Start example servers as subprocesses for tests, always bounded in time."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {out}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


@contextlib.contextmanager
def serve_script(script: Path, loop_kind: str = "uvloop", env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Run ``script`` with ROBYN_HOST/ROBYN_PORT set; yield (port, process)."""
    port = free_port()
    full_env = dict(os.environ)
    full_env.update(
        {"ROBYN_HOST": "127.0.0.1", "ROBYN_PORT": str(port), "ROBYN_FAST_LOOP": loop_kind, "PYTHONUNBUFFERED": "1"}
    )
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, str(script), *(args or [])],
        cwd=str(ROOT),
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, proc)
        yield port, proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
