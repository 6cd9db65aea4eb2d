# Contract of the compiled WebSocket connection layer: the I/O glue over the
# sans-I/O protocol (protocol.pxd) and the handler dispatcher.
#
# LoopResources: one per event loop (the server's), shared by every endpoint
# served on it: the output cork (every connection written to during a loop
# iteration, outside its own reads, is flushed once, with one write, at the
# end of it; a read's output is written when the read is handled), the 256 KiB
# read buffer lent to connections with nothing buffered (an idle connection
# holds none), and the deadline sweep (one timer for the keepalive and close
# timeouts of every connection of every endpoint).
#
# Hub: one per WebSocket endpoint and event loop, created and owned by the
# server (robyn_fast.server.Server). It is the connection table (by id, and by
# room), the endpoint's typed Settings, its shared compressors, its Dispatcher
# and the count of connections whose close handler has not finished yet (what
# graceful shutdown waits for).
#
# Dispatcher: one per Hub, shared by its connections. It runs the endpoint's
# handlers for each connection one at a time in arrival order, each call in
# its own copy of the endpoint's context; a sync handler inline, an async one
# in a real asyncio Task from its first line (started eagerly on Python >=
# 3.12), every Task referenced until done. It sends a handler's return value,
# logs a handler's error (then closes 1011 if close_on_error), orders a
# close() from inside a handler after that handler's reply and never behind
# its suspension, and runs the close handler last. What it keeps per
# connection is the few slots marked "dispatcher" in Connection (one object
# per hub instead of one per connection: no memory per idle connection); it
# reaches back into the glue only through Connection.backlog_pause (the
# read_high_water/read_low_water bound), send_data and the protocol's close.
#
# Connection: one per upgraded TCP connection, the transport's protocol after
# the 101: a WSProtocol (state, close handshake, keepalive, Pong coalescing,
# backpressure) plus buffers, pause/resume and flush; it hands connect,
# messages, close() and the loss of the transport to the hub's Dispatcher.

from libc.stdint cimport uint8_t
from robyn_fast._core.codec cimport Deflater, FrameParser, Inflater, Message, MessageSink
from robyn_fast._core.metrics cimport ws_counters_t
from robyn_fast._core.protocol cimport Settings, WSProtocol, ST_OPEN, ST_CLOSING, ST_CLOSED


cdef class LoopResources:
    cdef readonly object loop
    cdef list hubs                        # every Hub on this loop (the sweep walks their connections)
    cdef Py_ssize_t open_count            # connections in those hubs' tables
    # Output cork.
    cdef list dirty                       # connections with queued output this iteration
    cdef bint flush_scheduled
    cdef object flush_cb                  # bound self.flush, created once
    # Shared read buffer.
    cdef uint8_t *shared                  # read buffer lent to connections with nothing buffered
    cdef size_t shared_cap
    cdef object shared_window             # exporter of `shared` for get_buffer()
    cdef int shared_exports
    # Deadline sweep (keepalive and close timeouts of every connection).
    cdef object sweep_timer
    cdef double sweep_tick                # the shortest settings.sweep_tick of its hubs
    cdef readonly Py_ssize_t flushes      # flush rounds run (for tests and benchmarks)
    cdef readonly Py_ssize_t writes       # transport write calls made by flushes and at the end of reads

    cdef int register(self, Hub hub) except -1
    cdef object lend_window(self)
    cdef int mark_dirty(self, Connection conn) except -1
    cdef int want_sweep(self) except -1
    cdef int _arm_sweep(self) except -1


cdef class Dispatcher:
    cdef Hub hub
    cdef object loop
    cdef object context                   # contextvars.Context each handler call runs in a copy of
    cdef readonly dict tasks              # handler Task not yet done -> its Connection (referenced until done)
    cdef object task_done_cb              # bound self._task_done, created once
    cdef object resolve_cb                # bound self._resolve_pending_close, created once
    cdef bint discarding                  # shutting down: queued message jobs are dropped, close jobs run
    cdef readonly Py_ssize_t discarded    # message jobs dropped that way (logged once)

    cdef int connect(self, Connection conn) except -1        # run the connect handler (first job)
    cdef int message(self, Connection conn, object data) except -1
    cdef int lost(self, Connection conn) except -1           # transport gone: the close handler, last
    cdef int closing(self, Connection conn) except -1        # the protocol entered CLOSING
    cdef int request_close(self, Connection conn, int code, str reason) except -1  # 1 asked, 0 already closing
    cdef int discard(self) except -1                         # from now on only close jobs run (end of shutdown's grace)
    cdef int cancel_all(self) except -1                      # cancel every handler Task; returns how many
    cdef int _enqueue(self, Connection conn, object job) except -1
    cdef int _pump(self, Connection conn) except -1
    cdef int _drop_job(self) except -1                       # a message job dropped at the end of shutdown's grace
    cdef int _run_job(self, Connection conn, object job) except -1
    cdef int _close_pending(self, Connection conn) except -1
    cdef bint _in_own_handler(self, Connection conn) except -1
    cdef int _task_outcome(self, Connection conn, object job, object task) except -1
    cdef int _cancelled(self, Connection conn, object job) except -1
    cdef int _finish_job(self, Connection conn, object job, object result) except -1
    cdef int _handler_error(self, Connection conn, object job, object exc) except -1
    cdef int _after_error(self, Connection conn, object job) except -1
    cdef int _job_done(self, Connection conn, object job) except -1


cdef class Hub:
    cdef readonly object loop
    cdef readonly dict connections        # id -> Connection (open or closing), until connection_lost
    cdef readonly dict rooms              # room name -> {id: Connection}
    cdef readonly Py_ssize_t live         # connections started whose close handler has not finished
    cdef list idle_waiters                # futures resolved when `live` drops to 0
    cdef readonly Dispatcher dispatcher   # runs this endpoint's handlers
    cdef object json_dumps                # dict/list -> str for sends and return values
    cdef readonly Settings settings       # the endpoint's settings (robyn_fast._core.protocol)
    # permessage-deflate.
    cdef Inflater shared_inflater         # for every client without context takeover; created on first use
    cdef list shared_deflaters            # [window_bits - 9] -> Deflater without context takeover, created on first use
    cdef readonly Py_ssize_t compressions # messages compressed for this hub's connections
    cdef readonly LoopResources resources # what all endpoints of the loop share
    # on_congestion(connection, True) when a connection's transport asks it to
    # pause writing (its buffer is over the high-water mark), (connection,
    # False) when it resumes or the connection is lost while paused; None: not
    # told. The server uses it to hold back what the broker delivers.
    cdef public object on_congestion
    # on_room(room, True) when ``room`` gets its first member on this hub,
    # (room, False) when its last member leaves or closes; None: not told.
    # The server uses it to tell the broker which rooms this node needs.
    cdef public object on_room
    cdef ws_counters_t *m                 # this process's counters (robyn_fast._core.metrics)
    cdef tuple handlers                   # the handlers last given to a connection (shared while they repeat)

    cdef int add(self, Connection conn) except -1
    cdef int remove(self, Connection conn) except -1
    cdef int finished(self, Connection conn) except -1
    cpdef Py_ssize_t broadcast_frame(self, bytes frame, object exclude=*)
    cpdef Py_ssize_t broadcast_room(self, object room, bytes frame, object exclude=*)
    cpdef int join(self, Connection conn, object room) except -1
    cpdef int leave(self, Connection conn, object room) except -1
    cdef Inflater inflater(self)
    cdef Deflater deflater_for(self, int window_bits)


cdef class Connection(WSProtocol):
    # The protocol (state, close handshake, keepalive, output batch, backpressure)
    # is WSProtocol's (protocol.pxd); what follows is the I/O glue, then the
    # slots the hub's Dispatcher keeps for this connection.
    cdef readonly object transport
    cdef readonly Hub hub
    cdef bint started
    cdef bint parsing                     # _read is on the stack: the parser is released after it, not under it
    cdef bint in_read                     # _read (parse, handlers, inline wake) is on the stack
    cdef bint write_after_read            # output started within this read: _read writes it at its end (no cork)
    cdef readonly object rooms            # set of room names, or None
    cdef bint using_shared                # the last get_buffer() lent the hub's shared buffer
    cdef bint join_writes                 # a TLS transport: one write of the joined frames (one record)
    cdef int fd                           # socket a flush writes to itself (-1: never, always the transport; -2: not looked up yet)
    cdef bint tx_clear                    # the transport holds none of our bytes (only our flushes write to it)
    cdef readonly bint reading_paused     # transport.pause_reading() is in force (for any reason below)
    cdef bint backlog_paused              # ... because read_high_water messages wait for the handler
    cdef bint reading_held                # ... because the endpoint asked (hold_reading: its own queue is full)
    # permessage-deflate, when negotiated (enable_deflate before start).
    cdef Deflater deflater                # None: messages go out plain
    cdef int deflate_bits                 # the window our frames may use (9..15)
    cdef bint deflate_shared              # deflater is the hub's (no context takeover)
    cdef readonly object deflate_params   # what was agreed (robyn_fast.websocket.extensions.DeflateParams) or None
    # Dispatcher slots: set at construction (the connector by the endpoint),
    # then read and written by the hub's Dispatcher only.
    cdef public object connector          # what handlers receive (robyn_fast.websocket.WebSocketConnector)
    cdef tuple handlers                   # (on_connect(connector), on_message(connector, message), on_close(connector)),
                                          # each or None; one tuple shared by the hub's connections given the same
    cdef object queue                     # jobs waiting, in arrival order: collections.deque while any wait, else None
    cdef bint running                     # a handler call (or an eager first step) is on the stack
    cdef bint done                        # the close job has run (hub.finished was called)
    cdef readonly object task             # the Task of a suspended async handler, or None
    cdef object current_job               # the job that task runs
    cdef object pending_close             # (code, reason) from close() inside this connection's own handler
    cdef public object inbox              # an Inbox (receive-loop API): messages go to it, not to on_message

    cdef int _read(self, size_t nbytes) except -1
    # The dispatcher's handle on flow control: pause reading while the
    # handler backlog is over read_high_water, resume at read_low_water.
    cdef int backlog_pause(self, bint paused) except -1
    # Queue a plain data frame built by codec.build_message_c, compressed first
    # when deflate was negotiated and the payload reaches the threshold.
    # `cache` (a broadcast's, 7 slots by window bits) holds the compressed
    # frames made so far, so a broadcast compresses once per window size.
    cdef int send_data(self, bytes frame, list cache) except -1
    # A bytes message of at least SPLIT_MIN bytes, no deflate: send_large
    # queues its header and the payload object itself (no copy into a frame).
    cdef bint large_payload(self, object value)
    cdef int send_large(self, bytes payload) except -1
    cdef int _set_reading(self) except -1
    cdef int _flush(self) except -1
    cdef int _flush_now(self) except -1   # _flush, a failure logged (not raised)
    cdef int _write_direct(self, list out) except -1


cdef class Inbox:
    # The receive-loop API's side of a connection (robyn_fast.websocket.receive):
    # the messages its handler has not taken yet, and the Future-compatible
    # object a waiting receive suspends its Task on, re-armed per receive.
    cdef readonly Connection conn
    cdef object loop
    cdef object messages                  # collections.deque, created when a message first has to wait
    cdef Py_ssize_t high                  # read_high_water: hold reading at this many unread
    cdef Py_ssize_t low                   # read_low_water: read again at this many
    cdef bint held                        # reading held because of us
    cdef readonly bint finished           # the handler returned: messages are dropped
    cdef readonly object gone             # WebSocketDisconnect once closed (what receives raise), or None
    cdef int state                        # IB_* below
    cdef object value                     # the message (IB_READY) or exception (IB_FAILED) for the waiter
    cdef object callback                  # the waiting Task's wake-up (add_done_callback), or None
    cdef object cb_context                # ... and the context it runs in
    cdef list more_callbacks              # (fn, context) of any further add_done_callback
    cdef public bint _asyncio_future_blocking

    cdef int put(self, object msg) except -1
    cdef object _take(self)
    cdef int _hold(self, bint held) except -1
    cdef int _resolve(self, int state, object value) except -1
    cdef bint deferred                    # a message was handed to the waiting receive within a read: wake after it
    cdef int wake_deferred(self) except -1
    cdef int _wake_inline(self) except -1
