"""``robyn.ws``: the legacy ``WebSocket`` endpoint class and the receive-loop
API's ``WebSocketAdapter`` and ``WebSocketDisconnect`` (Robyn 0.78+)."""

from robyn_fast.compat import module_getattr
from robyn_fast.exceptions import WebSocketDisconnect
from robyn_fast.websocket.endpoint import WebSocket
from robyn_fast.websocket.receive import WebSocketAdapter

__all__ = ["WebSocket", "WebSocketAdapter", "WebSocketDisconnect"]

__getattr__ = module_getattr("robyn.ws")
