"""Reading the small files a server is configured with (``robyn.env``, TLS
certificates and keys) without trusting them to be small: a bounded read of
a regular file. ``/dev/zero``, a FIFO with no writer or a multi-gigabyte
file is refused at once instead of hanging the start or filling memory.

A leaf: it imports nothing of robyn_fast.
"""

from __future__ import annotations

import os
import stat

__all__ = ["UnusableFile", "read_limited", "MAX_CONFIG_FILE"]

#: The most a configuration file may hold (a PEM chain with a dozen certificates is ~20 KiB).
MAX_CONFIG_FILE = 1024 * 1024


class UnusableFile(ValueError):
    """A file that exists but cannot be a configuration file; ``str()`` says why in a few words."""


def read_limited(path: str | os.PathLike[str], limit: int = MAX_CONFIG_FILE) -> bytes:
    """The bytes of the regular file at ``path``, if it holds at most
    ``limit`` bytes. Raises what :func:`os.open` raises (``FileNotFoundError``,
    ``PermissionError``, ``ValueError`` for a NUL in the path...), and
    :class:`UnusableFile` for a file that is not regular (a device, a FIFO,
    a directory) or holds more than ``limit`` bytes. Opening does not block
    (``O_NONBLOCK``: a FIFO without a writer is refused, not waited for)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UnusableFile("is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise UnusableFile("not a regular file")
        chunks = []
        size = 0
        while size <= limit:  # read past the limit by at most one chunk: the size check must not trust st_size
            chunk = os.read(fd, min(64 * 1024, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnusableFile(f"larger than {limit} bytes; not a configuration file")
        return b"".join(chunks)
    finally:
        os.close(fd)
