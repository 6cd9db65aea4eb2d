"""``robyn.types``: the annotation types of Robyn's ``robyn.types``.

A handler parameter annotated with one of them (``PathParams``, ``Method``,
``FormData``, ``Files``, ``IPAddress``, ``Body`` or a subclass, ``JsonBody`` or a subclass: the
body parsed as JSON) receives that
part of the request, whatever its name (:mod:`robyn_fast.http.params`).
"""

from robyn_fast.compat import module_getattr
from robyn_fast.http.params import Body, Files, FormData, IPAddress, JsonBody, JSONResponse, Method, PathParams

__all__ = ["PathParams", "Method", "FormData", "Files", "IPAddress", "JSONResponse", "Body", "JsonBody"]

__getattr__ = module_getattr("robyn.types")
