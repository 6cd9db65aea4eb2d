"""Run apps written against Robyn's legacy API (Robyn <= 0.77) unchanged.

:func:`install` puts a finder at the front of :data:`sys.meta_path` that
answers every import of ``robyn`` and ``robyn.<module>`` with the shim in
``robyn_fast/compat/robyn/``: ``from robyn import Robyn, WebSocket`` then
gives robyn_fast's classes, whether or not the real Robyn is installed.

A name that Robyn 0.77 has and robyn_fast does not (``robyn.MCPApp``,
``import robyn.mcp``, ``app.view``...) raises an error that
names it and says robyn_fast does not support it, at the line that uses it:
:class:`UnsupportedRobynFeature` (an ``ImportError``) for ``from robyn import
X``, :class:`UnsupportedRobynModule` (a ``ModuleNotFoundError``) for a module,
:class:`UnsupportedRobynMethod` (an ``AttributeError``) for a method of the
app. Nothing in the shim reads ``sys.argv``: Robyn's command-line flags
(``--processes``, ``--dev``...) are left to the script.

``python -m robyn_fast app.py [args...]`` calls :func:`install` and runs the
script as ``__main__``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from ..exceptions import InvalidState, RobynFastError

__all__ = [
    "install",
    "uninstall",
    "installed",
    "UnsupportedRobynFeature",
    "UnsupportedRobynModule",
    "UnsupportedRobynMethod",
    "SUPPORTED_MODULES",
    "UNSUPPORTED_MODULES",
    "UNSUPPORTED_NAMES",
    "UNSUPPORTED_APP_METHODS",
]

_SHIM_DIR = str(Path(__file__).resolve().parent)
_SHIM_PACKAGE_DIR = str(Path(_SHIM_DIR) / "robyn")

#: The ``robyn`` modules the shim provides.
SUPPORTED_MODULES = (
    "robyn",
    "robyn.robyn",
    "robyn.ws",
    "robyn.dependency_injection",
    "robyn.status_codes",
    "robyn.types",
    "robyn.jsonify",
    "robyn.authentication",
    "robyn.events",
    "robyn.responses",
    "robyn.templating",
    "robyn.openapi",
    "robyn.exceptions",
    "robyn.session",
    "robyn.testing",
)

#: Robyn 0.77 modules the shim does not provide, with what they are for.
UNSUPPORTED_MODULES: dict[str, str] = {
    "robyn.router": "Robyn's internal routers",
    "robyn.argument_parser": "Robyn's command-line configuration",
    "robyn.cli": "Robyn's command-line interface",
    "robyn.processpool": "multi-process serving",
    "robyn.reloader": "the dev-mode reloader",
    "robyn.env_populator": "robyn.env files",
    "robyn.logger": "Robyn's logger",
    "robyn.mcp": "MCP apps",
    "robyn.ai": "AI agents",
    "robyn.scaffold": "project scaffolding",
}

#: Names of Robyn 0.77 modules that the shim's modules do not provide, by module.
UNSUPPORTED_NAMES: dict[str, dict[str, str]] = {
    "robyn": {
        "MCPApp": "MCP apps",
        "Config": "Robyn's command-line configuration (robyn_fast.Config holds the server limits)",
        "config": "Robyn's command-line configuration",
        "logger": "Robyn's logger",
        "Colors": "Robyn's logger",
        "Router": "Robyn's internal routers",
        "MiddlewareRouter": "Robyn's internal routers",
        "MiddlewareType": "Robyn's internal middleware records",
        "WebSocketRouter": "Robyn's internal routers",
        "BaseRobyn": "Robyn's internal base class",
        "FunctionInfo": "Robyn's internal handler records",
        "HttpMethod": "Robyn's internal method enum",
        "Directory": "static directories",
        "run_processes": "multi-process serving",
        "compile_rust_files": "Rust handlers",
        "load_vars": "robyn.env files",
        "get_version": "Robyn's version query",
    },
    "robyn.robyn": {
        "Cookie": "cookies",
        "Cookies": "cookies",
        "CookiesIter": "cookies",
        "FunctionInfo": "Robyn's internal handler records",
        "HttpMethod": "Robyn's internal method enum",
        "MiddlewareType": "Robyn's internal middleware records",
        "Server": "Robyn's Rust server object",
        "SocketHeld": "Robyn's Rust socket object",
        "get_version": "Robyn's version query",
    },
    "robyn.ws": {"create_websocket_decorator": "Robyn's internal decorator factory (use app.websocket)"},
    "robyn.dependency_injection": {},
    "robyn.status_codes": {},
    "robyn.types": {"Directory": "static directories"},
    "robyn.jsonify": {},
    "robyn.authentication": {},
    "robyn.events": {},
    "robyn.responses": {},
    "robyn.templating": {},
    "robyn.openapi": {},
    "robyn.exceptions": {},
    "robyn.session": {},
    "robyn.testing": {},
}

#: Methods of Robyn's ``Robyn`` app that robyn_fast's does not have.
UNSUPPORTED_APP_METHODS: dict[str, str] = {
    "mcp": "MCP apps",
    "view": "class-based views",
    "is_port_in_use": "Robyn's port check",
}


class UnsupportedRobynFeature(RobynFastError, ImportError):
    """A name of Robyn's API that robyn_fast does not implement.

    ``feature`` is the dotted Robyn name (``"robyn.SubRouter"``) and
    ``what`` what it is for.
    """

    def __init__(self, feature: str, what: str, *, name: str | None = None) -> None:
        super().__init__(f"robyn_fast does not support {feature} ({what})", name=name)
        self.feature: str = feature
        self.what: str = what


class UnsupportedRobynModule(UnsupportedRobynFeature, ModuleNotFoundError):
    """A ``robyn`` module that the shim does not provide."""


class UnsupportedRobynMethod(RobynFastError, AttributeError):
    """A method of Robyn's app object that robyn_fast's app does not have."""

    def __init__(self, feature: str, what: str) -> None:
        super().__init__(f"robyn_fast does not support {feature} ({what})")
        self.feature: str = feature
        self.what: str = what


def module_getattr(module: str) -> Callable[[str], NoReturn]:
    """A module-level ``__getattr__`` for the shim module ``module``: raises
    :class:`UnsupportedRobynFeature` for a Robyn name the shim lacks, and
    ``AttributeError`` for any other missing name (so ``hasattr``, ``getattr``
    with a default and the import system's dunder lookups behave)."""
    unsupported = UNSUPPORTED_NAMES.get(module, {})

    def __getattr__(name: str) -> NoReturn:
        what = unsupported.get(name)
        if what is not None:
            raise UnsupportedRobynFeature(f"{module}.{name}", what, name=module)
        raise AttributeError(f"module {module!r} has no attribute {name!r}", name=name)

    return __getattr__


class _RobynFinder(importlib.abc.MetaPathFinder):
    """Answers ``robyn`` and ``robyn.*`` with the files of the shim package,
    loaded under Robyn's names (so ``robyn.__name__ == "robyn"``)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname == "robyn":
            search = [_SHIM_DIR]
        elif fullname.startswith("robyn."):
            search = [_SHIM_PACKAGE_DIR]
        else:
            return None
        if fullname not in SUPPORTED_MODULES:
            what = UNSUPPORTED_MODULES.get(fullname)
            if what is not None:
                raise UnsupportedRobynModule(fullname, what, name=fullname)
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (robyn_fast's robyn shim provides "
                f"{', '.join(SUPPORTED_MODULES)})",
                name=fullname,
            )
        return importlib.machinery.PathFinder.find_spec(fullname, search)


_finder: _RobynFinder | None = None


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _finder is not None and _finder in sys.meta_path


def _robyn_modules() -> list[str]:
    return [name for name in sys.modules if name == "robyn" or name.startswith("robyn.")]


def install() -> None:
    """Make ``import robyn`` (and every ``robyn.*`` import) resolve to the shim.

    Idempotent. Raises :class:`~robyn_fast.exceptions.InvalidState` if the
    real Robyn was imported already, as objects taken from it would keep
    pointing at it.
    """
    global _finder
    if installed():
        return
    loaded = _robyn_modules()
    if loaded:
        raise InvalidState(
            f"the robyn package is already imported ({', '.join(sorted(loaded))}); "
            "call robyn_fast.compat.install() before anything imports robyn"
        )
    _finder = _RobynFinder()
    sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Undo :func:`install`: remove the finder and forget the shim's
    ``robyn`` modules (objects already taken from them keep working)."""
    global _finder
    if _finder is not None:
        try:
            sys.meta_path.remove(_finder)
        except ValueError:
            pass
        _finder = None
    for name in _robyn_modules():
        del sys.modules[name]
