"""HTTP route table: method + path pattern -> handler, with path parameters.

Pattern syntax (Robyn's, plus the Flask style):

- ``/users/:id`` or ``/users/<id>``: a parameter takes one whole, non-empty
  segment; names are Python identifiers and unique within a pattern.
- ``/static/*path``: a catch-all, last segment only, takes the rest of the
  path (one segment or more), ``/``-joined. Robyn's router (matchit) has it.
- anything else is a literal segment, matched exactly (case-sensitive) after
  percent-decoding the request path.

Matching rules:

- Trailing slash does not matter: ``/a`` and ``/a/`` are the same route, as
  Robyn registers both forms (sparckles/Robyn#819); registering both is a
  duplicate. Only one trailing slash is ignored, and ``/`` stays ``/``.
- Every method has its own table, as in Robyn, so ``POST /users/me`` finds
  ``POST /users/:id`` even when ``GET /users/me`` exists.
- Within a method, at each segment a literal beats a parameter, which beats
  a catch-all; when a branch leads nowhere the next one is tried.
- The request path is split on ``/`` first and each segment percent-decoded
  afterwards (UTF-8, invalid bytes become U+FFFD, malformed escapes stay as
  they are; ``+`` is not a space in a path). So ``%2F`` stays inside its
  segment: ``/files/a%2Fb`` gives ``name == "a/b"`` for ``/files/<name>``.
  Patterns are written decoded (``/café``), and the path may arrive
  percent-encoded (``/caf%C3%A9``) or as already-decoded text.
- A path without a leading ``/`` (``*``, absolute form) matches nothing.

Cost: a path with no parameter routes and no ``%`` is one ``dict`` lookup;
otherwise a walk of a segment trie doing one ``dict`` lookup per segment,
visiting each trie node at most once (linear in the number of segments for
any realistic table, never worse than the size of the trie).
"""

from __future__ import annotations

import enum
import re
from typing import Generic, NamedTuple, TypeVar, Union
from urllib.parse import unquote

from ..exceptions import (
    ArgumentTypeError,
    DuplicateRoute,
    InvalidRoute,
    MethodNotAllowed,
    NotFound,
)

__all__ = ["Router", "compile_path", "PathPattern", "Segment", "join_prefix"]

H = TypeVar("H")


class Segment(enum.Enum):
    """Non-literal segments of a :class:`PathPattern` key."""

    PARAM = "param"
    CATCH_ALL = "catch_all"


#: A compiled pattern segment: the literal text, or a :class:`Segment` marker.
SegmentKey = Union[str, Segment]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _normalize(path: str) -> str:
    if len(path) > 1 and path.endswith("/"):
        return path[:-1]
    return path


class PathPattern(NamedTuple):
    """A compiled route pattern: what :func:`compile_path` returns.

    ``key`` has one item per segment: the literal text, ``Segment.PARAM``
    or ``Segment.CATCH_ALL``; two patterns with the same ``key`` match the
    same paths (``/a/<x>`` and ``/a/:y`` do), which is how duplicates are
    found. ``param_names`` are the parameter names in order. The root
    ``/`` has the key ``()``.
    """

    key: tuple[SegmentKey, ...]
    param_names: tuple[str, ...]

    @property
    def is_literal(self) -> bool:
        """Whether the pattern has no parameter at all."""
        return not self.param_names

    @property
    def path(self) -> str:
        """The normalised pattern text, parameters written ``<name>``/``*name``."""
        names = iter(self.param_names)
        parts: list[str] = []
        for seg in self.key:
            if seg is Segment.PARAM:
                parts.append(f"<{next(names)}>")
            elif seg is Segment.CATCH_ALL:
                parts.append(f"*{next(names)}")
            else:
                parts.append(seg)
        return "/" + "/".join(parts)

    def match(self, path: str) -> dict[str, str] | None:
        """The decoded parameters if ``path`` matches this one pattern, else ``None``.

        Same rules as :meth:`Router.match`; for a registry of a few
        patterns (WebSocket endpoints). Use a :class:`Router` for many.
        """
        segments = _split(path)
        if segments is None:
            return None
        key = self.key
        catch_all = bool(key) and key[-1] is Segment.CATCH_ALL
        if catch_all:
            if len(segments) < len(key):
                return None
        elif len(segments) != len(key):
            return None
        values: list[str] = []
        for i, seg in enumerate(key):
            if seg is Segment.CATCH_ALL:
                rest = "/".join(segments[i:])
                if not rest:
                    return None
                values.append(rest)
                break
            text = segments[i]
            if seg is Segment.PARAM:
                if not text:
                    return None
                values.append(text)
            elif seg != text:
                return None
        return dict(zip(self.param_names, values))


def compile_path(path: str) -> PathPattern:
    """Parse a route pattern into a :class:`PathPattern`.

    Raises :class:`~robyn_fast.exceptions.InvalidRoute` (a ``ValueError``)
    for a pattern that does not start with ``/``, holds ``?`` or ``#``, has
    an empty segment (``/a//b``), a malformed parameter (``<>``, ``<1x>``,
    ``<a``, ``:``, a partial segment such as ``a<b>``), a repeated
    parameter name, or a catch-all before the last segment.
    """
    if not isinstance(path, str):
        raise ArgumentTypeError(f"route path must be str, not {type(path).__name__}")
    if not path.startswith("/"):
        raise InvalidRoute(f"route path {path!r} must start with '/'")
    if "?" in path or "#" in path:
        raise InvalidRoute(f"route path {path!r} must not contain '?' or '#'")
    if "//" in path:
        raise InvalidRoute(f"route path {path!r} has an empty segment")
    norm = _normalize(path)
    if norm == "/":
        return PathPattern((), ())
    raw = norm[1:].split("/")
    key: list[SegmentKey] = []
    names: list[str] = []
    for i, seg in enumerate(raw):
        if not seg:
            raise InvalidRoute(f"route path {path!r} has an empty segment")
        name: str | None = None
        kind = Segment.PARAM
        if seg.startswith("<") or seg.endswith(">"):
            if not (seg.startswith("<") and seg.endswith(">")):
                raise InvalidRoute(f"route path {path!r}: malformed parameter {seg!r}")
            name = seg[1:-1]
        elif seg.startswith(":"):
            name = seg[1:]
        elif seg.startswith("*"):
            name = seg[1:]
            kind = Segment.CATCH_ALL
            if i != len(raw) - 1:
                raise InvalidRoute(
                    f"route path {path!r}: catch-all {seg!r} must be the last segment"
                )
        elif "<" in seg or ">" in seg:
            raise InvalidRoute(
                f"route path {path!r}: a parameter must be a whole segment, got {seg!r}"
            )
        if name is None:
            key.append(seg)
            continue
        if not _IDENT.match(name):
            raise InvalidRoute(
                f"route path {path!r}: parameter name {name!r} must be an identifier"
            )
        if name in names:
            raise InvalidRoute(f"route path {path!r}: parameter {name!r} appears twice")
        names.append(name)
        key.append(kind)
    return PathPattern(tuple(key), tuple(names))


def _split(path: str) -> list[str] | None:
    """Decoded segments of a request path, or ``None`` if it cannot match."""
    if not path.startswith("/"):
        return None
    norm = _normalize(path)
    if norm == "/":
        return []
    segments = norm[1:].split("/")
    if "%" in norm:
        segments = [unquote(s) if "%" in s else s for s in segments]
    return segments


class _Node(Generic[H]):
    __slots__ = ("literal", "param", "catch_all", "route")

    def __init__(self) -> None:
        self.literal: dict[str, _Node[H]] = {}
        self.param: _Node[H] | None = None
        self.catch_all: tuple[H, tuple[str, ...]] | None = None
        self.route: tuple[H, tuple[str, ...]] | None = None

    def find(
        self, segments: list[str], i: int, values: list[str]
    ) -> tuple[H, tuple[str, ...]] | None:
        # Depth-first: literal, then parameter, then catch-all. A node sits at
        # one depth only, so each is visited at most once per lookup.
        if i == len(segments):
            return self.route
        seg = segments[i]
        child = self.literal.get(seg)
        if child is not None:
            found = child.find(segments, i + 1, values)
            if found is not None:
                return found
        if self.param is not None and seg:
            values.append(seg)
            found = self.param.find(segments, i + 1, values)
            if found is not None:
                return found
            values.pop()
        if self.catch_all is not None:
            rest = "/".join(segments[i:])
            if rest:
                values.append(rest)
                return self.catch_all
        return None


class _Table(Generic[H]):
    __slots__ = ("literal", "root", "dynamic")

    def __init__(self) -> None:
        self.literal: dict[str, H] = {}
        self.root: _Node[H] = _Node()
        self.dynamic = False

    def lookup(self, path: str) -> tuple[H, dict[str, str]] | None:
        if not path.startswith("/"):
            return None
        norm = _normalize(path)
        if "%" not in norm:
            handler = self.literal.get(norm)
            if handler is not None:
                return handler, {}
            if not self.dynamic:
                return None
            segments = [] if norm == "/" else norm[1:].split("/")
        else:
            segments = [] if norm == "/" else [unquote(s) for s in norm[1:].split("/")]
            # A decoded '/' keeps its segment from matching any literal route.
            if not any("/" in s for s in segments):
                handler = self.literal.get("/" + "/".join(segments))
                if handler is not None:
                    return handler, {}
            if not self.dynamic:
                return None
        values: list[str] = []
        found = self.root.find(segments, 0, values)
        if found is None:
            return None
        handler, names = found
        return handler, dict(zip(names, values))


class Router(Generic[H]):
    """Routes per HTTP method; see the module docstring for the rules.

    ``add(method, path, handler)`` registers; ``match(method, path)`` returns
    ``(handler, path_params)`` or raises :class:`~robyn_fast.exceptions.NotFound`
    (404) or :class:`~robyn_fast.exceptions.MethodNotAllowed` (405, with the
    ``Allow`` list). ``HEAD`` falls back to the ``GET`` route when no
    ``HEAD`` route matches (RFC 9110 §9.3.2), so it is allowed wherever GET
    is; ``OPTIONS`` is only allowed where registered.
    """

    __slots__ = ("_tables", "_routes")

    def __init__(self) -> None:
        self._tables: dict[str, _Table[H]] = {}
        self._routes: list[tuple[str, str, H]] = []

    def add(self, method: str, path: str, handler: H) -> PathPattern:
        """Register ``handler`` for ``method`` (upper-cased) and the pattern ``path``.

        Returns the compiled pattern. Raises
        :class:`~robyn_fast.exceptions.DuplicateRoute` (a ``ValueError``) when
        the same method already has a pattern of the same shape (``/a/<x>``
        and ``/a/:y/`` are the same), and
        :class:`~robyn_fast.exceptions.InvalidRoute` for a bad pattern or a
        method that is not a token; ``ArgumentTypeError`` for a ``None`` handler.
        """
        if not isinstance(method, str):
            raise ArgumentTypeError(f"method must be str, not {type(method).__name__}")
        if not _METHOD.match(method):
            raise InvalidRoute(f"invalid HTTP method {method!r}")
        if handler is None:
            raise ArgumentTypeError("a route handler cannot be None")
        method = method.upper()
        pattern = compile_path(path)
        table = self._tables.get(method)
        if table is None:
            table = self._tables[method] = _Table()
        if pattern.is_literal:
            lit = pattern.path
            if lit in table.literal:
                raise DuplicateRoute(f"{method} {path!r} is already registered")
            table.literal[lit] = handler
        else:
            node = table.root
            for seg in pattern.key:
                if seg is Segment.PARAM:
                    if node.param is None:
                        node.param = _Node()
                    node = node.param
                elif seg is Segment.CATCH_ALL:
                    if node.catch_all is not None:
                        raise DuplicateRoute(f"{method} {path!r} is already registered")
                    node.catch_all = (handler, pattern.param_names)
                    break
                else:
                    child = node.literal.get(seg)
                    if child is None:
                        child = node.literal[seg] = _Node()
                    node = child
            else:
                if node.route is not None:
                    raise DuplicateRoute(f"{method} {path!r} is already registered")
                node.route = (handler, pattern.param_names)
            table.dynamic = True
        self._routes.append((method, path, handler))
        return pattern

    def match(self, method: str, path: str) -> tuple[H, dict[str, str]]:
        """Find the handler for ``method`` and the request ``path`` (no query).

        Returns the handler and the percent-decoded path parameters (a new
        ``dict``). Raises ``NotFound`` when no method has a matching route,
        ``MethodNotAllowed`` carrying the sorted ``allow`` list when others do.
        """
        table = self._tables.get(method)
        if table is not None:
            found = table.lookup(path)
            if found is not None:
                return found
        if method == "HEAD":
            table = self._tables.get("GET")
            if table is not None:
                found = table.lookup(path)
                if found is not None:
                    return found
        allow = self.allowed_methods(path)
        if allow:
            raise MethodNotAllowed(allow)
        raise NotFound()

    def allowed_methods(self, path: str) -> list[str]:
        """The sorted methods that have a route for ``path`` (``HEAD`` if ``GET`` has)."""
        allow = {m for m, table in self._tables.items() if table.lookup(path) is not None}
        if "GET" in allow:
            allow.add("HEAD")
        return sorted(allow)

    def routes(self) -> list[tuple[str, str, H]]:
        """``(method, pattern as given, handler)`` in registration order."""
        return list(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"<Router with {len(self._routes)} routes>"


def _normalize_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip()
    if endpoint in ("", "/"):
        return ""
    endpoint = endpoint if endpoint.startswith("/") else "/" + endpoint
    return endpoint


def join_prefix(prefix: str, endpoint: str) -> str:
    """``prefix`` + ``endpoint`` as Robyn joins them: ``""`` and ``"/"`` are
    the root on either side, a missing leading ``/`` is added, no ``//``."""
    if not isinstance(prefix, str) or not isinstance(endpoint, str):
        raise TypeError("a prefix and an endpoint are str")
    head = _normalize_endpoint(prefix).rstrip("/")
    tail = _normalize_endpoint(endpoint)
    return (head + tail) or "/"
