"""Jinja2 templates rendered into HTML responses (Robyn's
``robyn.templating``). Jinja2 is an optional dependency: ``pip install
jinja2`` (or the ``templating`` extra); without it, creating a
:class:`JinjaTemplate` raises ``ImportError`` saying so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .http.types import Headers, Response

__all__ = ["TemplateInterface", "JinjaTemplate"]


class TemplateInterface(ABC):
    """A template engine: :meth:`render_template` returns a response."""

    @abstractmethod
    def render_template(self, *args: Any, **kwargs: Any) -> Response: ...


class JinjaTemplate(TemplateInterface):
    """Templates from ``directory`` (Jinja2's ``FileSystemLoader``)."""

    def __init__(self, directory: str, encoding: str = "utf-8", followlinks: bool = False) -> None:
        try:
            from jinja2 import Environment, FileSystemLoader
        except ImportError as exc:
            raise ImportError("JinjaTemplate needs Jinja2: pip install jinja2", name="jinja2") from exc
        self.env = Environment(loader=FileSystemLoader(searchpath=directory, encoding=encoding,
                                                       followlinks=followlinks))

    def render_template(self, template_name: str, **kwargs: Any) -> Response:
        """200, ``text/html; charset=utf-8``, the template rendered with ``kwargs``."""
        text = self.env.get_template(template_name).render(**kwargs)
        return Response(200, Headers({"Content-Type": "text/html; charset=utf-8"}), text)
