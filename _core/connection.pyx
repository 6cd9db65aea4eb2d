# Compiled WebSocket connection layer (contract: connection.pxd).
#
# Read path: the transport writes into a buffer lent by the hub (shared by the
# endpoint's connections; a connection only gets a buffer of its own to hold
# an unfinished frame), every complete frame of a read is parsed in one pass,
# and data messages reach the connection as their str/bytes (MessageSink).
# Control frames are answered here; data messages go to the endpoint's
# handlers, one at a time and in arrival order; a sync handler, or an async
# one that does not suspend, runs inline without a Task.
#
# Write path: everything queued to a connection during one loop iteration
# (handler replies, sends, broadcasts, pongs, the Close) leaves in one
# transport write at the end of the iteration (the hub's flush).
#
# Close handshake (RFC 6455 §5.5.1, §7): a Close from the peer is echoed with
# its code and TCP is closed (the server closes first, §7.1.1); a Close we send
# waits up to close_timeout for the peer's answer, then the transport is
# aborted. A protocol error sends Close with the codec's code (1002, 1007,
# 1009) and closes.

cimport cython
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from robyn_fast._core.codec cimport (
    FrameParser, Message, MessageSink, build_frame_c, build_message_c, fill_buffer_view,
    OPC_TEXT, OPC_BINARY, OPC_CLOSE, OPC_PING, OPC_PONG,
)

import asyncio
import collections
import json
import logging
import types

from robyn_fast._core.codec import build_close
from robyn_fast._stepper import resume as _resume
from robyn_fast.exceptions import ProtocolError

cdef object _log = logging.getLogger("robyn_fast.websocket")
cdef object _deque = collections.deque
cdef object _json_dumps = json.dumps
cdef object _coroutine_type = types.CoroutineType
cdef object _iscoroutine = asyncio.iscoroutine
cdef object _CONNECT = object()           # job marker: run the connect handler
cdef object _CLOSE = object()             # job marker: run the close handler

cdef enum:
    SHARED_READ = 262144                  # size of the hub's shared read buffer


cdef inline bint _is_coroutine(object value):
    return type(value) is _coroutine_type or (value is not None and _iscoroutine(value))


@cython.final
cdef class _SharedWindow:
    """Exports the hub's shared read buffer to a transport (get_buffer)."""

    cdef Hub hub

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef Hub h = self.hub
        fill_buffer_view(view, self, h.shared, <Py_ssize_t>h.shared_cap, flags)
        h.shared_exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.hub.shared_exports -= 1

    def __len__(self):
        return self.hub.shared_cap


@cython.final
cdef class Hub:
    """The connections of one WebSocket endpoint on one event loop."""

    def __cinit__(self):
        self.connections = {}
        self.rooms = {}
        self.dirty = []
        self.shared = NULL

    def __init__(self, loop, double keepalive_interval=0.0):
        self.loop = loop
        self.flush_cb = self.flush
        cdef _SharedWindow window = _SharedWindow.__new__(_SharedWindow)
        window.hub = self
        self.shared_window = window
        if keepalive_interval > 0:
            self.keepalive_tick = min(max(keepalive_interval / 4.0, 0.02), 5.0)

    def __dealloc__(self):
        free(self.shared)

    cdef object lend_window(self):
        """The shared read buffer, or None while a transport still holds it."""
        if self.shared_exports:
            return None
        if self.shared == NULL:
            self.shared = <uint8_t *>malloc(SHARED_READ)
            if self.shared == NULL:
                raise MemoryError()
            self.shared_cap = SHARED_READ
        return self.shared_window

    # -- table ------------------------------------------------------------------

    cdef int add(self, Connection conn) except -1:
        self.connections[conn.key] = conn
        if self.keepalive_tick > 0 and self.keepalive_timer is None:
            self._arm_keepalive()
        return 0

    cdef int remove(self, Connection conn) except -1:
        cdef object room
        cdef dict members
        if self.connections.get(conn.key) is conn:
            del self.connections[conn.key]
        if conn.rooms:
            for room in conn.rooms:
                members = self.rooms.get(room)
                if members is not None:
                    members.pop(conn.key, None)
                    if not members:
                        del self.rooms[room]
            conn.rooms = None
        if not self.connections and self.keepalive_timer is not None:
            self.keepalive_timer.cancel()
            self.keepalive_timer = None
        return 0

    cpdef int join(self, Connection conn, object room) except -1:
        cdef dict members
        if conn.state != ST_OPEN:
            return 0
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = {}
        members[conn.key] = conn
        if conn.rooms is None:
            conn.rooms = set()
        conn.rooms.add(room)
        return 1

    cpdef int leave(self, Connection conn, object room) except -1:
        cdef dict members = self.rooms.get(room)
        if members is None or members.pop(conn.key, None) is None:
            return 0
        if not members:
            del self.rooms[room]
        if conn.rooms is not None:
            conn.rooms.discard(room)
        return 1

    # -- broadcast ----------------------------------------------------------------

    cpdef Py_ssize_t broadcast_frame(self, bytes frame, object exclude=None):
        """Queue the same frame object to every open connection (but
        ``exclude``); returns how many accepted it. Never raises midway: a
        connection that fails is logged and skipped."""
        return _broadcast(self.connections, frame, exclude)

    cpdef Py_ssize_t broadcast_room(self, object room, bytes frame, object exclude=None):
        cdef dict members = self.rooms.get(room)
        if members is None:
            return 0
        return _broadcast(members, frame, exclude)

    # -- output cork ------------------------------------------------------------------

    cdef int mark_dirty(self, Connection conn) except -1:
        conn.in_dirty = True
        self.dirty.append(conn)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush_cb)
        return 0

    def flush(self):
        """Write out every connection queued since the last flush, one
        transport write each (runs once per loop iteration with output)."""
        cdef list dirty = self.dirty
        cdef Connection conn
        self.dirty = []
        self.flush_scheduled = False
        self.flushes += 1
        for conn in dirty:
            conn.in_dirty = False
            try:
                conn._flush()
            except Exception:
                _log.exception("websocket %s: write failed", conn.key)

    # -- keepalive --------------------------------------------------------------------

    cdef int _arm_keepalive(self) except -1:
        self.keepalive_timer = self.loop.call_later(self.keepalive_tick, self._keepalive_sweep)
        return 0

    def _keepalive_sweep(self):
        cdef Connection conn
        cdef double now = self.loop.time()
        self.keepalive_timer = None
        for conn in list(self.connections.values()):
            try:
                conn._keepalive(now)
            except Exception:
                _log.exception("websocket %s: keepalive failed", conn.key)
        if self.connections:
            self._arm_keepalive()


cdef Py_ssize_t _broadcast(dict members, bytes frame, object exclude):
    cdef Py_ssize_t count = 0
    cdef Connection conn
    # send_frame never removes connections (that happens in connection_lost,
    # which transports call later), so the table can be walked directly.
    for conn in members.values():
        if conn.state != ST_OPEN or conn is exclude:
            continue
        try:
            count += conn.send_frame(frame)
        except Exception:
            _log.exception("websocket %s: broadcast send failed", conn.key)
    return count


cdef class Connection(MessageSink):
    """One upgraded WebSocket connection; the transport's protocol after the 101.

    Created by the HTTP layer with the endpoint's handlers and configuration,
    then :meth:`start` is called with the transport and any bytes that arrived
    after the handshake request. ``table`` is the endpoint's :class:`Hub`, or
    (for tests) a plain dict, in which case the connection gets a hub of its own.
    """

    def __cinit__(self):
        self.state = ST_OPEN
        self.close_reason = ""

    def __init__(self, loop, config, table, str key, on_connect=None, on_message=None, on_close=None):
        self.loop = loop
        self.parser = FrameParser(config.max_message_size)
        self.parser.set_sink(self)
        self.key = key
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_close = on_close
        self.close_timeout = config.close_timeout
        self.ping_interval = config.ping_interval if config.ping_interval is not None else 0.0
        self.ping_timeout = config.ping_timeout if config.ping_timeout is not None else 0.0
        self.max_backpressure = config.max_backpressure
        self.drop_policy = config.backpressure_policy == "drop"
        self.close_on_error = config.close_on_handler_error
        self.high_water = config.read_high_water
        self.low_water = config.read_low_water
        self.inline_async = config.inline_async_handlers
        if isinstance(table, Hub):
            self.hub = <Hub>table
        else:
            self.hub = Hub(loop, self.ping_interval)
            self.extra_table = table

    # -- lifecycle ------------------------------------------------------------

    def start(self, transport, bytes initial=b""):
        """Take over ``transport`` (after the 101 was written) and run the
        connect handler; ``initial`` holds bytes read past the handshake."""
        self.transport = transport
        if self.ping_interval > 0:
            self.next_ping = self.loop.time() + self.ping_interval
        self.hub.add(self)
        if self.extra_table is not None:
            self.extra_table[self.key] = self
        self._enqueue(_CONNECT)
        if initial and self.state == ST_OPEN:
            self.parser.append_input(<const uint8_t *><char *>initial, <size_t>len(initial))
            self._read(0)

    def connection_made(self, transport):
        # Not called after set_protocol(); kept so the class is a complete protocol.
        if self.transport is None:
            self.transport = transport

    def get_buffer(self, Py_ssize_t sizehint):
        cdef object window
        if self.parser.can_parse_external():
            window = self.hub.lend_window()
            if window is not None:
                self.using_shared = True
                return window
        self.using_shared = False
        return self.parser.read_window()

    def buffer_updated(self, Py_ssize_t nbytes):
        self._read(<size_t>nbytes)

    def data_received(self, bytes data):
        # For transports that do not read through get_buffer() (the server
        # installs BufferedConnection, so uvloop's and asyncio's do): copy the
        # read into the shared buffer, since the codec unmasks in place.
        cdef size_t n = <size_t>len(data)
        cdef object window = None
        if self.parser.can_parse_external() and n <= SHARED_READ:
            window = self.hub.lend_window()
        if window is not None:
            memcpy(self.hub.shared, <const char *>data, n)
            self.using_shared = True
        else:
            self.using_shared = False
            self.parser.append_input(<const uint8_t *><char *>data, n)
            n = 0
        self._read(n)

    def eof_received(self):
        return False

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False

    def connection_lost(self, exc):
        if self.state == ST_CLOSED:
            return
        self.state = ST_CLOSED
        if self.close_code is None:
            self.close_code = 1006      # closed without a Close frame (RFC 6455 §7.1.5)
        self._cancel_close_timer()
        self.next_ping = self.pong_deadline = 0.0
        self.out = None
        self.out_bytes = 0
        self.hub.remove(self)
        if self.extra_table is not None and self.extra_table.get(self.key) is self:
            del self.extra_table[self.key]
        self._enqueue(_CLOSE)

    # -- reading ---------------------------------------------------------------

    cdef int _read(self, size_t nbytes) except -1:
        cdef Hub hub
        try:
            if self.using_shared:
                self.using_shared = False
                hub = self.hub
                self.parser.parse_external(hub.shared, nbytes, None)
            else:
                if nbytes:
                    self.parser.input_received(nbytes)
                self.parser.parse(None)
        except ProtocolError as exc:
            self._fail(exc.close_code, exc.reason)
        self.parser.shrink_if_idle()
        return 0

    cdef int on_data(self, int opcode, object data, int rsv) except -1:
        # Fast path: nothing queued and no handler suspended: run it now.
        if not self.busy and (self.queue is None or not self.queue):
            if self.on_message is not None:
                self._run_job(data)
            return 0
        return self._enqueue(data)

    cdef int on_control(self, Message m) except -1:
        cdef int op = m.opcode
        cdef bytes payload
        if op == OPC_PING:
            if self.state == ST_OPEN:
                payload = m.data
                self._queue_control(build_frame_c(OPC_PONG, <const uint8_t *><char *>payload,
                                                  <size_t>PyBytes_GET_SIZE(payload), True, 0, NULL))
        elif op == OPC_PONG:
            if self.ping_payload is not None and m.data == self.ping_payload:
                self.ping_payload = None
                self.pong_deadline = 0.0
                if self.ping_interval > 0:
                    self.next_ping = self.loop.time() + self.ping_interval
        elif op == OPC_CLOSE:
            self._on_close_frame(m)
        return 0

    cdef int _on_close_frame(self, Message m) except -1:
        self.close_received = True
        if not self.close_sent:
            self.close_code = m.close_code if m.close_code is not None else 1005
            self.close_reason = m.close_reason
            # Echo the code (RFC 6455 §5.5.1); an empty Close answers an empty one.
            self._queue_control(build_close(m.close_code))
            self.close_sent = True
        self.state = ST_CLOSING
        self.next_ping = self.pong_deadline = 0.0
        self.close_after_flush = True      # then the server closes TCP (§7.1.1)
        if not self.in_dirty:
            self.hub.mark_dirty(self)
        self._arm_close_timer()
        return 0

    cdef int _fail(self, int code, str reason) except -1:
        """Fail the connection (RFC 6455 §7.1.7): Close with `code`, then close TCP."""
        if self.state == ST_CLOSED:
            return 0
        _log.info("websocket %s: failing connection with %d: %s", self.key, code, reason)
        if not self.close_sent:
            self.close_code = code
            self.close_reason = reason
            self._queue_control(build_close(code, _truncate_reason(reason)))
            self.close_sent = True
        self.state = ST_CLOSING
        self.next_ping = self.pong_deadline = 0.0
        self.close_after_flush = True
        if not self.in_dirty:
            self.hub.mark_dirty(self)
        self._arm_close_timer()
        return 0

    # -- closing ------------------------------------------------------------------

    def close(self, int code=1000, str reason=""):
        """Send a Close frame (RFC 6455 §5.5.1) after flushing queued messages;
        inside a handler, after that handler's return value. Returns False if
        the connection was already closing. Raises ValueError for a code or
        reason a peer would reject."""
        build_close(code, reason)       # validates before anything changes
        if self.state != ST_OPEN or self.pending_close is not None:
            return False
        if self.in_handler:
            self.pending_close = (code, reason)
            return True
        self._do_close(code, reason)
        return True

    cdef int _do_close(self, int code, str reason) except -1:
        if self.state != ST_OPEN:
            return 0
        self.close_code = code
        self.close_reason = reason
        self._queue_control(build_close(code, reason))
        self.close_sent = True
        self.state = ST_CLOSING
        self.next_ping = self.pong_deadline = 0.0
        self._arm_close_timer()
        return 0

    def _arm_close_timer(self):
        if self.close_timer is None and self.state != ST_CLOSED:
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timeout_expired)

    def _close_timeout_expired(self):
        self.close_timer = None
        if self.state != ST_CLOSED:
            _log.info("websocket %s: no closing handshake within %.1fs; aborting", self.key, self.close_timeout)
            self.transport.abort()

    cdef void _cancel_close_timer(self):
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def abort(self):
        """Drop the TCP connection at once, without a closing handshake."""
        if self.state != ST_CLOSED and self.transport is not None:
            self.transport.abort()

    # -- handlers -------------------------------------------------------------------

    cdef int _enqueue(self, object job) except -1:
        if self.queue is None:
            self.queue = _deque()
        self.queue.append(job)
        if self.busy:
            if (not self.reading_paused and self.state == ST_OPEN
                    and len(self.queue) >= self.high_water):
                self.reading_paused = True
                self.transport.pause_reading()
            return 0
        return self._pump()

    cdef int _pump(self) except -1:
        cdef object queue = self.queue
        while queue and not self.busy:
            self._run_job(queue.popleft())
        if self.reading_paused and len(queue) <= self.low_water and self.state == ST_OPEN:
            self.reading_paused = False
            self.transport.resume_reading()
        return 0

    cdef int _run_job(self, object job) except -1:
        cdef object handler
        cdef object result
        cdef object pending
        if job is _CONNECT:
            handler = self.on_connect
        elif job is _CLOSE:
            handler = self.on_close
        else:
            handler = self.on_message
        if handler is None:
            return 0
        self.in_handler = True
        try:
            if job is _CONNECT or job is _CLOSE:
                result = handler(self.connector)
            else:
                result = handler(self.connector, job)
            if _is_coroutine(result):
                if not self.inline_async:
                    return self._suspend(job, result)
                # Run the first step inline: a handler that never suspends
                # needs no Task (and no extra loop iteration).
                try:
                    pending = result.send(None)
                except StopIteration as stop:
                    result = stop.value
                else:
                    return self._suspend(job, _resume(result, pending))
        except Exception as exc:
            self.in_handler = False
            return self._handler_error(exc)
        except asyncio.CancelledError:
            self.in_handler = False
            _log.debug("websocket %s: handler cancelled", self.key)
            return 0
        self.in_handler = False
        return self._finish_job(job, result)

    def _suspend(self, job, coro):
        self.busy = True
        self.current_job = job
        self.loop.create_task(coro).add_done_callback(self._task_done)
        return 0

    def _task_done(self, task):
        job = self.current_job
        self.current_job = None
        self.busy = False
        self.in_handler = False
        if task.cancelled():
            result = None
        else:
            exc = task.exception()
            if exc is not None:
                self._handler_error(exc)
                self._pump()
                return
            result = task.result()
        self._finish_job(job, result)
        self._pump()

    cdef int _finish_job(self, object job, object result) except -1:
        if result is not None and job is not _CLOSE:
            self.send_value(result)
        if self.pending_close is not None:
            code, reason = self.pending_close
            self.pending_close = None
            self._do_close(code, reason)
        return 0

    cdef int _handler_error(self, object exc) except -1:
        _log.error("websocket %s: handler raised", self.key, exc_info=exc)
        if self.pending_close is not None:
            code, reason = self.pending_close
            self.pending_close = None
            self._do_close(code, reason)
        elif self.close_on_error:
            self._do_close(1011, "internal error")
        return 0

    # -- rooms --------------------------------------------------------------------------

    def join(self, room):
        """Add this connection to ``room`` (any hashable name); False if closing."""
        return self.hub.join(self, room) == 1

    def leave(self, room):
        """Remove this connection from ``room``; False if it was not in it."""
        return self.hub.leave(self, room) == 1

    # -- writing --------------------------------------------------------------------

    def send(self, data):
        """Queue ``data`` as one message: ``str`` as text, bytes-like as
        binary, dict/list as JSON text. Returns False if the connection is not
        open or the message was refused by the backpressure policy."""
        return self.send_value(data) == 1

    def send_frame_bytes(self, bytes frame):
        """Queue a prebuilt server frame (broadcasts use one frame object for
        every connection). Returns False if it was not queued."""
        return self.send_frame(frame) == 1

    cdef int send_value(self, object value) except -1:
        """1 if queued, 0 if refused."""
        cdef bytes frame = _frame_or_none(value)
        if frame is None:
            _log.error("websocket %s: cannot send a %s (send str, bytes, dict or list); nothing sent",
                       self.key, type(value).__name__)
            return 0
        return self.send_frame(frame)

    cdef int send_frame(self, bytes frame) except -1:
        cdef size_t size = <size_t>PyBytes_GET_SIZE(frame)
        cdef size_t buffered
        if self.state != ST_OPEN:
            return 0
        buffered = self.out_bytes + <size_t>self.transport.get_write_buffer_size()
        # The bound is on backlog: one message larger than the limit still goes
        # out to a client that has read everything before it.
        if buffered and buffered + size > self.max_backpressure:
            if self.drop_policy:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    _log.warning("websocket %s: client reads too slowly; %d message(s) dropped "
                                 "(write buffer over max_backpressure=%d)",
                                 self.key, self.dropped, self.max_backpressure)
                return 0
            _log.warning("websocket %s: client reads too slowly (write buffer over max_backpressure=%d); "
                         "closing with 1008", self.key, self.max_backpressure)
            self._do_close(1008, "client too slow")
            return 0
        if self.out is None:
            self.out = [frame]
        else:
            self.out.append(frame)
        self.out_bytes += size
        if not self.in_dirty:
            self.hub.mark_dirty(self)
        return 1

    cdef int _queue_control(self, bytes frame) except -1:
        if self.state == ST_CLOSED:
            return 0
        if self.out is None:
            self.out = [frame]
        else:
            self.out.append(frame)
        self.out_bytes += <size_t>PyBytes_GET_SIZE(frame)
        if not self.in_dirty:
            self.hub.mark_dirty(self)
        return 0

    cdef int _flush(self) except -1:
        cdef list out = self.out
        if self.state == ST_CLOSED:
            return 0
        if out:
            self.out = None
            self.out_bytes = 0
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)
            self.hub.writes += 1
        if self.close_after_flush:
            self.close_after_flush = False
            self.transport.close()
        return 0

    @property
    def buffered_amount(self):
        """Bytes queued for this client and not yet handed to the kernel."""
        if self.transport is None or self.state == ST_CLOSED:
            return self.out_bytes
        return self.out_bytes + self.transport.get_write_buffer_size()

    @property
    def read_buffer_size(self):
        """Bytes of read/reassembly buffer this connection holds (0 when idle)."""
        return self.parser.allocated

    # -- keepalive ----------------------------------------------------------------------

    cdef int _keepalive(self, double now) except -1:
        if self.state != ST_OPEN or self.ping_interval <= 0:
            return 0
        if self.pong_deadline > 0:
            if now >= self.pong_deadline:
                self.pong_deadline = 0.0
                _log.info("websocket %s: no pong within %.1fs; closing", self.key, self.ping_timeout)
                self._do_close(1011, "keepalive ping timeout")
            return 0
        if self.next_ping > 0 and now >= self.next_ping:
            self.ping_seq += 1
            self.ping_payload = b"ka" + (self.ping_seq & 0xFFFFFFFF).to_bytes(4, "big")
            self._queue_control(build_frame_c(OPC_PING, <const uint8_t *><char *>self.ping_payload,
                                              6, True, 0, NULL))
            self.next_ping = 0.0
            if self.ping_timeout > 0:
                self.pong_deadline = now + self.ping_timeout
            else:
                self.next_ping = now + self.ping_interval
        return 0


cdef bytes _frame_or_none(object value):
    """The one server frame for a message value: ``str`` as text, bytes-like
    as binary, ``dict``/``list`` as JSON text; None for anything else."""
    cdef object t = type(value)
    if t is str or t is bytes or t is bytearray or t is memoryview:
        return build_message_c(value, NULL)
    if t is dict or t is list or isinstance(value, (dict, list)):
        return build_message_c(_json_dumps(value), NULL)
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return build_message_c(value, NULL)
    return None


def message_frame(value):
    """The server frame for ``value`` as handlers' sends and return values
    make it (``str`` text, bytes-like binary, ``dict``/``list`` JSON text);
    TypeError for anything else."""
    cdef bytes frame = _frame_or_none(value)
    if frame is None:
        raise TypeError(f"cannot send a {type(value).__name__}: send str, bytes, dict or list")
    return frame


cdef str _truncate_reason(str reason):
    """A close reason that fits a Close frame (123 bytes of UTF-8)."""
    cdef bytes raw = reason.encode("utf-8")
    if len(raw) <= 123:
        return reason
    return raw[:123].decode("utf-8", "ignore")


class BufferedConnection(Connection, asyncio.BufferedProtocol):
    """The protocol the server installs: the compiled Connection, declared an
    ``asyncio.BufferedProtocol`` so that asyncio's transports, which check
    the type, read through ``get_buffer()``/``buffer_updated()`` as uvloop's
    do (uvloop only checks that the methods exist). No ``__dict__``."""

    __slots__ = ()
