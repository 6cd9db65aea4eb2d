"""HTTP request/response types with Robyn's Python API, and the bytes they become.

Pure Python, no I/O: the server parses a request with its HTTP parser, builds
a :class:`Request`, calls the route handler, turns the handler's return value
into ``(status, headers, body)`` with :func:`render`, and writes the bytes
:func:`serialize_response` returns (HTTP/1.1, RFC 9112).

The classes mirror ``robyn.robyn`` (``QueryParams``, ``Headers``, ``Request``,
``Url``, ``Response``) and ``robyn.jsonify``, so handlers written for Robyn
run unchanged. Where Robyn's own behaviour is surprising the Robyn behaviour
is kept and the docstring says so (``QueryParams.get`` returns the *last*
value, ``Headers["missing"]`` is ``None``, ``Request.body`` is ``str`` when
the body is UTF-8).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Union
from urllib.parse import parse_qsl, urlsplit

from .. import models
from .._core.http1 import build_response, date_line
from ..encoding import jsonify
from ..exceptions import (
    ArgumentTypeError,
    reason_phrase,
    InvalidHeader,
    InvalidJSON,
    InvalidStatusCode,
    UnsupportedResponseType,
)

__all__ = [
    "QueryParams",
    "Headers",
    "Url",
    "Request",
    "Response",
    "jsonify",
    "render",
    "to_response",
    "serialize_response",
    "error_response",
    "fast_response",
    "reason_phrase",
    "check_status",
    "TEXT_PLAIN",
    "TEXT_HTML",
    "APPLICATION_JSON",
    "OCTET_STREAM",
]

TEXT_PLAIN = "text/plain; charset=utf-8"
TEXT_HTML = "text/html; charset=utf-8"
APPLICATION_JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

#: One header value as accepted on input; ints are written in decimal.
HeaderScalar = Union[str, bytes, int]
#: A header value, or several values for the same name.
HeaderValue = Union[HeaderScalar, Sequence[HeaderScalar]]
#: Anything :class:`Headers` can be built from.
HeadersInput = Union[
    "Headers",
    Mapping[str, HeaderValue],
    Iterable[tuple[Union[str, bytes], Union[str, bytes]]],
    None,
]


def _scalar(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ArgumentTypeError(
        f"header {name!r}: value must be str, bytes or int, not {type(value).__name__}"
    )


def _name(name: object) -> str:
    if isinstance(name, str):
        return name.lower()
    if isinstance(name, (bytes, bytearray)):
        return bytes(name).decode("latin-1").lower()
    raise ArgumentTypeError(f"header name must be str or bytes, not {type(name).__name__}")


# --------------------------------------------------------------------------
# QueryParams
# --------------------------------------------------------------------------


class _MultiMap:
    """Keys mapped to lists of values, in first-seen order: the read-only
    views QueryParams and Headers share. ``get``-style views show the **last**
    value of a repeated key, as Robyn does."""

    __slots__ = ("_data",)

    _data: dict[str, list[str]]

    def _add(self, key: str, value: str) -> None:
        """Append ``value`` to ``key``'s values (``key`` already normalised)."""
        values = self._data.get(key)
        if values is None:
            self._data[key] = [value]
        else:
            values.append(value)

    def keys(self) -> list[str]:
        """The distinct keys, in first-seen order."""
        return list(self._data)

    def values(self) -> list[str]:
        """The last value of each key."""
        return [values[-1] for values in self._data.values()]

    def items(self) -> list[tuple[str, str]]:
        """``(key, last value)`` for each key."""
        return [(key, values[-1]) for key, values in self._data.items()]

    def multi_items(self) -> list[tuple[str, str]]:
        """``(key, value)`` for every value, repeated keys included (for a
        header: what goes on the wire)."""
        return [(key, value) for key, values in self._data.items() for value in values]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))


class QueryParams(_MultiMap):
    """Query-string parameters: each key maps to a list of values, in order.

    Same API as Robyn's ``robyn.robyn.QueryParams``. As in Robyn, :meth:`get`
    returns the **last** value of a repeated key (``?a=1&a=2`` gives ``"2"``),
    :meth:`get_first` the first one and :meth:`get_all` all of them.
    Keys are case-sensitive. ``len()`` and iteration count distinct keys.
    """

    __slots__ = ()

    def __init__(
        self,
        data: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Build from a mapping (a ``str`` or a list of ``str`` per key) or from pairs."""
        self._data: dict[str, list[str]] = {}
        if data is None:
            return
        if isinstance(data, (str, bytes)):
            raise ArgumentTypeError(
                "QueryParams() takes a mapping or pairs; "
                "use QueryParams.from_query_string() to parse a query string"
            )
        if isinstance(data, Mapping):
            for key, value in data.items():
                if isinstance(value, (list, tuple)):
                    for item in value:
                        self.set(key, item)
                else:
                    self.set(key, value)  # type: ignore[arg-type]  # raises if not str
        else:
            for key, value in data:
                self.set(key, value)

    @classmethod
    def from_query_string(cls, qs: str | bytes | bytearray | memoryview) -> QueryParams:
        """Parse the query component of a request target (without the ``?``).

        Form rules (``application/x-www-form-urlencoded``): fields are split
        on ``&``, ``+`` decodes to a space, percent escapes are decoded as
        UTF-8 with invalid sequences replaced by U+FFFD, and malformed escapes
        such as ``%zz`` are kept literally; nothing here raises on bad input.
        A field without ``=`` is a key with the value ``""``; empty fields
        (``a=1&&b=2``) are skipped. Raw non-ASCII bytes are read as UTF-8.
        This is ``urllib.parse.parse_qsl(qs, keep_blank_values=True)``.
        """
        if isinstance(qs, (bytes, bytearray, memoryview)):
            qs = bytes(qs).decode("utf-8", "replace")
        elif not isinstance(qs, str):
            raise ArgumentTypeError(f"query string must be str or bytes, not {type(qs).__name__}")
        params = cls()
        if qs:
            add = params._add
            for key, value in parse_qsl(qs, keep_blank_values=True):
                add(key, value)
        return params

    def set(self, key: str, value: str) -> None:
        """Append ``value`` to the values of ``key`` (Robyn: set appends)."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise ArgumentTypeError(
                "QueryParams.set() takes str key and value, not "
                f"{type(key).__name__} and {type(value).__name__}"
            )
        self._add(key, value)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key``, or ``default`` when absent (as Robyn)."""
        values = self._data.get(key)
        return values[-1] if values else default

    def get_first(self, key: str) -> str | None:
        """The first value of ``key``, or ``None`` when absent."""
        values = self._data.get(key)
        return values[0] if values else None

    def get_all(self, key: str) -> list[str] | None:
        """A copy of every value of ``key`` in order, or ``None`` when absent (as Robyn)."""
        values = self._data.get(key)
        return list(values) if values is not None else None

    def contains(self, key: str) -> bool:
        """Whether ``key`` is present (also ``key in params``)."""
        return key in self._data

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def extend(self, other: QueryParams) -> None:
        """Append every value of ``other`` to this one, key by key."""
        if not isinstance(other, QueryParams):
            raise ArgumentTypeError(
                f"QueryParams.extend() takes a QueryParams, not {type(other).__name__}"
            )
        for key, values in list(other._data.items()):
            mine = self._data.get(key)
            if mine is None:
                self._data[key] = list(values)
            else:
                mine.extend(values)

    def to_dict(self) -> dict[str, list[str]]:
        """A new ``dict`` mapping each key to a new list of its values."""
        return {key: list(values) for key, values in self._data.items()}

    def empty(self) -> bool:
        """Whether there are no parameters at all."""
        return not self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QueryParams):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"QueryParams({self._data!r})"


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------


class Headers(_MultiMap):
    """HTTP header fields, names case-insensitive, each name with a list of values.

    Same API as Robyn's ``robyn.robyn.Headers``. Names are stored lower-cased
    (``get_headers()`` and iteration show them so). As in Robyn, :meth:`get`
    and ``headers[name]`` return the **last** value of a repeated field and
    ``None`` (not ``KeyError``) when the field is absent; :meth:`set`
    replaces every value, :meth:`append` adds one.

    It also reads like a mapping: ``len()``, iteration over names,
    ``keys()``, ``values()``, ``items()`` (last value per name) and
    :meth:`multi_items` (every value).

    Built from ``None``, another ``Headers`` (copied), a mapping of name to a
    value or a list of values, or an iterable of ``(name, value)`` pairs
    (``str`` or ``bytes``; bytes are decoded as latin-1, as HTTP/1.1 fields
    are octets, RFC 9110 §5.5). Values are checked only when written to the
    wire, by :func:`serialize_response`.
    """

    __slots__ = ()

    def __init__(self, default_headers: HeadersInput = None) -> None:
        self._data: dict[str, list[str]] = {}
        if default_headers is None:
            return
        kind = type(default_headers)
        if kind is list or kind is tuple:
            self._add_pairs(default_headers)  # type: ignore[arg-type]
        elif kind is dict:
            self.populate_from_dict(default_headers)  # type: ignore[arg-type]
        elif isinstance(default_headers, Headers):
            self._data = {k: list(v) for k, v in default_headers._data.items()}
        elif isinstance(default_headers, Mapping):
            self.populate_from_dict(default_headers)
        elif isinstance(default_headers, (str, bytes, bytearray)):
            raise ArgumentTypeError("Headers() takes a mapping or (name, value) pairs, not a string")
        else:
            self._add_pairs(default_headers)

    def _add_pairs(self, pairs: Iterable[tuple[str | bytes, str | bytes]]) -> None:
        # The server builds one Headers per request from the parser's
        # (bytes, bytes) pairs: keep the common types off the slow checks.
        add = self._add
        for name, value in pairs:
            key = name.decode("latin-1").lower() if type(name) is bytes else _name(name)
            if type(value) is bytes:
                text = value.decode("latin-1")
            elif type(value) is str:
                text = value
            else:
                text = _scalar(value, key)
            add(key, text)

    def set(self, key: str, value: HeaderScalar) -> None:
        """Replace every value of ``key`` with ``value`` (Robyn semantics)."""
        name = _name(key)
        self._data[name] = [_scalar(value, name)]

    def __setitem__(self, key: str, value: HeaderScalar) -> None:
        self.set(key, value)

    def append(self, key: str, value: HeaderScalar) -> None:
        """Add ``value`` to ``key``; the field is sent once per value."""
        name = _name(key)
        self._add(name, _scalar(value, name))

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key`` (any case), or ``default`` when absent."""
        values = self._data.get(key.lower())
        return values[-1] if values else default

    def __getitem__(self, key: str) -> str | None:
        """The last value of ``key``, or ``None`` when absent (Robyn, not ``KeyError``)."""
        values = self._data.get(key.lower())
        return values[-1] if values else None

    def get_all(self, key: str) -> list[str]:
        """A copy of every value of ``key``; ``[]`` when absent (as Robyn)."""
        return list(self._data.get(key.lower(), ()))

    def get_headers(self) -> dict[str, list[str]]:
        """A new ``dict`` of lower-cased name to a new list of values."""
        return {key: list(values) for key, values in self._data.items()}

    def contains(self, key: str) -> bool:
        """Whether a field named ``key`` (any case) is present."""
        return key.lower() in self._data

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._data

    def populate_from_dict(self, headers: Mapping[str, HeaderValue]) -> None:
        """Append the fields of ``headers`` (a value or a list of values per name)."""
        if not isinstance(headers, Mapping):
            raise ArgumentTypeError(
                f"populate_from_dict() takes a mapping, not {type(headers).__name__}"
            )
        for key, value in headers.items():
            if isinstance(value, (str, bytes, int)):
                self.append(key, value)
            elif isinstance(value, bytearray):
                self.append(key, bytes(value))
            elif isinstance(value, Sequence):
                for item in value:
                    self.append(key, item)
            else:
                self.append(key, value)  # raises ArgumentTypeError

    def remove(self, key: str) -> None:
        """Drop every value of ``key``; nothing happens when it is absent."""
        self._data.pop(key.lower(), None)

    def is_empty(self) -> bool:
        """Whether there are no fields."""
        return not self._data

    def __eq__(self, other: object) -> bool:
        """Same names, and for each name the same values in any order (as Robyn)."""
        if not isinstance(other, Headers):
            return NotImplemented
        if self._data.keys() != other._data.keys():
            return False
        return all(sorted(v) == sorted(other._data[k]) for k, v in self._data.items())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._data!r})"


# --------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Url:
    """The request URL as Robyn exposes it.

    ``scheme`` is ``"http"`` or ``"https"``, ``host`` the authority the client
    asked for (the ``Host`` field, port included, e.g. ``"localhost:8080"``;
    ``""`` if absent) and ``path`` the path of the request target as
    received, still percent-encoded, without the query.
    """

    scheme: str
    host: str
    path: str


_BodyInput = Union[bytes, bytearray, memoryview, str]


def _body_bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise ArgumentTypeError(f"body must be bytes or str, not {type(body).__name__}")


class Request:
    """One HTTP request, as handed to a route handler (Robyn's ``Request``).

    Attributes: ``method`` (``"GET"``...), ``url`` (:class:`Url`), ``path``
    (``url.path``), ``path_params`` (``dict[str, str]``, percent-decoded by
    the router), ``query_params`` (:class:`QueryParams`, parsed on first
    access), ``headers`` (:class:`Headers`), ``body``, ``raw_body``,
    ``ip_addr`` (the peer's address, ``None`` when unknown) and
    ``identity`` (set by authentication middleware, ``None`` otherwise) and
    ``session`` (set when the app configures sessions, ``None`` otherwise).

    ``body`` follows Robyn: it is a ``str`` when the body is valid UTF-8 and
    ``bytes`` otherwise. ``raw_body`` is always the ``bytes`` received.
    """

    __slots__ = (
        "method",
        "url",
        "headers",
        "path_params",
        "ip_addr",
        "identity",
        "session",
        "_raw_body",
        "_body",
        "_query_string",
        "_query_params",
        "_form",
    )

    def __init__(
        self,
        method: str,
        url: Url,
        headers: Headers | None = None,
        body: _BodyInput = b"",
        query_params: QueryParams | str | None = None,
        path_params: dict[str, str] | None = None,
        ip_addr: str | None = None,
        identity: Any = None,
    ) -> None:
        """``query_params`` may be a raw query string, parsed lazily on first access."""
        if not isinstance(method, str):
            raise ArgumentTypeError(f"method must be str, not {type(method).__name__}")
        if not isinstance(url, Url):
            raise ArgumentTypeError(f"url must be a Url, not {type(url).__name__}")
        self.method: str = method
        self.url: Url = url
        self.headers: Headers = Headers() if headers is None else headers
        self.path_params: dict[str, str] = {} if path_params is None else path_params
        self.ip_addr: str | None = ip_addr
        self.identity: Any = identity
        #: The client's session (:mod:`robyn_fast.sessions`) once the app configures sessions, else None.
        self.session: Any = None
        self._raw_body: bytes = _body_bytes(body)
        self._body: str | bytes | None = None
        self._form: tuple[dict[str, str], dict[str, bytes]] | None = None
        if query_params is None:
            self._query_string: str = ""
            self._query_params: QueryParams | None = None
        elif isinstance(query_params, str):
            self._query_string = query_params
            self._query_params = None
        elif isinstance(query_params, QueryParams):
            self._query_string = ""
            self._query_params = query_params
        else:
            raise ArgumentTypeError(
                f"query_params must be QueryParams or str, not {type(query_params).__name__}"
            )

    @classmethod
    def from_target(
        cls,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: _BodyInput = b"",
        *,
        scheme: str = "http",
        ip_addr: str | None = None,
    ) -> Request:
        """Build a request from the request-target of the request line (RFC 9112 §3.2).

        Origin form (``/path?query``) takes the host from the ``Host``
        field; absolute form (``http://host/path?query``) takes it from the
        target, as RFC 9112 §3.2.2 requires. Anything else (``*``, authority
        form) becomes the path unchanged. A fragment is dropped.
        """
        headers = Headers() if headers is None else headers
        if target.startswith("/"):
            path, _, query = target.partition("?")
            path = path.partition("#")[0]
            query = query.partition("#")[0]
            host = headers.get("host") or ""
        elif "://" in target:
            parts = urlsplit(target)
            path, query, host = parts.path or "/", parts.query, parts.netloc
            scheme = parts.scheme or scheme
        else:
            path, query, host = target, "", headers.get("host") or ""
        return cls(
            method,
            Url(scheme, host, path),
            headers,
            body,
            query,
            None,
            ip_addr,
        )

    @property
    def path(self) -> str:
        """``url.path``: the percent-encoded path, without the query."""
        return self.url.path

    @property
    def query_params(self) -> QueryParams:
        """The query parameters (parsed from the query string on first access)."""
        params = self._query_params
        if params is None:
            params = self._query_params = QueryParams.from_query_string(self._query_string)
        return params

    @query_params.setter
    def query_params(self, value: QueryParams) -> None:
        if not isinstance(value, QueryParams):
            raise ArgumentTypeError(
                f"query_params must be QueryParams, not {type(value).__name__}"
            )
        self._query_params = value

    @property
    def body(self) -> str | bytes:
        """The body: ``str`` if it is valid UTF-8, else ``bytes`` (Robyn semantics)."""
        body = self._body
        if body is None:
            try:
                body = self._raw_body.decode("utf-8")
            except UnicodeDecodeError:
                body = self._raw_body
            self._body = body
        return body

    @body.setter
    def body(self, value: _BodyInput) -> None:
        self._raw_body = _body_bytes(value)
        self._body = None
        self._form = None

    def _parsed_form(self) -> tuple[dict[str, str], dict[str, bytes]]:
        form = self._form
        if form is None:
            form = self._form = parse_form(self.headers.get("content-type") or "", self._raw_body)
        return form

    @property
    def form_data(self) -> dict[str, str]:
        """The fields of an ``application/x-www-form-urlencoded`` or
        ``multipart/form-data`` body (RFC 7578), but file parts; ``{}`` for
        another body. Parsed on first access."""
        return self._parsed_form()[0]

    @property
    def files(self) -> dict[str, bytes]:
        """The file parts of a ``multipart/form-data`` body, by file name,
        as Robyn gives them; ``{}`` for another body."""
        return self._parsed_form()[1]

    @property
    def raw_body(self) -> bytes:
        """The body exactly as received."""
        return self._raw_body

    def json(self) -> Any:
        """The body parsed as JSON (RFC 8259): any JSON value, usually a ``dict``.

        UTF-8, UTF-16 and UTF-32 bodies are accepted (RFC 8259 §8.1 asks for
        UTF-8; ``json.loads`` detects the others). An empty body, invalid
        JSON or undecodable text raises :class:`~robyn_fast.exceptions.InvalidJSON`,
        a ``ValueError``, as Robyn raises ``ValueError``.
        """
        raw = self._raw_body
        if not raw.strip():
            raise InvalidJSON("request body is empty; expected JSON")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidJSON(
                f"request body is not valid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno})"
            ) from exc
        except UnicodeDecodeError as exc:
            raise InvalidJSON(f"request body is not valid JSON text: {exc.reason}") from exc

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url.path!r} from {self.ip_addr}>"


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """``(fields, files)`` of a form body: ``application/x-www-form-urlencoded``
    (the last value of a repeated field) or ``multipart/form-data`` (RFC 7578:
    a part with a file name is a file, keyed by that name; the others are
    fields, read as UTF-8). Any other type, or a body that does not parse,
    gives two empty dicts."""
    kind = content_type.partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", "replace")
        return dict(parse_qsl(text, keep_blank_values=True)), {}
    if kind != "multipart/form-data" or not body:
        return {}, {}
    from email.parser import BytesParser
    from email.policy import HTTP

    try:
        message = BytesParser(policy=HTTP).parsebytes(
            b"content-type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
    except Exception:  # a malformed body is no form
        return {}, {}
    if not message.is_multipart():
        return {}, {}
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        if filename:
            files[str(filename)] = payload
        elif name:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, files


# --------------------------------------------------------------------------
# Response and rendering
# --------------------------------------------------------------------------


def check_status(status: object) -> int:
    if type(status) is not int or not 100 <= status <= 599:
        # bool is excluded on purpose: Response(True, ...) is a bug.
        raise InvalidStatusCode(f"HTTP status code must be an int in 100..599, got {status!r}")
    return status


class Response:
    """A response a handler builds itself (Robyn's ``Response``).

    ``Response(status_code, headers, description)``: ``headers`` is a
    :class:`Headers` (used as is) or a mapping (copied into one);
    ``description`` is the body, ``str`` (sent UTF-8 encoded) or ``bytes``.
    Without a ``content-type`` field one is chosen from the description as
    :func:`render` does for a bare return value. ``status_code`` must be an
    ``int`` in 100..599 (:class:`~robyn_fast.exceptions.InvalidStatusCode`).
    :meth:`set_cookie` adds a ``Set-Cookie`` field. Robyn's
    ``response_type`` is not provided.
    """

    __slots__ = ("_status_code", "headers", "_description")

    def __init__(
        self,
        status_code: int,
        headers: Headers | Mapping[str, HeaderValue] | None = None,
        description: str | bytes = b"",
    ) -> None:
        self._status_code: int = check_status(status_code)
        if headers is None:
            self.headers: Headers = Headers()
        elif isinstance(headers, Headers):
            self.headers = headers
        elif isinstance(headers, Mapping):
            self.headers = Headers(headers)
        else:
            raise ArgumentTypeError(
                f"headers must be a Headers instance or a dict, not {type(headers).__name__}"
            )
        self._description: str | bytes = self._check_description(description)

    @staticmethod
    def _check_description(description: object) -> str | bytes:
        if isinstance(description, (str, bytes)):
            return description
        if isinstance(description, (bytearray, memoryview)):
            return bytes(description)
        raise UnsupportedResponseType(
            f"Response description must be str or bytes, not {type(description).__name__}"
            " (use jsonify() for dicts and lists)",
            type(description),
        )

    @property
    def status_code(self) -> int:
        """The status code, 100..599."""
        return self._status_code

    @status_code.setter
    def status_code(self, value: int) -> None:
        self._status_code = check_status(value)

    def set_cookie(
        self,
        key: str,
        value: str,
        path: str | None = None,
        domain: str | None = None,
        max_age: int | None = None,
        expires: str | None = None,
        secure: bool = False,
        http_only: bool = False,
        same_site: str | None = None,
    ) -> None:
        """Add a ``Set-Cookie`` field (RFC 6265 §4.1), replacing one this
        response already sets for ``key``. ``ValueError`` for a name that is
        not a token or a value with characters a cookie cannot carry."""
        if not isinstance(key, str) or not _TOKEN.match(key):
            raise ValueError(f"cookie name {key!r} must be a token (RFC 6265 §4.1.1)")
        if not isinstance(value, str) or not _COOKIE_VALUE.match(value):
            raise ValueError(f"cookie {key!r}: value {value!r} has characters a cookie cannot carry "
                             "(RFC 6265 §4.1.1); encode it first")
        parts = [f"{key}={value}"]
        for label, attr in (("Path", path), ("Domain", domain), ("Expires", expires)):
            if attr is not None:
                if not isinstance(attr, str) or ";" in attr or _BAD_VALUE_CHAR.search(attr):
                    raise ValueError(f"cookie {key!r}: {label} {attr!r} is not a valid attribute value")
                parts.append(f"{label}={attr}")
        if max_age is not None:
            if type(max_age) is not int:
                raise ValueError(f"cookie {key!r}: Max-Age must be an int, not {max_age!r}")
            parts.append(f"Max-Age={max_age}")
        if secure:
            parts.append("Secure")
        if http_only:
            parts.append("HttpOnly")
        if same_site is not None:
            if same_site.capitalize() not in ("Strict", "Lax", "None"):
                raise ValueError(f"cookie {key!r}: SameSite must be Strict, Lax or None, not {same_site!r}")
            parts.append(f"SameSite={same_site.capitalize()}")
        kept = [v for v in self.headers.get_all("set-cookie") if not v.startswith(key + "=")]
        self.headers.remove("set-cookie")
        for line in kept:
            self.headers.append("set-cookie", line)
        self.headers.append("set-cookie", "; ".join(parts))

    @property
    def description(self) -> str | bytes:
        """The body, ``str`` or ``bytes``."""
        return self._description

    @description.setter
    def description(self, value: str | bytes) -> None:
        self._description = self._check_description(value)

    def __repr__(self) -> str:
        return f"Response({self._status_code}, {self.headers!r}, {self._description!r})"


_HTML_START = re.compile(r"\ufeff?\s*<(?:!doctype\s+html|html)(?:[\s>/]|\Z)", re.IGNORECASE)


def _text_content_type(text: str) -> str:
    # Most text does not start with '<', whitespace or a BOM: skip the regex.
    if not text or not (text[0] == "<" or text[0].isspace() or text[0] == "\ufeff"):
        return TEXT_PLAIN
    return TEXT_HTML if _HTML_START.match(text) else TEXT_PLAIN


RenderedResponse = tuple[int, list[tuple[str, str]], bytes]


def _render_response(response: Response) -> RenderedResponse:
    description = response._description
    headers = response.headers.multi_items()
    if isinstance(description, str):
        body = description.encode("utf-8")
        if "content-type" not in response.headers._data:
            headers.append(("content-type", _text_content_type(description)))
    else:
        body = description
        if "content-type" not in response.headers._data:
            headers.append(("content-type", OCTET_STREAM))
    return response._status_code, headers, body


def to_response(result: object, *, stringify: bool = False) -> Response:
    """A handler's return value as a :class:`Response`, for the middlewares
    that run after the handler: the same status, fields and body as
    :func:`render`, with a ``str`` body kept as ``str`` (an after-request
    middleware may append to ``response.description``, as in Robyn).

    ``stringify``: a value :func:`render` does not take (an ``int``, a
    class...) becomes its ``str()`` as ``text/plain``, and ``None`` the text
    ``"None"``, as Robyn sends them; otherwise
    :class:`~robyn_fast.exceptions.UnsupportedResponseType`.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(200, Headers([("content-type", _text_content_type(result))]), result)
    if isinstance(result, (dict, list)) or models.is_model(result):
        return Response(200, Headers([("content-type", APPLICATION_JSON)]), jsonify(result))
    if stringify and not isinstance(result, (bytes, bytearray, memoryview, tuple)):
        return Response(200, Headers([("content-type", TEXT_PLAIN)]), str(result))
    status, fields, body = render(result)
    return Response(status, Headers(fields), body)


def render(result: object) -> RenderedResponse:
    """Turn a route handler's return value into ``(status, headers, body)``.

    =====================================  ======  ==============================
    Return value                           Status  ``content-type``, body
    =====================================  ======  ==============================
    ``str`` starting with ``<!DOCTYPE      200     ``text/html; charset=utf-8``,
    html`` or ``<html`` (after leading             UTF-8
    whitespace, any case)
    other ``str``                          200     ``text/plain; charset=utf-8``
    ``dict`` or ``list``                   200     ``application/json``,
                                                   :func:`jsonify`
    ``bytes``/``bytearray``/``memoryview`` 200     ``application/octet-stream``
    :class:`Response`                      its     its own; if it has none,
                                                   chosen from its description
    ``None``                               200     ``text/plain``, empty body
    a pydantic model                       200     ``application/json``, its
                                                   ``model_dump(mode="json")``
    ``(description, headers, status)``     status  Robyn's tuple form: the
                                                   description rendered as above,
                                                   ``headers`` fields override
    =====================================  ======  ==============================

    ``None`` gives an empty 200 (Robyn would send the text ``"None"``); a
    handler that wants 204 returns ``Response(204, {}, "")``. Header names
    come back lower-cased. Any other value raises
    :class:`~robyn_fast.exceptions.UnsupportedResponseType` (a
    ``TypeError``) naming its type; unlike Robyn, ints and other objects are
    not silently turned into text with ``str()``.
    """
    if isinstance(result, str):
        return 200, [("content-type", _text_content_type(result))], result.encode("utf-8")
    if isinstance(result, (dict, list)):
        return 200, [("content-type", APPLICATION_JSON)], jsonify(result).encode("utf-8")
    if isinstance(result, Response):
        return _render_response(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return 200, [("content-type", OCTET_STREAM)], bytes(result)
    if result is None:
        return 200, [("content-type", TEXT_PLAIN)], b""
    if isinstance(result, tuple):
        return _render_tuple(result)
    if models.is_model(result):
        return 200, [("content-type", APPLICATION_JSON)], jsonify(result).encode("utf-8")
    raise UnsupportedResponseType(
        f"a route handler returned {type(result).__module__}.{type(result).__qualname__}, "
        "which cannot become an HTTP response; return str, bytes, dict, list, "
        "Response or None",
        type(result),
    )


def _render_tuple(result: tuple[Any, ...]) -> RenderedResponse:
    if len(result) != 3:
        raise UnsupportedResponseType(
            "a route handler returned a tuple of length "
            f"{len(result)}; the tuple form is (description, headers, status_code)",
            tuple,
        )
    description, headers, status = result
    if isinstance(description, tuple):
        raise UnsupportedResponseType("the description of a tuple response cannot be a tuple", tuple)
    status = check_status(status)
    _, base_headers, body = render(description)
    extra = Headers(headers)
    fields = [(k, v) for k, v in base_headers if k not in extra] + extra.multi_items()
    return status, fields, body


# --------------------------------------------------------------------------
# Serialisation (RFC 9112)
# --------------------------------------------------------------------------

# tchar (RFC 9110 §5.6.2)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Controls other than HTAB, and DEL: CR/LF/NUL would split the response and
# the rest are invalid in a field value (RFC 9110 §5.5).
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# cookie-octet (RFC 6265 §4.1.1), optionally in double quotes.
_COOKIE_VALUE = re.compile(r'(?:[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*|"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")\Z')
# Fields the server owns: it frames the body itself.
_FRAMING = frozenset({"content-length", "transfer-encoding"})

_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        check_status(status)
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status).encode("ascii"))
        _STATUS_LINES[status] = line
    return line


# Date is required on 2xx-4xx from an origin server with a clock
# (RFC 9110 §6.6.1); the compiled core formats it once per second, for this
# serializer and the fast path alike.
_date_header = date_line


# Encoded "name: value\r\n" lines already validated, for the fields most
# responses repeat (content-type...). Bounded: cleared when full.
_FIELD_CACHE: dict[tuple[str, str], bytes] = {}
_FIELD_CACHE_MAX = 512


def _check_field(name: object, value: object) -> tuple[str, str]:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise InvalidHeader(f"invalid header name {name!r}: must be a token (RFC 9110 §5.6.2)")
    if not isinstance(value, str):
        raise InvalidHeader(f"header {name!r}: value must be str, not {type(value).__name__}")
    if _BAD_VALUE_CHAR.search(value):
        raise InvalidHeader(
            f"header {name!r}: value {value!r} contains CR, LF, NUL or another control "
            "character; refusing to write it (response splitting)"
        )
    return name.lower(), value


def serialize_response(
    status: int,
    headers: Iterable[tuple[str, str]] | Headers | Mapping[str, str],
    body: bytes,
    *,
    keep_alive: bool,
    head: bool = False,
    chunked: bool = False,
) -> bytes:
    """The complete HTTP/1.1 response bytes (RFC 9112 §4, §6).

    ``headers`` is ``(name, value)`` pairs (what :func:`render` returns), a
    :class:`Headers` or a ``dict``. Writes the status line with the standard
    reason phrase (empty for unregistered codes), then the given fields with
    lower-cased names, then
    ``date`` unless given, then ``content-length`` (always, computed from
    ``body``; any ``content-length`` or ``transfer-encoding`` given is
    dropped because the server frames the body), then the body.

    - ``keep_alive=False`` adds ``close`` to the ``connection`` field
      (merged with a given one, e.g. ``upgrade, close``).
    - ``head=True``: ``content-length`` is the length of ``body``, the GET
      body, but no body bytes are written (RFC 9110 §9.3.2).
    - 1xx, 204 and 304: neither body nor ``content-length`` is written,
      whatever ``body`` holds (RFC 9110 §8.6, RFC 9112 §6.3).
    - ``chunked=True``: only the head, with ``transfer-encoding: chunked``
      instead of ``content-length``; the body follows in chunks.

    Raises :class:`~robyn_fast.exceptions.InvalidHeader` (a ``ValueError``)
    for a name that is not a token, a value with CR, LF, NUL or another
    control character but HTAB, or a value not encodable as latin-1;
    :class:`~robyn_fast.exceptions.InvalidStatusCode` for a status outside
    100..599. Nothing is written in those cases.
    """
    if isinstance(headers, Headers):
        headers = headers.multi_items()
    elif isinstance(headers, Mapping):
        headers = headers.items()
    parts = [_status_line(status)]
    connection: list[str] = []
    has_date = False
    cache = _FIELD_CACHE
    for field in headers:
        try:
            line = cache.get(field)
        except TypeError:  # unhashable: not a (str, str) pair, checked below
            line = None
        if line is not None:
            parts.append(line)
            continue
        name, value = field
        lname, value = _check_field(name, value)
        if lname in _FRAMING:
            continue
        if lname == "connection":
            connection.append(value)
            continue
        if lname == "date":
            has_date = True
        try:
            line = b"%s: %s\r\n" % (lname.encode("ascii"), value.encode("latin-1"))
        except UnicodeEncodeError:
            raise InvalidHeader(
                f"header {name!r}: value {value!r} has characters outside latin-1; "
                "percent-encode it (RFC 8187 for parameters)"
            ) from None
        parts.append(line)
        if lname != "date" and type(field) is tuple:
            if len(cache) >= _FIELD_CACHE_MAX:
                cache.clear()
            cache[field] = line
    if not keep_alive:
        tokens = [t.strip().lower() for v in connection for t in v.split(",")]
        if "close" not in tokens:
            connection.append("close")
    if connection:
        value = ", ".join(connection)
        try:
            parts.append(b"connection: %s\r\n" % value.encode("latin-1"))
        except UnicodeEncodeError:
            raise InvalidHeader(f"connection header {value!r} is not latin-1") from None
    if not has_date:
        parts.append(_date_header())
    bodyless = status < 200 or status == 204 or status == 304
    if chunked and not bodyless:
        # The head of a streamed body: the chunks follow (RFC 9112 §7.1).
        parts.append(b"transfer-encoding: chunked\r\n\r\n")
        return b"".join(parts)
    if not bodyless:
        parts.append(b"content-length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    if not bodyless and not head and body:
        parts.append(bytes(body))
    return b"".join(parts)


_FAST_HEADS: dict[str, bytes] = {
    ctype: _status_line(200) + b"content-type: %s\r\n" % ctype.encode("ascii")
    for ctype in (TEXT_PLAIN, TEXT_HTML, APPLICATION_JSON, OCTET_STREAM)
}


def fast_response(result: object, *, keep_alive: bool, head: bool = False) -> bytes | None:
    """The response to a handler's ``str``, ``dict`` or ``bytes`` return
    value, built by the compiled core (:func:`robyn_fast._core.http1.build_response`):
    the same bytes as ``serialize_response(*render(result), ...)``; None for
    a value of any other type (a subclass included), which takes that way.
    Raises as :func:`jsonify` does for a dict JSON cannot represent."""
    kind = type(result)
    if kind is str:
        text: str = result  # type: ignore[assignment]
        return build_response(_FAST_HEADS[_text_content_type(text)], text.encode("utf-8"), keep_alive, head)
    if kind is dict:
        return build_response(_FAST_HEADS[APPLICATION_JSON], jsonify(result).encode("utf-8"), keep_alive, head)
    if kind is bytes:
        return build_response(_FAST_HEADS[OCTET_STREAM], result, keep_alive, head)  # type: ignore[arg-type]
    return None


def error_response(
    status: int,
    message: str | None = None,
    extra_headers: Iterable[tuple[str, str]] | None = None,
    *,
    keep_alive: bool = False,
    head: bool = False,
) -> bytes:
    """The bytes of a plain-text error the server sends on its own.

    Body: ``message`` or else the reason phrase (``"Not Found"``), as
    ``text/plain; charset=utf-8``. ``extra_headers`` are added as given:
    ``Allow`` for 405 (take them from
    :attr:`~robyn_fast.exceptions.HTTPError.headers`), ``Upgrade`` and
    ``Sec-WebSocket-Version`` for 426..., and a ``Content-Type`` there
    replaces ``text/plain``. By default the response says
    ``connection: close``, as after 400, 413, 414 or 431 the request stream
    can no longer be trusted; pass ``keep_alive=True`` when the request was
    read completely (a 404, say). ``head=True`` omits the body bytes.
    """
    check_status(status)
    text = reason_phrase(status) if message is None else message
    fields = [("content-type", TEXT_PLAIN)]
    if extra_headers is not None:
        extra = list(extra_headers)
        if any(name.lower() == "content-type" for name, _ in extra):
            fields = extra  # the error says what its body is (a JSON error, say)
        else:
            fields.extend(extra)
    return serialize_response(
        status, fields, text.encode("utf-8"), keep_alive=keep_alive, head=head
    )
