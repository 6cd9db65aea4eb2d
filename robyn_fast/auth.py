"""Authentication for ``auth_required`` routes, with Robyn's classes.

``app.configure_authentication(handler)`` names an
:class:`AuthenticationHandler`; a route registered with
``auth_required=True`` runs it before its middlewares of that path and its
handler: ``handler.authenticate(request)`` (sync or ``async def``) returns an
:class:`~robyn_fast.http.params.Identity` (put on ``request.identity``) or
None, answered with ``handler.unauthorized_response``: 401, ``Unauthorized``,
``WWW-Authenticate`` naming the token getter's scheme (its class name, as
Robyn sends it). A :class:`TokenGetter` reads the credentials from the
request; :class:`BearerGetter` reads ``Authorization: Bearer <token>``
(RFC 6750 §2.1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable

from .http.params import Identity
from .http.types import Headers, Request, Response

__all__ = ["TokenGetter", "BearerGetter", "AuthenticationHandler", "Identity"]


class TokenGetter(ABC):
    """Reads (and writes) the token of a request; it does not decode it."""

    @property
    def scheme(self) -> str:
        """The scheme named in ``WWW-Authenticate`` on a 401: the class name."""
        return type(self).__name__

    @classmethod
    @abstractmethod
    def get_token(cls, request: Request) -> str | None:
        """The token the request carries, or None."""

    @classmethod
    @abstractmethod
    def set_token(cls, request: Request, token: str) -> None:
        """Put ``token`` on the request."""


class BearerGetter(TokenGetter):
    """``Authorization: Bearer <token>`` (RFC 6750 §2.1)."""

    @classmethod
    def get_token(cls, request: Request) -> str | None:
        value = request.headers.get("authorization")
        if not value or not value.startswith("Bearer "):
            return None
        return value[len("Bearer "):]

    @classmethod
    def set_token(cls, request: Request, token: str) -> None:
        request.headers.set("authorization", f"Bearer {token}")


class AuthenticationHandler(ABC):
    """Decides who made a request; subclass it and define :meth:`authenticate`."""

    def __init__(self, token_getter: TokenGetter) -> None:
        if not isinstance(token_getter, TokenGetter) and not (
                isinstance(token_getter, type) and issubclass(token_getter, TokenGetter)):
            raise TypeError(f"token_getter must be a TokenGetter, not {type(token_getter).__name__}")
        self.token_getter = token_getter

    @property
    def unauthorized_response(self) -> Response:
        """The answer to a request :meth:`authenticate` refused (401)."""
        scheme = self.token_getter.scheme if isinstance(self.token_getter, TokenGetter) else self.token_getter.__name__
        return Response(401, Headers({"WWW-Authenticate": scheme}), "Unauthorized")

    @abstractmethod
    def authenticate(self, request: Request) -> Identity | None | Awaitable[Identity | None]:
        """The identity behind ``request``, or None to answer 401. May be
        ``async def`` (to ask an async database or an identity provider):
        it is awaited, on the server's event loop."""
