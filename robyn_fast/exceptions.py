"""The one exception hierarchy of robyn_fast.

Every exception the library raises on purpose derives from
:class:`RobynFastError` and from the standard category that fits, so callers
can catch either. Protocol failures carry the WebSocket close code (RFC 6455
§7.4.1) and a reason to send in the Close frame.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RobynFastError",
    "ProtocolError",
    "MessageTooBig",
    "InvalidPayloadData",
    "InvalidState",
]


class RobynFastError(Exception):
    """Root of every exception robyn_fast raises on purpose."""


class ProtocolError(RobynFastError, ValueError):
    """The peer broke RFC 6455: the connection must be failed (RFC 6455 §7.1.7).

    ``close_code`` is the code to send in the Close frame (1002 unless a
    subclass says otherwise) and ``reason`` a short text for it.
    ``messages`` holds the messages that were complete before the error was
    detected in the same ``feed()`` call, in order, so none is lost.
    """

    default_code = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason: str = reason
        self.close_code: int = self.default_code if close_code is None else close_code
        self.messages: list[Any] = []

    def __str__(self) -> str:
        return f"{self.reason} (close code {self.close_code})"


class MessageTooBig(ProtocolError):
    """A message exceeds the configured maximum size (close code 1009)."""

    default_code = 1009


class InvalidPayloadData(ProtocolError):
    """A text message or close reason is not valid UTF-8 (close code 1007)."""

    default_code = 1007


class InvalidState(RobynFastError, RuntimeError):
    """An operation is not allowed in the object's current state."""
