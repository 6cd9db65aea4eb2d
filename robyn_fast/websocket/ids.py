"""Connection ids: UUID text (``8-4-4-4-12`` lowercase hex, what ``uuid.UUID()``
parses) from the OS CSPRNG.

In a single process an id is a uuid4 (RFC 9562 §5.4: 122 random bits). In a
worker of a multi-process server it carries its owner: the first 32 bits are
the worker's *node tag* (:func:`set_node_tag`), the version nibble is 8
(RFC 9562 §5.8, vendor-specific layout) and the remaining 90 bits are random,
so ``send_to(id)`` can route to the one worker that owns the id
(:func:`node_of`) without asking anyone.

The random bytes are fetched :data:`BATCH` ids at a time, so a handshake
costs no system call; the pool and the tag are dropped in a forked child
(:func:`os.register_at_fork`), so a worker never hands out an id its parent
or a sibling already drew from the same pool.
"""

from __future__ import annotations

import os
import threading

__all__ = ["new_id", "node_of", "set_node_tag", "node_tag", "BATCH"]

BATCH = 256

_lock = threading.Lock()
_pool = b""
_pos = 0
_tag: bytes | None = None  # 4 bytes of node tag, or None: plain uuid4


def _forget_pool() -> None:
    global _pool, _pos, _lock, _tag
    _pool, _pos, _tag = b"", 0, None
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def set_node_tag(tag: int | None) -> None:
    """Make this process's ids carry ``tag`` (a 32-bit node tag, not 0), or
    plain uuid4 ids again with None."""
    global _tag
    if tag is None:
        _tag = None
        return
    if type(tag) is not int or not 0 < tag < 1 << 32:
        raise ValueError(f"a node tag is an int in 1..2**32-1, got {tag!r}")
    _tag = tag.to_bytes(4, "big")


def node_tag() -> int | None:
    """This process's node tag, or None when ids are plain uuid4."""
    return None if _tag is None else int.from_bytes(_tag, "big")


def new_id() -> str:
    """A new connection id (see the module docstring). Safe from any thread."""
    global _pool, _pos
    with _lock:
        if _pos >= len(_pool):
            _pool = os.urandom(16 * BATCH)
            _pos = 0
        raw = bytearray(_pool[_pos : _pos + 16])
        _pos += 16
    tag = _tag
    if tag is None:
        raw[6] = (raw[6] & 0x0F) | 0x40
    else:
        raw[0:4] = tag
        raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def node_of(conn_id: str) -> int | None:
    """The node tag a worker's id carries, or None for any other string (a
    uuid4, a malformed id)."""
    if len(conn_id) != 36 or conn_id[8] != "-" or conn_id[14] != "8":
        return None
    try:
        return int(conn_id[:8], 16) or None
    except ValueError:
        return None
