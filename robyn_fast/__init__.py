"""robyn_fast: a fast, RFC 6455-correct WebSocket + HTTP server with a
compiled core, speaking Robyn's WebSocket API."""

from __future__ import annotations

from .app import Robyn
from .codec import implementation
from .config import Config
from .exceptions import (
    InvalidPayloadData,
    InvalidState,
    MessageTooBig,
    ProtocolError,
    RobynFastError,
)
from .http_types import Headers, QueryParams, Request, Response, jsonify
from .ws import WebSocket, WebSocketConnector

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Robyn",
    "WebSocket",
    "WebSocketConnector",
    "Config",
    "Request",
    "Response",
    "Headers",
    "QueryParams",
    "jsonify",
    "implementation",
    "RobynFastError",
    "ProtocolError",
    "MessageTooBig",
    "InvalidPayloadData",
    "InvalidState",
]
