"""``robyn.exceptions``: Robyn's ``HTTPException`` and ``WebSocketException``.

As in Robyn 0.77-0.79 they carry a status (a close code) and a text and
nothing treats them specially: raised by a handler, an ``HTTPException``
answers 500 like any other exception, unless the app's ``@app.exception``
handler turns it into a response (it receives the exception and can read
``status_code`` and ``detail``).
"""

from __future__ import annotations

import http

from robyn_fast.compat import module_getattr
from robyn_fast.exceptions import RobynFastError

__all__ = ["HTTPException", "WebSocketException"]


class HTTPException(RobynFastError):
    """``HTTPException(status_code, detail=None)``; ``detail`` defaults to the
    status's reason phrase (``ValueError`` for a status with none)."""

    def __init__(self, status_code: int, detail: str | None = None) -> None:
        if detail is None:
            detail = http.HTTPStatus(status_code).phrase
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, detail={self.detail})"


class WebSocketException(RobynFastError):
    """``WebSocketException(code, reason=None)``: a close code and its reason ("" when not given)."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason or ""

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, reason={self.reason})"


__getattr__ = module_getattr("robyn.exceptions")
