"""The one fake transport of the test suite, for tests that drive a compiled
Connection (or an HttpProtocol) without a socket.

Contract: what our protocols ask of an ``asyncio.Transport``, and what this
fake does, as uvloop's and asyncio's transports do it unless said otherwise:

- ``write(data)`` / ``writelines(list)``: one call each; keeps every object
  handed to it, in order, in ``chunks`` (``writes`` counts the calls). Never
  sends anything; a write after ``close()`` or ``abort()`` is kept too and
  counted in ``late_writes`` (a real transport drops it silently).
- ``get_write_buffer_size()``: ``buffered``, set by the test (what the kernel
  has not taken yet); ``on_buffer_size`` (if set) is called first, which lets
  a test make the connection go away at that moment, as a transport that
  notices a reset there does; ``fail=True`` raises ``OSError`` instead.
- ``pause_reading()`` / ``resume_reading()``: ``reading`` flips;
  ``AssertionError`` when paused twice or resumed while reading (our
  protocols keep track and must never do either); ``pauses`` counts.
- ``close()`` / ``abort()``: ``closed`` (and ``aborted``) become True; no
  ``connection_lost`` is called (the test calls it when it wants the end).
- ``is_closing()``: ``closed``.
- ``get_extra_info(name)``: ``extra[name]`` (``peername`` is 127.0.0.1:50000,
  no ``sslcontext``: plain TCP), else ``default``.
- ``set_protocol(p)`` / ``get_protocol()``: kept in ``protocol``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FakeTransport:
    def __init__(self, buffered: int = 0, fail: bool = False, **extra: Any) -> None:
        self.chunks: list[bytes] = []
        self.writes = 0
        self.buffered = buffered
        self.fail = fail
        self.on_buffer_size: Callable[[], None] | None = None
        self.reading = True
        self.pauses = 0
        self.closed = False
        self.aborted = False
        self.protocol: Any = None
        self.late_writes = 0
        self.extra: dict[str, Any] = {"peername": ("127.0.0.1", 50000), **extra}

    @property
    def write_calls(self) -> int:
        return self.writes

    def write(self, data: bytes) -> None:
        self.late_writes += self.closed
        self.writes += 1
        self.chunks.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.late_writes += self.closed
        self.writes += 1
        self.chunks.extend(data)

    def get_write_buffer_size(self) -> int:
        if self.on_buffer_size is not None:
            self.on_buffer_size()
        if self.fail:
            raise OSError("transport broken")
        return self.buffered

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol
