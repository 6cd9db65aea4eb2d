"""Pydantic models as request bodies and as responses (Robyn 0.88's
pydantic support), with pydantic an optional dependency (the ``pydantic``
extra).

A handler parameter annotated with a subclass of ``pydantic.BaseModel``
receives the request body validated into that model
(``Model.model_validate_json(raw_body)``: one pass, JSON parse and
validation together, pydantic's lax mode); a body that does not validate
(invalid JSON, an empty body, a missing field, a wrong type...) is answered
``422 Unprocessable Content`` with the JSON body ``{"detail": [errors],
"error": "Validation Error"}`` before the handler runs, the errors as
pydantic lists them (``loc``, ``type``, ``msg``, ``input``...). A model a
handler returns, or models inside a returned ``dict`` or ``list``, are sent
as JSON (``model_dump(mode="json")``).

No pydantic import happens here, ever: a model class can only exist once
its program imported pydantic, so :func:`is_model_class` asks
``sys.modules`` whether pydantic is loaded at all before looking further.
An app that does not use pydantic neither imports it nor pays anything per
request (the checks run at registration, and for responses only for values
no other rule takes).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from typing import Any

from .exceptions import ArgumentTypeError, HTTPError

__all__ = ["is_model_class", "is_model", "body_reader", "dump", "schema", "UNPROCESSABLE"]

#: The status of a body that does not validate (RFC 9110 §15.5.21).
UNPROCESSABLE = 422

_JSON_FIELDS = (("Content-Type", "application/json"),)


def _base_model() -> Any:
    pydantic = sys.modules.get("pydantic")
    return None if pydantic is None else getattr(pydantic, "BaseModel", None)


def is_model_class(annotation: Any) -> bool:
    """Whether ``annotation`` is a subclass of ``pydantic.BaseModel`` (False
    while pydantic is not imported)."""
    base = _base_model()
    if base is None or not inspect.isclass(annotation) or annotation is base:
        return False
    try:
        return issubclass(annotation, base)
    except TypeError:  # a generic alias that passes for a class on older Pythons
        return False


def is_model(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a pydantic model."""
    base = _base_model()
    return base is not None and isinstance(obj, base)


def dump(model: Any) -> Any:
    """A model as JSON-ready Python data (``model_dump(mode="json")``)."""
    return model.model_dump(mode="json")


def body_reader(model: type[Any], handler_name: str, param: str) -> Callable[[Any], Any]:
    """A function of the request: its body validated into ``model``, or
    :class:`~robyn_fast.exceptions.HTTPError` 422 carrying the errors as
    JSON. ``TypeError`` now for a model of pydantic 1's API (no
    ``model_validate_json``)."""
    validate = getattr(model, "model_validate_json", None)
    if validate is None:
        raise ArgumentTypeError(
            f"parameter {param!r} of handler {handler_name}: {model.__qualname__} has no model_validate_json "
            "(pydantic 2 models are supported, not pydantic 1's)")
    invalid = sys.modules["pydantic"].ValidationError

    def read(request: Any) -> Any:
        try:
            return validate(request.raw_body)
        except invalid as exc:
            detail = _errors_json(exc)
            raise HTTPError(UNPROCESSABLE, '{"detail":' + detail + ',"error":"Validation Error"}',
                            _JSON_FIELDS) from None

    return read


def _errors_json(exc: Any) -> str:
    """The errors of a ``ValidationError`` as a JSON array: pydantic's own
    JSON (``loc`` as lists, ``ctx`` values as text), or, when an input
    cannot be written as JSON (a body that is not UTF-8), the same with
    each input as text."""
    try:
        text: str = exc.json()
        return text
    except ValueError:
        pass
    errors = []
    for error in exc.errors():
        error = dict(error)
        raw = error.get("input")
        if isinstance(raw, (bytes, bytearray)):
            error["input"] = bytes(raw).decode("utf-8", errors="replace")
        if isinstance(error.get("ctx"), dict):
            error["ctx"] = {k: str(v) for k, v in error["ctx"].items()}
        errors.append(error)
    return json.dumps(errors, default=str)


def schema(model: type[Any], components: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``model`` for an OpenAPI document: nested models
    become ``$ref`` to ``#/components/schemas/<name>``, their schemas added
    to ``components``."""
    found: dict[str, Any] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(found.pop("$defs", {}))
    return found
