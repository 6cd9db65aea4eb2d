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

A parameter that is none of those is a *typed parameter* (Robyn 0.80's
"easy access" parameters): a query parameter (or a path parameter of that
name) whose text :func:`converter` turns into the annotation's type, once
per call.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import keyword
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union

__all__ = ["Arg", "Attr", "Item", "Call", "Dependency", "Source", "bind_parameters", "Converter", "converter",
           "to_bool", "CONVERTIBLE"]


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


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def to_bool(value: str) -> bool:
    """``true``/``1``/``yes``/``on`` and ``false``/``0``/``no``/``off``/empty,
    in any case (Robyn's rule); ``ValueError`` for anything else."""
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


_SCALARS: dict[Any, Callable[[str], Any]] = {
    str: str, int: int, float: float, bool: to_bool, decimal.Decimal: decimal.Decimal, uuid.UUID: uuid.UUID,
    datetime.datetime: datetime.datetime.fromisoformat, datetime.date: datetime.date.fromisoformat,
    datetime.time: datetime.time.fromisoformat,
}

#: What a typed parameter may be annotated with, for error messages.
CONVERTIBLE = ("str, int, float, bool, Decimal, UUID, datetime, date, time or an Enum, optionally | None, or a "
               "list of one of them")


class Converter(NamedTuple):
    """How the text of a typed parameter becomes its value."""

    convert: Callable[[str], Any]  # text -> value; ValueError (or TypeError) for text that is not one
    type_name: str  # for messages: "int"
    many: bool  # list[T]: every value of a repeated query parameter
    optional: bool  # T | None: None when absent (and no default)


def _scalar(annotation: Any) -> tuple[Callable[[str], Any], str] | None:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return str, "str"
    try:
        conv = _SCALARS.get(annotation)
    except TypeError:  # unhashable annotation
        return None
    if conv is not None:
        return conv, annotation.__name__
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return annotation, annotation.__name__
    return None


def converter(annotation: Any) -> Converter | None:
    """The :class:`Converter` of a parameter annotated ``annotation`` (no
    annotation: ``str``), or None when its text cannot become one (see
    :data:`CONVERTIBLE`)."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin is Union or type(annotation).__name__ == "UnionType":
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(rest) == len(args):
            return None
        annotation, optional = rest[0], True
        origin = typing.get_origin(annotation)
    if origin is list or annotation is list:
        args = typing.get_args(annotation)
        found = _scalar(args[0] if args else str)
        return None if found is None else Converter(found[0], found[1], True, optional)
    found = _scalar(annotation)
    return None if found is None else Converter(found[0], found[1], False, optional)
