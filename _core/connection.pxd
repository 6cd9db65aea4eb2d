# Contract of the compiled WebSocket connection layer.
#
# Hub: one per WebSocket endpoint and event loop, created and owned by the
# server (robyn_fast.server.Server). It is the connection table (by id, and by
# room), the endpoint's settings (copied once from its Config), the output cork
# (every connection written to during a loop iteration is flushed once, with
# one write, at the end of it), the read buffer shared by the endpoint's
# connections (an idle connection holds none), the keepalive sweep (one timer
# for all connections), and the owner of every handler Task it starts (kept
# referenced until done) and of the count of connections whose close handler
# has not finished yet (what graceful shutdown waits for).
#
# Connection: one per upgraded TCP connection, the transport's protocol after
# the 101. It parses through the codec (as its MessageSink), answers control
# frames, and runs the endpoint's handlers one at a time in arrival order,
# each call in its own copy of the hub's context; an async handler runs in a
# real asyncio Task from its first line (started eagerly on Python >= 3.12).

from libc.stdint cimport uint8_t
from robyn_fast._core.codec cimport Deflater, FrameParser, Inflater, Message, MessageSink
from robyn_fast._core.metrics cimport ws_counters_t

cdef enum:
    ST_OPEN = 0          # open: data flows both ways
    ST_CLOSING = 1       # our Close frame is queued or sent; waiting for the peer / TCP end
    ST_CLOSED = 2        # connection_lost happened


cdef class Hub:
    cdef readonly object loop
    cdef readonly dict connections        # id -> Connection (open or closing), until connection_lost
    cdef readonly dict rooms              # room name -> {id: Connection}
    cdef readonly set tasks               # handler Tasks not yet done: referenced here until they are
    cdef readonly Py_ssize_t live         # connections started whose close handler has not finished
    cdef list idle_waiters                # futures resolved when `live` drops to 0
    cdef bint discarding                  # shutting down: queued message jobs are dropped, close jobs run
    cdef readonly Py_ssize_t discarded    # message jobs dropped that way (logged once)
    cdef object context                   # contextvars.Context each handler call runs in a copy of
    cdef object json_dumps                # dict/list -> str for sends and return values
    # Settings of the endpoint, from its robyn_fast.config.Config.
    cdef object max_message_size
    cdef double close_timeout
    cdef double ping_interval             # <= 0: no keepalive
    cdef double ping_timeout
    cdef size_t max_backpressure
    cdef bint drop_policy
    cdef bint close_on_error
    cdef Py_ssize_t high_water
    cdef Py_ssize_t low_water
    # permessage-deflate (Config.compression*).
    cdef readonly str compression         # "off", "shared" or "dedicated"
    cdef size_t compress_threshold        # smaller payloads go out uncompressed
    cdef int compress_level
    cdef int compress_mem_level           # of per-connection compressors (dedicated mode)
    cdef Inflater shared_inflater         # for every client without context takeover; created on first use
    cdef list shared_deflaters            # [window_bits - 9] -> Deflater without context takeover, created on first use
    cdef readonly Py_ssize_t compressions # messages compressed for this hub's connections
    # Output cork.
    cdef list dirty                       # connections with queued output this iteration
    cdef bint flush_scheduled
    cdef object flush_cb                  # bound self.flush, created once
    # Shared read buffer.
    cdef uint8_t *shared                  # read buffer lent to connections with nothing buffered
    cdef size_t shared_cap
    cdef object shared_window             # exporter of `shared` for get_buffer()
    cdef int shared_exports
    # Keepalive.
    cdef object keepalive_timer
    cdef double keepalive_tick
    cdef readonly Py_ssize_t flushes      # flush rounds run (for tests and benchmarks)
    cdef readonly Py_ssize_t writes       # transport write calls made by flushes
    # on_congestion(connection, True) when a connection's transport asks it to
    # pause writing (its buffer is over the high-water mark), (connection,
    # False) when it resumes or the connection is lost while paused; None: not
    # told. The server uses it to hold back what the broker delivers.
    cdef public object on_congestion
    cdef ws_counters_t *m                 # this process's counters (robyn_fast._core.metrics)

    cdef object lend_window(self)
    cdef int add(self, Connection conn) except -1
    cdef int remove(self, Connection conn) except -1
    cdef int finished(self, Connection conn) except -1
    cdef int mark_dirty(self, Connection conn) except -1
    cpdef Py_ssize_t broadcast_frame(self, bytes frame, object exclude=*)
    cpdef Py_ssize_t broadcast_room(self, object room, bytes frame, object exclude=*)
    cpdef int join(self, Connection conn, object room) except -1
    cpdef int leave(self, Connection conn, object room) except -1
    cdef int _arm_keepalive(self) except -1
    cdef Inflater inflater(self)
    cdef Deflater deflater_for(self, int window_bits)


cdef class Connection(MessageSink):
    cdef readonly object transport
    cdef readonly Hub hub
    cdef FrameParser parser
    cdef public object connector          # what handlers receive (robyn_fast.websocket.WebSocketConnector)
    cdef readonly str key                 # our id
    cdef object on_connect                # handler(connector) or None
    cdef object on_message                # handler(connector, message) or None
    cdef object on_close                  # handler(connector) or None
    cdef readonly int state               # one of ST_*
    cdef bint close_sent
    cdef bint close_received
    cdef bint close_after_flush           # close TCP once queued output is written
    cdef bint started
    cdef bint done                        # the close job has run (hub.finished was called)
    cdef bint parsing                     # _read is on the stack: the parser is released after it, not under it
    cdef readonly object close_code       # received, or sent when we failed it, or 1006
    cdef readonly str close_reason
    cdef readonly object rooms            # set of room names, or None
    # Handler queue: jobs run one at a time, in arrival order.
    cdef object queue                     # collections.deque, created when first needed
    cdef bint running                     # a handler call (or an eager first step) is on the stack
    cdef readonly object task             # the Task of a suspended async handler, or None
    cdef object current_job               # the job that task runs
    cdef object pending_close             # (code, reason) from close() inside this connection's own handler
    # Output: frames queued until the hub flushes this connection.
    cdef list out
    cdef size_t out_bytes
    cdef size_t tbuf                      # the transport's write buffer when this iteration's output began
    cdef bint in_dirty
    cdef bint using_shared                # the last get_buffer() lent the hub's shared buffer
    cdef bint join_writes                 # a TLS transport: one write of the joined frames (one record)
    cdef readonly bint reading_paused     # transport.pause_reading() is in force (for either reason below)
    cdef bint backlog_paused              # ... because read_high_water messages wait for the handler
    cdef readonly bint writing_paused     # ... because the transport's write buffer is over its high mark
    cdef Py_ssize_t pong_slot             # index in `out` of this iteration's last Pong (-1: none)
    cdef bytes pending_pong               # payload of the latest Ping received while writing is paused
    cdef unsigned long long written       # bytes ever handed to the transport (keepalive progress check)
    cdef unsigned long long ping_drained  # bytes the client had taken when the keepalive Ping went out
    cdef readonly Py_ssize_t dropped      # messages dropped by the "drop" backpressure policy
    # Timers: keepalive is swept by the hub.
    cdef object close_timer
    cdef double next_ping                 # loop time of the next keepalive ping (0: none)
    cdef double pong_deadline             # loop time by which the pong must arrive (0: none)
    cdef bytes ping_payload
    cdef unsigned int ping_seq
    # permessage-deflate, when negotiated (enable_deflate before start).
    cdef Deflater deflater                # None: messages go out plain
    cdef int deflate_bits                 # the window our frames may use (9..15)
    cdef bint deflate_shared              # deflater is the hub's (no context takeover)
    cdef readonly object deflate_params   # what was agreed (robyn_fast.websocket.extensions.DeflateParams) or None

    cdef int _read(self, size_t nbytes) except -1
    cdef int _on_close_frame(self, Message m) except -1
    cdef int _fail(self, int code, str reason) except -1
    cdef int _do_close(self, int code, str reason) except -1
    cdef int _arm_close_timer(self) except -1
    cdef int _close_pending(self) except -1
    cdef bint _in_own_handler(self) except -1
    cdef int _enqueue(self, object job) except -1
    cdef int _pump(self) except -1
    cdef int _run_job(self, object job) except -1
    cdef object _handler_for(self, object job)
    cdef int _task_outcome(self, object job, object task) except -1
    cdef int _cancelled(self, object job) except -1
    cdef int _finish_job(self, object job, object result) except -1
    cdef int _handler_error(self, object job, object exc) except -1
    cdef int _after_error(self, object job) except -1
    cdef int _job_done(self, object job) except -1
    cdef int send_frame(self, bytes frame) except -1
    # Queue a plain data frame built by codec.build_message_c, compressed first
    # when deflate was negotiated and the payload reaches the threshold.
    # `cache` (a broadcast's, 7 slots by window bits) holds the compressed
    # frames made so far, so a broadcast compresses once per window size.
    cdef int send_data(self, bytes frame, list cache) except -1
    # Close frames and keepalive Pings: counted in the backlog, never refused
    # (at most one of each is outstanding).
    cdef int _queue_control(self, bytes frame) except -1
    # Answer a Ping; while the client is behind, one Pong per iteration (the
    # latest payload), and held while writing is paused; over
    # max_backpressure the connection is closed 1008.
    cdef int _queue_pong(self, bytes payload) except -1
    cdef bint _over_budget(self, size_t size)
    cdef int _too_slow(self, size_t size) except -1
    cdef int _set_reading(self) except -1
    cdef unsigned long long _drained(self) except? 0
    cdef int _dirty(self) except -1
    cdef int _flush(self) except -1
    cdef int _keepalive(self, double now) except -1
    cdef void _cancel_close_timer(self)
