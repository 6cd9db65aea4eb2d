"""OpenAPI 3.1 description of an app's routes (Robyn's ``robyn.openapi``),
served at ``/openapi.json`` with a Swagger UI page at ``/docs``.

Each route becomes an operation: its method and path (``<id>``/``:id``
written ``{id}``, a path parameter each), the handler's docstring as the
description, ``openapi_name`` as the summary, ``openapi_tags`` as the tags;
a parameter annotated with :class:`~robyn_fast.http.params.Body` or
:class:`~robyn_fast.http.params.JsonBody` (or a subclass) gives the JSON
``requestBody`` schema (an object of its annotated fields), one annotated with a subclass of
``QueryParams`` gives a query parameter per annotated field, and a return
annotation that is a ``TypedDict`` (``JSONResponse``) gives the 200
response's schema. A pydantic model (:mod:`robyn_fast.models`) as a
parameter's annotation gives the ``requestBody`` schema, as the return
annotation (or ``list[Model]``) the 200 response's: pydantic's JSON Schema,
nested models as ``$ref`` into ``components.schemas``. Types map to JSON Schema as ``str`` string, ``int``
integer, ``float`` number, ``bool`` boolean, ``list`` array, ``dict`` and
annotated classes object (their fields as properties), ``Optional``/``Union``
``anyOf``. The document is built once, when first asked for.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import json
import typing
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import models
from .http.params import Body, JsonBody
from .http.router import compile_path, Segment
from .http.types import QueryParams, Response

__all__ = ["OpenAPI", "RouteDoc", "OpenAPIInfo", "Contact", "License", "Server", "ExternalDocumentation", "Components",
           "json_schema"]


@dataclass
class Contact:
    """The Contact Object of the document's ``info`` (OpenAPI 3.1 §4.8.3)."""

    name: str | None = None
    url: str | None = None
    email: str | None = None


@dataclass
class License:
    """The License Object of the document's ``info`` (OpenAPI 3.1 §4.8.4)."""

    name: str | None = None
    url: str | None = None


@dataclass
class Server:
    """A Server Object (OpenAPI 3.1 §4.8.5): where the API is served."""

    url: str
    description: str | None = None


@dataclass
class ExternalDocumentation:
    """The External Documentation Object (OpenAPI 3.1 §4.8.22)."""

    description: str | None = None
    url: str | None = None


@dataclass
class Components:
    """The Components Object (OpenAPI 3.1 §4.8.7): reusable parts of the document."""

    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    requestBodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # noqa: N815 (the spec's name)
    securitySchemes: dict[str, dict[str, Any]] = field(default_factory=dict)  # noqa: N815
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    pathItems: dict[str, dict[str, Any]] = field(default_factory=dict)  # noqa: N815


@dataclass
class OpenAPIInfo:
    """What the document says about the API: its Info Object (OpenAPI 3.1
    §4.8.2: title, version, description, termsOfService, contact, license)
    and the document's ``servers``, ``externalDocs`` and ``components``."""

    title: str = "Robyn API"
    version: str = "1.0.0"
    description: str | None = None
    termsOfService: str | None = None  # noqa: N815 (the spec's name)
    contact: Contact = field(default_factory=Contact)
    license: License = field(default_factory=License)
    servers: list[Server] = field(default_factory=list)
    externalDocs: ExternalDocumentation | None = field(default_factory=ExternalDocumentation)  # noqa: N815
    components: Components = field(default_factory=Components)


def _present(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON object, without its unset (None or empty) fields."""
    return {k: v for k, v in asdict(obj).items() if v not in (None, {}, [])}


def _info_object(info: OpenAPIInfo) -> dict[str, Any]:
    found: dict[str, Any] = {"title": info.title, "version": info.version}
    for key in ("description", "termsOfService"):
        if getattr(info, key) is not None:
            found[key] = getattr(info, key)
    for key in ("contact", "license"):
        value = _present(getattr(info, key))
        if value:
            found[key] = value
    return found

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                            type(None): "null"}

#: Standard library types with a JSON Schema format (as OpenAPI 3.1 and Pydantic write them).
_FORMATS: dict[Any, dict[str, str]] = {
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    datetime.timedelta: {"type": "string", "format": "duration"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    decimal.Decimal: {"type": "number"},
    bytes: {"type": "string", "format": "binary"},
}


def json_schema(annotation: Any, depth: int = 0) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) of a Python annotation."""
    if depth > 16:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation in _FORMATS:
        return dict(_FORMATS[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        return {"anyOf": [json_schema(arg, depth + 1) for arg in args]}
    if origin is typing.Literal:
        found: dict[str, Any] = {"enum": list(args)}
        if args and type(args[0]) in _SCALARS:
            found["type"] = _SCALARS[type(args[0])]
        return found
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        values = [member.value for member in annotation]
        found = {"enum": values}
        if values and type(values[0]) in _SCALARS:
            found["type"] = _SCALARS[type(values[0])]
        return found
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": json_schema(args[0], depth + 1) if args else {}}
    if origin is dict or annotation is dict:
        if len(args) == 2:
            return {"type": "object", "additionalProperties": json_schema(args[1], depth + 1)}
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


def _response_model_schema(hint: Any, components: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a return annotation that is a pydantic model or a list of them, else None."""
    if models.is_model_class(hint):
        return models.schema(hint, components)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (list, tuple, set, frozenset) and args and models.is_model_class(args[0]):
        return {"type": "array", "items": models.schema(args[0], components)}
    return None


class RouteDoc(NamedTuple):
    """What the OpenAPI document says of one route, as it was registered
    (``app.add_route``'s arguments of the same names)."""

    method: str
    path: str
    handler: Callable[..., Any]
    name: str
    tags: list[str]
    auth_required: bool = False
    status_code: int | None = None
    response_model: Any = None
    responses: dict[int | str, Any] | None = None
    deprecated: bool = False
    include_in_schema: bool = True
    description: str | None = None  # instead of the handler's docstring
    operation_id: str | None = None


def _schema(annotation: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of ``annotation``: a pydantic model's (or a list of
    them) with its nested models added to ``components``, else :func:`json_schema`'s."""
    found = _response_model_schema(annotation, components)
    return found if found is not None else json_schema(annotation)


def _responses(extra: dict[int | str, Any], components: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``responses=``: each value a description, or a Response Object whose
    ``model`` (a type) becomes its JSON schema."""
    built: dict[str, dict[str, Any]] = {}
    for status, value in extra.items():
        if isinstance(value, str):
            built[str(status)] = {"description": value}
            continue
        if not isinstance(value, dict):
            raise TypeError(f"responses[{status!r}] must be a description (str) or a Response Object (dict), "
                            f"not {type(value).__name__}")
        obj = {k: v for k, v in value.items() if k != "model"}
        obj.setdefault("description", "")
        if value.get("model") is not None:
            obj.setdefault("content", {})["application/json"] = {"schema": _schema(value["model"], components)}
        built[str(status)] = obj
    return built


def _operation(doc: RouteDoc, path_params: list[str], security: list[str],
               components: dict[str, Any]) -> dict[str, Any]:
    """The Operation Object of one route; the schemas of the pydantic models it
    names are added to ``components`` (the document's ``components.schemas``)."""
    handler = doc.handler
    operation: dict[str, Any] = {
        "summary": doc.name or getattr(handler, "__name__", ""),
        "description": doc.description if doc.description is not None else inspect.getdoc(handler) or "",
        "tags": list(doc.tags),
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in path_params],
    }
    if doc.operation_id is not None:
        operation["operationId"] = doc.operation_id
    if doc.deprecated:
        operation["deprecated"] = True
    if doc.auth_required and security:
        operation["security"] = [{name: []} for name in security]
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolvable annotations: the operation without schemas
        hints = {}
    returned = doc.response_model if doc.response_model is not None else hints.get("return")
    response_schema: dict[str, Any] = {}
    if returned is not None and returned is not Response and returned is not type(None):
        response_schema = _schema(returned, components)
    for pname, hint in hints.items():
        if pname == "return":
            continue
        if models.is_model_class(hint):
            operation["requestBody"] = {"content": {"application/json": {"schema": models.schema(hint, components)}},
                                        "required": True}
        elif inspect.isclass(hint) and (issubclass(hint, (Body, JsonBody)) or typing.is_typeddict(hint)):
            schema = json_schema(hint)
            schema.setdefault("properties", {})  # a bare Body/JsonBody: a JSON object of any fields
            operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
        elif inspect.isclass(hint) and issubclass(hint, QueryParams) and hint is not QueryParams:
            own = {name for cls in hint.__mro__ if issubclass(cls, QueryParams) and cls is not QueryParams
                   for name in vars(cls).get("__annotations__", {})}
            for field, ftype in typing.get_type_hints(hint).items():
                if field not in own:
                    continue
                operation["parameters"].append({"name": field, "in": "query", "required": False,
                                                "schema": json_schema(ftype)})
    success = str(doc.status_code) if doc.status_code is not None else "200"
    operation["responses"] = {success: {"description": "Successful Response",
                                        "content": {"application/json": {"schema": response_schema}}}}
    if doc.responses:
        operation["responses"].update(_responses(doc.responses, components))
    return operation


#: Where the Swagger UI page loads its script and style from without the ``docs`` extra.
CDN_ASSETS = "https://unpkg.com/swagger-ui-dist@5/"


class OpenAPI:
    """The OpenAPI document of an app: ``openapi_spec`` is the dict served.

    ``info`` fills its ``info``, ``servers``, ``externalDocs`` (null when it
    has no ``url``, as Robyn writes it) and ``components``; ``title`` and
    ``version`` are the short way to give just those two.
    """

    def __init__(self, title: str = "Robyn API", version: str = "1.0.0", info: OpenAPIInfo | None = None) -> None:
        if info is None:
            info = OpenAPIInfo(title=title, version=version)
        elif not isinstance(info, OpenAPIInfo):
            raise TypeError(f"info must be an OpenAPIInfo, not {type(info).__name__}")
        self.info = info
        docs = info.externalDocs
        self.openapi_spec: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": _info_object(info),
            "paths": {},
            "components": asdict(info.components),
            "servers": [_present(server) for server in info.servers],
            "externalDocs": _present(docs) if docs is not None and docs.url else None,
        }

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
                  tags: list[str] | None = None, **details: Any) -> None:
        """Describe one route; ``details`` are :class:`RouteDoc`'s other
        fields (``auth_required``, ``status_code``, ``response_model``,
        ``responses``, ``deprecated``, ``include_in_schema``)."""
        self.describe(RouteDoc(method, path, handler, name, list(tags) if tags else [method.lower()], **details))

    def describe(self, doc: RouteDoc) -> None:
        """Describe the route ``doc`` (nothing when it is left out of the schema)."""
        if not doc.include_in_schema:
            return
        api_path, params = _openapi_path(doc.path)
        components = self.openapi_spec.setdefault("components", {})
        if not isinstance(components.get("schemas"), dict):
            components["schemas"] = {}
        schemes = list(components.get("securitySchemes") or {})
        self.openapi_spec["paths"].setdefault(api_path, {})[doc.method.lower()] = _operation(
            doc, params, schemes, components["schemas"])

    def add_security_scheme(self, name: str, scheme: dict[str, Any]) -> None:
        """A Security Scheme Object (OpenAPI 3.1 §4.8.27) under ``components``;
        ``auth_required`` routes described afterwards list every scheme as
        their ``security``."""
        components = self.openapi_spec.setdefault("components", {})
        components.setdefault("securitySchemes", {})[name] = scheme

    def json(self) -> str:
        return json.dumps(self.openapi_spec)

    def docs_page(self, assets: str = CDN_ASSETS) -> Response:
        """The Swagger UI page, reading ``/openapi.json``; its script and
        style sheet are ``swagger-ui-bundle.js`` and ``swagger-ui.css`` under
        the URL ``assets`` (a CDN by default; :meth:`Robyn.serve_openapi
        <robyn_fast.app.Robyn.serve_openapi>` serves them itself when the
        ``docs`` extra is installed)."""
        title = str(self.openapi_spec.get("info", {}).get("title", "API"))
        page = _DOCS.replace("{assets}", assets).replace(
            "{title}", title.replace("&", "&amp;").replace("<", "&lt;"))
        return Response(200, {"Content-Type": "text/html; charset=utf-8"}, page)


#: The Swagger UI files the docs page needs, with their media types.
SWAGGER_UI_FILES = {"swagger-ui-bundle.js": "application/javascript; charset=utf-8",
                    "swagger-ui.css": "text/css; charset=utf-8"}


def local_swagger_ui() -> Path | None:
    """The directory of Swagger UI's files (5.x, which reads OpenAPI 3.1)
    that the ``swagger-ui-py`` package ships (the ``docs`` extra), or None
    when it is not installed. Found without importing the package (whose
    import pulls in its framework glue)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("swagger_ui")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        found = Path(location) / "static"
        if all((found / name).is_file() for name in SWAGGER_UI_FILES):
            return found
    return None


_DOCS = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""
