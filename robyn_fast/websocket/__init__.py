"""The WebSocket side: the opening handshake (sans-I/O), endpoints with Robyn's
API and the connector handlers receive, connection ids. Frames and the
per-connection machinery are the compiled core's (``robyn_fast._core``)."""

from .endpoint import EVENTS, WebSocket, WebSocketConnector

__all__ = ["WebSocket", "WebSocketConnector", "EVENTS"]
