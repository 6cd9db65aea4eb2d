"""OpenAPI 3.1 description of an app's routes (Robyn's ``robyn.openapi``),
served at ``/openapi.json`` with a Swagger UI page at ``/docs``.

Each route becomes an operation: its method and path (``<id>``/``:id``
written ``{id}``, a path parameter each), the handler's docstring as the
description, ``openapi_name`` as the summary, ``openapi_tags`` as the tags;
a parameter annotated with a subclass of :class:`~robyn_fast.http.params.Body`
gives the JSON ``requestBody`` schema, one annotated with a subclass of
``QueryParams`` gives a query parameter per annotated field, and a return
annotation that is a ``TypedDict`` (``JSONResponse``) gives the 200
response's schema. Types map to JSON Schema as ``str`` string, ``int``
integer, ``float`` number, ``bool`` boolean, ``list`` array, ``dict`` and
annotated classes object (their fields as properties), ``Optional``/``Union``
``anyOf``. The document is built once, when first asked for.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .http.params import Body
from .http.router import compile_path, Segment
from .http.types import QueryParams, Response

__all__ = ["OpenAPI", "json_schema"]

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                            type(None): "null", bytes: "string"}


def json_schema(annotation: Any, depth: int = 0) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) of a Python annotation."""
    if depth > 16:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        return {"anyOf": [json_schema(arg, depth + 1) for arg in typing.get_args(annotation)]}
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        return {"type": "array", "items": json_schema(args[0], depth + 1) if args else {}}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if annotation is list:
        return {"type": "array"}
    if inspect.isclass(annotation):
        try:
            hints = typing.get_type_hints(annotation)
        except Exception:  # an annotation that does not resolve: describe what can be
            hints = dict(getattr(annotation, "__annotations__", {}))
        if hints:
            return {"type": "object",
                    "properties": {name: json_schema(hint, depth + 1) for name, hint in hints.items()
                                   if not name.startswith("_")}}
        return {"type": "object"}
    return {}


def _openapi_path(path: str) -> tuple[str, list[str]]:
    pattern = compile_path(path)
    names = iter(pattern.param_names)
    parts: list[str] = []
    for seg in pattern.key:
        parts.append("{%s}" % next(names) if seg in (Segment.PARAM, Segment.CATCH_ALL) else str(seg))
    return "/" + "/".join(parts), list(pattern.param_names)


def _operation(handler: Callable[..., Any], path_params: list[str], name: str, tags: list[str]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": name or getattr(handler, "__name__", ""),
        "description": inspect.getdoc(handler) or "",
        "tags": list(tags),
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in path_params],
        "responses": {"200": {"description": "Successful Response",
                              "content": {"application/json": {"schema": {}}}}},
    }
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolvable annotations: the operation without schemas
        hints = {}
    for pname, hint in hints.items():
        if pname == "return":
            if typing.is_typeddict(hint):
                operation["responses"]["200"]["content"]["application/json"]["schema"] = json_schema(hint)
            continue
        if inspect.isclass(hint) and issubclass(hint, Body) and hint is not Body:
            operation["requestBody"] = {"content": {"application/json": {"schema": json_schema(hint)}}}
        elif inspect.isclass(hint) and issubclass(hint, QueryParams) and hint is not QueryParams:
            own = {name for cls in hint.__mro__ if issubclass(cls, QueryParams) and cls is not QueryParams
                   for name in vars(cls).get("__annotations__", {})}
            for field, ftype in typing.get_type_hints(hint).items():
                if field not in own:
                    continue
                operation["parameters"].append({"name": field, "in": "query", "required": False,
                                                "schema": json_schema(ftype)})
    return operation


class OpenAPI:
    """The OpenAPI document of an app: ``openapi_spec`` is the dict served."""

    def __init__(self, title: str = "Robyn API", version: str = "1.0.0") -> None:
        self.openapi_spec: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": {},
            "components": {"schemas": {}},
            "servers": [],
            "externalDocs": {"description": None, "url": None},
        }
        self._built = False

    def override_openapi(self, path: str | Path) -> None:
        """Start from the document in the JSON file at ``path`` (routes are still added)."""
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: an OpenAPI document is a JSON object")
        info = spec.get("info") or {}
        # Robyn's example file keeps servers/externalDocs/components inside "info": lift them.
        for key in ("servers", "externalDocs", "components"):
            if key not in spec and key in info:
                spec[key] = info.pop(key)
        for key, value in self.openapi_spec.items():
            spec.setdefault(key, value)
        self.openapi_spec = spec

    def add_route(self, method: str, path: str, handler: Callable[..., Any], name: str = "",
                  tags: list[str] | None = None) -> None:
        """Describe one route."""
        api_path, params = _openapi_path(path)
        self.openapi_spec["paths"].setdefault(api_path, {})[method.lower()] = _operation(
            handler, params, name, tags or [method.lower()])

    def json(self) -> str:
        return json.dumps(self.openapi_spec)

    def docs_page(self) -> Response:
        """The Swagger UI page, reading ``/openapi.json``."""
        title = str(self.openapi_spec.get("info", {}).get("title", "API"))
        page = _DOCS.replace("{title}", title.replace("<", "&lt;").replace("&", "&amp;"))
        return Response(200, {"Content-Type": "text/html; charset=utf-8"}, page)


_DOCS = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""
