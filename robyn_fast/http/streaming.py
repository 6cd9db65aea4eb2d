"""Streamed responses and server-sent events (Robyn's ``robyn.responses``).

A handler returns ``StreamingResponse(content)`` (or ``SSEResponse(content)``)
where ``content`` is a generator or an async generator of ``str`` or
``bytes``. The head goes out at once with ``Transfer-Encoding: chunked``
(RFC 9112 §7.1), then one chunk per item as the generator yields it, then the
last chunk. Writing follows the transport's flow control: the next item is
not asked for while the client's socket buffer is full. A sync generator is
stepped in a worker thread, so one that sleeps or blocks does not stop the
event loop. When the client goes away the generator is closed (its
``finally`` blocks run) and nothing more is written. The after-request
middlewares do not run for a streamed response (as in Robyn); the global
response headers are added.

Server-sent events (HTML Living Standard, §9.2): :func:`SSEResponse` sets
``Content-Type: text/event-stream`` and the no-cache fields proxies need;
:func:`SSEMessage` formats one event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, NamedTuple, Union

from .types import Headers, check_status

__all__ = ["StreamingResponse", "SSEResponse", "SSEMessage", "SSE_HEADERS", "body_chunks", "StreamedReply"]

Content = Union[Iterable[Any], AsyncIterable[Any]]

#: Fields an event stream is sent with (no caching, no proxy buffering).
SSE_HEADERS = (
    ("cache-control", "no-cache, no-store, must-revalidate"),
    ("pragma", "no-cache"),
    ("expires", "0"),
    ("x-accel-buffering", "no"),
)


class StreamedReply(NamedTuple):
    """What the routes hand the connection for a streamed response: the
    head to write, then the chunks of ``body`` (None: a HEAD request)."""

    head: bytes
    body: AsyncIterator[bytes] | None


class StreamingResponse:
    """A response whose body is sent as ``content`` yields it."""

    def __init__(self, content: Content, status_code: int | None = None, headers: Headers | dict[str, str] | None = None,
                 media_type: str = "text/event-stream") -> None:
        if isinstance(content, (str, bytes)) or not (
                hasattr(content, "__aiter__") or hasattr(content, "__iter__")):
            raise TypeError(f"a streamed body is a generator or an async generator, not {type(content).__name__}")
        self.content = content
        self.status_code: int = check_status(200 if status_code is None else status_code)
        self.headers: Headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.media_type = media_type
        if "content-type" not in self.headers:
            self.headers.set("content-type", media_type)
        if media_type == "text/event-stream":
            for name, value in SSE_HEADERS:
                if name not in self.headers:
                    self.headers.set(name, value)


def SSEResponse(content: Content, status_code: int | None = None,  # noqa: N802  # Robyn's name
                headers: Headers | dict[str, str] | None = None) -> StreamingResponse:
    """A ``text/event-stream`` :class:`StreamingResponse`."""
    return StreamingResponse(content, status_code, headers, "text/event-stream")


def SSEMessage(data: Any, event: str | None = None, id: str | None = None,  # noqa: N802,A002
               retry: int | None = None) -> str:
    """One event as the wire carries it: ``event:``, ``id:``, ``retry:``
    lines when given, one ``data:`` line per line of ``data`` (CR, LF and
    CRLF all end a line), then the blank line that ends the event."""
    parts = []
    for label, value in (("event", event), ("id", id), ("retry", retry)):
        if value:
            text = str(value)
            if "\n" in text or "\r" in text:
                raise ValueError(f"an SSE {label} cannot hold a line break: {text!r}")
            parts.append(f"{label}: {text}\n")
    text = "" if data is None else str(data)
    if "\n" not in text and "\r" not in text:  # one line, the usual case
        parts.append(f"data: {text}\n")
    else:
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts)


def _encode(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    return str(item).encode("utf-8")


_DONE = object()


def _step(iterator: Iterator[Any]) -> Any:
    return next(iterator, _DONE)


async def body_chunks(content: Content) -> AsyncIterator[bytes]:
    """The body's items as bytes; a sync iterator is stepped in a worker
    thread. Closing this generator closes ``content``."""
    if hasattr(content, "__aiter__"):
        agen: Any = content.__aiter__()
        try:
            async for item in agen:
                yield _encode(item)
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    iterator = iter(content)
    loop = asyncio.get_running_loop()
    try:
        while True:
            item = await loop.run_in_executor(None, _step, iterator)
            if item is _DONE:
                return
            yield _encode(item)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # "generator already executing": a worker thread still steps it
                pass
