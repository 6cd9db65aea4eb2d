"""The annotation types a handler parameter can carry to say which part of
the request it wants, as Robyn's ``robyn.types`` names them.

:func:`robyn_fast.http.routes.bind_http` reads a parameter's annotation
once, at registration: ``Request``, ``QueryParams`` (or a subclass),
``Headers``, ``PathParams``, ``Body`` (or a subclass), ``Method``, ``Url``,
``FormData``, ``Files``, ``IPAddress`` and ``Identity`` each receive that
part of the request, whatever the parameter is called; ``JsonBody`` (or a
subclass) receives the body parsed as JSON, or the request is answered 400.
"""

from __future__ import annotations

from typing import Any, Dict, NewType, Optional, TypedDict

__all__ = ["PathParams", "Method", "FormData", "Files", "IPAddress", "JSONResponse", "Body", "JsonBody", "Identity"]

PathParams = NewType("PathParams", Dict[str, str])
Method = NewType("Method", str)
FormData = NewType("FormData", Dict[str, str])
Files = NewType("Files", Dict[str, bytes])
IPAddress = NewType("IPAddress", Optional[str])  # type: ignore[valid-newtype]  # as Robyn declares it


class JSONResponse(TypedDict):
    """Base for the TypedDict that describes a JSON response (for OpenAPI)."""


class Body:
    """Base for a class that describes a request body: a parameter annotated
    with it (or a subclass) receives ``request.body``."""


class JsonBody:
    """Base for a class that describes a JSON request body (Robyn 0.79's
    ``JsonBody``): a parameter annotated with it (or a subclass, whose
    annotated fields the OpenAPI document shows) receives
    ``request.json()``; a body that is not JSON is answered 400 with
    ``{"error": "Invalid JSON body: ..."}`` before the handler runs."""


class Identity:
    """Who an authentication handler says made the request
    (``request.identity``); ``claims`` is a ``dict`` of ``str`` to ``str``."""

    __slots__ = ("claims",)

    def __init__(self, claims: dict[str, Any]) -> None:
        if not isinstance(claims, dict):
            raise TypeError(f"Identity claims must be a dict, not {type(claims).__name__}")
        self.claims: dict[str, Any] = claims

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.claims == self.claims

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Identity(claims={self.claims!r})"
