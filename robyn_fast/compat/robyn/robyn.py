"""``robyn.robyn``: the request/response types and the WebSocket connector.

In Robyn these come from its Rust extension; here they are robyn_fast's
pure-Python equivalents, with the same methods.
"""

from robyn_fast.compat import module_getattr
from robyn_fast.http.params import Identity
from robyn_fast.http.types import Headers, QueryParams, Request, Response, Url
from robyn_fast.websocket.endpoint import WebSocketConnector

__all__ = ["QueryParams", "Request", "Response", "Headers", "Url", "WebSocketConnector", "Identity"]

__getattr__ = module_getattr("robyn.robyn")
