# Contract of the compiled WebSocket connection: one per upgraded TCP
# connection, installed as the transport's protocol after the 101 response.
# It reads through the FrameParser's own buffer (BufferedProtocol), answers
# control frames, runs the endpoint's handlers in arrival order, and applies
# the limits of robyn_fast.config.Config.

from robyn_fast._core.codec cimport FrameParser, Message

cdef enum:
    ST_OPEN = 0          # open: data flows both ways
    ST_CLOSING = 1       # our Close frame is sent (or the peer's echoed); waiting for TCP to end
    ST_CLOSED = 2        # connection_lost happened


cdef class Connection:
    cdef readonly object transport
    cdef object loop
    cdef FrameParser parser
    cdef public object connector          # what handlers receive (robyn_fast.ws.WebSocketConnector)
    cdef object table                     # the endpoint's id -> Connection dict; we leave it on close
    cdef readonly str key                 # our id in `table`
    cdef object on_connect                # handler(connector) or None
    cdef object on_message                # handler(connector, message) or None
    cdef object on_close                  # handler(connector) or None
    cdef readonly int state               # one of ST_*
    cdef bint close_sent
    cdef bint close_received
    cdef readonly object close_code       # code received from the peer, or sent when we failed it, or 1006
    cdef readonly str close_reason
    # Handler queue: jobs run one at a time, in arrival order.
    cdef object queue                     # collections.deque of messages and the _CONNECT/_CLOSE markers
    cdef bint busy                        # an async handler is running
    cdef bint in_handler                  # a handler (sync or async) is running
    cdef object current_job
    cdef object pending_close             # (code, reason) from close() inside a handler
    # Output cork: frames queued while one read is processed leave in one write.
    cdef list out
    cdef size_t out_bytes
    cdef bint corked
    cdef readonly bint reading_paused
    cdef readonly bint writing_paused
    cdef readonly Py_ssize_t dropped      # messages dropped by the "drop" backpressure policy
    # Timers.
    cdef object close_timer
    cdef object ping_timer
    cdef object pong_timer
    cdef bytes ping_payload
    cdef unsigned int ping_seq
    # Configuration, copied from Config.
    cdef double close_timeout
    cdef double ping_interval             # <= 0: no keepalive
    cdef double ping_timeout
    cdef size_t max_backpressure
    cdef bint drop_policy
    cdef bint close_on_error
    cdef Py_ssize_t high_water
    cdef Py_ssize_t low_water

    cdef int _process(self) except -1
    cdef int _on_frame(self, Message m) except -1
    cdef int _on_close_frame(self, Message m) except -1
    cdef int _fail(self, int code, str reason) except -1
    cdef int _do_close(self, int code, str reason) except -1
    cdef int _enqueue(self, object job) except -1
    cdef int _pump(self) except -1
    cdef int _run_job(self, object job) except -1
    cdef int _finish_job(self, object job, object result) except -1
    cdef int _handler_error(self, object exc) except -1
    cdef int send_value(self, object value) except -1
    cdef int send_frame(self, bytes frame) except -1
    cdef int _write_control(self, bytes frame) except -1
    cdef int _flush(self) except -1
    cdef void _cancel_timers(self)
    cdef void _schedule_keepalive(self)
