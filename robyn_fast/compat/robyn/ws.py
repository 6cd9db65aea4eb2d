"""``robyn.ws``: the legacy ``WebSocket`` endpoint class."""

from robyn_fast.compat import module_getattr
from robyn_fast.websocket.endpoint import WebSocket

__all__ = ["WebSocket"]

__getattr__ = module_getattr("robyn.ws")
