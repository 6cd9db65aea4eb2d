"""robyn_fast: a fast, RFC 6455-correct WebSocket + HTTP server with a
compiled core, speaking Robyn's WebSocket API."""

from __future__ import annotations

from .codec import implementation
from .exceptions import (
    InvalidPayloadData,
    InvalidState,
    MessageTooBig,
    ProtocolError,
    RobynFastError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "implementation",
    "RobynFastError",
    "ProtocolError",
    "MessageTooBig",
    "InvalidPayloadData",
    "InvalidState",
]
