"""The WebSocket frame codec, compiled or reference: this is the one place that
decides which.

The compiled codec (``robyn_fast._core.codec``) is used by default. Setting
``ROBYN_FAST_NO_EXTENSIONS=1`` in the environment before the first import
forces the pure-Python reference (``robyn_fast._reference.codec``). If the
compiled module cannot be imported (a broken build), the reference is used and
a ``RuntimeWarning`` says so. :func:`implementation` tells which one is active.
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

Implementation = Literal["compiled", "reference"]

_FORCE_REFERENCE = os.environ.get("ROBYN_FAST_NO_EXTENSIONS", "") not in ("", "0")

if _FORCE_REFERENCE:
    from ._reference import codec as _impl

    _ACTIVE: Implementation = "reference"
else:
    try:
        from ._core import codec as _impl  # type: ignore[no-redef]

        _ACTIVE = "compiled"
    except ImportError as exc:  # pragma: no cover - only on a broken install
        warnings.warn(
            f"robyn_fast: compiled codec unavailable ({exc}); using the slow pure-Python reference",
            RuntimeWarning,
            stacklevel=2,
        )
        from ._reference import codec as _impl

        _ACTIVE = "reference"

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


def implementation() -> Implementation:
    """``"compiled"`` or ``"reference"``: which codec this process uses."""
    return _ACTIVE


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
