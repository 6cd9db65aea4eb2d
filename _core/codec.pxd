# Contract of the compiled WebSocket codec (RFC 6455), sans-I/O.
# Other compiled modules cimport FrameParser and the builders from here; the
# Python-level API is documented in codec.pyi and must match
# robyn_fast/_reference/codec.py, the oracle.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "wsutil.h" nogil:
    void rf_mask(uint8_t *dst, const uint8_t *src, size_t n,
                 const uint8_t *mask, size_t phase)
    uint32_t rf_utf8_step(uint32_t state, const uint8_t *s, size_t n, size_t *bad)
    const uint32_t RF_UTF8_ACCEPT
    const uint32_t RF_UTF8_REJECT

cdef extern from "zlib.h" nogil:
    ctypedef struct z_stream:
        const uint8_t *next_in
        unsigned int avail_in
        uint8_t *next_out
        unsigned int avail_out
        const char *msg


# Opcodes (RFC 6455 §5.2) and RSV bits as they sit in the first header byte.
cdef enum:
    OPC_CONT = 0x0
    OPC_TEXT = 0x1
    OPC_BINARY = 0x2
    OPC_CLOSE = 0x8
    OPC_PING = 0x9
    OPC_PONG = 0xA
    RSV_BITS = 0x70

# FrameParser states.
cdef enum:
    PS_HEADER = 0                       # waiting for (the rest of) a frame header
    PS_PAYLOAD = 1                      # streaming a data frame's payload into the message buffer
    PS_CLOSED = 2                       # a Close frame was parsed; further input is ignored
    PS_FAILED = 3                       # a protocol error was raised; every call raises it again


cdef class Message:
    cdef readonly int opcode            # OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING or OP_PONG
    cdef readonly object data           # str for text, bytes otherwise (a Close frame: its raw payload)
    cdef readonly int rsv               # RSV bits of the first frame (0 unless an extension allowed them)
    cdef readonly object close_code     # int for a Close frame with a body, else None
    cdef readonly str close_reason      # decoded close reason ("" when absent)


# permessage-deflate (RFC 7692). An Inflater or Deflater owns one zlib stream,
# initialised when first used (an idle connection holds ~200 bytes, not
# zlib's state). Both write through one module-wide scratch buffer, so no
# per-connection output buffer exists; they hold the GIL while they use it.
cdef enum:
    INF_OK = 0
    INF_TOO_BIG = 1                     # the inflated message passed the limit
    INF_BAD_DATA = 2                    # not a valid DEFLATE stream
    INF_BAD_UTF8 = 3                    # a text message whose inflated bytes are not UTF-8


cdef class Inflater:
    cdef z_stream _z
    cdef bint _ready                    # inflateInit2 was called (state allocated)
    cdef bint _dirty                    # a message went through since the last reset
    cdef readonly int window_bits       # 9..15: largest window it can decode
    cdef readonly bint no_context_takeover  # reset before every message
    cdef readonly Py_ssize_t messages   # messages inflated
    # Inflate one message's payload (the 00 00 ff ff tail is added here) into
    # str (text) or bytes; None with *status set on failure.
    cdef object inflate_c(self, const uint8_t *src, size_t n, uint64_t limit, bint text, int *status)
    cdef int _init(self) except -1


cdef class Deflater:
    cdef z_stream _z
    cdef bint _ready
    cdef bint _dirty                    # history present (a message went through since the last reset)
    cdef readonly int window_bits       # 9..15
    cdef readonly int mem_level         # 1..9
    cdef readonly int level             # 0..9
    cdef readonly bint no_context_takeover
    cdef readonly Py_ssize_t compressions   # messages compressed
    # One final frame with RSV1 set whose payload is the compressed `payload`.
    cdef bytes frame_c(self, int opcode, const uint8_t *payload, size_t n, const uint8_t *mask)
    # Drop the history: the next message refers to nothing sent before it
    # (after the peer's decoder saw a frame this stream did not make).
    cdef int forget(self) except -1
    cdef int _init(self) except -1


# Fill `view` to export `length` writable bytes at `buf` on behalf of `owner`
# (for the read windows handed to transports by get_buffer()).
cdef void fill_buffer_view(Py_buffer *view, object owner, void *buf, Py_ssize_t length, int flags)


cdef class MessageSink:
    # Receives what a FrameParser parses when it has a sink and parse() is
    # given out=None: data messages as their str/bytes (no Message object),
    # control frames as Message. Implemented by the compiled Connection.
    cdef int on_data(self, int opcode, object data, int rsv) except -1
    cdef int on_control(self, Message m) except -1


cdef class FrameParser:
    # Read buffer: input not yet parsed lives in _rbuf[_rstart:_rend].
    cdef uint8_t *_rbuf
    cdef size_t _rcap
    cdef size_t _rstart
    cdef size_t _rend
    cdef int _exports                   # live exports of the read window (no realloc while > 0)
    cdef object _window                 # the object get_buffer() hands out (it refers back: a cycle until release())
    cdef bint _released                 # release() was called: buffers, sink and window let go
    # Reassembly buffer for a message whose payload did not arrive in one piece.
    cdef uint8_t *_mbuf
    cdef size_t _mcap
    cdef size_t _mlen
    # An unfragmented binary message of at most READ_MAX bytes whose payload
    # did not arrive in one read: unmasked straight into the bytes object
    # handed out at its end (no reassembly buffer, no copy out of it).
    cdef bytes _mbytes
    # Configuration.
    cdef uint64_t _limit                # max message size in bytes (UINT64_MAX: unlimited)
    cdef object _max_message_size       # as given (int or None)
    cdef bint _client                   # True: frames must be unmasked; False: masked
    cdef int _allowed_rsv               # RSV bits an extension negotiated
    # State.
    cdef int _state                     # one of PS_*
    cdef object _error                  # the ProtocolError raised, once failed
    # Frame being streamed (state _PAYLOAD).
    cdef bint _fin
    cdef uint64_t _remaining            # payload bytes of this frame not yet received
    cdef bint _masked
    cdef uint8_t _mask[4]
    cdef size_t _phase                  # payload bytes of this frame already unmasked
    # Message being assembled (0: none in progress).
    cdef int _msg_opcode
    cdef int _msg_rsv
    cdef uint32_t _utf8                 # UTF-8 validator state across fragments
    cdef MessageSink _sink              # where parse(None) delivers
    cdef Inflater _inflater             # permessage-deflate negotiated: RSV1 messages are inflated
    cdef uint64_t _climit               # bound on a compressed message's bytes (a little over _limit)...
    cdef uint64_t _cslack               # ... plus this: 16 bytes a frame with payload of the message being assembled,
    cdef uint64_t _cslack_max           # ... at most this (_limit + 1 KiB): the bound is 2 x _limit and a little

    # BufferedProtocol plumbing: the writable window (at least READ_MIN bytes),
    # then account for `n` bytes the transport wrote into it.
    cdef object read_window(self)
    cdef int input_received(self, size_t n) except -1
    # Parse everything in the read buffer, appending Message objects to `out`,
    # or, with out=None, handing them to the sink. Raises ProtocolError (with
    # .messages = out, or [] with a sink) on a violation.
    cdef int parse(self, list out) except -1
    # Parse `n` bytes at `data` (writable: unmasked in place) without copying
    # them first when nothing is buffered; only an unfinished tail is copied
    # into the parser's own buffer. For a read buffer shared by connections.
    cdef int parse_external(self, uint8_t *data, size_t n, list out) except -1
    cdef bint can_parse_external(self)
    cdef int set_sink(self, MessageSink sink) except -1
    cdef int set_inflater(self, Inflater inflater) except -1
    cdef object _inflate(self, const uint8_t *src, size_t n, int opcode, list out)
    cdef int _emit_data(self, list out, int opcode, object data, int rsv) except -1
    cdef int _emit_control(self, list out, Message m) except -1
    # Copy `n` bytes at `data` into the read buffer (growing it) without parsing.
    cdef int append_input(self, const uint8_t *data, size_t n) except -1
    # Make at least `want` bytes writable after _rend; compacts, then grows.
    cdef int reserve_input(self, size_t want) except -1
    # Release memory held by an idle parser (nothing buffered).
    cdef void shrink_if_idle(self)
    # The connection is gone: free both buffers (the read buffer once no
    # transport holds a view of it), drop the sink and the inflater and break
    # the parser <-> read window cycle, so reference counting frees it all.
    # Further input is ignored, as after a Close. Not while parse() runs.
    cdef void release(self)
    cdef int _fail(self, type cls, str reason, list out) except -1
    cdef Message _control(self, int opcode, uint8_t *p, size_t n, list out)
    cdef int _finish(self, list out) except -1
    cdef int _mbuf_reserve(self, size_t extra) except -1


# Builders for other compiled modules: a whole frame as one bytes object.
cdef bytes build_frame_c(int opcode, const uint8_t *payload, size_t n, bint fin,
                         int rsv, const uint8_t *mask)
cdef bytes build_message_c(object data, const uint8_t *mask)
# The header alone (FIN, no mask) of a server frame whose n-byte payload
# is written after it as an object of its own (no copy of a large payload).
cdef bytes build_header_c(int opcode, size_t n)
# Where the payload of a server frame built here starts, and its size.
cdef size_t frame_payload(bytes frame, size_t *n)
