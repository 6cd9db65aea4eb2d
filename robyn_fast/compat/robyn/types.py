"""``robyn.types``: the annotation aliases of Robyn's ``robyn.types``.

They only name types; whether a handler parameter annotated with one
receives that part of the request is decided by robyn_fast's handler
binding (by parameter name), not by the annotation.
"""

from typing import Dict, NewType, Optional, TypedDict

from robyn_fast.compat import module_getattr

__all__ = ["PathParams", "Method", "FormData", "Files", "IPAddress", "JSONResponse", "Body"]

PathParams = NewType("PathParams", Dict[str, str])
Method = NewType("Method", str)
FormData = NewType("FormData", Dict[str, str])
Files = NewType("Files", Dict[str, bytes])
IPAddress = NewType("IPAddress", Optional[str])  # type: ignore[valid-newtype]  # as Robyn declares it


class JSONResponse(TypedDict):
    """Base for the TypedDict that describes a JSON response (OpenAPI in Robyn)."""


class Body:
    """Base for a class that describes a request body (OpenAPI in Robyn)."""


__getattr__ = module_getattr("robyn.types")
