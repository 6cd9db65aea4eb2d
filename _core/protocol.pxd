# Contract of the WebSocket protocol state machine (RFC 6455), sans-I/O.
#
# Settings: the typed settings of one WebSocket endpoint, made once from its
# robyn_fast.config.Config and shared by its hubs and connections.
#
# WSProtocol: one connection's protocol rules without a loop or a transport.
# Bytes and `now` in (receive_data, tick); frames to send (data_to_send, with
# b"" meaning "close TCP now"), events (message, ping, pong, close, abort)
# and the next deadline out. It owns the close handshake (one transition,
# _start_closing), keepalive, Pong coalescing and the backpressure decision.
# The compiled Connection (connection.pxd) is the I/O glue: it subclasses
# WSProtocol and overrides the hooks below (_on_message through
# _timer_armed) with buffering, flow control and handler dispatch; the base
# implementations record events in a list, which is how the rules are tested
# without an event loop (tests/test_protocol.py).

from libc.stdint cimport uint8_t
from robyn_fast._core.codec cimport FrameParser, Message, MessageSink
from robyn_fast._core.metrics cimport ws_counters_t

cdef enum:
    ST_OPEN = 0          # open: data flows both ways
    ST_CLOSING = 1       # our Close frame is queued or sent; waiting for the peer / TCP end
    ST_CLOSED = 2        # the TCP connection is gone (connection_lost)


cdef class Settings:
    cdef readonly object max_message_size  # int bytes, or None: unlimited
    cdef readonly double close_timeout     # seconds to wait for the peer's Close after ours
    cdef readonly double ping_interval     # <= 0: no keepalive
    cdef readonly double ping_timeout      # <= 0: keep pinging without waiting for the Pong
    cdef readonly size_t max_backpressure  # bytes queued (ours + the transport's) a client may have unread
    cdef readonly bint drop_policy         # over max_backpressure: drop the message (else close 1008)
    cdef readonly bint close_on_error      # a handler that raises closes its connection with 1011
    cdef readonly Py_ssize_t high_water    # messages waiting for the handler that pause reading
    cdef readonly Py_ssize_t low_water     # ... and resume it
    cdef readonly str compression          # "off", "shared" or "dedicated"
    cdef readonly size_t compress_threshold  # smaller payloads go out uncompressed
    cdef readonly int compress_level
    cdef readonly int compress_mem_level   # of per-connection compressors (dedicated mode)
    cdef readonly double sweep_tick        # period of the per-loop deadline sweep (keepalive, close timeouts)


cdef class WSProtocol(MessageSink):
    cdef readonly Settings settings
    cdef FrameParser parser               # None until the first byte arrives (_new_parser)
    cdef readonly str key                 # connection id (for logs)
    cdef readonly int state               # one of ST_*
    cdef bint close_sent
    cdef bint close_received
    cdef bint close_after_flush           # close TCP once queued output is written (§7.1.1: server first)
    cdef readonly object close_code       # received, or sent when we failed it, or 1006
    cdef readonly str close_reason
    # Output: frames queued since the glue last took them (one write per loop iteration).
    cdef list out
    cdef size_t out_bytes
    cdef size_t tbuf                      # the transport's write buffer when this batch of output began
    cdef bint in_dirty                    # output started since the last take (the glue knows)
    cdef readonly bint writing_paused     # the transport's write buffer is over its high mark
    cdef Py_ssize_t pong_slot             # index in `out` of this batch's last Pong (-1: none)
    cdef bytes pending_pong               # payload of the latest Ping received while writing is paused
    cdef unsigned long long written       # bytes ever taken by the glue for the transport
    cdef unsigned long long ping_drained  # bytes the client had taken when the keepalive Ping went out
    cdef bint stalled_since_ping          # our reading was paused (writes backed up) at some time since that Ping
    cdef readonly Py_ssize_t dropped      # messages dropped by the "drop" backpressure policy
    # Deadlines (loop time, 0: none), turned into calls by the per-loop sweep (tick).
    cdef double next_ping                 # the next keepalive Ping
    cdef double pong_deadline             # the Pong to our Ping must arrive by then
    cdef double close_deadline            # the peer must end the closing handshake by then
    cdef bytes ping_payload
    cdef double clock                     # `now` as last given (loop-free use; the glue overrides _now)
    cdef size_t transport_buffered        # what the transport buffers (loop-free use; the glue overrides)
    cdef list events                      # recorded events (loop-free use), or None
    cdef ws_counters_t *m                 # this process's counters (robyn_fast._core.metrics)

    cdef int _init_protocol(self, Settings settings, str key) except -1
    cdef FrameParser _new_parser(self)
    # The connection is open: keepalive starts counting from `now`.
    cdef int opened(self, double now) except -1
    # ProtocolError from the parser: fail the connection (RFC 6455 §7.1.7).
    cdef int _fail(self, int code, str reason) except -1
    # Our own Close (§7.1.2), when the connection is still open.
    cdef int _do_close(self, int code, str reason) except -1
    cdef int _on_close_frame(self, Message m) except -1
    # The one transition to CLOSING: queue `frame` unless a Close was sent
    # already (then code/reason are not recorded), stop keepalive, arm the
    # close deadline, and with `close_tcp` close TCP after the flush.
    cdef int _start_closing(self, object code, str reason, bytes frame, bint close_tcp) except -1
    # Queue a data frame; returns 1, or 0 if refused (not open, or over the
    # backpressure budget: dropped, or the connection closed 1008).
    cdef int send_frame(self, bytes frame) except -1
    # The same for a frame in two parts, its header and its payload (a large
    # payload goes out as the object it is, without a copy into a frame).
    cdef int send_frame_parts(self, bytes head, bytes payload) except -1
    cdef int _admit(self, size_t size) except -1   # send_frame's checks: 1 (counted as queued) or 0 (refused)
    # Close frames and keepalive Pings: counted in the backlog, never refused
    # (at most one of each is outstanding).
    cdef int _queue_control(self, bytes frame) except -1
    # Answer a Ping: every Ping while the client keeps up (nothing of ours
    # waits in the transport); once it is behind, one Pong per batch (the
    # latest payload); held while writing is paused; over max_backpressure
    # the connection is closed 1008.
    cdef int _queue_pong(self, bytes payload) except -1
    cdef bint _over_budget(self, size_t size)
    cdef int _too_slow(self, size_t size) except -1
    cdef int _start_output(self) except -1
    # The glue takes the batch (out list or None); output accounting restarts.
    cdef list take_output(self)
    cdef int set_writing_paused(self, bint paused) except -1
    cdef unsigned long long _drained(self) except? 0
    # Deadlines due at `now`: keepalive Ping, Pong timeout (close 1011),
    # close timeout (abort). Returns the next deadline (0: none).
    cdef double tick_c(self, double now) except -1.0
    cdef int connection_lost_c(self) except -1
    # Hooks for the glue (the base records events for loop-free use).
    cdef int _on_message(self, int opcode, object data) except -1
    cdef int _record(self, tuple event) except -1
    cdef Py_ssize_t _transport_buffered(self) except -1   # never negative: -1 is an exception
    cdef int _output_ready(self) except -1     # first output of a batch: the glue joins its flush
    cdef double _now(self) except? -1.0
    cdef int _on_abort(self) except -1         # close timeout: drop TCP now
    cdef int _on_closing(self) except -1       # entered CLOSING
    cdef int _timer_armed(self) except -1      # a deadline was set: the sweep must run
    cdef object _peer(self)                    # for logs
