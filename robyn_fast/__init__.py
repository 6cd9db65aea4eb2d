"""robyn_fast: a fast, RFC 6455-correct WebSocket + HTTP server with a
compiled core, speaking Robyn's WebSocket API."""

from __future__ import annotations


def _map_the_checkouts_core() -> None:
    """In a source checkout the compiled core sits in the top-level ``_core/``,
    which setup.py installs as ``robyn_fast._core`` (``package_dir``); an
    installed package (wheel, editable link tree, the fuzz build's copy) has
    ``robyn_fast/_core/`` itself and nothing is done. From a checkout the same
    mapping is made here, for that one subpackage, so that the tests and
    ``python -m robyn_fast`` run from the source tree without a link in it."""
    import os
    import sys
    from importlib.util import module_from_spec, spec_from_file_location

    here = os.path.dirname(os.path.abspath(__file__))
    core = os.path.join(os.path.dirname(here), "_core")
    name = f"{__name__}._core"
    if name in sys.modules or os.path.isdir(os.path.join(here, "_core")):
        return
    if not (os.path.isfile(os.path.join(core, "__init__.py")) and os.path.isfile(os.path.join(core, "codec.pyx"))):
        return  # not a checkout of robyn_fast: the import below fails with its message
    spec = spec_from_file_location(name, os.path.join(core, "__init__.py"), submodule_search_locations=[core])
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        return
    module = module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[__name__], "_core", module)  # as the import system does for a subpackage it finds


_map_the_checkouts_core()

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
