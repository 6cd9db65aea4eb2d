"""Signed-cookie sessions (Robyn 0.88's ``app.configure_sessions`` and
``request.session``).

``app.configure_sessions(secret_key=...)`` gives every request a
``request.session``, a dict-like :class:`Session` read from a cookie before
the before-request middlewares run, and written back onto the response
after the after-request middlewares, only when the session changed. The
whole session lives in the cookie: nothing is stored on the server, so any
worker process or host with the same secret reads it.

The cookie value is ``<payload>.<signature>``: the payload is the JSON
``{"d": data, "exp": unix_time}`` in unpadded base64url, the signature an
HMAC-SHA256 (RFC 2104) of the payload's text under a key derived from the
secret (SHA-256 of ``b"robyn.session"`` and the secret), also unpadded
base64url. That is the format Robyn 0.88 writes, so sessions survive a
move from Robyn to robyn_fast and back with the same secret. The data is
signed, not encrypted: a client can read it, not change it.

A cookie that was changed (signature mismatch), that does not decode, whose
payload is not a JSON object, or whose ``exp`` is past (or not a finite
number) gives an empty session, never an error. The signature is compared
in constant time (``hmac.compare_digest``).

The secret: every worker process (``--processes N``) and every host behind
the same name must sign with the same one, and it must outlive restarts,
or the sessions that another process signed read as empty. Read it from
the environment or a secrets store; a secret made up at start-up
(``secrets.token_hex()`` in the app) differs per process once workers are
spawned rather than forked, and changes at every restart.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from .exceptions import ArgumentTypeError, ConfigError
from .http.types import Request, Response
from .logs import get_logger

__all__ = ["Session", "SessionManager", "DEFAULT_MAX_AGE", "MAX_COOKIE_SIZE"]

log = get_logger("robyn_fast.sessions")

#: A session lasts two weeks unless told otherwise (Robyn's default).
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60
#: Browsers keep cookies up to about 4096 bytes, name and attributes
#: included (RFC 6265 §6.1 asks for at least that much); a bigger session
#: is logged, since the browser may drop it.
MAX_COOKIE_SIZE = 4093

_SALT = b"robyn.session"
_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_SNAPSHOT = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _snapshot(data: dict[str, Any]) -> str | None:
    """What to compare the data with later to see a change inside a nested
    value; None when no value is a container (nothing can change unseen)."""
    if not any(isinstance(v, (dict, list)) for v in data.values()):
        return None
    return _SNAPSHOT.encode(data)


class Session(MutableMapping[str, Any]):
    """The data of one client's session: a ``dict`` of JSON values.

    :meth:`is_modified` tells whether the cookie must be written again: a
    key set or deleted, :meth:`clear`, ``modified = True``, or a change
    inside a nested value (``session["cart"].append(x)``), seen by
    comparing the data with what was loaded.

    ``source``: a function that gives the data, called at the first use
    (the cookie of a request whose handler never looks at its session is
    not even verified).
    """

    __slots__ = ("_data", "modified", "_loaded", "_source")

    def __init__(self, data: Mapping[str, Any] | None = None, *,
                 source: Callable[[], dict[str, Any]] | None = None) -> None:
        #: Set by every change through the mapping methods; set it to force a write.
        self.modified = False
        self._source = source
        if source is None:
            self._take(dict(data) if data else {})

    def _take(self, data: dict[str, Any]) -> dict[str, Any]:
        self._data: dict[str, Any] = data
        # Data loaded from a cookie is JSON: encoding it again cannot fail.
        self._loaded = _snapshot(data) if data else None
        return data

    def __getattr__(self, name: str) -> Any:
        # Only an unset slot lands here: _data before the first use.
        if name == "_data" and self._source is not None:
            source, self._source = self._source, None
            return self._take(source())
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)

    def is_modified(self) -> bool:
        """Whether the session changed since it was read from the cookie."""
        if self.modified:
            return True
        if self._source is not None:  # never looked at
            return False
        if self._loaded is None:  # no container was loaded: every change went through the methods
            return False
        try:
            return _SNAPSHOT.encode(self._data) != self._loaded
        except (TypeError, ValueError):  # something not JSON put inside a value: save it, and fail there
            return True

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def clear(self) -> None:
        """Empty the session: the cookie is deleted from the browser."""
        if self._data:
            self.modified = True
            self._data.clear()

    def __repr__(self) -> str:
        return f"Session({self._data!r})"


class SessionManager:
    """Reads and writes :class:`Session` cookies, signed with ``secret_key``.

    ``cookie_name``, ``max_age`` (seconds; also the ``exp`` inside the
    signed payload, so an old cookie replayed after it is refused; None: a
    cookie that lasts while the browser runs, and no expiry),
    ``path``, ``domain``, ``secure``, ``http_only`` and ``same_site``
    (``"Strict"``, ``"Lax"`` or ``"None"``, which needs ``secure``) are the
    cookie's attributes (RFC 6265 §4.1.2). ``ConfigError`` (a
    ``ValueError``) for an empty secret or an attribute a cookie cannot
    carry, ``TypeError`` for an argument of the wrong type.
    """

    def __init__(
        self,
        secret_key: str | bytes,
        *,
        cookie_name: str = "session",
        max_age: int | None = DEFAULT_MAX_AGE,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        http_only: bool = True,
        same_site: str | None = "Lax",
    ) -> None:
        if isinstance(secret_key, str):
            secret = secret_key.encode("utf-8")
        elif isinstance(secret_key, bytes):
            secret = secret_key
        else:
            raise ArgumentTypeError(f"secret_key must be str or bytes, not {type(secret_key).__name__}")
        if not secret:
            raise ConfigError("configure_sessions() needs a non-empty secret_key, the same in every worker "
                              "process and host, and stable across restarts (read it from the environment)")
        if max_age is not None and (type(max_age) is not int or max_age <= 0):
            raise ConfigError(f"session max_age must be a positive int of seconds or None, not {max_age!r}")
        if same_site is not None:
            if not isinstance(same_site, str) or same_site.strip().lower() not in _SAME_SITE:
                raise ConfigError(f"same_site must be 'Strict', 'Lax' or 'None', not {same_site!r}")
            same_site = _SAME_SITE[same_site.strip().lower()]
            if same_site == "None" and not secure:
                raise ConfigError("same_site='None' needs secure=True: browsers drop a SameSite=None cookie "
                                  "that is not Secure")
        self._key = hashlib.sha256(_SALT + secret).digest()
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.path = path
        self.domain = domain
        self.secure = bool(secure)
        self.http_only = bool(http_only)
        self.same_site = same_site
        self._warned_size = False
        # The attributes are checked once, now, by writing a cookie with them.
        try:
            self._set_cookie(Response(200), "x")
        except ValueError as exc:
            raise ConfigError(f"configure_sessions(): {exc}") from None

    def _signature(self, payload: str) -> str:
        return _b64(hmac.digest(self._key, payload.encode("ascii"), "sha256"))

    def dumps(self, session: Mapping[str, Any]) -> str:
        """The signed cookie value of ``session``. ``TypeError`` when its
        data is not JSON."""
        envelope: dict[str, Any] = {"d": dict(session)}
        if self.max_age is not None:
            envelope["exp"] = int(time.time()) + self.max_age
        try:
            text = json.dumps(envelope, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ArgumentTypeError(f"session data must be JSON to fit in a signed cookie: {exc}") from exc
        payload = _b64(text.encode("utf-8"))
        return f"{payload}.{self._signature(payload)}"

    def loads(self, raw: str) -> Session:
        """The session in a cookie value; empty when the value is not one
        this secret signed, does not decode, or has expired."""
        return Session(self._decode(raw))

    def _decode(self, raw: str) -> dict[str, Any]:
        payload, dot, signature = raw.rpartition(".")
        if not dot:
            return {}
        try:
            # bytes: compare_digest refuses str with non-ASCII characters (TypeError)
            if not hmac.compare_digest(self._signature(payload).encode("ascii"), signature.encode("ascii")):
                return {}
            envelope = json.loads(_unb64(payload))
        except (ValueError, RecursionError):  # binascii.Error and UnicodeError are ValueErrors
            return {}
        if not isinstance(envelope, dict) or not isinstance(envelope.get("d"), dict):
            return {}
        exp = envelope.get("exp")
        if exp is not None and (type(exp) not in (int, float) or not math.isfinite(exp) or exp < time.time()):
            return {}
        data: dict[str, Any] = envelope["d"]
        return data

    def _read(self, request: Request) -> dict[str, Any]:
        for field in request.headers.get_all("cookie") or ():
            for pair in field.split(";"):
                name, eq, value = pair.partition("=")
                if eq and name.strip() == self.cookie_name:
                    return self._decode(value.strip())
        return {}

    def load(self, request: Request) -> Session:
        """The session of ``request`` (from its ``Cookie`` fields, RFC 6265
        §5.4), read and verified when first used."""
        return Session(source=functools.partial(self._read, request))

    def save(self, session: Mapping[str, Any] | None, response: Response) -> None:
        """Set the cookie on ``response`` if ``session`` changed: the signed
        data, or, for a session emptied, a cookie that expires at once."""
        if session is None or (isinstance(session, Session) and not session.is_modified()):
            return
        if not session:
            self._set_cookie(response, "", max_age=0)
            return
        value = self.dumps(session)
        if len(value) > MAX_COOKIE_SIZE and not self._warned_size:
            self._warned_size = True
            log.warning("a session cookie is %d bytes, more than the ~4 KB browsers keep; it may be dropped "
                        "(logged once)", len(value))
        self._set_cookie(response, value)

    def _set_cookie(self, response: Response, value: str, max_age: int | None = -1) -> None:
        response.set_cookie(self.cookie_name, value, path=self.path, domain=self.domain,
                            max_age=self.max_age if max_age == -1 else max_age, secure=self.secure,
                            http_only=self.http_only, same_site=self.same_site)

    def load_middleware(self, request: Request) -> Request:
        """The before-request step: ``request.session`` from the cookie."""
        request.session = self.load(request)
        return request

    def save_middleware(self, request: Request, response: Response) -> Response:
        """The after-request step: the cookie, if the session changed."""
        self.save(request.session, response)
        return response
