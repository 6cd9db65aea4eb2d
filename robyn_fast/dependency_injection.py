"""Dependency injection, with Robyn's ``DependencyMap`` API.

Global dependencies reach every handler of an app; router dependencies belong
to one router (the app itself for ``app.inject``, one WebSocket endpoint for
``ws.inject``). Handlers receive them through parameters named
``global_dependencies`` / ``router_dependencies`` (dicts, as in Robyn) or
through a parameter named like one dependency. Values are looked up when the
handler is called, so injections made after a handler was decorated are
visible to it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DependencyMap"]


class DependencyMap:
    """Global and per-router dependencies (Robyn's ``DependencyMap``).

    Unlike Robyn's legacy ``WebSocket``, nothing here is a shared default:
    each app owns one map, and a WebSocket endpoint uses its app's map unless
    given its own.
    """

    def __init__(self) -> None:
        self.global_dependency_map: dict[str, Any] = {}
        self.router_dependency_map: dict[Any, dict[str, Any]] = {}

    def add_router_dependency(self, router: Any, **kwargs: Any) -> None:
        """Add dependencies visible to ``router``'s handlers only."""
        self.router_dependency_map.setdefault(router, {}).update(kwargs)

    def add_global_dependency(self, **kwargs: Any) -> None:
        """Add dependencies visible to every handler."""
        self.global_dependency_map.update(kwargs)

    def get_router_dependencies(self, router: Any) -> dict[str, Any]:
        """The dependencies of ``router`` (a live dict; empty if none)."""
        return self.router_dependency_map.setdefault(router, {})

    def get_global_dependencies(self) -> dict[str, Any]:
        """The global dependencies (a live dict)."""
        return self.global_dependency_map

    def share_router(self, router: Any, source: DependencyMap) -> None:
        """Make ``router``'s dependencies here the very dict ``source`` keeps
        for it (an included sub-router keeps its own, live)."""
        self.router_dependency_map[router] = source.get_router_dependencies(router)

    def merge_dependencies(self, target_router: Any) -> None:
        """Copy global dependencies into ``target_router.dependencies`` where
        it has none of that name (as Robyn does when including a router)."""
        target = target_router.dependencies.get_global_dependencies()
        for key, value in self.global_dependency_map.items():
            target.setdefault(key, value)

    def get_dependency_map(self, router: Any) -> dict[str, dict[str, Any]]:
        return {
            "global_dependencies": self.get_global_dependencies(),
            "router_dependencies": self.get_router_dependencies(router),
        }

    def __repr__(self) -> str:
        return (
            f"DependencyMap(global={sorted(self.global_dependency_map)}, "
            f"routers={len(self.router_dependency_map)})"
        )
