"""``robyn.openapi``: the OpenAPI document of an app and the objects that
describe it (:mod:`robyn_fast.openapi`), with the methods Robyn's ``OpenAPI``
has (``OpenAPI(info=OpenAPIInfo(...))``, ``get_openapi_config``,
``get_openapi_docs_page``, ``add_openapi_path_obj``, ``add_subrouter_paths``,
``override_openapi``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from robyn_fast.compat import module_getattr
from robyn_fast.http.types import Response
from robyn_fast.openapi import Components, Contact, ExternalDocumentation, License, OpenAPIInfo, RouteDoc, Server
from robyn_fast.openapi import OpenAPI as _OpenAPI

__all__ = ["OpenAPI", "RouteOpenAPIMeta", "OpenAPIInfo", "Contact", "License", "Server", "ExternalDocumentation",
           "Components", "str_typed_dict"]


class str_typed_dict(TypedDict):  # noqa: N801 (Robyn's name)
    """Robyn's placeholder annotation for a query or body of string fields."""

    key: str
    value: str


@dataclass
class RouteOpenAPIMeta:
    """Robyn 0.88's per-route OpenAPI details (what ``add_openapi_path_obj``
    takes as ``meta``)."""

    status_code: int | None = None
    deprecated: bool = False
    include_in_schema: bool = True
    response_model: Any = None
    responses: dict[int | str, Any] | None = None
    summary: str | None = None
    description: str | None = None
    operation_id: str | None = None


class OpenAPI(_OpenAPI):
    """Robyn's ``OpenAPI(info=OpenAPIInfo(), openapi_file_override=False)``.

    Once a file overrides the document (``openapi_file_override``, or
    :meth:`override_openapi`), routes are no longer added to it: the file is
    the document, as in Robyn.
    """

    def __init__(self, info: OpenAPIInfo | None = None, openapi_file_override: bool = False) -> None:
        super().__init__(info=info)
        self.openapi_file_override = bool(openapi_file_override)

    def override_openapi(self, path: str | Path) -> None:
        """The document is now the JSON file at ``path``."""
        super().override_openapi(path)
        self.openapi_file_override = True

    def describe(self, doc: RouteDoc) -> None:
        if not self.openapi_file_override:
            super().describe(doc)

    def add_security_scheme(self, name: str, scheme: dict[str, Any]) -> None:
        if not self.openapi_file_override:
            super().add_security_scheme(name, scheme)

    def add_openapi_path_obj(self, route_type: str, endpoint: str, openapi_name: str, openapi_tags: list[str],
                             handler: Callable[..., Any], auth_required: bool = False, meta: Any = None) -> None:
        """Describe the route ``route_type`` (``"get"``...) at ``endpoint``;
        ``meta``: Robyn 0.88's :class:`RouteOpenAPIMeta` (or anything with
        its attributes)."""
        details = {key: getattr(meta, key) for key in ("status_code", "deprecated", "include_in_schema",
                                                        "response_model", "responses", "description",
                                                        "operation_id") if hasattr(meta, key)}
        summary = getattr(meta, "summary", None)
        self.add_route(route_type, endpoint, handler, openapi_name if summary is None else summary, openapi_tags,
                       auth_required=auth_required, **details)

    def add_subrouter_paths(self, subrouter_openapi: _OpenAPI) -> None:
        """Take in the paths another document (a sub-router's) describes."""
        if not self.openapi_file_override:
            self.openapi_spec["paths"].update(subrouter_openapi.openapi_spec.get("paths", {}))

    def get_openapi_config(self) -> dict[str, Any]:
        """The document, as a dict (what ``/openapi.json`` serves)."""
        return self.openapi_spec

    def get_openapi_docs_page(self) -> Response:
        """The Swagger UI page (what ``/docs`` serves)."""
        return self.docs_page()


__getattr__ = module_getattr("robyn.openapi")
