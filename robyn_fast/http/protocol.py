"""HTTP/1.1 on one TCP connection: :class:`HttpProtocol` parses with httptools,
answers requests in order, and hands an upgraded connection to its WebSocket.

Limits (RFC 9112 framing, with the sizes of :class:`~robyn_fast.config.Config`):
a request line over ``max_request_line`` gets 414; a header line over
``max_header_size``, more than ``max_headers`` headers, or a head over
``max_head_size`` gets 431; a body over ``max_body_size`` gets 413 (from
``Content-Length`` before the body is read); malformed HTTP gets 400. Each of
these closes the connection, after the responses owed to the requests
received before it. A request head not finished within ``header_timeout``
closes the connection (with 408 if bytes had arrived); so does a body that
stops arriving for ``keep_alive_timeout`` (with 408).

An HTTP/1.1 request without a ``Host`` header, or any request with more
than one, gets 400 and the connection is closed (RFC 9112 §3.2); HTTP/1.0
requests need none.

Pipelined requests wait in a queue while an earlier one is answered. Reading
from the connection pauses when ``max_pipelined_requests`` are queued or
their bodies (with the body arriving) pass ``max_pipelined_bytes``, and
resumes once the handlers have caught up to half of each; no read timeout
runs meanwhile (the wait is the server's, not the client's). Nothing is
lost and responses stay in request order.

Responses stop being produced while the transport's write buffer is above
its high-water mark (``pause_writing``), so a client that does not read makes
the server stop reading instead of buffering its answers. A client that
half-closes after its requests still gets every response, then the close
(over TLS a close_notify ends the connection: TLS transports cannot
half-close).

An upgrade request stops the parser: reading pauses until the requests before
it are answered and the WebSocket takes the transport over (with every byte
that came after the request), so nothing sent behind an upgrade is buffered
without bound. A connection's first read that holds a whole, plain upgrade
request (what WebSocket clients send) is read by one compiled pass,
:func:`robyn_fast._core.handshake.parse_upgrade_head`, which vouches only for
heads httptools reads the same way and no rule here refuses; every other
request, and every error, goes through httptools.

Behind a proxy: with ``Config.proxy_protocol`` the connection's first bytes
are a PROXY protocol header (:mod:`robyn_fast.proxy_protocol`), accepted only
from a peer in ``Config.forwarded_allow_ips`` and within the head timeout; a
connection without a valid one is closed without an answer. The forwarding
headers of a request from a trusted peer (:mod:`robyn_fast.forwarded`) give
the client address and scheme the handler, the WebSocket and the access log
see.

An upgrade that passes the handshake checks goes to the endpoint's
``before_upgrade`` hook (``HttpHost.vet_websocket``) before the 101: a sync
verdict at once; an async one in a Task while nothing is parsed (what the
client sends is kept for the WebSocket, within the upgrade buffer's limit;
a client that leaves cancels the Task).

The protocol serves a :class:`HttpHost` (the server), which answers requests,
starts Tasks and opens WebSocket connections; this module knows nothing else
of it.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import Context
from typing import Any, Protocol
from urllib.parse import unquote

import httptools

from .._core.handshake import parse_upgrade_head
from ..config import Config
from ..exceptions import HandshakeError, ProxyProtocolError
from ..forwarded import TrustedProxies
from ..logs import Throttle, field, get_logger, more_since
from ..proxy_protocol import ProxyHeaderParser
from .streaming import StreamedReply
from .types import error_response

__all__ = ["HttpHandler", "HttpHost", "HttpProtocol"]

log = get_logger("robyn_fast.server")
# Config.access_log: one line per request. Its SafeRecords filter escapes
# every argument (robyn_fast.logs.printable): method, target and peer are the client's.
access = get_logger("robyn_fast.access")

# A request line's method that llhttp does not know: an RFC 9110 §5.6.2 token
# (at most 32 characters) followed by a space.
_METHOD_AT_START = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) ")

# Data is fed to httptools in slices of at most this many bytes so the bytes
# of an unfinished request head can be counted (httptools buffers header
# pieces internally); max_head_size is enforced to within one slice.
_SLICE = 16 * 1024

# Bytes kept from behind an upgrade request while it waits for its turn.
# Reading is paused as soon as the upgrade is seen, so this only holds the
# rest of the read that carried it (one transport read at most).
_UPGRADE_BUFFER_LIMIT = 1024 * 1024


#: ``(method, target, headers, body, keep_alive, client host, scheme)`` -> the
#: response bytes, or an awaitable of them.
HttpHandler = Callable[[str, str, list[tuple[bytes, bytes]], bytes, bool, "str | None", str],
                       "bytes | StreamedReply | Awaitable[bytes | StreamedReply]"]

#: X-Forwarded-Proto / Forwarded proto -> an HTTP request's scheme, and an upgrade request's.
_HTTP_SCHEME = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}

# The name lengths of Forwarded, X-Forwarded-For and X-Forwarded-Proto, and the names.
_FORWARDING_LENGTHS = (9, 15, 17)
_FORWARDING_NAMES = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"))

# Connections refused over the PROXY protocol: one line per 10 s at most.
_proxy_refusals = Throttle(10.0)


class HttpHost(Protocol):
    """What :class:`HttpProtocol` needs from the server it runs in."""

    loop: asyncio.AbstractEventLoop
    config: Config
    context: Context

    #: The answer to one request (``robyn_fast.http.routes.Routes.handle``).
    handle_http: HttpHandler
    #: The peers whose forwarding headers and PROXY headers are believed.
    proxies: TrustedProxies

    def websocket_upgrade(
        self, path: str, parser_upgrade: bool, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Any, dict[str, str]] | None:
        """The WebSocket endpoint (and its path parameters) this request asks
        to switch to, or None to answer it as HTTP."""

    def accept_websocket(
        self, endpoint: Any, method: str, version: str, headers: list[tuple[bytes, bytes]], query: str = ""
    ) -> tuple[bytes, Any]:
        """The ``101 Switching Protocols`` response and what was agreed with
        the client (handed back to open_websocket), or HandshakeError (also
        when the endpoint refuses ``query``, the request's query string)."""

    def vet_websocket(
        self, endpoint: Any, method: str, target: str, headers: list[tuple[bytes, bytes]],
        path_params: dict[str, str], client: str | None, scheme: str,
    ) -> bytes | None | Awaitable[bytes | None]:
        """The endpoint's ``before_upgrade`` verdict on an upgrade request
        that passed the handshake checks: None (go on with the 101), the
        refusal's response bytes, or an awaitable of either."""

    def open_websocket(
        self, endpoint: Any, transport: asyncio.Transport, initial: bytes, query: str,
        path_params: dict[str, str], headers: list[tuple[bytes, bytes]], peer: tuple[str, int] | None,
        agreed: Any = None,
    ) -> None:
        """Hand ``transport`` (the 101 already written) to ``endpoint``."""

    def start_task(self, coro: Awaitable[Any], context: Context) -> asyncio.Future[Any]:
        """Run ``coro`` in a Task in ``context``, referenced until it is done."""

    def connection_opened(self, protocol: HttpProtocol) -> None: ...

    def connection_closed(self, protocol: HttpProtocol) -> None: ...


class _Abort(Exception):
    """Raised inside an httptools callback to stop parsing; the protocol has
    already decided what to answer."""


class _Request:
    """A parsed request waiting in the pipeline queue."""

    __slots__ = ("method", "target", "headers", "body", "keep_alive", "version", "upgrade", "forwarded",
                 "upgrade_field")

    def __init__(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes,
        keep_alive: bool, version: str, upgrade: bool, forwarded: bool = False, upgrade_field: bool = True,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.version = version
        self.upgrade = upgrade
        self.forwarded = forwarded  # it may carry forwarding headers from a trusted peer (to be resolved)
        # It has an Upgrade field: it may ask for a WebSocket (none: the server is not asked).
        self.upgrade_field = upgrade_field


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining (responses leave in request order)."""

    def __init__(self, host: HttpHost) -> None:
        self.host = host
        self.config: Config = host.config
        self.tls = self.config.ssl is not None
        self.loop = host.loop
        self.transport: asyncio.Transport | None = None
        # The parser holds this protocol's bound methods: a reference cycle,
        # broken (parser = None, parsed_all) once the connection closes or is
        # handed over, so reference counting frees the protocol then. Made
        # when first needed: a connection whose first read is a plain upgrade
        # (_fast_upgrade) never needs one.
        self.parser: httptools.HttpRequestParser | None = None
        self.parsed_all = False  # closed or handed over: nothing more is parsed
        self.peer_addr: tuple[str, int] | None = None
        # The client as the request being answered names it (forwarding headers of a trusted peer), and its scheme.
        self.client: tuple[str, int] | None = None
        self.scheme = "https" if self.tls else "http"
        self.trusted = False  # the peer may say who the client is (Config.forwarded_allow_ips)
        self.forwarded_head = False  # the request being parsed has a header that may name the client
        self.upgrade_head = False  # the request being parsed has an Upgrade field
        # Config.proxy_protocol: the connection's PROXY header, until it has arrived.
        self.proxy_header: ProxyHeaderParser | None = None
        self.vetting: asyncio.Future[Any] | None = None  # a before_upgrade hook running
        # Request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.in_head = False
        self.in_body = False
        # A method llhttp does not know, read from the request line (see _feed).
        self.method_override: str | None = None
        self.head_bytes = 0
        self.fields_size = 0
        self.got_bytes = False
        # Pipeline.
        self.queue: collections.deque[_Request | bytes] = collections.deque()
        self.task: asyncio.Future[Any] | None = None  # the async handler answering the head of the queue
        self.stream_task: asyncio.Future[Any] | None = None  # a streamed body being written (also self.task)
        self.drained: asyncio.Future[None] | None = None  # set when writing may go on
        self.stream_ending = False  # shutdown ends the stream: a clean last chunk, then close
        self.reading_paused = False
        self.writing_paused = False
        self.eof = False
        self.closing = False
        # An upgrade request stopped the parser; what followed it waits here.
        self.upgrade_seen = False
        self.leftover: list[bytes] = []
        self.leftover_size = 0
        self.handed_over = False  # the transport now belongs to a WebSocket
        # The timeout armed (_head_timeout or _idle_timeout), or None, and when it is due. One loop
        # timer (clock) serves them: re-arming for a later deadline, as every keep-alive request does
        # twice, leaves it as it is, and it re-arms itself when it fires early (see _arm).
        self.timer: Callable[[], None] | None = None
        self.timer_is_head = False
        self.deadline = 0.0
        self.clock: asyncio.TimerHandle | None = None
        self.clock_due = 0.0
        self.access_log = self.config.access_log

    @property
    def busy(self) -> bool:
        return self.task is not None

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # (uvloop and asyncio both set TCP_NODELAY on TCP transports already.)
        peer = transport.get_extra_info("peername")
        self.peer_addr = self.client = tuple(peer[:2]) if isinstance(peer, tuple) else None
        self.trusted = self.host.proxies.trusts(self.peer_addr[0] if self.peer_addr else None)
        self.host.connection_opened(self)
        if self.config.proxy_protocol:
            if not self.trusted:
                self._refuse_proxy("a connection from an address not in forwarded_allow_ips")
                return
            self.proxy_header = ProxyHeaderParser()
        self._arm(min(self.config.header_timeout, self.config.handshake_timeout), True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._cancel_timer()
        self._stop_clock()
        if self.vetting is not None:
            self.vetting.cancel()  # the client left while its upgrade was being checked
        if self.stream_task is not None:
            # The client went away mid-stream: stop asking the generator for
            # more (its finally blocks run as the Task is cancelled).
            self.stream_task.cancel()
        self._wake_writer()
        self.host.connection_closed(self)
        self.queue.clear()
        self.leftover = []
        self.parser = None
        self.parsed_all = True

    def _arm(self, delay: float, head: bool) -> None:
        """Arm the head timeout (``head``) or the idle/body timeout ``delay`` seconds from now."""
        due = self.loop.time() + delay
        self.timer = self._head_timeout if head else self._idle_timeout
        self.timer_is_head = head
        self.deadline = due
        clock = self.clock
        if clock is None or self.clock_due > due:
            if clock is not None:
                clock.cancel()
            self.clock = self.loop.call_at(due, self._tick)
            self.clock_due = due

    def _tick(self) -> None:
        self.clock = None
        timeout = self.timer
        if timeout is None:
            return  # disarmed since
        if self.loop.time() < self.deadline:  # re-armed for later since
            self.clock = self.loop.call_at(self.deadline, self._tick)
            self.clock_due = self.deadline
            return
        timeout()

    def _cancel_timer(self) -> None:
        self.timer = None  # the clock, when it fires, finds nothing armed

    def _stop_clock(self) -> None:
        """The loop's timer too (it holds this protocol): the connection is gone or handed over."""
        self.timer = None
        if self.clock is not None:
            self.clock.cancel()
            self.clock = None

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _pause_pipeline(self) -> None:
        """Stop reading until the queued requests are answered (see
        _run_queue). The client is not slow: no head or body timeout runs
        until reading resumes."""
        self._cancel_timer()
        self._pause_reading()

    def _waiting_bytes(self) -> int:
        """Body bytes held behind the request being answered: the queued
        requests' (but the head's, when it is answered next) and the
        arriving one's."""
        total = 0
        skip_head = not self.busy
        for item in self.queue:
            if isinstance(item, _Request):
                if skip_head:
                    skip_head = False
                else:
                    total += len(item.body)
        if self.in_body and (self.busy or self.queue):
            total += self.body_size
        return total

    def _head_timeout(self) -> None:
        self.timer = None
        if self.closing or self.handed_over or self.transport is None:
            return
        if self.upgrade_seen:
            return  # the upgrade is complete; it waits behind slower requests
        if self.in_head or self.got_bytes:
            # Behind the responses still owed (a slow handler may be running).
            self._reject(408, "request head not received in time")
            self._run_queue()
        else:
            self.closing = True
            self.transport.close()

    def _idle_timeout(self) -> None:
        self.timer = None
        if self.in_body and not (self.closing or self.upgrade_seen) and self.transport:
            # The body stopped arriving for a whole keep_alive_timeout.
            self._reject(408, "request body not received in time")
            self._run_queue()
            return
        if not (self.closing or self.upgrade_seen or self.busy or self.queue or self.in_head) and self.transport:
            self.closing = True
            self.transport.close()

    def close_idle(self) -> bool:
        """Close this connection if no request is in progress (shutdown);
        True when it is closed or closing."""
        if self.handed_over:
            return True
        if self.stream_task is not None:
            # A stream (an event stream, say) has no end of its own: end it
            # now, with its last chunk, rather than hold shutdown back.
            self.stream_ending = True
            self.stream_task.cancel()
            return False
        if self.busy or self.queue or self.in_head or self.upgrade_seen:
            return False
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()
        return True

    def abort(self) -> None:
        """Drop the TCP connection at once (the end of shutdown's grace period)."""
        if self.transport is not None and not self.handed_over:
            self.transport.abort()

    # -- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.proxy_header is not None:
            data = self._proxy(data)
            if not data:
                return
        if self.upgrade_seen:
            # Frames sent behind the upgrade request before we answered it;
            # reading is paused, so at most the rest of one read lands here.
            self._keep_leftover(data)
            return
        if self.closing:
            return
        if not self.got_bytes and type(data) is bytes and self._fast_upgrade(data):
            return
        self.got_bytes = True
        if len(data) <= _SLICE:
            self._feed(data, b"")
        else:
            view = memoryview(data)
            for start in range(0, len(data), _SLICE):
                if self.closing or self.upgrade_seen:
                    break
                self._feed(view[start : start + _SLICE], view[start + _SLICE :])
        if self.in_body and not self.closing and not self.upgrade_seen and not self.reading_paused:
            # A body arriving is activity: the idle timeout counts from the
            # last bytes, so a long upload is not cut while data flows.
            self._arm(self.config.keep_alive_timeout, False)
        self._run_queue()

    def _fast_upgrade(self, data: bytes) -> bool:
        """The connection's first read, when it is a plain WebSocket upgrade
        request (``parse_upgrade_head``, compiled: one pass over the head
        instead of a Python call per header): queued and answered as
        httptools' callbacks would have queued it. False (nothing done)
        for anything else, which httptools parses."""
        config = self.config
        head = parse_upgrade_head(data, config.max_request_line, config.max_header_size, config.max_headers,
                                  config.max_head_size)
        if head is None:
            return False
        end, target, headers = head
        self.got_bytes = True
        self.upgrade_seen = True
        self._cancel_timer()
        if end < len(data):
            self._keep_leftover(data[end:])
        # Resolved at dispatch only when a forwarding header is there (the length alone would let
        # Sec-WebSocket-Key, 17 bytes as X-Forwarded-Proto, send every upgrade from a proxy through it).
        forwarded = self.trusted and any(
            len(name) in _FORWARDING_LENGTHS and name.lower() in _FORWARDING_NAMES for name, _ in headers
        )
        self.queue.append(_Request("GET", target, headers, b"", True, "1.1", True, forwarded))
        self._run_queue()
        # As after an upgrade httptools stopped at: nothing more is read until the WebSocket takes the
        # transport (an upgrade handed over at once, the common case, costs no pause and resume).
        if not self.handed_over and self.vetting is None and self.transport and not self.transport.is_closing():
            self._pause_reading()
        return True

    def _proxy(self, data: bytes) -> bytes:
        """Config.proxy_protocol: the PROXY header at the start of the
        connection; what follows it (empty while it is incomplete). A
        connection that does not start with one is closed without an answer."""
        assert self.proxy_header is not None
        try:
            got = self.proxy_header.feed(data)
        except ProxyProtocolError as exc:
            self.proxy_header = None
            self._refuse_proxy(str(exc))
            return b""
        if got is None:
            return b""
        header, rest = got
        self.proxy_header = None
        if header.source is not None:
            self.peer_addr = self.client = header.source
            self.trusted = self.host.proxies.trusts(header.source[0])
        return rest

    def _refuse_proxy(self, why: str) -> None:
        unreported = _proxy_refusals.hit()
        if unreported is not None:
            log.warning("PROXY protocol: %s from %s; connection closed%s", why, self.peer_addr,
                        more_since(unreported))
        self.closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _keep_leftover(self, data: bytes) -> None:
        if not data:
            return
        self.leftover_size += len(data)
        if self.leftover_size > _UPGRADE_BUFFER_LIMIT:
            log.warning("%s: more than %d bytes behind a pending upgrade request; closing",
                        self.peer_addr, _UPGRADE_BUFFER_LIMIT)
            self.closing = True
            self.leftover = []
            self.queue.clear()
            if self.transport is not None:
                self.transport.abort()
            return
        self.leftover.append(data)

    def eof_received(self) -> bool | None:
        # TLS transports cannot stay open for writing after the peer's
        # close_notify (asyncio and uvloop shut the connection down, and warn
        # when asked to keep it): over TLS the end of input ends the connection.
        if self.vetting is not None:
            return None  # a client that gave up its upgrade while it was being checked: connection_lost cancels it
        if (self.busy or self.queue) and not self.tls:
            # The client half-closed after its requests: answer them, then
            # close (returning True keeps the transport open for writing).
            self.eof = True
            return True
        return None

    def pause_writing(self) -> None:
        # The client reads slower than we answer: stop answering (and so,
        # once max_pipelined_requests are queued, stop reading) until the
        # transport's buffer drains below its low-water mark.
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()
        self._run_queue()

    def _wake_writer(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _feed(self, chunk: bytes | memoryview, rest: bytes | memoryview) -> None:
        if self.parser is None:
            if self.parsed_all:
                return  # closed or handed over: nothing more is parsed here
            self.parser = httptools.HttpRequestParser(self)
        idle = not (self.in_head or self.in_body)
        queued = len(self.queue)
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            # The parser stops here for good; the queue decides what the
            # upgrade becomes once the requests before it are answered.
            self.upgrade_seen = True
            self._pause_reading()
            self._keep_leftover(bytes(chunk[offset:]) + bytes(rest))
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Abort):
                return
            log.exception("error in HTTP parser callback")
            self.queue.append(error_response(500))
            self.closing = True
            return
        except httptools.HttpParserInvalidMethodError as exc:
            # llhttp knows a fixed list of methods; RFC 9110 §9.1 allows any
            # token, which the router answers (405 with Allow where no route
            # has it, as Robyn does). When the request starts this chunk, parse
            # it again with GET standing in for its method in a new parser.
            method = _METHOD_AT_START.match(bytes(chunk[:34])) if idle and len(self.queue) == queued else None
            if method is None:
                self.queue.append(error_response(400, f"malformed HTTP request: {exc}"))
                self.closing = True
                return
            self.parser = httptools.HttpRequestParser(self)
            self.method_override = method.group(1).decode("ascii")
            self._feed(b"GET" + bytes(chunk[len(method.group(1)):]), rest)
            return
        except httptools.HttpParserError as exc:
            self.queue.append(error_response(400, f"malformed HTTP request: {exc}"))
            self.closing = True
            return
        if self.in_head:
            self.head_bytes += len(chunk)
            if self.head_bytes > self.config.max_head_size:
                self._reject(431, "request header fields too large")

    def _reject(self, status: int, message: str) -> None:
        """Answer ``status`` after the requests already queued, then close."""
        self.queue.append(error_response(status, message))
        self.closing = True
        self._pause_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.in_head = True
        self.forwarded_head = False
        self.upgrade_head = False
        self.head_bytes = 0
        self.fields_size = 0
        self.url = b""
        self.headers = []
        self.body = []
        self.body_size = 0
        if self.timer is not None and not self.timer_is_head:
            self._cancel_timer()  # the keep-alive idle timer
        if self.timer is None and not self.reading_paused:
            self._arm(self.config.header_timeout, True)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.config.max_request_line:
            self._reject(414, "request line too long")
            raise _Abort

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self.config.max_header_size:
            self._reject(431, "request header field too large")
            raise _Abort
        self.headers.append((name, value))
        if len(self.headers) > self.config.max_headers:
            self._reject(431, "too many request header fields")
            raise _Abort
        # ": " and CRLF; counted here because a whole head can arrive inside
        # one parser slice, where the byte count in _feed never sees it.
        self.fields_size += len(name) + len(value) + 4
        if len(self.url) + self.fields_size > self.config.max_head_size:
            self._reject(431, "request header fields too large")
            raise _Abort

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.in_body = True
        self._cancel_timer()
        hosts = 0
        trusted = self.trusted
        for name, value in self.headers:
            if trusted and len(name) in _FORWARDING_LENGTHS:
                self.forwarded_head = True  # Forwarded, X-Forwarded-For or -Proto, perhaps: resolved at dispatch
            if len(name) == 4 and name.lower() == b"host":
                hosts += 1
            elif len(name) == 7 and name.lower() == b"upgrade":
                self.upgrade_head = True
            elif len(name) == 14 and name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.config.max_body_size:
                    self._reject(413, "request body too large")
                    raise _Abort
            elif len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
                if self.transport is not None and not self.queue and not self.busy:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host and for any
        # request with more than one (a proxy and the app could disagree on
        # which site is asked for).
        if hosts != 1 and (hosts or self.parser is None or self.parser.get_http_version() != "1.0"):
            self._reject(400, "more than one Host header" if hosts else "missing Host header (required in HTTP/1.1)")
            raise _Abort

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.config.max_body_size:
            self._reject(413, "request body too large")
            raise _Abort
        self.body.append(body)
        if (
            (self.busy or self.queue)
            and not self.reading_paused
            and self._waiting_bytes() > self.config.max_pipelined_bytes
        ):
            self._pause_pipeline()

    def on_message_complete(self) -> None:
        self.in_body = False
        parser = self.parser
        if parser is None:  # callbacks come from the parser: never after it was dropped
            raise _Abort
        try:
            method = parser.get_method().decode("ascii")
            if self.method_override is not None:
                method, self.method_override = self.method_override, None
            target = self.url.decode("utf-8", "surrogateescape")
        except UnicodeDecodeError:
            self._reject(400, "request line is not ASCII")
            raise _Abort from None
        self.queue.append(
            _Request(
                method,
                target,
                self.headers,
                b"".join(self.body),
                parser.should_keep_alive(),
                parser.get_http_version(),
                parser.should_upgrade(),
                self.forwarded_head,
                self.upgrade_head,
            )
        )
        self.forwarded_head = False
        self.body = []
        if not self.reading_paused and (
            len(self.queue) > self.config.max_pipelined_requests
            or ((self.busy or len(self.queue) > 1) and self._waiting_bytes() > self.config.max_pipelined_bytes)
        ):
            self._pause_pipeline()

    # -- answering ------------------------------------------------------------------------

    def _run_queue(self) -> None:
        transport = self.transport
        while (
            self.queue
            and not self.busy
            and not self.writing_paused
            and transport is not None
            and not transport.is_closing()
        ):
            item = self.queue.popleft()
            if isinstance(item, bytes):
                self._cancel_timer()
                if self.access_log:
                    self._log_access("-", "-", item, None)
                transport.write(item)
                transport.close()
                self.queue.clear()
                return
            if self._dispatch(item):
                return
        if self.handed_over or transport is None:
            return
        if (
            self.reading_paused
            and not self.closing
            and not self.upgrade_seen
            and len(self.queue) <= self.config.max_pipelined_requests // 2
            and self._waiting_bytes() <= self.config.max_pipelined_bytes // 2
        ):
            self.reading_paused = False
            transport.resume_reading()
            # The timeouts _pause_pipeline stopped for a request half read.
            if self.timer is None and self.in_head:
                self._arm(self.config.header_timeout, True)
            elif self.timer is None and self.in_body:
                self._arm(self.config.keep_alive_timeout, False)
        if self.eof and not self.queue and not self.busy:
            self.closing = True
            self._cancel_timer()
            transport.close()
            return
        if not self.queue and not self.busy and not self.in_head and not self.closing and not self.upgrade_seen:
            if self.timer is None:
                self._arm(self.config.keep_alive_timeout, False)

    def _dispatch(self, req: _Request) -> bool:
        """Answer one request; True when the connection changed hands or an
        async handler is running (stop the queue)."""
        assert self.transport is not None
        scheme = None
        if req.forwarded:
            self.client, scheme = self.host.proxies.resolve(self.peer_addr, req.headers)
        elif self.trusted:
            self.client = self.peer_addr
        # Only a request with an Upgrade field can ask for a WebSocket (RFC 6455 §4.1).
        match = self.host.websocket_upgrade(req.target.partition("?")[0], req.upgrade, req.headers) \
            if req.upgrade or req.upgrade_field else None
        if match is not None:
            self._upgrade(req, match[0], match[1], _WS_SCHEME[scheme or self.scheme])
            return True
        if req.upgrade:
            # An upgrade to something we do not speak: answer normally, then
            # close (the parser stopped at the upgrade).
            req.keep_alive = False
            self.closing = True
            self.leftover = []
        started = time.perf_counter() if self.access_log else 0.0
        context = self.host.context.copy()
        result = context.run(
            self.host.handle_http, req.method, req.target, req.headers, req.body, req.keep_alive,
            self.client[0] if self.client else None, _HTTP_SCHEME[scheme] if scheme else self.scheme,
        )
        if isinstance(result, bytes):
            self._respond(result, req.keep_alive, req, started)
            return False
        if isinstance(result, StreamedReply):
            return self._stream(result, req.keep_alive, req, started, context)
        task = self.host.start_task(result, context)
        if task.done():  # finished within its eager first step (Python >= 3.12)
            outcome = self._outcome(task)
            if isinstance(outcome, StreamedReply):
                return self._stream(outcome, req.keep_alive, req, started, context)
            self._respond(outcome, req.keep_alive, req, started)
            return False
        self.task = task
        keep_alive = req.keep_alive
        task.add_done_callback(lambda t: self._async_done(t, keep_alive, req, started, context))
        return True

    def _stream(self, reply: StreamedReply, keep_alive: bool, req: _Request, started: float,
                context: Context) -> bool:
        """Write the head of a streamed response, then its chunks from a
        Task (the pipeline waits behind it, as behind an async handler);
        True while the body is being written."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if self.access_log:
            self._log_access(req.method, req.target, reply.head, started)
        transport.write(reply.head)
        if reply.body is None:  # HEAD: the head is the whole answer
            self._respond(b"", keep_alive)
            return False
        task = self.host.start_task(self._pump(reply.body), context)
        self.task = self.stream_task = task
        task.add_done_callback(lambda t: self._stream_done(t, keep_alive))
        return True

    async def _pump(self, body: Any) -> bool:
        """Each chunk as the body yields it (RFC 9112 §7.1), waiting while the
        transport is over its high-water mark; the last chunk at the end.
        False when the connection went away first."""
        try:
            async for chunk in body:
                transport = self.transport
                if transport is None or transport.is_closing():
                    return False
                if chunk:
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                while self.writing_paused and not transport.is_closing():
                    self.drained = self.loop.create_future()
                    await self.drained
            transport = self.transport
            if transport is None or transport.is_closing():
                return False
            transport.write(b"0\r\n\r\n")
            return True
        finally:
            await body.aclose()

    def _stream_done(self, task: asyncio.Future[Any], keep_alive: bool) -> None:
        self.task = self.stream_task = None
        complete = not task.cancelled() and task.exception() is None and task.result() is True
        if not task.cancelled() and task.exception() is not None:
            log.error("a streamed response body failed; closing the connection", exc_info=task.exception())
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not complete:
            if self.stream_ending and task.cancelled():
                transport.write(b"0\r\n\r\n")  # ended by shutdown: the stream ends cleanly
            # Otherwise the body is cut short: no last chunk, so the client knows (RFC 9112 §7.1).
            self.closing = True
            self.queue.clear()
            transport.close()
        elif not keep_alive:
            self._respond(b"", False)
        else:
            self._run_queue()

    @staticmethod
    def _outcome(task: asyncio.Future[Any]) -> bytes | StreamedReply:
        if task.cancelled():
            return error_response(503, "server shutting down")
        exc = task.exception()
        if exc is not None:
            log.error("HTTP handler failed", exc_info=exc)
            return error_response(500)
        result: bytes | StreamedReply = task.result()
        return result

    def _async_done(self, task: asyncio.Future[Any], keep_alive: bool, req: _Request, started: float,
                    context: Context) -> None:
        self.task = None
        response = self._outcome(task)
        if isinstance(response, StreamedReply):
            if not self._stream(response, keep_alive, req, started, context):
                self._run_queue()
            return
        if task.cancelled() or task.exception() is not None:
            keep_alive = False
        self._respond(response, keep_alive, req, started)
        self._run_queue()

    def _log_access(self, method: str, target: str, response: bytes, started: float | None) -> None:
        """``peer "METHOD target" status bytes duration``: the target
        percent-decoded (what the app sees), each field escaped by
        :func:`robyn_fast.logs.field` (what is not printable, a space or a
        double quote: one field, recovered exactly by a reader), the bytes
        of the whole response (head included), the duration from dispatching the request to handing its response to the
        transport ("-" for an error the server answered before any handler ran)."""
        status = int(response[9:12]) if response[9:12].isdigit() else 0
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        took = f"{(time.perf_counter() - started) * 1000.0:.3f}ms" if started is not None else "-"
        access.info('%s "%s %s" %d %d %s', field(peer), field(method),
                    field(unquote(target, errors="surrogateescape")), status, len(response), took)

    def _respond(self, response: bytes, keep_alive: bool, req: _Request | None = None, started: float = 0.0) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.access_log and req is not None:
            self._log_access(req.method, req.target, response, started)
        self.transport.write(response)
        if not keep_alive:
            self.closing = True
            self.queue.clear()
            self.transport.close()
        elif self.closing and not self.queue:
            # Closing for another reason, and nothing else is owed. (An error
            # answer queued behind this request, for a malformed request
            # that followed it, is written by _run_queue, which then closes.)
            self.transport.close()

    def _upgrade(self, req: _Request, endpoint: Any, path_params: dict[str, str], scheme: str) -> None:
        assert self.transport is not None
        try:
            response, agreed = self.host.accept_websocket(endpoint, req.method, req.version, req.headers,
                                                          req.target.partition("?")[2])
        except HandshakeError as exc:
            # path and Origin are the client's: they go in as arguments, which the logger escapes
            log.info("%s: WebSocket handshake for %s refused with %d %s (Origin: %s)", self.client, req.target,
                     exc.status, exc.reason, b", ".join(v for n, v in req.headers if n.lower() == b"origin") or None)
            self._refuse_upgrade(req, error_response(exc.status, exc.reason, exc.headers))
            return
        self._cancel_timer()
        context = self.host.context.copy()  # the hook's own, as a handler's
        verdict = context.run(self.host.vet_websocket, endpoint, req.method, req.target, req.headers, path_params,
                              self.client[0] if self.client else None, scheme)
        if verdict is None:
            self._hand_over(req, endpoint, path_params, response, agreed)
        elif isinstance(verdict, bytes):
            self._refuse_upgrade(req, verdict)
        else:
            # The hook is async: the connection waits (reading stays paused, no frame is read) until it has
            # decided; the endpoint bounds it by handshake_timeout.
            task = self.host.start_task(verdict, context)
            if task.done():
                self._vetted(task, req, endpoint, path_params, response, agreed)
                return
            self.task = self.vetting = task
            task.add_done_callback(lambda t: self._vetted(t, req, endpoint, path_params, response, agreed))
            if self.upgrade_seen and self.reading_paused:
                # Read meanwhile, so a client that goes away is noticed (its hook is cancelled); what it sends
                # is kept unparsed for the WebSocket, within _UPGRADE_BUFFER_LIMIT.
                self.reading_paused = False
                self.transport.resume_reading()

    def _vetted(self, task: asyncio.Future[Any], req: _Request, endpoint: Any, path_params: dict[str, str],
                response: bytes, agreed: Any) -> None:
        self.task = self.vetting = None
        if self.transport is None or self.transport.is_closing() or task.cancelled():
            if not task.cancelled():
                task.exception()  # retrieved (the endpoint logs what its hook raised)
            if self.transport is not None and not self.transport.is_closing():
                self._refuse_upgrade(req, error_response(503, "server shutting down"))
            return
        exc = task.exception()
        if exc is not None:
            log.error("WebSocket before_upgrade check failed", exc_info=exc)
        verdict = error_response(500) if exc is not None else task.result()
        if verdict is None:
            self._hand_over(req, endpoint, path_params, response, agreed)
        else:
            self._refuse_upgrade(req, verdict)

    def _refuse_upgrade(self, req: _Request, refusal: bytes) -> None:
        """Answer the upgrade request with ``refusal`` instead of a 101, and close."""
        assert self.transport is not None
        self.closing = True
        self.queue.clear()
        self.leftover = []
        self._cancel_timer()
        if self.access_log:
            self._log_access(req.method, req.target, refusal, None)
        self.transport.write(refusal)
        self.transport.close()

    def _hand_over(self, req: _Request, endpoint: Any, path_params: dict[str, str], response: bytes,
                   agreed: Any) -> None:
        assert self.transport is not None
        self._stop_clock()
        self.handed_over = True
        self.parser = None  # parser callbacks no longer come (an upgrade stops it); see __init__
        self.parsed_all = True
        self.host.connection_closed(self)
        transport, self.transport = self.transport, None
        leftover = b"".join(self.leftover)
        self.leftover = []
        self.queue.clear()
        transport.write(response)
        query = req.target.partition("?")[2]
        # The WebSocket decides about reading from now on: resume what the
        # upgrade (or pipelining) paused, before it may pause again itself
        # (no read can happen before open_websocket returns).
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        self.host.open_websocket(endpoint, transport, leftover, query, path_params, req.headers, self.client,
                                 agreed)
