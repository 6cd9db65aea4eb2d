"""Handler parameter binding, written once for HTTP routes and WebSocket events.

A handler's signature is read when it is registered; each parameter gets a
*source* (what the handler receives there), decided by the caller's rules.
From the sources one plain function is compiled, taking the core's calling
convention (``(request)`` for HTTP, ``(connector)`` or ``(connector,
message)`` for WebSocket events): each call is then a single call of the
handler with its arguments written out, no loop over getters and no
dictionary built per call. When the sources are exactly the calling
convention, the handler itself is returned and called directly.

Injected dependencies stay live, as Robyn's are: the dictionaries that hold
them are resolved at registration, and the name is looked up in them, in
order of precedence, at each call (a dependency injected again after
decoration is seen; one that disappeared raises ``LookupError``).
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Arg", "Attr", "Item", "Call", "Dependency", "Source", "bind_parameters"]


class Arg:
    """The ``index``-th argument of the calling convention."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class Attr:
    """Attribute ``name`` of the ``index``-th argument (``request.headers``)."""

    __slots__ = ("index", "name")

    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name


class Item:
    """``args[index].attr[key]`` (a path parameter: ``request.path_params["id"]``)."""

    __slots__ = ("index", "attr", "key")

    def __init__(self, index: int, attr: str, key: str) -> None:
        self.index, self.attr, self.key = index, attr, key


class Call:
    """``fn(*args)``: computed at each call (merged dependency dicts, a
    connector's lazily parsed query)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn


class Dependency:
    """Injected dependency ``name``, looked up at each call in ``maps`` (live
    dicts, highest precedence first)."""

    __slots__ = ("name", "maps")

    def __init__(self, name: str, maps: Sequence[dict[str, Any]]) -> None:
        self.name, self.maps = name, tuple(maps)


Source = Arg | Attr | Item | Call | Dependency


def _missing(name: str) -> Any:
    raise LookupError(f"dependency {name!r} is no longer injected")


def bind_parameters(
    handler: Callable[..., Any],
    arity: int,
    sources: Sequence[tuple[inspect.Parameter, Source]],
    *,
    convention_defaults: int = 0,
) -> Callable[..., Any]:
    """One function of ``arity`` arguments that calls ``handler`` with each
    parameter in ``sources`` (the parameters not listed keep their defaults).

    ``convention_defaults``: how many of the last arguments may be left out by
    the caller (they are then None), as the core calls a connect or close
    handler with the connector alone."""
    direct = len(sources) == arity and all(
        isinstance(src, Arg) and src.index == i and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for i, (p, src) in enumerate(sources)
    )
    if direct:
        return handler
    names = [f"a{i}" for i in range(arity)]
    env: dict[str, Any] = {"__name__": __name__, "_handler": handler, "_missing": _missing}
    args: list[str] = []
    for n, (p, src) in enumerate(sources):
        if isinstance(src, Arg):
            expr = names[src.index]
        elif isinstance(src, Attr):
            expr = f"{names[src.index]}.{src.name}"
        elif isinstance(src, Item):
            env[f"_k{n}"] = src.key
            expr = f"{names[src.index]}.{src.attr}[_k{n}]"
        elif isinstance(src, Call):
            env[f"_f{n}"] = src.fn
            expr = f"_f{n}({', '.join(names)})"
        else:
            env[f"_k{n}"] = src.name
            expr = f"_missing(_k{n})"
            for m, mapping in reversed(list(enumerate(src.maps))):
                env[f"_d{n}_{m}"] = mapping
                expr = f"(_d{n}_{m}[_k{n}] if _k{n} in _d{n}_{m} else {expr})"
        if p.kind is p.POSITIONAL_ONLY:
            args.append(expr)
        elif p.name.isidentifier() and not keyword.iskeyword(p.name):
            args.append(f"{p.name}={expr}")
        else:  # not expressible as a keyword in source: pass it through a dict
            env[f"_n{n}"] = p.name
            args.append(f"**{{_n{n}: {expr}}}")
    params = ", ".join(
        name if i < arity - convention_defaults else f"{name}=None" for i, name in enumerate(names)
    )
    source = f"def bound({params}):\n    return _handler({', '.join(args)})\n"
    exec(compile(source, f"<binding of {getattr(handler, '__qualname__', handler)!r}>", "exec"), env)  # noqa: S102
    bound: Callable[..., Any] = env["bound"]
    return bound
