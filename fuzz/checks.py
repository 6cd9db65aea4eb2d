"""The fuzz harnesses' check functions: each takes arbitrary bytes and raises
only when it has found a bug (an ``AssertionError`` for a broken property, or
whatever escaped the code under test that its documentation does not allow).

The same functions serve atheris (``fuzz/run.py``, under ASan/UBSan) and the
corpus replay of the test suite (``tests/test_fuzz_corpus.py``, normal
build), so they use nothing of atheris: the first bytes of an input choose the
options (parser mode, chunking, compression...), the rest is the data. No
randomness: an input always takes the same path, so a crash file reproduces.

Harnesses (``HARNESSES``):

- ``frames``: the compiled ``FrameParser`` against the pure-Python reference
  codec, server or client side, with or without a permessage-deflate
  ``Inflater``, fed the same bytes in the same chunks (the compiled one through
  ``feed`` or through ``get_buffer``/``buffer_updated``): the same messages,
  then the same outcome (the same close code, or none).
- ``roundtrip``: frames built by the compiled builders and ``Deflater`` from a
  fuzzed payload, opcode and options equal the reference's bytes (or both
  refuse with ``ValueError``) and parse back to the payload.
- ``handshake``: ``accept_handshake`` + ``negotiate_compression`` on arbitrary
  header fields give a well-formed 101 response or a ``HandshakeError`` whose
  status and fields make a valid HTTP error response.
- ``http``: ``HttpProtocol`` (with the real router, handshake and a fake
  transport, sans-I/O) fed arbitrary bytes in arbitrary chunks: nothing raises
  out of it and what it writes is a sequence of valid HTTP responses.
- ``broker``: the bus ``wire.Decoder`` on arbitrary bytes in arbitrary chunks (and ``wire.decode_at`` in slices)
  gives the same messages as one feed, each re-encodes to itself, or
  ``WireError``; ``resp.command`` round-trips through hiredis and
  ``resp.parse_url`` gives an address or ``BrokerURLError``.
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Callable, Iterator

from robyn_fast._core import codec as compiled
from robyn_fast._reference import codec as reference
from robyn_fast.exceptions import HandshakeError, ProtocolError

__all__ = ["HARNESSES", "check_frames", "check_roundtrip", "check_handshake", "check_http", "check_broker"]

_SIZES = (0, 1, 125, 126, 1000, 65536, None)


def _chunks(data: bytes, pattern: int) -> Iterator[bytes]:
    """``data`` cut into pieces: 0 is one piece, otherwise the piece sizes
    cycle through a short list the ``pattern`` byte picks (1-byte pieces,
    sizes around the 2/4/8-byte header fields, a few larger ones)."""
    if pattern == 0 or not data:
        yield data
        return
    sizes = [1 + ((pattern >> shift) & 0x0F) * (1 + (pattern & 3)) for shift in (0, 2, 4, 6)]
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


def _outcome(parser: object, chunks: list[bytes], via_buffer: bool) -> tuple[list[tuple], object]:
    """Every message the parser gives for ``chunks`` and how it ended:
    ``None`` (still open), ``"closed"`` or ``(error class, close code)``.
    Only ProtocolError and its subclasses may come out of ``feed``."""
    messages: list[tuple] = []
    for chunk in chunks:
        try:
            if via_buffer:
                # The BufferedProtocol path, as asyncio drives it: no view of the
                # buffer outlives the buffer_updated() call.
                got: list = []
                pos = 0
                while pos < len(chunk):
                    with memoryview(parser.get_buffer(len(chunk) - pos)) as raw, raw.cast("B") as view:  # type: ignore[attr-defined]
                        n = min(len(view), len(chunk) - pos)
                        view[:n] = chunk[pos : pos + n]
                    got += parser.buffer_updated(n)  # type: ignore[attr-defined]
                    pos += n
            else:
                got = parser.feed(chunk)  # type: ignore[attr-defined]
        except ProtocolError as exc:
            messages += [m.as_tuple() for m in exc.messages]
            # A failed parser stays failed, with the same error (and no messages).
            try:
                parser.feed(b"\x81")  # type: ignore[attr-defined]
            except ProtocolError as again:
                assert (type(again), again.close_code, again.messages) == (type(exc), exc.close_code, []), again
            else:
                raise AssertionError("a failed parser accepted more input")
            return messages, (type(exc).__name__, exc.close_code)
        messages += [m.as_tuple() for m in got]
    if parser.closed:  # type: ignore[attr-defined]
        return messages, "closed"
    return messages, None


def check_frames(data: bytes) -> object:
    """Byte 0: bit 0 client side, bit 1 permessage-deflate, bit 2 no context
    takeover, bit 3 compiled parser through get_buffer/buffer_updated, bits
    4-6 the message size limit. Byte 1: the chunking. Byte 2: window bits and
    allowed RSV bits. The rest is the stream."""
    if len(data) < 3:
        return
    opts, pattern, extra = data[0], data[1], data[2]
    stream = data[3:]
    client = bool(opts & 1)
    deflate = bool(opts & 2)
    nct = bool(opts & 4)
    via_buffer = bool(opts & 8)
    limit = _SIZES[((opts >> 4) & 7) % len(_SIZES)]
    if deflate and limit is None:
        limit = 65536  # inflation is always bounded in the server (Config declines it otherwise)
    bits = 9 + (extra & 7) % 7
    allowed_rsv = (extra & 0x70) if extra & 0x80 else 0
    chunks = list(_chunks(stream, pattern))

    def parser(impl: object) -> object:
        inflater = impl.Inflater(bits, no_context_takeover=nct) if deflate else None  # type: ignore[attr-defined]
        return impl.FrameParser(limit, client=client, allowed_rsv=allowed_rsv,  # type: ignore[attr-defined]
                                inflater=inflater)

    got = _outcome(parser(compiled), chunks, via_buffer)
    want = _outcome(parser(reference), chunks, False)
    assert got == want, f"compiled {got!r:.600} != reference {want!r:.600}"
    # Split differently, the compiled parser must not notice.
    if pattern:
        whole = _outcome(parser(compiled), [stream], False)
        assert whole == got, f"whole {whole!r:.600} != chunked {got!r:.600}"
    return got


_OPCODES = (compiled.OP_CONT, compiled.OP_TEXT, compiled.OP_BINARY, compiled.OP_CLOSE, compiled.OP_PING,
            compiled.OP_PONG, 3, 0xB)


def _build(impl: object, opcode: int, payload: bytes, fin: bool, rsv: int, mask: bytes | None) -> object:
    try:
        return impl.build_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)  # type: ignore[attr-defined]
    except ValueError:  # the documented refusal: bad opcode, rsv, mask or control payload
        return "ValueError"


def check_roundtrip(data: bytes) -> object:
    """Byte 0: bits 0-2 the opcode (8 choices, 2 of them invalid), bit 3 fin,
    bit 4 masked, bits 5-7 RSV bits. Byte 1: bit 0 through a Deflater, bit 1
    text (a str), bit 2 no context takeover, bits 3-5 the level, byte 2 the
    window bits and how many messages the payload makes (context takeover
    carries between them). Bytes 3-6: the mask. The rest: the payload."""
    if len(data) < 7:
        return
    b0, b1, b2 = data[0], data[1], data[2]
    mask = data[3:7] if b0 & 0x10 else None
    payload = data[7:]
    opcode = _OPCODES[b0 & 7]
    fin = bool(b0 & 8)
    rsv = b0 & 0x70 if b0 & 0x80 else 0
    if not b1 & 1:
        frame = _build(compiled, opcode, payload, fin, rsv, mask)
        want = _build(reference, opcode, payload, fin, rsv, mask)
        assert frame == want, f"compiled {frame!r:.300} != reference {want!r:.300}"
        if frame == "ValueError":
            return "refused"
        assert isinstance(frame, bytes)
        close = opcode == compiled.OP_CLOSE
        parser = compiled.FrameParser(None, client=mask is None, allowed_rsv=rsv)
        if opcode == compiled.OP_CONT or (not fin and opcode < compiled.OP_CLOSE):
            # A lone continuation or an unfinished message: the parser must wait or refuse, never crash.
            try:
                assert parser.feed(frame) == []
            except ProtocolError as exc:
                # A lone continuation (1002), or a text fragment that cannot begin valid UTF-8 (1007 at once).
                assert (opcode, exc.close_code) in ((compiled.OP_CONT, 1002), (compiled.OP_TEXT, 1007)), exc
            return "partial"
        try:
            messages = parser.feed(frame)
        except ProtocolError as exc:
            # Text that is not UTF-8, a Close frame whose body is not a valid code and reason.
            assert opcode == compiled.OP_TEXT or close, exc
            assert exc.close_code in (1002, 1007), exc
            return ("error", exc.close_code)
        assert len(messages) == 1, messages
        m = messages[0]
        # A control frame's Message carries no RSV bits (in both codecs); a data message its first frame's.
        assert m.opcode == opcode and m.rsv == (rsv if opcode < compiled.OP_CLOSE else 0), (m, opcode, rsv)
        if opcode == compiled.OP_TEXT:
            assert m.data == payload.decode("utf-8"), m
        else:
            assert m.data == payload, m
        if not close:
            return ("message", opcode)
        # build_close: a valid code and reason round-trip, anything else is ValueError in both.
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        reason = payload[2:].decode("utf-8", "replace")
        results = []
        for impl in (compiled, reference):
            try:
                results.append(impl.build_close(code, reason if code is not None else "", mask=mask))
            except ValueError:
                results.append("ValueError")
        assert results[0] == results[1], results
        if isinstance(results[0], bytes):
            (m,) = compiled.FrameParser(None, client=mask is None).feed(results[0])
            assert (m.close_code, m.close_reason) == (code, reason if code is not None else ""), m
        return ("close", results[0] != "ValueError")

    # permessage-deflate: compress with the compiled Deflater, inflate with both Inflaters.
    text = bool(b1 & 2)
    nct = bool(b1 & 4)
    level = (b1 >> 3) & 7
    bits = 9 + (b2 & 7) % 7
    parts = 1 + (b2 >> 3) % 4
    if text:
        message_data: list[str | bytes] = [p.decode("utf-8", "replace") for p in _split(payload, parts)]
    else:
        message_data = list(_split(payload, parts))
    deflater = compiled.Deflater(bits, mem_level=1 + level, level=level, no_context_takeover=nct)
    ref_deflater = reference.Deflater(bits, mem_level=1 + level, level=level, no_context_takeover=nct)
    frames = b"".join(deflater.build_message(d, mask=mask) for d in message_data)
    ref_frames = b"".join(ref_deflater.build_message(d, mask=mask) for d in message_data)
    for impl, stream in ((compiled, frames), (reference, frames), (compiled, ref_frames)):
        inflater = impl.Inflater(bits, no_context_takeover=nct)
        parser = impl.FrameParser(None, client=mask is None, inflater=inflater)
        messages = parser.feed(stream)
        assert [m.data for m in messages] == message_data, (impl.__name__, messages, message_data)
        assert all(m.rsv == compiled.RSV1 for m in messages), messages
    return ("deflate", len(message_data))


def _split(payload: bytes, parts: int) -> Iterator[bytes]:
    step = max(1, -(-len(payload) // parts))
    for i in range(parts):
        yield payload[i * step : (i + 1) * step]


# -- the WebSocket handshake ------------------------------------------------------------------

_METHODS = ("GET", "POST", "get", "HEAD", "")
_VERSIONS = ("1.1", "1.0", "HTTP/1.1", "2", "1.x", "0.9", "11.1", "")
_MODES = ("off", "shared", "dedicated")


def _fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Header fields from lines ``name:value`` (a line without a colon is a name with an empty value)."""
    out = []
    for line in raw.split(b"\n"):
        name, _, value = line.partition(b":")
        out.append((name, value))
    return out


def _check_response_head(head: bytes) -> list[bytes]:
    """A response head: CRLF-separated lines, a status line, fields with a
    colon and no control characters but HTAB, a blank line at the end."""
    assert head.endswith(b"\r\n\r\n"), head
    lines = head[:-4].split(b"\r\n")
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        assert colon and name and not name.translate(None, _TOKEN_BYTES), line
        assert not any(c < 0x20 and c != 9 or c == 0x7F for c in value), line
    return lines


_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def check_handshake(data: bytes) -> object:
    """Byte 0: bits 0-2 the method, 3-5 the HTTP version. Byte 1: bits 0-1
    the compression mode, 2-4 window bits, 6 subprotocols configured, 7 an
    origin allowlist. The rest:
    header lines ``name:value`` separated by LF."""
    from robyn_fast.http.types import error_response
    from robyn_fast.websocket import extensions
    from robyn_fast.websocket.handshake import accept_handshake, header_tokens, is_upgrade_request, \
        negotiate_compression

    if len(data) < 2:
        return
    method = _METHODS[(data[0] & 7) % len(_METHODS)]
    version = _VERSIONS[(data[0] >> 3) & 7]
    mode = _MODES[(data[1] & 3) % 3]
    window_bits = 9 + ((data[1] >> 2) & 7) % 7
    subprotocols = ["chat", "superchat", "v2.json"] if data[1] & 0x40 else None
    origins = {"https://example.com", "null"} if data[1] & 0x80 else None
    headers = _fields(data[2:])
    header_tokens(headers, b"connection")
    is_upgrade_request(headers)
    try:
        response, chosen = accept_handshake(method, version, headers, subprotocols=subprotocols,
                                            allowed_origins=origins)
        response, params = negotiate_compression(response, headers, mode, window_bits=window_bits)
    except HandshakeError as exc:
        assert exc.status in (400, 403, 405, 426), exc
        # What the server writes for it must be a valid response.
        lines = _check_response_head(error_response(exc.status, exc.reason, exc.headers).split(b"\r\n\r\n")[0]
                                     + b"\r\n\r\n")
        assert lines[0].startswith(b"HTTP/1.1 %d " % exc.status), lines[0]
        return exc.status
    lines = _check_response_head(response)
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols", lines[0]
    assert chosen is None or (subprotocols is not None and chosen in subprotocols), chosen
    if params is not None:
        assert mode != "off"
        assert 9 <= params.server_max_window_bits <= 15 and 8 <= params.client_max_window_bits <= 15, params
        # The answer must be an offer a client can parse back.
        (ext,) = extensions.parse_extensions([params.response])
        assert ext.name == "permessage-deflate", ext
    # Any extension header value: parsed, or ExtensionsError; never anything else.
    values = [v.decode("latin-1") for n, v in headers if n.lower() == b"sec-websocket-extensions"]
    try:
        extensions.parse_extensions(values)
    except extensions.ExtensionsError:
        pass
    return (101, params is not None)


# -- the HTTP request path ---------------------------------------------------------------------


class _Handle:
    def __init__(self, callback: Callable[[], None], when: float) -> None:
        self.callback = callback
        self.when = when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Loop:
    """The loop as HttpProtocol uses it: timers on a clock of its own, run by hand (fire_timers)."""

    def __init__(self) -> None:
        self.timers: list[_Handle] = []
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None], *args: object) -> _Handle:
        handle = _Handle(callback, when)
        self.timers.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[[], None], *args: object) -> _Handle:
        return self.call_at(self.now + delay, callback)

    def fire_timers(self, stop: Callable[[], bool]) -> None:
        """Each timer as it would fire, the earliest first, the clock moved to its time (a
        timer set meanwhile fires too), until none is left or ``stop()``; at most 100."""
        for _ in range(100):
            pending = [h for h in self.timers if not h.cancelled]
            if not pending or stop():
                return
            handle = min(pending, key=lambda h: h.when)
            handle.cancelled = True  # fired: once
            self.now = max(self.now, handle.when)
            handle.callback()


class _Transport:
    """A transport that records what is written; closing it is final."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        assert isinstance(data, bytes), type(data)
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 50000) if name == "peername" else default


class _Host:
    """HttpHost with the real router and handshake; the WebSocket side only records the handover."""

    def __init__(self, config: object) -> None:
        from robyn_fast.dependency_injection import DependencyMap
        from robyn_fast.forwarded import TrustedProxies
        from robyn_fast.http.routes import Routes

        self.loop = _Loop()
        self.config = config
        self.context = contextvars.copy_context()
        self.routes = Routes(DependencyMap(), None, lambda path: path == "/ws")
        self.routes.add("GET", "/", lambda request: "hello")
        self.routes.add("POST", "/echo/:name", lambda request: {
            "name": request.path_params["name"], "body": str(request.body),
            "query": request.query_params.to_dict(),
        })
        self.routes.add("GET", "/fail", _fail)
        self.handle_http = self.routes.handle
        # The server's: the peer (127.0.0.1) is trusted by default, so the input's Forwarded and
        # X-Forwarded-* headers are parsed as a proxy's would be.
        self.proxies = TrustedProxies(config.forwarded_allow_ips)  # type: ignore[attr-defined]
        self.opened: list[bytes] = []

    def websocket_upgrade(self, path: str, parser_upgrade: bool, headers: list[tuple[bytes, bytes]]) -> object:
        from robyn_fast.websocket.handshake import is_upgrade_request

        if path != "/ws" or not (parser_upgrade or is_upgrade_request(headers)):
            return None
        return object(), {}

    def accept_websocket(self, endpoint: object, method: str, version: str,
                         headers: list[tuple[bytes, bytes]], query: str = "") -> tuple[bytes, object]:
        from robyn_fast.websocket.handshake import accept_handshake, negotiate_compression

        response, _ = accept_handshake(method, version, headers, subprotocols=["chat"])
        return negotiate_compression(response, headers, "shared")

    def vet_websocket(self, endpoint: object, method: str, target: str, headers: list[tuple[bytes, bytes]],
                      path_params: dict[str, str], client: str | None, scheme: str) -> bytes | None:
        # a before_upgrade hook's refusal when the query asks for one, else no hook
        return b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n" if "refuse" in target else None

    def open_websocket(self, endpoint: object, transport: object, initial: bytes, *args: object) -> None:
        self.opened.append(initial)

    def start_task(self, coro: object, context: object) -> object:
        raise AssertionError("no route is async")

    def connection_opened(self, protocol: object) -> None:
        pass

    def connection_closed(self, protocol: object) -> None:
        pass


def _fail(request: object) -> str:
    raise RuntimeError("a handler that fails")


def _check_responses(writes: list[bytes], upgraded: bool) -> None:
    """Each write is one complete HTTP/1.1 response (the protocol writes each
    with one call): a valid head, then exactly ``content-length`` body bytes
    or none (a HEAD request, 1xx, 204, 304). A 101 is the last write."""
    import httptools

    class Sink:
        pass

    for i, out in enumerate(writes):
        end = out.find(b"\r\n\r\n")
        assert end >= 0, f"an unfinished response head {out[:200]!r}"
        head, body = out[: end + 4], out[end + 4 :]
        lines = _check_response_head(head)
        status_line = lines[0]
        assert status_line.startswith(b"HTTP/1.1 ") and status_line[9:12].isdigit(), status_line
        status = int(status_line[9:12])
        assert 100 <= status <= 599, status_line
        if status == 101:
            assert upgraded and i == len(writes) - 1 and not body, writes
            continue
        lengths = [int(line.partition(b":")[2]) for line in lines[1:] if line.lower().startswith(b"content-length:")]
        if 100 <= status < 200 or status in (204, 304):
            assert not lengths and not body, out
            continue
        assert len(lengths) == 1 and len(body) in (0, lengths[0]), out
        if body:
            httptools.HttpResponseParser(Sink()).feed_data(out)  # HttpParserError for anything malformed
    assert upgraded == bool(writes and writes[-1].startswith(b"HTTP/1.1 101 ")), writes[-1:]


def check_http(data: bytes) -> object:
    """Byte 0: the chunking. Byte 1: small limits (to reach 413/414/431) and
    whether the client half-closes at the end. The rest: what the client sends."""
    from robyn_fast.config import Config
    from robyn_fast.http.protocol import HttpProtocol

    if len(data) < 2:
        return
    pattern, opts = data[0], data[1]
    if opts & 1:
        config = Config(max_request_line=64, max_header_size=64, max_headers=4, max_head_size=256,
                        max_body_size=32, max_pipelined_requests=2)
    else:
        config = Config()
    host = _Host(config)
    transport = _Transport()
    protocol = HttpProtocol(host)  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for chunk in _chunks(data[2:], pattern):
        if transport.closed or protocol.handed_over:
            break
        protocol.data_received(chunk)
    if not transport.closed and not protocol.handed_over:
        if opts & 2:
            if not protocol.eof_received():
                transport.close()
        else:
            # The timers as they would fire (header/body/idle timeouts).
            host.loop.fire_timers(lambda: transport.closed)
    protocol.connection_lost(None)
    _check_responses(transport.writes, bool(host.opened))
    return [int(w[9:12]) for w in transport.writes]


# -- the broker ----------------------------------------------------------------------------------


def check_broker(data: bytes) -> object:
    """Byte 0: the chunking, and which decoder (its value mod 4: 0-1 the bus
    wire.Decoder, 2 a RESP command, 3 a broker URL). The rest: a bus stream,
    RESP command arguments (NUL-separated), or a broker URL."""
    from robyn_fast.broker import resp, wire

    if len(data) < 1:
        return
    pattern, rest = data[0], data[1:]
    which = pattern % 4
    if which == 3:
        # rediss:// makes an SSLContext: the system's CA store takes ~175 ms to load, thousands of
        # times the parse, so it is skipped here (the context, and what the URL sets on it, are real).
        resp.ssl = _NO_SYSTEM_CAS  # type: ignore[attr-defined]
        try:
            resp.parse_url(rest.decode("utf-8", "surrogateescape"))
        except resp.BrokerURLError:
            return "url refused"
        finally:
            resp.ssl = ssl  # type: ignore[attr-defined]
        return "url"
    if which == 2:
        import hiredis

        args = rest.split(b"\0")
        reader = hiredis.Reader()
        reader.feed(resp.command(*args))
        assert reader.gets() == args
        assert reader.gets() is False
        return "command"
    results = []
    for chunking in (pattern, 0):
        decoder = wire.Decoder()
        messages: list[wire.Message] = []
        error = None
        for chunk in _chunks(rest, chunking):
            try:
                messages += decoder.feed(chunk)
            except wire.WireError:
                error = "WireError"
                break
        results.append((messages, error))
    leftover = decoder.buffered
    # A malformed message fails the stream either way; the messages completed in the same feed()
    # call before it are not returned (the broker drops such a payload whole), so only a clean
    # stream must give the same messages however it is cut.
    assert results[0][1] == results[1][1], results
    assert results[0][1] is not None or results[0][0] == results[1][0], results
    # decode_at (the Redis subscriber's) reads a whole payload in slices: on a clean, complete stream
    # the messages the stream decoder gives; a WireError where that one fails or is left truncated.
    sliced: list[wire.Message] = []
    pos, failed = 0, False
    while pos < len(rest):
        try:
            part, pos = wire.decode_at(rest, pos, 1 + pattern % 5)
        except wire.WireError:
            failed = True
            break
        sliced += part
    assert failed == (results[1][1] is not None or leftover > 0), (failed, results[1], leftover)
    assert failed or sliced == results[1][0]
    messages, error = results[0]
    for m in messages:
        raw = wire.encode_hello(m.origin) if m.kind == wire.HELLO else wire.encode(m.kind, m.origin, m.endpoint,
                                                                                  m.key, m.frame)
        assert wire.Decoder().feed(raw) == [m], m
    return (len(messages), error)


class _SslWithoutSystemCAs:
    """The ssl module, but create_default_context() leaves out the system's CA certificates."""

    def __getattr__(self, name: str) -> object:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context() -> ssl.SSLContext:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


_NO_SYSTEM_CAS = _SslWithoutSystemCAs()


HARNESSES: dict[str, Callable[[bytes], object]] = {
    "frames": check_frames,
    "roundtrip": check_roundtrip,
    "handshake": check_handshake,
    "http": check_http,
    "broker": check_broker,
}
