"""Connection ids: uuid4 text (RFC 9562 §5.4) from the OS CSPRNG.

The random bytes are fetched :data:`BATCH` ids at a time, so a handshake costs
no system call; the pool is dropped in a forked child
(:func:`os.register_at_fork`), so a worker process never hands out an id its
parent or a sibling already drew from the same pool.
"""

from __future__ import annotations

import os
import threading

__all__ = ["new_id", "BATCH"]

BATCH = 256

_lock = threading.Lock()
_pool = b""
_pos = 0


def _forget_pool() -> None:
    global _pool, _pos, _lock
    _pool, _pos = b"", 0
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def new_id() -> str:
    """A uuid4 string: 122 random bits, version 4, variant 10, built
    without a :class:`uuid.UUID` object. Safe from any thread."""
    global _pool, _pos
    with _lock:
        if _pos >= len(_pool):
            _pool = os.urandom(16 * BATCH)
            _pos = 0
        raw = bytearray(_pool[_pos : _pos + 16])
        _pos += 16
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
