# Compiled WebSocket frame codec (RFC 6455), sans-I/O. The contract is
# codec.pxd; the behaviour is that of robyn_fast/_reference/codec.py, which the
# tests use as the oracle.
#
# Hot-path notes: a data frame that is complete in the read buffer and not
# fragmented is unmasked in place and turned into its str/bytes directly (one
# copy). Anything else streams through the message buffer, unmasked and
# UTF-8-checked as it arrives, so an invalid byte fails the connection at once
# and memory follows what the peer actually sent, not what a header promised.

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_ND
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t, UINT64_MAX
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memmove, memset

from robyn_fast.exceptions import InvalidPayloadData, MessageTooBig, ProtocolError

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    object PyMemoryView_FromObject(object obj)

cdef extern from "zlib.h" nogil:
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_SYNC_FLUSH, Z_DEFLATED, Z_DEFAULT_STRATEGY, Z_MEM_ERROR
    int inflateInit2(z_stream *strm, int windowBits)
    int inflate(z_stream *strm, int flush)
    int inflateReset(z_stream *strm)
    int inflateEnd(z_stream *strm)
    int deflateInit2(z_stream *strm, int level, int method, int windowBits, int memLevel, int strategy)
    int deflate(z_stream *strm, int flush)
    int deflateReset(z_stream *strm)
    int deflateEnd(z_stream *strm)
    unsigned long deflateBound(z_stream *strm, unsigned long sourceLen)

OP_CONT = OPC_CONT
OP_TEXT = OPC_TEXT
OP_BINARY = OPC_BINARY
OP_CLOSE = OPC_CLOSE
OP_PING = OPC_PING
OP_PONG = OPC_PONG
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

cdef enum:
    MAX_CONTROL_PAYLOAD = 125
    READ_MIN = 16384            # smallest read window handed to a transport
    READ_MAX = 262144           # largest read window asked for while streaming a big frame
    NOGIL_THRESHOLD = 65536     # below this, releasing the GIL costs more than it lets run


cdef char *_FORMAT_B = "B"


cdef inline bint _valid_close_code(uint64_t code) nogil:
    return (1000 <= code <= 1003) or (1007 <= code <= 1011) or (3000 <= code <= 4999)


def is_valid_close_code(code):
    """Whether ``code`` may appear in a Close frame (RFC 6455 §7.4.1, §7.4.2).

    1000-1003 and 1007-1011 are the defined codes that may be sent; 3000-4999
    are for libraries and applications. Everything else (including 1004-1006,
    1015, and the unassigned 1012-2999) is a protocol error when received.
    """
    return (1000 <= code <= 1003) or (1007 <= code <= 1011) or (3000 <= code <= 4999)


@cython.freelist(256)
@cython.final
cdef class Message:
    """One complete message or control frame received from the peer.

    ``data`` is a ``str`` for text messages and ``bytes`` otherwise (for a
    Close frame, its raw payload). ``close_code`` is ``None`` unless this is a
    Close frame with a body; ``close_reason`` is its decoded reason. ``rsv``
    holds the RSV bits of the message's first frame.
    """

    def __init__(self, int opcode, data, int rsv=0, close_code=None, str close_reason=""):
        self.opcode = opcode
        self.data = data
        self.rsv = rsv
        self.close_code = close_code
        self.close_reason = close_reason

    def as_tuple(self):
        return (self.opcode, self.data, self.rsv, self.close_code, self.close_reason)

    def __eq__(self, other):
        as_tuple = getattr(other, "as_tuple", None)
        if as_tuple is None:
            return NotImplemented
        return self.as_tuple() == as_tuple()

    __hash__ = None

    def __repr__(self):
        if self.opcode == OPC_CLOSE:
            return (f"Message(opcode={self.opcode}, close_code={self.close_code}, "
                    f"close_reason={self.close_reason!r})")
        return f"Message(opcode={self.opcode}, data={self.data!r}, rsv={self.rsv})"


cdef inline Message _new_message(int opcode, object data, int rsv):
    cdef Message m = Message.__new__(Message)
    m.opcode = opcode
    m.data = data
    m.rsv = rsv
    m.close_reason = ""
    return m


cdef void fill_buffer_view(Py_buffer *view, object owner, void *buf, Py_ssize_t length, int flags):
    view.buf = buf
    view.obj = owner
    view.len = length
    view.readonly = 0
    view.itemsize = 1
    view.format = _FORMAT_B if (flags & PyBUF_FORMAT) else NULL
    view.ndim = 1
    view.shape = &view.len if (flags & PyBUF_ND) else NULL
    view.strides = NULL
    view.suboffsets = NULL
    view.internal = NULL


cdef class MessageSink:
    """Receiver of parsed messages for C-level users of FrameParser."""

    cdef int on_data(self, int opcode, object data, int rsv) except -1:
        raise NotImplementedError

    cdef int on_control(self, Message m) except -1:
        raise NotImplementedError


@cython.final
cdef class _ReadWindow:
    """The writable free tail of a FrameParser's read buffer, for
    ``BufferedProtocol.get_buffer``. While a transport holds a view of it the
    parser refuses to move the buffer (BufferError) instead of leaving the
    view dangling."""

    cdef FrameParser parser

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef FrameParser p = self.parser
        fill_buffer_view(view, self, p._rbuf + p._rend, <Py_ssize_t>(p._rcap - p._rend), flags)
        p._exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        cdef FrameParser p = self.parser
        p._exports -= 1
        if p._released and p._exports == 0:
            p.release()         # the transport let go only now: finish what release() left

    def __len__(self):
        return self.parser._rcap - self.parser._rend

    # asyncio's TLS transport slices the buffer get_buffer() returned
    # (``buf[offset:]`` to read more into it; asyncio's helper for protocols
    # fed plain data assigns ``buf[:n] = data``): a view for the slice,
    # released when dropped.
    def __getitem__(self, key):
        return memoryview(self)[key]

    def __setitem__(self, key, value):
        memoryview(self)[key] = value


@cython.final
cdef class FrameParser:
    """Incremental RFC 6455 frame parser and message reassembler (sans-I/O).

    Feed it bytes split anywhere; it returns each complete message (text as
    ``str``, binary as ``bytes``) and each control frame, in order. Control
    frames interleaved with the fragments of a message are returned when they
    arrive. A violation raises ProtocolError (close code 1002), MessageTooBig
    (1009) or InvalidPayloadData (1007) as soon as the offending byte arrives;
    the messages completed before it in the same call are on the exception's
    ``messages``. After an error every further call raises the same error;
    after a Close frame the parser ignores further input (RFC 6455 §5.5.1).

    ``client=False`` (a server) requires every frame to be masked;
    ``client=True`` requires every frame to be unmasked (RFC 6455 §5.1).
    ``max_message_size`` bounds a whole message (``None``: no bound) and is
    enforced from each frame header before its payload is buffered.
    ``allowed_rsv`` lists the RSV bits an extension negotiated.

    For ``asyncio.BufferedProtocol``: ``get_buffer()`` returns the free part
    of the parser's own read buffer and ``buffer_updated(n)`` parses what the
    transport wrote there, so input is copied once.
    """

    def __cinit__(self):
        self._rbuf = NULL
        self._mbuf = NULL
        self._state = PS_HEADER
        self._utf8 = RF_UTF8_ACCEPT

    def __init__(self, max_message_size=DEFAULT_MAX_MESSAGE_SIZE, *, bint client=False,
                 int allowed_rsv=0, Inflater inflater=None):
        if max_message_size is None:
            self._limit = UINT64_MAX
        elif not isinstance(max_message_size, int) or isinstance(max_message_size, bool):
            raise TypeError("max_message_size must be an int or None")
        elif max_message_size < 0:
            raise ValueError("max_message_size must be >= 0")
        else:
            self._limit = <uint64_t>min(max_message_size, UINT64_MAX)
        if allowed_rsv & ~RSV_BITS:
            raise ValueError("allowed_rsv must be a combination of RSV1, RSV2 and RSV3")
        self._max_message_size = max_message_size
        self._client = client
        self._allowed_rsv = allowed_rsv
        self.set_inflater(inflater)
        cdef _ReadWindow window = _ReadWindow.__new__(_ReadWindow)
        window.parser = self
        self._window = window

    def __dealloc__(self):
        free(self._rbuf)
        free(self._mbuf)

    @property
    def max_message_size(self):
        return self._max_message_size

    @property
    def closed(self):
        """True once a Close frame has been parsed."""
        return self._state == PS_CLOSED

    @property
    def failed(self):
        """True once a protocol error has been raised."""
        return self._state == PS_FAILED

    @property
    def allocated(self):
        """Bytes of buffer memory the parser holds right now."""
        return self._rcap + self._mcap + (0 if self._mbytes is None else PyBytes_GET_SIZE(self._mbytes))

    @property
    def buffered(self):
        """Bytes held by the parser: unparsed input plus a partial message."""
        return (self._rend - self._rstart) + self._mlen

    def feed(self, data):
        """Parse ``data``; return the messages it completed, in order."""
        cdef Py_buffer view
        cdef list out = []
        if self._state == PS_CLOSED:
            return out
        if self._state != PS_FAILED:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                self.append_input(<const uint8_t *>view.buf, <size_t>view.len)
            finally:
                PyBuffer_Release(&view)
        self.parse(out)
        self.shrink_if_idle()
        return out

    def get_buffer(self, Py_ssize_t sizehint=-1):
        """A writable buffer for ``asyncio.BufferedProtocol.get_buffer``."""
        return self.read_window()

    def buffer_updated(self, Py_ssize_t nbytes):
        """Parse the ``nbytes`` just written into the buffer from :meth:`get_buffer`."""
        cdef list out = []
        if nbytes < 0:
            raise ValueError("buffer_updated() without a matching get_buffer()")
        self.input_received(<size_t>nbytes)
        self.parse(out)
        self.shrink_if_idle()
        return out

    # -- C-level API (codec.pxd) ------------------------------------------

    cdef object read_window(self):
        cdef size_t want = READ_MIN
        cdef _ReadWindow window
        if self._window is None:
            # Only after release(): a transport that reads on gets a window
            # again (and its input is ignored, as after a Close).
            window = _ReadWindow.__new__(_ReadWindow)
            window.parser = self
            self._window = window
        if self._state == PS_PAYLOAD and self._remaining > want:
            want = <size_t>self._remaining if self._remaining < READ_MAX else READ_MAX
        self.reserve_input(want)
        return self._window

    cdef int input_received(self, size_t n) except -1:
        if n > self._rcap - self._rend:
            raise ValueError("buffer_updated() without a matching get_buffer()")
        self._rend += n
        return 0

    cdef int reserve_input(self, size_t want) except -1:
        cdef size_t pending, newcap
        cdef uint8_t *p
        if self._rcap - self._rend >= want:
            return 0
        if self._exports:
            raise BufferError("the parser's read buffer is exported and cannot be moved")
        pending = self._rend - self._rstart
        if self._rstart:
            memmove(self._rbuf, self._rbuf + self._rstart, pending)
            self._rstart = 0
            self._rend = pending
            if self._rcap - self._rend >= want:
                return 0
        newcap = self._rcap * 2
        if newcap < pending + want:
            newcap = pending + want
        p = <uint8_t *>realloc(self._rbuf, newcap)
        if p == NULL:
            raise MemoryError()
        self._rbuf = p
        self._rcap = newcap
        return 0

    cdef int append_input(self, const uint8_t *data, size_t n) except -1:
        if n == 0:
            return 0
        self.reserve_input(n)
        memcpy(self._rbuf + self._rend, data, n)
        self._rend += n
        return 0

    cdef void shrink_if_idle(self):
        # An idle connection keeps no read buffer: the next read allocates
        # again (or goes through a shared buffer, see parse_external).
        if self._rstart == self._rend and self._exports == 0:
            self._rstart = self._rend = 0
            free(self._rbuf)
            self._rbuf = NULL
            self._rcap = 0

    cdef void release(self):
        free(self._mbuf)
        self._mbuf = NULL
        self._mbytes = None
        self._mcap = self._mlen = 0
        self._msg_opcode = self._msg_rsv = 0
        self._remaining = 0
        self._rstart = self._rend = 0
        self._sink = None
        self._inflater = None
        self._released = True
        if self._state == PS_FAILED:
            # Kept, so that parse() raises it again, but without the frames
            # of its traceback or the exception it interrupted.
            self._error.messages = []
            self._error.__traceback__ = None
            self._error.__context__ = None
        else:
            self._state = PS_CLOSED
        if self._exports == 0:
            free(self._rbuf)
            self._rbuf = NULL
            self._rcap = 0
            self._window = None

    cdef int _mbuf_reserve(self, size_t extra) except -1:
        cdef size_t need = self._mlen + extra
        cdef size_t newcap
        cdef uint8_t *p
        if need <= self._mcap:
            return 0
        newcap = self._mcap * 2
        if newcap < need:
            newcap = need
        if newcap < 1024:
            newcap = 1024
        p = <uint8_t *>realloc(self._mbuf, newcap)
        if p == NULL:
            raise MemoryError()
        self._mbuf = p
        self._mcap = newcap
        return 0

    cdef int _fail(self, type cls, str reason, list out) except -1:
        exc = cls(reason)
        exc.messages = out if out is not None else []
        self._error = exc
        self._state = PS_FAILED
        self._rstart = self._rend = 0
        self._mlen = 0
        self._mbytes = None
        raise exc

    cdef Message _control(self, int opcode, uint8_t *p, size_t n, list out):
        cdef Message m
        cdef uint64_t code
        if opcode != OPC_CLOSE:
            return _new_message(opcode, PyBytes_FromStringAndSize(<char *>p, n), 0)
        if n == 1:
            self._fail(ProtocolError, "close frame with a 1-byte payload", out)
        m = _new_message(OPC_CLOSE, PyBytes_FromStringAndSize(<char *>p, n), 0)
        if n == 0:
            return m
        code = (<uint64_t>p[0] << 8) | p[1]
        if not _valid_close_code(code):
            self._fail(ProtocolError, f"invalid close code {code}", out)
        if rf_utf8_step(RF_UTF8_ACCEPT, p + 2, n - 2, NULL) != RF_UTF8_ACCEPT:
            self._fail(InvalidPayloadData, "invalid UTF-8 in close reason", out)
        m.close_code = <int>code
        m.close_reason = PyUnicode_DecodeUTF8(<char *>p + 2, n - 2, NULL)
        return m

    cdef int _finish(self, list out) except -1:
        cdef object data
        cdef int opcode = self._msg_opcode
        cdef int rsv = self._msg_rsv
        if self._mbytes is not None:
            data = self._mbytes
            self._mbytes = None
        elif rsv & 0x40 and self._inflater is not None:
            data = self._inflate(self._mbuf, self._mlen, opcode, out)
        elif opcode == OPC_TEXT:
            if self._utf8 != RF_UTF8_ACCEPT:
                self._fail(InvalidPayloadData, "invalid UTF-8 in text message", out)
            data = PyUnicode_DecodeUTF8(<char *>self._mbuf, self._mlen, NULL)
        else:
            data = PyBytes_FromStringAndSize(<char *>self._mbuf, self._mlen)
        self._mlen = 0
        self._msg_opcode = 0
        self._msg_rsv = 0
        # Reassembly is rare; do not keep its buffer on an idle connection.
        free(self._mbuf)
        self._mbuf = NULL
        self._mcap = 0
        return self._emit_data(out, opcode, data, rsv)

    cdef int _emit_data(self, list out, int opcode, object data, int rsv) except -1:
        if out is not None:
            out.append(_new_message(opcode, data, rsv))
        else:
            self._sink.on_data(opcode, data, rsv)
        return 0

    cdef int _emit_control(self, list out, Message m) except -1:
        if out is not None:
            out.append(m)
        else:
            self._sink.on_control(m)
        return 0

    cdef int set_sink(self, MessageSink sink) except -1:
        self._sink = sink
        return 0

    cdef int set_inflater(self, Inflater inflater) except -1:
        self._inflater = inflater
        if inflater is not None:
            self._allowed_rsv |= 0x40
        # A compressed message may be a little larger than what it inflates
        # to (stored blocks: 5 bytes per block), so its bound has slack; the
        # inflated size is held to _limit exactly. A sender that flushes in
        # every fragment adds up to ~10 bytes a frame with payload (websockets
        # does): 16 bytes of slack each, up to _limit + 1 KiB in all, so the
        # bound stays one (an empty frame adds no bytes and gets no slack).
        if self._limit == UINT64_MAX or self._limit > (UINT64_MAX >> 2):
            self._climit = self._limit
            self._cslack_max = 0
        else:
            self._climit = self._limit + (self._limit >> 8) + 64
            self._cslack_max = self._limit + 1024
        return 0

    cdef object _inflate(self, const uint8_t *src, size_t n, int opcode, list out):
        cdef int status
        data = self._inflater.inflate_c(src, n, self._limit, opcode == OPC_TEXT, &status)
        if status != INF_OK:
            exc = _inflate_error(status)
            self._fail(type(exc), str(exc.args[0]), out)
        return data

    cdef bint can_parse_external(self):
        return self._rstart == self._rend and self._state < PS_CLOSED

    cdef int parse_external(self, uint8_t *data, size_t n, list out) except -1:
        cdef uint8_t *own
        cdef size_t own_cap, pos, left
        if not self.can_parse_external():
            self.append_input(data, n)
            return self.parse(out)
        own = self._rbuf
        own_cap = self._rcap
        self._rbuf = data
        self._rcap = n
        self._rstart = 0
        self._rend = n
        try:
            self.parse(out)
        finally:
            pos = self._rstart
            left = self._rend - self._rstart
            self._rbuf = own
            self._rcap = own_cap
            self._rstart = self._rend = 0
        if left and self._state < PS_CLOSED:
            self.append_input(data + pos, left)
        return 0

    cdef int parse(self, list out) except -1:
        cdef size_t avail, hlen, take
        cdef uint64_t length
        cdef uint8_t *p
        cdef uint8_t *dst
        cdef uint8_t key[4]
        cdef int b0, b1, opcode, rsv, len7, i
        cdef bint fin, masked
        cdef object data
        cdef Message m

        if self._state == PS_FAILED:
            self._error.messages = out if out is not None else []
            raise self._error
        if self._state == PS_CLOSED:
            self._rstart = self._rend = 0
            return 0

        while True:
            avail = self._rend - self._rstart
            if self._state == PS_PAYLOAD:
                if self._remaining:
                    if avail == 0:
                        break
                    take = avail if avail < self._remaining else <size_t>self._remaining
                    if self._mbytes is not None:
                        dst = <uint8_t *>PyBytes_AS_STRING(self._mbytes) + self._mlen
                    else:
                        self._mbuf_reserve(take)
                        dst = self._mbuf + self._mlen
                    if self._masked:
                        rf_mask(dst, self._rbuf + self._rstart, take, self._mask, self._phase)
                    else:
                        memcpy(dst, self._rbuf + self._rstart, take)
                    self._rstart += take
                    self._phase += take
                    self._remaining -= take
                    self._mlen += take
                    if self._msg_opcode == OPC_TEXT and not (self._msg_rsv & 0x40 and self._inflater is not None):
                        self._utf8 = rf_utf8_step(self._utf8, dst, take, NULL)
                        if self._utf8 == RF_UTF8_REJECT:
                            self._fail(InvalidPayloadData, "invalid UTF-8 in text message", out)
                if self._remaining == 0:
                    self._state = PS_HEADER
                    if self._fin:
                        self._finish(out)
                continue

            if avail < 2:
                break
            p = self._rbuf + self._rstart
            b0 = p[0]
            b1 = p[1]
            fin = (b0 & 0x80) != 0
            rsv = b0 & RSV_BITS
            opcode = b0 & 0x0F
            masked = (b1 & 0x80) != 0
            len7 = b1 & 0x7F
            if rsv & ~self._allowed_rsv:
                self._fail(ProtocolError, "reserved bits must be 0", out)
            if rsv & 0x40 and self._inflater is not None:
                if opcode >= OPC_CLOSE:
                    self._fail(ProtocolError, "RSV1 set on a control frame", out)
                if opcode == OPC_CONT:
                    self._fail(ProtocolError, "RSV1 set on a continuation frame", out)
            if not (opcode <= OPC_BINARY or OPC_CLOSE <= opcode <= OPC_PONG):
                self._fail(ProtocolError, f"unknown opcode {opcode}", out)
            if masked == self._client:
                self._fail(ProtocolError,
                           "server frames must not be masked" if self._client
                           else "client frames must be masked", out)
            if opcode >= OPC_CLOSE:
                if not fin:
                    self._fail(ProtocolError, "fragmented control frame", out)
                if len7 > MAX_CONTROL_PAYLOAD:
                    self._fail(ProtocolError, "control frame too long", out)
            elif opcode == OPC_CONT:
                if self._msg_opcode == 0:
                    self._fail(ProtocolError, "unexpected continuation frame", out)
            elif self._msg_opcode != 0:
                self._fail(ProtocolError, "expected a continuation frame", out)

            hlen = 2
            if len7 == 126:
                hlen = 4
            elif len7 == 127:
                hlen = 10
            if masked:
                hlen += 4
            if avail < hlen:
                break
            if len7 == 126:
                length = (<uint64_t>p[2] << 8) | p[3]
            elif len7 == 127:
                length = 0
                for i in range(2, 10):
                    length = (length << 8) | p[i]
                if length >> 63:
                    self._fail(ProtocolError, "frame length has the most significant bit set", out)
            else:
                length = len7
            # _mlen <= the bound always holds (the bound never shrinks within a
            # message), so the subtraction cannot wrap. A compressed message is
            # bounded by _climit plus its slack here (see set_inflater), and by
            # _limit once inflated.
            if opcode < OPC_CLOSE:
                if self._inflater is not None and (rsv if opcode != OPC_CONT else self._msg_rsv) & 0x40:
                    if opcode != OPC_CONT:
                        self._cslack = 0
                    if length:
                        self._cslack = self._cslack + 16 if self._cslack_max - self._cslack > 16 \
                            else self._cslack_max
                    if self._climit <= (UINT64_MAX >> 1) and \
                            length > self._climit + self._cslack - self._mlen:
                        self._fail(MessageTooBig, "message too big", out)
                elif length > self._limit - self._mlen:
                    self._fail(MessageTooBig, "message too big", out)
            if masked:
                memcpy(key, p + hlen - 4, 4)

            if opcode >= OPC_CLOSE:
                if avail - hlen < length:
                    break
                if masked:
                    rf_mask(p + hlen, p + hlen, <size_t>length, key, 0)
                m = self._control(opcode, p + hlen, <size_t>length, out)
                self._rstart += hlen + <size_t>length
                if opcode == OPC_CLOSE:
                    self._state = PS_CLOSED
                    self._rstart = self._rend = 0
                    self._emit_control(out, m)
                    break
                self._emit_control(out, m)
                continue

            self._rstart += hlen
            avail -= hlen
            if opcode != OPC_CONT:
                self._msg_opcode = opcode
                self._msg_rsv = rsv
                self._utf8 = RF_UTF8_ACCEPT
                if fin and avail >= length:
                    # Fast path: a whole unfragmented message is in the buffer.
                    p = self._rbuf + self._rstart
                    if opcode == OPC_BINARY and not (rsv & 0x40 and self._inflater is not None):
                        # Unmasked on its way into the bytes object: one pass.
                        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                        dst = <uint8_t *>PyBytes_AS_STRING(data)
                        if masked:
                            rf_mask(dst, p, <size_t>length, key, 0)
                        else:
                            memcpy(dst, p, <size_t>length)
                    else:
                        if masked:
                            rf_mask(p, p, <size_t>length, key, 0)
                        if rsv & 0x40 and self._inflater is not None:
                            data = self._inflate(p, <size_t>length, opcode, out)
                        else:
                            if rf_utf8_step(RF_UTF8_ACCEPT, p, <size_t>length, NULL) != RF_UTF8_ACCEPT:
                                self._fail(InvalidPayloadData, "invalid UTF-8 in text message", out)
                            data = PyUnicode_DecodeUTF8(<char *>p, <Py_ssize_t>length, NULL)
                    self._rstart += <size_t>length
                    self._msg_opcode = 0
                    self._emit_data(out, opcode, data, rsv)
                    continue
                if fin and opcode == OPC_BINARY and 0 < length <= READ_MAX \
                        and not (rsv & 0x40 and self._inflater is not None):
                    # The whole message is this one frame, its size known:
                    # its bytes object is made now and filled as it comes
                    # (at most READ_MAX, what a read window may reserve on
                    # the strength of a header anyway).
                    self._mbytes = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
            self._state = PS_PAYLOAD
            self._fin = fin
            self._remaining = length
            self._masked = masked
            memcpy(self._mask, key, 4)
            self._phase = 0

        if self._rstart == self._rend:
            self._rstart = self._rend = 0
        return 0


# -- masking and validation ---------------------------------------------------

def apply_mask(data, mask, Py_ssize_t phase=0):
    """XOR ``data`` with the 4-byte masking key (RFC 6455 §5.3).

    ``phase`` is the offset of ``data`` within the payload, so a payload can be
    unmasked in pieces.
    """
    cdef Py_buffer dv, mv
    cdef bytes out
    cdef uint8_t *dst
    if phase < 0:
        raise ValueError("phase must be >= 0")
    PyObject_GetBuffer(mask, &mv, PyBUF_SIMPLE)
    try:
        if mv.len != 4:
            raise ValueError("mask must be exactly 4 bytes")
        PyObject_GetBuffer(data, &dv, PyBUF_SIMPLE)
        try:
            out = PyBytes_FromStringAndSize(NULL, dv.len)
            dst = <uint8_t *>PyBytes_AS_STRING(out)
            if dv.len >= NOGIL_THRESHOLD:
                with nogil:
                    rf_mask(dst, <const uint8_t *>dv.buf, <size_t>dv.len,
                            <const uint8_t *>mv.buf, <size_t>phase)
            else:
                rf_mask(dst, <const uint8_t *>dv.buf, <size_t>dv.len,
                        <const uint8_t *>mv.buf, <size_t>phase)
        finally:
            PyBuffer_Release(&dv)
    finally:
        PyBuffer_Release(&mv)
    return out


def validate_utf8(data):
    """Whether ``data`` is well-formed UTF-8 (RFC 3629: no overlong forms, no
    surrogates, nothing above U+10FFFF)."""
    cdef Py_buffer view
    cdef uint32_t state
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    if view.len >= NOGIL_THRESHOLD:
        with nogil:
            state = rf_utf8_step(RF_UTF8_ACCEPT, <const uint8_t *>view.buf, <size_t>view.len, NULL)
    else:
        state = rf_utf8_step(RF_UTF8_ACCEPT, <const uint8_t *>view.buf, <size_t>view.len, NULL)
    PyBuffer_Release(&view)
    return state == RF_UTF8_ACCEPT


# -- permessage-deflate (RFC 7692) ----------------------------------------------

# One scratch buffer for the whole module: inflate and deflate write their
# output here, then one copy makes the str/bytes or the frame. Nothing in
# between can re-enter (the GIL is held throughout), so one buffer serves
# every connection of every loop; after a large message it shrinks back.
cdef uint8_t *_scratch = NULL
cdef size_t _scratch_cap = 0

cdef enum:
    SCRATCH_KEEP = 262144       # a scratch buffer larger than this is shrunk after use
    SCRATCH_MIN = 16384

cdef uint8_t _TAIL[4]                    # the end of a sync flush, stripped by senders (§7.2.1)
_TAIL[0] = 0x00
_TAIL[1] = 0x00
_TAIL[2] = 0xFF
_TAIL[3] = 0xFF


cdef int _scratch_reserve(size_t need, bint exact=False) except -1:
    global _scratch, _scratch_cap
    cdef size_t newcap
    cdef uint8_t *p
    if need <= _scratch_cap:
        return 0
    newcap = _scratch_cap * 2 if _scratch_cap else SCRATCH_MIN
    if newcap < need or exact:
        newcap = need
    p = <uint8_t *>realloc(_scratch, newcap)
    if p == NULL:
        raise MemoryError()
    _scratch = p
    _scratch_cap = newcap
    return 0


cdef void _scratch_trim():
    global _scratch, _scratch_cap
    if _scratch_cap > SCRATCH_KEEP:
        free(_scratch)
        _scratch = NULL
        _scratch_cap = 0


def scratch_size():
    """Bytes held by the module's (de)compression scratch buffer (for tests)."""
    return _scratch_cap


cdef inline int _check_window(int bits, str what) except -1:
    if not 9 <= bits <= 15:
        raise ValueError(f"{what} must be 9..15, got {bits}")
    return 0


@cython.final
cdef class Inflater:
    """The decompressor of permessage-deflate (RFC 7692 §7.2.2), sans-I/O.

    ``window_bits`` (9..15) is the largest LZ77 window it decodes (a peer
    limited to a smaller one is read as well). With ``no_context_takeover``
    every message starts afresh, so one Inflater can serve any number of
    connections; without it, it keeps the peer's history between messages
    and belongs to one connection. zlib's state is allocated on first use.
    """

    def __cinit__(self):
        memset(&self._z, 0, sizeof(z_stream))

    def __init__(self, int window_bits=15, *, bint no_context_takeover=True):
        _check_window(window_bits, "window_bits")
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover

    def __dealloc__(self):
        if self._ready:
            inflateEnd(&self._z)

    @property
    def allocated(self):
        """True once zlib's state exists (the first compressed message)."""
        return self._ready

    cdef int _init(self) except -1:
        cdef int rc = inflateInit2(&self._z, -self.window_bits)
        if rc != Z_OK:
            raise MemoryError() if rc == Z_MEM_ERROR else RuntimeError(f"inflateInit2 failed ({rc})")
        self._ready = True
        return 0

    cdef object inflate_c(self, const uint8_t *src, size_t n, uint64_t limit, bint text, int *status):
        cdef z_stream *z = &self._z
        cdef size_t produced = 0
        cdef size_t cap
        cdef int rc, part = 0
        cdef bint ended = False
        cdef unsigned int avail_before
        cdef object data
        status[0] = INF_OK
        if not self._ready:
            self._init()
        elif self.no_context_takeover and self._dirty:
            inflateReset(z)
        self._dirty = True
        z.next_in = src
        z.avail_in = <unsigned int>n if n < 0x40000000 else 0x40000000
        while True:
            if produced == _scratch_cap:
                # Grow, but never past the limit: a bomb costs at most limit + 1 bytes here.
                cap = _scratch_cap * 2 if _scratch_cap else SCRATCH_MIN
                if limit < UINT64_MAX and cap > limit + 1:
                    cap = <size_t>(limit + 1)
                _scratch_reserve(cap, True)
            z.next_out = _scratch + produced
            cap = _scratch_cap - produced
            if limit < UINT64_MAX and cap > limit + 1 - produced:
                cap = <size_t>(limit + 1 - produced)     # the scratch may be larger than this limit
            z.avail_out = <unsigned int>cap if cap < 0x40000000 else 0x40000000
            cap = z.avail_out
            avail_before = z.avail_in
            rc = inflate(z, Z_SYNC_FLUSH)
            produced += cap - z.avail_out
            if produced > limit:
                status[0] = INF_TOO_BIG
                break
            if rc == Z_STREAM_END:
                # A final block (BFINAL=1): the stream ends here; what follows starts a new
                # one, and no tail is added after it (RFC 7692 §7.2.3.4).
                inflateReset(z)
                ended = True
            elif rc != Z_OK and rc != Z_BUF_ERROR:
                status[0] = INF_BAD_DATA
                break
            elif cap != z.avail_out or z.avail_in != avail_before:
                ended = False
            if z.avail_out == 0:
                continue                    # more output may be pending
            if z.avail_in == 0:
                # The rest of a payload over 1 GiB (n first: src is NULL for an empty one,
                # and even NULL + 0 is undefined behaviour in C, which UBSan reports).
                if n > 0x40000000 and src + n > z.next_in:
                    cap = <size_t>(src + n - z.next_in)
                    z.avail_in = <unsigned int>cap if cap < 0x40000000 else 0x40000000
                    continue
                if part == 0 and not ended:
                    part = 1
                    src = _TAIL
                    n = 4
                    z.next_in = _TAIL
                    z.avail_in = 4
                    continue
                break
            if rc == Z_BUF_ERROR:
                status[0] = INF_BAD_DATA    # input left but no progress possible
                break
        if status[0] != INF_OK:
            # The stream is unusable now; a context-keeping one cannot go on.
            inflateReset(z)
            _scratch_trim()
            return None
        self.messages += 1
        if text:
            if rf_utf8_step(RF_UTF8_ACCEPT, _scratch, produced, NULL) != RF_UTF8_ACCEPT:
                status[0] = INF_BAD_UTF8
                _scratch_trim()
                return None
            data = PyUnicode_DecodeUTF8(<char *>_scratch, <Py_ssize_t>produced, NULL)
        else:
            data = PyBytes_FromStringAndSize(<char *>_scratch, <Py_ssize_t>produced)
        _scratch_trim()
        return data

    def inflate(self, payload, max_size=DEFAULT_MAX_MESSAGE_SIZE, *, bint text=False):
        """The message ``payload`` (one message's compressed bytes, without
        the 00 00 ff ff tail) decompresses to: ``bytes``, or ``str`` with
        ``text=True``. MessageTooBig once it passes ``max_size`` (``None``:
        no bound), InvalidPayloadData for data that is not DEFLATE or text
        that is not UTF-8."""
        cdef Py_buffer view
        cdef int status
        cdef uint64_t limit
        if max_size is None:
            limit = UINT64_MAX
        elif not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
            raise ValueError("max_size must be an int >= 0 or None")
        else:
            limit = <uint64_t>min(max_size, UINT64_MAX)
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            data = self.inflate_c(<const uint8_t *>view.buf, <size_t>view.len, limit, text, &status)
        finally:
            PyBuffer_Release(&view)
        if status != INF_OK:
            raise _inflate_error(status)
        return data


cdef object _inflate_error(int status):
    if status == INF_TOO_BIG:
        return MessageTooBig("message too big once decompressed")
    if status == INF_BAD_UTF8:
        return InvalidPayloadData("invalid UTF-8 in text message")
    return InvalidPayloadData("invalid compressed data")


@cython.final
cdef class Deflater:
    """The compressor of permessage-deflate (RFC 7692 §7.2.1), sans-I/O.

    Each message is compressed with a sync flush and loses its 00 00 ff ff
    tail. With ``no_context_takeover`` (the default) every message starts
    afresh, so one Deflater can serve any number of connections and its
    frames can go to all of them; without it, it keeps the history and
    belongs to one connection. ``window_bits`` 9..15, ``mem_level`` 1..9,
    ``level`` 0..9 as zlib's. zlib's state is allocated on first use.
    """

    def __cinit__(self):
        memset(&self._z, 0, sizeof(z_stream))

    def __init__(self, int window_bits=15, *, int mem_level=8, int level=6, bint no_context_takeover=True):
        _check_window(window_bits, "window_bits")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be 1..9, got {mem_level}")
        if not 0 <= level <= 9:
            raise ValueError(f"level must be 0..9, got {level}")
        self.window_bits = window_bits
        self.mem_level = mem_level
        self.level = level
        self.no_context_takeover = no_context_takeover

    def __dealloc__(self):
        if self._ready:
            deflateEnd(&self._z)

    @property
    def allocated(self):
        """True once zlib's state exists (the first compressed message)."""
        return self._ready

    cdef int _init(self) except -1:
        cdef int rc = deflateInit2(&self._z, self.level, Z_DEFLATED, -self.window_bits, self.mem_level,
                                   Z_DEFAULT_STRATEGY)
        if rc != Z_OK:
            raise MemoryError() if rc == Z_MEM_ERROR else RuntimeError(f"deflateInit2 failed ({rc})")
        self._ready = True
        return 0

    cdef int forget(self) except -1:
        if self._ready and self._dirty:
            deflateReset(&self._z)
            self._dirty = False
        return 0

    cdef bytes frame_c(self, int opcode, const uint8_t *payload, size_t n, const uint8_t *mask):
        cdef z_stream *z = &self._z
        cdef size_t produced = 0
        cdef size_t cap
        cdef int rc
        cdef bytes frame
        if n > 0x40000000:
            raise ValueError("a message over 1 GiB cannot be compressed")
        if n == 0:
            # An empty stored block without its tail (RFC 7692 §7.2.3.6). zlib
            # would emit nothing for a second sync flush in a row, and an empty
            # payload after a compressed message is not a valid one.
            self.compressions += 1
            return build_frame_c(opcode, _TAIL, 1, True, 0x40, mask)
        if not self._ready:
            self._init()
        elif self.no_context_takeover and self._dirty:
            deflateReset(z)
        self._dirty = True
        # deflateBound covers Z_FINISH; a sync flush adds an empty stored block (5 bytes) and a
        # partial block's bits: 16 more is ample, and the loop grows the buffer if not.
        _scratch_reserve(<size_t>deflateBound(z, <unsigned long>n) + 16)
        z.next_in = payload
        z.avail_in = <unsigned int>n
        while True:
            z.next_out = _scratch + produced
            cap = _scratch_cap - produced
            z.avail_out = <unsigned int>cap if cap < 0x40000000 else 0x40000000
            cap = z.avail_out
            rc = deflate(z, Z_SYNC_FLUSH)
            produced += cap - z.avail_out
            if rc != Z_OK and rc != Z_BUF_ERROR:
                deflateReset(z)
                raise RuntimeError(f"deflate failed ({rc})")
            if z.avail_out != 0:
                break
            if produced == _scratch_cap:
                _scratch_reserve(_scratch_cap * 2)
        if produced >= 4 and memcmp(_scratch + produced - 4, _TAIL, 4) == 0:
            produced -= 4
        self.compressions += 1
        frame = build_frame_c(opcode, _scratch, produced, True, 0x40, mask)
        _scratch_trim()
        return frame

    def compress(self, data):
        """The compressed payload of one message (``str`` as UTF-8), without
        the 00 00 ff ff tail."""
        cdef size_t off, n
        frame = self.build_message(data)
        off = frame_payload(frame, &n)
        return frame[off:]

    def build_message(self, data, *, mask=None):
        """One final frame carrying ``data`` compressed, RSV1 set: text for
        ``str``, binary for bytes-like data (the client passes its mask)."""
        cdef uint8_t key[4]
        cdef int has_mask = _check_mask(mask, key)
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef const char *p
        if isinstance(data, str):
            p = PyUnicode_AsUTF8AndSize(data, &n)
            return self.frame_c(OPC_TEXT, <const uint8_t *>p, <size_t>n, key if has_mask else NULL)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be str, bytes, bytearray or memoryview, not {type(data).__name__}")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self.frame_c(OPC_BINARY, <const uint8_t *>view.buf, <size_t>view.len,
                                key if has_mask else NULL)
        finally:
            PyBuffer_Release(&view)


cdef size_t frame_payload(bytes frame, size_t *n):
    cdef const uint8_t *o = <const uint8_t *>PyBytes_AS_STRING(frame)
    cdef size_t size = <size_t>PyBytes_GET_SIZE(frame)
    cdef size_t hlen = 2
    cdef int len7 = o[1] & 0x7F if size >= 2 else 0
    if len7 == 126:
        hlen = 4
    elif len7 == 127:
        hlen = 10
    if size < 2:
        n[0] = 0
        return size
    if o[1] & 0x80:
        hlen += 4
    if size < hlen:
        n[0] = 0
        return size
    n[0] = size - hlen
    return hlen


# -- frame building -----------------------------------------------------------

cdef inline size_t _header_len(size_t n, bint masked):
    return (2 if n < 126 else (4 if n < 65536 else 10)) + (4 if masked else 0)


cdef inline void _write_header(uint8_t *o, int b0, size_t n, const uint8_t *mask):
    cdef int i
    cdef uint8_t mbit = 0x80 if mask != NULL else 0
    o[0] = <uint8_t>b0
    if n < 126:
        o[1] = mbit | <uint8_t>n
    elif n < 65536:
        o[1] = mbit | 126
        o[2] = <uint8_t>(n >> 8)
        o[3] = <uint8_t>n
    else:
        o[1] = mbit | 127
        for i in range(8):
            o[2 + i] = <uint8_t>(<uint64_t>n >> (56 - 8 * i))
    if mask != NULL:
        memcpy(o + _header_len(n, False), mask, 4)


cdef bytes build_frame_c(int opcode, const uint8_t *payload, size_t n, bint fin,
                         int rsv, const uint8_t *mask):
    cdef size_t hlen = _header_len(n, mask != NULL)
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>(hlen + n))
    cdef uint8_t *o = <uint8_t *>PyBytes_AS_STRING(frame)
    _write_header(o, (0x80 if fin else 0) | rsv | opcode, n, mask)
    if mask != NULL:
        rf_mask(o + hlen, payload, n, mask, 0)
    elif n:
        memcpy(o + hlen, payload, n)
    return frame


cdef bytes build_header_c(int opcode, size_t n):
    cdef bytes head = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>_header_len(n, False))
    _write_header(<uint8_t *>PyBytes_AS_STRING(head), 0x80 | opcode, n, NULL)
    return head


cdef inline int _check_mask(object mask, uint8_t *key) except -1:
    """1 and the key in `key` for a 4-byte mask, 0 for None."""
    if mask is None:
        return 0
    if not isinstance(mask, (bytes, bytearray, memoryview)) or len(mask) != 4:
        raise ValueError("mask must be None or exactly 4 bytes")
    cdef const uint8_t[:] mv = mask
    for i in range(4):
        key[i] = mv[i]
    return 1


cdef bytes _build(int opcode, object payload, bint fin, int rsv, const uint8_t *mask, str what):
    cdef Py_buffer view
    cdef const char *p
    cdef Py_ssize_t n
    if isinstance(payload, str):
        p = PyUnicode_AsUTF8AndSize(payload, &n)
    elif isinstance(payload, bytes):
        p = PyBytes_AS_STRING(payload)
        n = PyBytes_GET_SIZE(payload)
    elif isinstance(payload, (bytearray, memoryview)):
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            if opcode >= OPC_CLOSE and view.len > MAX_CONTROL_PAYLOAD:
                raise ValueError(f"control frame payload is {view.len} bytes; at most 125 are allowed")
            return build_frame_c(opcode, <const uint8_t *>view.buf, <size_t>view.len, fin, rsv, mask)
        finally:
            PyBuffer_Release(&view)
    else:
        raise TypeError(f"{what} must be str, bytes, bytearray or memoryview, "
                        f"not {type(payload).__name__}")
    if opcode >= OPC_CLOSE and n > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"control frame payload is {n} bytes; at most 125 are allowed")
    return build_frame_c(opcode, <const uint8_t *>p, <size_t>n, fin, rsv, mask)


cdef bytes build_message_c(object data, const uint8_t *mask):
    cdef Py_ssize_t n
    cdef const char *p
    if type(data) is str:
        p = PyUnicode_AsUTF8AndSize(data, &n)
        return build_frame_c(OPC_TEXT, <const uint8_t *>p, <size_t>n, True, 0, mask)
    if type(data) is bytes:
        return build_frame_c(OPC_BINARY, <const uint8_t *>PyBytes_AS_STRING(data),
                             <size_t>PyBytes_GET_SIZE(data), True, 0, mask)
    return _build(OPC_TEXT if isinstance(data, str) else OPC_BINARY, data, True, 0, mask, "data")


def build_frame(int opcode, payload=b"", *, bint fin=True, int rsv=0, mask=None):
    """Build one frame (RFC 6455 §5.2) as a single ``bytes`` object.

    Server frames are unmasked (``mask=None``) and can be written to any
    number of connections; a client passes its 4-byte masking key. A ``str``
    payload is encoded as UTF-8.
    """
    cdef uint8_t key[4]
    if not (OPC_CONT <= opcode <= OPC_BINARY or OPC_CLOSE <= opcode <= OPC_PONG):
        raise ValueError(f"unknown opcode {opcode!r}")
    if rsv & ~RSV_BITS:
        raise ValueError("rsv must be a combination of RSV1, RSV2 and RSV3")
    cdef int has_mask = _check_mask(mask, key)
    if opcode >= OPC_CLOSE and not fin:
        raise ValueError("control frames cannot be fragmented")
    return _build(opcode, payload, fin, rsv, key if has_mask else NULL, "payload")


def build_text(data, *, mask=None):
    """A text frame; ``bytes`` input is sent as-is (it must already be UTF-8)."""
    cdef uint8_t key[4]
    cdef int has_mask = _check_mask(mask, key)
    return _build(OPC_TEXT, data, True, 0, key if has_mask else NULL, "data")


def build_binary(data, *, mask=None):
    """A binary frame."""
    cdef uint8_t key[4]
    cdef int has_mask = _check_mask(mask, key)
    return _build(OPC_BINARY, data, True, 0, key if has_mask else NULL, "data")


def build_message(data, *, mask=None):
    """A text frame for ``str``, a binary frame for bytes-like data."""
    cdef uint8_t key[4]
    cdef int has_mask = _check_mask(mask, key)
    return build_message_c(data, key if has_mask else NULL)


def build_ping(payload=b"", *, mask=None):
    """A Ping frame (RFC 6455 §5.5.2), payload at most 125 bytes."""
    cdef uint8_t key[4]
    cdef int has_mask = _check_mask(mask, key)
    return _build(OPC_PING, payload, True, 0, key if has_mask else NULL, "payload")


def build_pong(payload=b"", *, mask=None):
    """A Pong frame (RFC 6455 §5.5.3), payload at most 125 bytes."""
    cdef uint8_t key[4]
    cdef int has_mask = _check_mask(mask, key)
    return _build(OPC_PONG, payload, True, 0, key if has_mask else NULL, "payload")


def build_close(code=1000, str reason not None="", *, mask=None):
    """A Close frame (RFC 6455 §5.5.1): a 2-byte code then a UTF-8 reason.

    ``code=None`` builds a Close frame without a body (then ``reason`` must
    be empty). The code must be one a peer accepts (see
    :func:`is_valid_close_code`) and code plus reason at most 125 bytes.
    """
    cdef uint8_t key[4]
    cdef uint8_t body[125]
    cdef const char *r
    cdef Py_ssize_t rn
    cdef int has_mask = _check_mask(mask, key)
    cdef const uint8_t *k = key if has_mask else NULL
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return build_frame_c(OPC_CLOSE, body, 0, True, 0, k)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"close code must be int, not {type(code).__name__}")
    if not is_valid_close_code(code):
        raise ValueError(f"invalid close code {code}")
    r = PyUnicode_AsUTF8AndSize(reason, &rn)
    if rn + 2 > MAX_CONTROL_PAYLOAD:
        raise ValueError("close reason is too long: code and reason must fit in 125 bytes")
    body[0] = <uint8_t>(code >> 8)
    body[1] = <uint8_t>(code & 0xFF)
    memcpy(body + 2, r, rn)
    return build_frame_c(OPC_CLOSE, body, <size_t>(rn + 2), True, 0, k)
