"""``robyn.templating``: Jinja2 templates (Jinja2 installed separately)."""

from robyn_fast.compat import module_getattr
from robyn_fast.templating import JinjaTemplate, TemplateInterface

__all__ = ["TemplateInterface", "JinjaTemplate"]

__getattr__ = module_getattr("robyn.templating")
