"""Every limit and timeout of the server, in one place.

``Config`` is immutable; derive variants with :func:`dataclasses.replace` or
by passing keywords: ``Config(max_message_size=64 * 1024 * 1024)``. An app
has one (``Robyn(__file__, config=...)``); a WebSocket endpoint may have its
own (``WebSocket(app, "/ws", config=...)``), which then governs that
endpoint's connections.
"""

from __future__ import annotations

import math
import ssl as _ssl
from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["Config", "BackpressurePolicy", "Compression"]

BackpressurePolicy = Literal["close", "drop"]
Compression = Literal["off", "shared", "dedicated"]

KiB = 1024
MiB = 1024 * 1024


# Integer settings with a range of their own (the others must be positive).
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "compression_threshold": (0, None),
    "compression_level": (0, 9),
    "compression_window_bits": (9, 15),
    "compression_mem_level": (1, 9),
}


@dataclass(frozen=True)
class Config:
    """Limits and timeouts (seconds) of the HTTP server and WebSocket connections.

    HTTP:

    - ``max_request_line``: longest request line; longer gets 414.
    - ``max_header_size``: longest single header line; longer gets 431.
    - ``max_headers``: most header lines in a request; more gets 431.
    - ``max_head_size``: whole request head (line and headers); more gets 431.
      This bounds what is buffered while a header is still arriving.
    - ``max_body_size``: largest request body; larger gets 413 (decided from
      ``Content-Length`` before the body is read, or while a chunked body
      arrives).
    - ``header_timeout``: a client must finish a request head this long after
      it starts it (or after connecting), or it is disconnected.
    - ``keep_alive_timeout``: an idle keep-alive connection is closed after this.
    - ``max_pipelined_requests``: requests queued behind a slow handler before
      the server stops reading from that connection.
    - ``max_pipelined_bytes``: request body bytes, all queued requests and the
      one arriving together, held behind a request still being answered
      before the server stops reading from that connection; it reads on
      once the handlers have caught up to half of it. Nothing is refused: a
      single body larger than this (up to ``max_body_size``) is read once the
      requests before it are answered.

    WebSocket:

    - ``max_message_size``: largest message (``None``: unbounded); a larger one
      fails the connection with close code 1009, decided from the frame header.
    - ``handshake_timeout``: from TCP accept to the 101 response.
    - ``close_timeout``: after sending a Close frame, how long to wait for the
      peer's Close before aborting the TCP connection; also how long graceful
      shutdown waits for connections to close.
    - ``ping_interval`` / ``ping_timeout``: a keepalive Ping is sent after this
      much time and the connection closed (1011) if no Pong arrives in
      ``ping_timeout``; ``None`` disables keepalive pings.
    - ``max_backpressure``: most bytes buffered for a client that reads too
      slowly; over it ``backpressure_policy`` applies: ``"close"`` (close code
      1008) or ``"drop"`` (the message is dropped and a warning logged).
    - ``read_high_water`` / ``read_low_water``: messages waiting for a busy
      handler; reading from the socket pauses at the high mark and resumes at
      the low one.
    - ``subprotocols``: subprotocols the endpoint speaks, for negotiation.
    - ``allowed_origins``: if set, a handshake whose ``Origin`` is not listed
      gets 403.
    - ``close_on_handler_error``: close with 1011 when a handler raises
      (default: log the traceback and keep the connection open).
    - ``backlog``: listen backlog of the server socket.
    - ``ssl``: serve HTTPS and WSS (TLS) with this server-side
      :class:`ssl.SSLContext` (``None``: plain TCP). It is the server's
      setting: only the app's ``Config`` (or ``app.start(ssl=...)``) sets it.
      The TLS handshake must finish within ``handshake_timeout``; a peer that
      does not answer our TLS close_notify is dropped after
      ``close_timeout``. :func:`robyn_fast.tls.server_context` makes one from
      certificate and key files with clear errors.

    Observability (read from the app's Config; an endpoint's own is ignored here):

    - ``metrics_path``: a path (``"/metrics"``) where ``GET`` answers the
      server's counters in the Prometheus text format, summed over every
      worker process (:mod:`robyn_fast.metrics`); ``None`` (the default): not
      served. It takes precedence over an app route at the same path.
    - ``access_log``: log one line per HTTP request and per WebSocket open and
      close on the ``robyn_fast.access`` logger (level INFO).

    Compression (permessage-deflate, RFC 7692; what a client offers is
    answered, nothing is forced on a client that does not offer it):

    - ``compression``: ``"shared"`` (the default): no context takeover either
      way, so one compressor and one decompressor per event loop serve every
      connection and a connection holds no zlib memory at all; a broadcast is
      compressed once. ``"dedicated"``: each connection keeps its own
      compression contexts (better ratios for streams of similar messages,
      ~50 KiB per connection once both are in use; they are created when
      first needed). ``"off"``: decline every offer. With
      ``max_message_size=None`` compression is declined too (nothing would
      bound what a small compressed frame inflates to), with a warning.
    - ``compression_threshold``: messages smaller than this many bytes go out
      uncompressed (RSV1 clear); small messages barely shrink without context.
    - ``compression_level``: zlib's level, 0-9. 1 (zlib's fastest, as
      aiohttp uses) by default: zlib's default 6 made 128 KiB JSON messages
      15% smaller here at 4x the CPU, and 800-byte ones 1.5% smaller at 1.3x.
    - ``compression_window_bits`` / ``compression_mem_level``: the window
      (9-15) and memLevel (1-9) of per-connection contexts in dedicated mode;
      the window is also asked of clients that offer
      ``client_max_window_bits``.
    """

    # HTTP
    max_request_line: int = 8 * KiB
    max_header_size: int = 8 * KiB
    max_headers: int = 100
    max_head_size: int = 64 * KiB
    max_body_size: int = 16 * MiB
    header_timeout: float = 10.0
    keep_alive_timeout: float = 15.0
    max_pipelined_requests: int = 32
    max_pipelined_bytes: int = 1 * MiB
    # WebSocket
    max_message_size: int | None = 1 * MiB
    handshake_timeout: float = 10.0
    close_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_backpressure: int = 4 * MiB
    backpressure_policy: BackpressurePolicy = "close"
    read_high_water: int = 64
    read_low_water: int = 16
    subprotocols: tuple[str, ...] = ()
    allowed_origins: frozenset[str] | None = None
    close_on_handler_error: bool = False
    # Compression
    compression: Compression = "shared"
    compression_threshold: int = 1024
    compression_level: int = 1
    compression_window_bits: int = 12
    compression_mem_level: int = 5
    # Server
    backlog: int = 2048
    # Observability
    metrics_path: str | None = None
    access_log: bool = False
    # TLS
    ssl: _ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in (
                "subprotocols", "allowed_origins", "backpressure_policy", "close_on_handler_error", "compression",
                "metrics_path", "access_log",
                "ssl",
            ):
                continue
            if f.name in _INT_RANGES:
                low, high = _INT_RANGES[f.name]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"Config.{f.name} must be an int, not {type(value).__name__}")
                if high is None and value < low:
                    raise ValueError(f"Config.{f.name} must be >= {low}, got {value!r}")
                if high is not None and not low <= value <= high:
                    raise ValueError(f"Config.{f.name} must be {low}..{high}, got {value!r}")
                continue
            if value is None and f.name in ("max_message_size", "ping_interval", "ping_timeout"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Config.{f.name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"Config.{f.name} must be a positive finite number, got {value!r}")
        if self.compression not in ("off", "shared", "dedicated"):
            raise ValueError(f"Config.compression must be 'off', 'shared' or 'dedicated', got {self.compression!r}")
        if self.backpressure_policy not in ("close", "drop"):
            raise ValueError(f"Config.backpressure_policy must be 'close' or 'drop', got {self.backpressure_policy!r}")
        if self.metrics_path is not None:
            if not isinstance(self.metrics_path, str):
                raise TypeError(f"Config.metrics_path must be a str or None, not {type(self.metrics_path).__name__}")
            if (not self.metrics_path.startswith("/") or "?" in self.metrics_path or "#" in self.metrics_path
                    or not self.metrics_path.isprintable() or " " in self.metrics_path):
                raise ValueError(f"Config.metrics_path must be a path such as '/metrics' (starting with '/', "
                                 f"no query, spaces or control characters), got {self.metrics_path!r}")
        if not isinstance(self.access_log, bool):
            raise TypeError(f"Config.access_log must be a bool, not {type(self.access_log).__name__}")
        if self.read_low_water > self.read_high_water:
            raise ValueError("Config.read_low_water must not exceed read_high_water")
        if isinstance(self.subprotocols, str) or not all(isinstance(p, str) and p for p in self.subprotocols):
            raise TypeError("Config.subprotocols must be a tuple of non-empty strings")
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        if self.ssl is not None:
            if not isinstance(self.ssl, _ssl.SSLContext):
                raise TypeError(f"Config.ssl must be an ssl.SSLContext or None, not {type(self.ssl).__name__}")
            if self.ssl.protocol == _ssl.PROTOCOL_TLS_CLIENT:
                raise ValueError("Config.ssl is a client-side context (PROTOCOL_TLS_CLIENT); a server needs "
                                 "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) with load_cert_chain()")
        if self.allowed_origins is not None:
            if isinstance(self.allowed_origins, str):
                raise TypeError("Config.allowed_origins must be a collection of origins, not a string")
            object.__setattr__(self, "allowed_origins", frozenset(self.allowed_origins))
