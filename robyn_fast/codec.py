"""The WebSocket frame codec (RFC 6455, sans-I/O): the compiled one, which the
server uses.

``robyn_fast._reference.codec`` is its pure-Python twin with the same API,
kept as the oracle the tests compare the compiled codec with; the server never
runs on it (``import robyn_fast`` fails at once, naming the fix, when the
compiled core is missing).
"""

from __future__ import annotations

from typing import Literal

from ._core import codec as _impl

Implementation = Literal["compiled"]

OP_CONT: int = _impl.OP_CONT
OP_TEXT: int = _impl.OP_TEXT
OP_BINARY: int = _impl.OP_BINARY
OP_CLOSE: int = _impl.OP_CLOSE
OP_PING: int = _impl.OP_PING
OP_PONG: int = _impl.OP_PONG
RSV1: int = _impl.RSV1
RSV2: int = _impl.RSV2
RSV3: int = _impl.RSV3
DEFAULT_MAX_MESSAGE_SIZE: int = _impl.DEFAULT_MAX_MESSAGE_SIZE

Message = _impl.Message
FrameParser = _impl.FrameParser
apply_mask = _impl.apply_mask
validate_utf8 = _impl.validate_utf8
is_valid_close_code = _impl.is_valid_close_code
build_frame = _impl.build_frame
build_text = _impl.build_text
build_binary = _impl.build_binary
build_message = _impl.build_message
build_ping = _impl.build_ping
build_pong = _impl.build_pong
build_close = _impl.build_close
Inflater = _impl.Inflater
Deflater = _impl.Deflater


def implementation() -> Implementation:
    """``"compiled"``: the codec this process uses (kept for callers that
    checked it when a pure-Python fallback existed)."""
    return "compiled"


__all__ = [
    "Implementation",
    "implementation",
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "RSV1",
    "RSV2",
    "RSV3",
    "Inflater",
    "Deflater",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Message",
    "FrameParser",
    "apply_mask",
    "validate_utf8",
    "is_valid_close_code",
    "build_frame",
    "build_text",
    "build_binary",
    "build_message",
    "build_ping",
    "build_pong",
    "build_close",
]
