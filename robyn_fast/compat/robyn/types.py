"""``robyn.types``: the annotation types of Robyn's ``robyn.types``.

A handler parameter annotated with one of them (``PathParams``, ``Method``,
``FormData``, ``Files``, ``IPAddress``, ``Body`` or a subclass, ``JsonBody`` or a subclass: the
body parsed as JSON) receives that
part of the request, whatever its name (:mod:`robyn_fast.http.params`).
Robyn 0.88's aliases ``RequestMethod``, ``RequestBody``, ``RequestURL`` and
its ``QueryParamValidationError`` (what a typed parameter that is missing or
malformed raises: robyn_fast's :class:`~robyn_fast.exceptions.InvalidParameter`)
are here too.
"""

from typing import Any, Literal, Optional

from robyn_fast.compat import module_getattr
from robyn_fast.exceptions import InvalidParameter
from robyn_fast.http.params import Body, Files, FormData, IPAddress, JsonBody, JSONResponse, Method, PathParams
from robyn_fast.http.types import Url

__all__ = ["PathParams", "Method", "FormData", "Files", "IPAddress", "JSONResponse", "Body", "JsonBody",
           "RequestMethod", "RequestBody", "RequestURL", "QueryParamValidationError"]

RequestMethod = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"]
RequestBody = str | bytes
RequestURL = Url


class QueryParamValidationError(InvalidParameter):
    """Robyn's ``QueryParamValidationError(param_name, value, expected_type,
    message=None)``: a 400 naming the parameter (``detail``, also the body)."""

    def __init__(self, param_name: str, value: Optional[str], expected_type: Any,
                 message: Optional[str] = None) -> None:
        if message:
            detail = message
        elif value is None:
            detail = f"Missing required parameter: '{param_name}'"
        else:
            detail = (f"Invalid value '{value}' for parameter '{param_name}': expected "
                      f"{getattr(expected_type, '__name__', expected_type)}")
        super().__init__(400, detail)
        self.param_name = param_name
        self.value = value
        self.expected_type = expected_type
        self.detail = detail


__getattr__ = module_getattr("robyn.types")
