"""robyn_fast: a fast, RFC 6455-correct WebSocket + HTTP server with a
compiled core, speaking Robyn's WebSocket API."""

from __future__ import annotations

try:  # The server runs on the compiled core only; say so once, with the fix.
    from ._core import codec as _codec, connection as _connection  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised by tests/test_implementation.py in a subprocess
    raise ImportError(
        "robyn_fast: the compiled core (robyn_fast._core.codec and robyn_fast._core.connection) is not built "
        f"or does not load ({_exc}). Install the package with `pip install .` (or `make install` in a "
        "checkout), which compiles it with Cython and a C compiler."
    ) from None

from .app import Robyn
from .codec import implementation
from .config import Config
from .exceptions import (
    InvalidPayloadData,
    InvalidState,
    MessageTooBig,
    ProtocolError,
    RobynFastError,
    WebSocketDisconnect,
)
from .http.types import Headers, QueryParams, Request, Response, jsonify
from .websocket.endpoint import WebSocket, WebSocketConnector
from .websocket.receive import WebSocketAdapter
from .subrouter import SubRouter

from .version import __version__

__all__ = [
    "__version__",
    "Robyn",
    "SubRouter",
    "WebSocket",
    "WebSocketConnector",
    "WebSocketAdapter",
    "WebSocketDisconnect",
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
