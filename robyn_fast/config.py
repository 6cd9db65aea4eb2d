"""Every limit and timeout of the server, in one place.

``Config`` is immutable; derive variants with :func:`dataclasses.replace` or
by passing keywords: ``Config(max_message_size=64 * 1024 * 1024)``. An app
has one (``Robyn(__file__, config=...)``); a WebSocket endpoint may have its
own (``WebSocket(app, "/ws", config=...)``), which then governs that
endpoint's connections.
"""

from __future__ import annotations

import ssl as _ssl
from dataclasses import dataclass
from typing import Any, Literal

from .forwarded import parse_allow_ips
from .settings import (Setting, boolean, declared, int_range, one_of, optional_positive, origins, positive,
                       seconds, setting, strings, switch_text, text, url_path)

__all__ = ["Config", "BackpressurePolicy", "Compression", "SETTINGS", "robyn_before_080"]

BackpressurePolicy = Literal["close", "drop"]
TlsTransport = Literal["auto", "aiofastnet", "loop"]
Compression = Literal["off", "shared", "dedicated"]

KiB = 1024
MiB = 1024 * 1024


def _ssl_context(value: Any, where: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, _ssl.SSLContext):
        raise TypeError(f"{where} must be an ssl.SSLContext or None, not {type(value).__name__}")
    if value.protocol == _ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError(f"{where} is a client-side context (PROTOCOL_TLS_CLIENT); a server needs "
                         "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) with load_cert_chain()")
    return value


_OBSERVABILITY = "app Config only"


def _allow_ips_text(value: str) -> Any:
    return parse_allow_ips(value, "the list")
def _robyn_release(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str such as \"0.79\", not {type(value).__name__}")
    major, _, minor = value.partition(".")
    if major != "0" or not minor.isdigit() or not 77 <= int(minor) <= 88:
        raise ValueError(f"{where} must be a Robyn release from 0.77 to 0.88 such as \"0.79\", got {value!r}")
    return value


def robyn_before_080(config: Config) -> bool:
    """Whether ``config.robyn_version`` names a Robyn release before 0.80."""
    return int(config.robyn_version.partition(".")[2]) < 80


@dataclass(frozen=True)
class Config:
    """Limits and timeouts (seconds) of the HTTP server and WebSocket connections.

    Each field is declared once below with :func:`robyn_fast.settings.setting`
    (default, check, doc line and, for some, a flag or an environment
    variable); the list of settings at the end of this docstring, ``--help``
    and the README's table are made from those declarations. A value that
    fails its check raises ``TypeError`` or ``ValueError`` naming the field.

    ``ssl``, ``metrics_path`` and ``access_log`` are the server's settings:
    only the app's ``Config`` (or ``app.start()`` and the command line) sets
    them; an endpoint's own is ignored there.
    """

    # HTTP
    max_request_line: int = setting(8 * KiB, "longer request line: 414, connection closed", positive, shown="8 KiB")
    max_header_size: int = setting(8 * KiB, "longer single header line: 431, connection closed", positive,
                                   shown="8 KiB")
    max_headers: int = setting(100, "more header lines in a request: 431, connection closed", positive)
    max_head_size: int = setting(
        64 * KiB, "larger whole request head (line and headers, bounding what is buffered while a header is still "
        "arriving): 431, connection closed", positive, shown="64 KiB")
    max_body_size: int = setting(
        16 * MiB, "larger request body: 413 (from `Content-Length`, before the body is read; or while a chunked "
        "body arrives)", positive, shown="16 MiB")
    header_timeout: float = setting(
        10.0, "request head not finished in time (from its start, or from connecting): 408 and close", positive,
        shown="10 s", env="ROBYN_CLIENT_TIMEOUT", parse=seconds)
    keep_alive_timeout: float = setting(15.0, "idle keep-alive connection closed", positive, shown="15 s",
                                        env="ROBYN_KEEP_ALIVE_TIMEOUT", parse=seconds)
    max_pipelined_requests: int = setting(
        32, "requests queued behind one still being answered: reading from that connection pauses (no timeout "
        "runs) and resumes at half; nothing is refused or lost", positive)
    max_pipelined_bytes: int = setting(
        1 * MiB, "request body bytes, all queued requests and the one arriving together, held behind one still "
        "being answered: reading pauses and resumes at half; a single larger body (up to `max_body_size`) is read "
        "once the requests before it are answered", positive, shown="1 MiB")
    # WebSocket
    max_message_size: int | None = setting(
        1 * MiB, "larger WebSocket message: Close 1009, decided from the frame header; `None`: unbounded (and "
        "compression is declined)", optional_positive, shown="1 MiB")
    handshake_timeout: float = setting(10.0, "no completed upgrade (or TLS handshake) in time: disconnected",
                                       positive, shown="10 s")
    close_timeout: float = setting(
        10.0, "our Close (or TLS close_notify) unanswered: TCP aborted (the loop's one deadline sweep checks it: up "
        "to a quarter of it, at most 5 s, late); also the shutdown grace period", positive, shown="10 s")
    ping_interval: float | None = setting(
        20.0, "a keepalive Ping (8 random bytes; only a Pong echoing them counts) after this long; `None` turns "
        "keepalive off", optional_positive, shown="20 s")
    ping_timeout: float | None = setting(20.0, "no Pong in time after a keepalive Ping: Close 1011", optional_positive,
                                         shown="20 s")
    max_backpressure: int = setting(
        4 * MiB, "every byte queued for a client (data, Pongs, Close) counts; over it, data follows "
        "`backpressure_policy` and a Pong closes 1008", positive, shown="4 MiB")
    backpressure_policy: BackpressurePolicy = setting(
        "close", "over `max_backpressure`: `\"close\"` (1008, logged) or `\"drop\"` (the message dropped, logged)",
        one_of("close", "drop"), shown='`"close"`')
    read_high_water: int = setting(64, "messages waiting for busy handlers: reading pauses at this many",
                                   positive, shown="64 messages")
    read_low_water: int = setting(16, "... and resumes at this many (at most `read_high_water`)", positive,
                                  shown="16 messages")
    subprotocols: tuple[str, ...] = setting(
        (), "the subprotocols the endpoint speaks: the first one the client offers that is listed is agreed in "
        "the 101", strings)
    allowed_origins: frozenset[str] | None = setting(
        None, "a set of origins: a handshake whose `Origin` is missing or not listed gets 403 (logged); `None`: "
        "any origin", origins)
    close_on_handler_error: bool = setting(
        False, "`True`: a handler that raises closes its connection with 1011; `False`: the traceback is logged "
        "and the connection stays open", boolean)
    # Compression
    compression: Compression = setting(
        "shared", "permessage-deflate: `\"shared\"`, `\"dedicated\"` or `\"off\"` (see Compression below)",
        one_of("off", "shared", "dedicated"), shown='`"shared"`')
    compression_threshold: int = setting(1024, "smaller messages go out uncompressed", int_range(0),
                                         shown="1024 bytes")
    compression_level: int = setting(1, "zlib's level, 0-9 (1: 4x less CPU than 6 for 15% larger output)",
                                     int_range(0, 9))
    compression_window_bits: int = setting(12, "zlib window (9-15) of the per-connection contexts of "
                                           "`\"dedicated\"`, also asked of clients", int_range(9, 15))
    compression_mem_level: int = setting(5, "zlib memLevel (1-9) of the per-connection contexts of "
                                         "`\"dedicated\"`", int_range(1, 9))
    # Server
    backlog: int = setting(2048, "listen backlog of the server socket", positive)
    # Observability
    metrics_path: str | None = setting(
        None, "off; a path: `GET` there answers the Prometheus text of every worker's counters "
        f"({_OBSERVABILITY}; see below)", url_path, flag="--metrics-path", metavar="PATH",
        parse=text("a path such as /metrics"))
    access_log: bool = setting(
        False, "one line per HTTP request and WebSocket open/close on the `robyn_fast.access` logger "
        f"({_OBSERVABILITY})", boolean, flag="--access-log")
    # Behind a proxy
    forwarded_allow_ips: tuple[str, ...] = setting(
        ("127.0.0.1",), "the peers believed about the client: IP addresses and networks (`10.0.0.0/8`), comma "
        "separated, `*` for every peer, `unix:` for a Unix socket's; their `Forwarded` (RFC 7239) or "
        "`X-Forwarded-For`/`X-Forwarded-Proto` give `remote_addr`, `ip_addr`, `url.scheme` and the access log's "
        "address (uvicorn's name and meaning; see [Behind a proxy](#behind-a-proxy)); app Config only",
        parse_allow_ips, flag="--forwarded-allow-ips", env="ROBYN_FORWARDED_ALLOW_IPS", metavar="LIST",
        parse=_allow_ips_text, shown="`('127.0.0.1',)`")
    proxy_protocol: bool = setting(
        False, "every connection starts with a PROXY protocol v1 or v2 header (HAProxy, AWS NLB), from a peer in "
        "`forwarded_allow_ips`; its source address is the client's; a connection without one is closed; not with "
        "TLS; app Config only", boolean, flag="--proxy-protocol", env="ROBYN_PROXY_PROTOCOL", parse=switch_text)
    # Robyn apps
    robyn_version: str = setting(
        "0.88", "the Robyn release whose rules an app run with `python -m robyn_fast` (`import robyn`) gets where "
        "releases differ: before `0.80`, a handler parameter that names no part of the request, no dependency "
        "and no path parameter is not read from the query (without a default, its route answers 500 instead of "
        "400)", _robyn_release, flag="--robyn-version", env="ROBYN_FAST_ROBYN_VERSION", metavar="0.N",
        parse=text("a Robyn release such as 0.79"), shown='`"0.88"`')
    # TLS
    ssl: _ssl.SSLContext | None = setting(
        None, "an `ssl.SSLContext` (server side): serve HTTPS and WSS (see [TLS](#tls)); the app's `Config` "
        "only; `--ssl-certfile` makes one", _ssl_context)
    tls_transport: TlsTransport = setting(
        "auto", "what encrypts: `\"auto\"` (aiofastnet's TLS transport when the `robyn_fast[tls]` extra is "
        "installed and the context allows it, else the loop's; the start-up log says which), `\"aiofastnet\"` "
        "(required: the server does not start without it), `\"loop\"` (uvloop's or asyncio's own); see "
        "[TLS](#tls); app Config only", one_of("auto", "aiofastnet", "loop"), flag="--tls-transport",
        env="ROBYN_FAST_TLS_TRANSPORT", metavar="NAME", parse=text("auto, aiofastnet or loop"),
        shown='`"auto"`')

    def __post_init__(self) -> None:
        for spec in _SETTINGS:
            value = getattr(self, spec.name)
            checked = spec.check(value, spec.where)
            if checked is not value:
                object.__setattr__(self, spec.name, checked)
        if self.proxy_protocol and self.ssl is not None:
            raise ValueError("Config.proxy_protocol with Config.ssl: the PROXY header comes before the TLS handshake, "
                             "which this server does not read; terminate TLS at the proxy (or send it to a plain "
                             "port)")
        if self.tls_transport == "aiofastnet":
            try:
                import aiofastnet  # noqa: F401  (asked for by name: missing, the server must not start)
            except ImportError:
                raise ValueError("Config.tls_transport='aiofastnet': aiofastnet is not installed "
                                 "(pip install 'robyn_fast[tls]')") from None
        if self.read_low_water > self.read_high_water:
            raise ValueError("Config.read_low_water must not exceed read_high_water")


_SETTINGS = declared(Config)
SETTINGS = _SETTINGS  # Config's settings, in field order


def _document(cls: type, settings: tuple[Setting, ...]) -> None:
    lines = [f"    - ``{s.name}`` (default {s.default_text().strip('`')}): {s.doc.replace('`', '``')}"
             for s in settings]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    Settings:\n\n" + "\n".join(lines) + "\n"


_document(Config, _SETTINGS)
