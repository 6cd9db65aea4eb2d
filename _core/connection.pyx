# Compiled WebSocket connection layer (contract: connection.pxd).
#
# Read path: the transport writes into a buffer lent by the hub (shared by the
# endpoint's connections; a connection only gets a buffer of its own to hold
# an unfinished frame), every complete frame of a read is parsed in one pass,
# and data messages reach the connection as their str/bytes (MessageSink).
# Control frames are answered here; data messages go to the endpoint's
# handlers, one at a time and in arrival order.
#
# Handlers (the hub's Dispatcher): every call runs in a fresh copy of the
# endpoint's context, so a
# ContextVar a handler sets never leaks into the next message. A sync handler
# is called inline. An async handler runs in a real asyncio Task from its first
# line (asyncio.current_task(), timeout(), TaskGroup work as anywhere else):
# on Python >= 3.12 the Task starts eagerly, so a handler that never suspends
# finishes inside the call and costs no extra loop iteration; on 3.11 its
# first step runs on the next iteration. The hub keeps every Task it
# started referenced until it is done.
#
# Write path: what a read's messages produce (handler replies and sends,
# pongs, the Close) leaves in one write once the read is handled, as
# uWebSockets uncorks after its data callback: a message on an idle
# connection is answered without a callback scheduled for later. Everything
# else queued to a connection during one loop iteration (broadcasts, sends
# from other connections' handlers or Tasks) leaves in one write at the end
# of the iteration (the hub's flush). Either write is one send()/sendmsg()
# to the socket itself while the transport holds none of our bytes (plain
# uvloop and asyncio selector transports; what the kernel does not take
# goes to the transport), else transport.write(). Every byte
# queued, ours or the transport's, counts against max_backpressure: data
# over it follows backpressure_policy, a Pong over it closes with 1008. Once
# the client falls behind (the transport still buffers our bytes), Pings get
# one Pong per read, for the latest payload (RFC 6455 §5.5.3), and none
# while the transport's write buffer is over its high mark: then reading
# pauses too, so a client that does not read cannot make us parse (and
# answer) more, and the latest Ping is answered when writing resumes.
#
# Close handshake (RFC 6455 §5.5.1, §7): a Close from the peer is echoed with
# its code and TCP is closed (the server closes first, §7.1.1); a Close we send
# waits up to close_timeout for the peer's answer, then the transport is
# aborted. A protocol error sends Close with the codec's code (1002, 1007,
# 1009) and closes. close() is never deferred behind a suspended handler.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Values
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EAGAIN, EINTR
from posix.uio cimport iovec

from robyn_fast._core.codec cimport (
    Deflater, FrameParser, Inflater, Message, MessageSink, build_frame_c, build_header_c, build_message_c,
    fill_buffer_view, frame_payload,
    OPC_TEXT, OPC_BINARY, OPC_CLOSE, OPC_PING, OPC_PONG,
)
from robyn_fast._core.metrics cimport count_close, current_counters

import asyncio
import collections
import contextvars
import os
import sys
import types
from socket import SOCK_STREAM as _SOCK_STREAM

from robyn_fast._core.codec import build_close
from robyn_fast.exceptions import InvalidState, ProtocolError
from robyn_fast.logs import get_logger

cdef extern from "sys/socket.h" nogil:
    struct msghdr:
        void *msg_name
        int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    enum: MSG_NOSIGNAL
    enum: MSG_DONTWAIT

cdef extern from "errno.h":
    enum: EWOULDBLOCK

cdef extern from "Python.h":
    object PyContext_Copy(object ctx)
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1

cdef object _log = get_logger("robyn_fast.websocket")
cdef object _urandom = os.urandom
cdef object _deque = collections.deque
cdef object _coroutine_type = types.CoroutineType
cdef object _iscoroutine = asyncio.iscoroutine
cdef object _Task = asyncio.Task
cdef object _current_task = asyncio.current_task
cdef object _CancelledError = asyncio.CancelledError
cdef object _InvalidStateError = asyncio.InvalidStateError
cdef object _copy_context = contextvars.copy_context
# Python >= 3.12: Task(..., eager_start=True) runs the first step inside the
# constructor, with the Task current. 3.11: Task(..., context=) only.
cdef bint _EAGER = sys.version_info >= (3, 12)
cdef object _CONNECT = object()           # job marker: run the connect handler
cdef object _CLOSE = object()             # job marker: run the close handler

cdef enum:
    SHARED_READ = 262144                  # size of the hub's shared read buffer
    SPLIT_MIN = 16384                     # a bytes payload this large is written after its header, not copied into a frame
    DIRECT_IOV = 64                       # frames one direct write takes (more: the transport's writelines)
    FD_UNKNOWN = -2                       # Connection.fd before the first flush looked it up

# Transports whose socket a flush may write to itself while they hold nothing
# (the write they would make anyway, without their buffering layers): plain
# TCP/Unix stream transports of uvloop and asyncio's selector loop, by exact
# type. Any other transport (TLS, whose get_extra_info("socket") is the raw
# socket under the encryption; proactor; a wrapper; a test's fake) always
# gets transport.write().
cdef frozenset _DIRECT_TRANSPORTS = frozenset([
    ("uvloop.loop", "TCPTransport"), ("uvloop.loop", "UnixTransport"),
    ("asyncio.selector_events", "_SelectorSocketTransport"),
])
cdef dict _direct_by_type = {}


cdef int _direct_fd(object transport) except -3:
    """The fd of ``transport``'s stream socket if flushes may write to it
    directly, else -1."""
    cdef type t = type(transport)
    cdef object ok = _direct_by_type.get(t)
    if ok is None:
        ok = (t.__module__, t.__qualname__) in _DIRECT_TRANSPORTS
        _direct_by_type[t] = ok
    if not ok:
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != _SOCK_STREAM:
        return -1
    return sock.fileno()


cdef inline bint _is_coroutine(object value):
    cdef object t = type(value)
    if t is _coroutine_type:
        return True
    # What sync handlers return is settled by its exact type: asyncio's
    # iscoroutine() is a Python call and an ABC isinstance() check (about a
    # fifth of the instructions of a whole echo round trip).
    if value is None or t is str or t is bytes or t is dict or t is list:
        return False
    return _iscoroutine(value)


cdef object _start_task(object loop, object coro, object ctx):
    """A Task running ``coro`` in ``ctx`` (a context nothing has entered)."""
    if _EAGER:
        return _Task(coro, loop=loop, context=ctx, eager_start=True)
    return _Task(coro, loop=loop, context=ctx)


cdef str _handler_name(object handler):
    name = getattr(handler, "__qualname__", None)
    return name if isinstance(name, str) else repr(handler)


cdef str _event_name(object job):
    if job is _CONNECT:
        return "connect"
    if job is _CLOSE:
        return "close"
    return "message"


@cython.final
cdef class _SharedWindow:
    """Exports the loop's shared read buffer to a transport (get_buffer)."""

    cdef LoopResources res

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef LoopResources r = self.res
        fill_buffer_view(view, self, r.shared, <Py_ssize_t>r.shared_cap, flags)
        r.shared_exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.res.shared_exports -= 1

    def __len__(self):
        return self.res.shared_cap

    # Sliced by asyncio's TLS transport, as FrameParser's read window is.
    def __getitem__(self, key):
        return memoryview(self)[key]

    def __setitem__(self, key, value):
        memoryview(self)[key] = value


@cython.final
cdef class LoopResources:
    """What every WebSocket endpoint served on one event loop shares: the
    end-of-iteration flush, the 256 KiB read buffer lent to connections with
    nothing buffered, and the sweep that turns every connection's deadlines
    (keepalive, Pong and close timeouts) into calls. The server makes one
    per loop and hands it to each endpoint's :class:`Hub`."""

    def __cinit__(self):
        self.hubs = []
        self.dirty = []
        self.shared = NULL

    def __init__(self, loop):
        self.loop = loop
        self.flush_cb = self.flush
        cdef _SharedWindow window = _SharedWindow.__new__(_SharedWindow)
        window.res = self
        self.shared_window = window

    def __dealloc__(self):
        free(self.shared)

    cdef int register(self, Hub hub) except -1:
        self.hubs.append(hub)
        if self.sweep_tick == 0 or hub.settings.sweep_tick < self.sweep_tick:
            self.sweep_tick = hub.settings.sweep_tick
        return 0

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
            conn._flush_now()

    # -- deadlines ---------------------------------------------------------------------
    # Every connection's deadlines (keepalive Ping, Pong and close timeouts)
    # are checked by one sweep, every sweep_tick while any is set.

    cdef int want_sweep(self) except -1:
        if self.sweep_timer is None:
            self._arm_sweep()
        return 0

    cdef int _arm_sweep(self) except -1:
        self.sweep_timer = self.loop.call_later(self.sweep_tick, self._sweep)
        return 0

    def _sweep(self):
        cdef Connection conn
        cdef Hub hub
        cdef double now = self.loop.time()
        cdef bint pending = False
        self.sweep_timer = None
        for hub in self.hubs:
            for conn in PyDict_Values(hub.connections):
                try:
                    if conn.tick_c(now) > 0:
                        pending = True
                except Exception:
                    _log.exception("websocket %s: keepalive failed", conn.key)
        if pending and self.open_count and self.sweep_timer is None:
            self._arm_sweep()

    @property
    def hub_count(self):
        """How many endpoints' hubs share these resources."""
        return len(self.hubs)


cdef tuple _NO_HANDLERS = (None, None, None)


cdef inline object _handler_for(Connection conn, object job):
    if job is _CONNECT:
        return conn.handlers[0]
    if job is _CLOSE:
        return conn.handlers[2]
    return conn.handlers[1]


@cython.final
cdef class Dispatcher:
    """Runs one endpoint's handlers; one per :class:`Hub`, shared by its
    connections (created by the hub).

    For each connection, jobs (connect, each message, close) run one at a
    time in arrival order, every call in a fresh copy of ``context``. A sync
    handler is called inline; an async one runs in an asyncio Task from its
    first line (eagerly on Python >= 3.12), referenced in :attr:`tasks`
    until it is done. A handler's return value is sent as a message, an
    exception is logged (and closes the connection with 1011 when
    ``close_on_error``). Messages arriving while a handler runs or is
    suspended wait in the connection's backlog; over ``read_high_water`` of
    them the connection stops reading until ``read_low_water``. Closing is
    never deferred behind a suspended handler: a close() from the
    connection's own handler goes after that handler's reply, or at its next
    suspension; the close handler runs after everything queued before it.
    """

    def __cinit__(self):
        self.tasks = {}

    def __init__(self, Hub hub not None, context):
        self.hub = hub
        self.loop = hub.loop
        self.context = context
        self.task_done_cb = self._task_done
        self.resolve_cb = self._resolve_pending_close

    # -- what the glue hands over --------------------------------------------------------

    cdef int connect(self, Connection conn) except -1:
        return self._enqueue(conn, _CONNECT)

    cdef int message(self, Connection conn, object data) except -1:
        # Fast path: nothing queued and no handler running or suspended: run it now.
        if conn.task is None and not conn.running and (conn.queue is None or not conn.queue):
            if conn.inbox is not None:  # the receive-loop API: straight to its queue or waiting receive
                return (<Inbox>conn.inbox).put(data)
            if conn.handlers[1] is not None:
                self._run_job(conn, data)
            return 0
        return self._enqueue(conn, data)

    cdef int lost(self, Connection conn) except -1:
        conn.pending_close = None
        return self._enqueue(conn, _CLOSE)

    cdef int closing(self, Connection conn) except -1:
        conn.pending_close = None       # the Close is on its way: a close() asked for inside a handler is moot
        return 0

    cdef int request_close(self, Connection conn, int code, str reason) except -1:
        if conn.pending_close is not None:
            return 0
        if self._in_own_handler(conn):
            conn.pending_close = (code, reason)
            if not conn.running:
                # A later step of our handler's Task: once the step is over,
                # either the Task finished (then _task_done sends its return
                # value, then the Close) or it suspended (then the Close goes).
                self.loop.call_soon(self.resolve_cb, conn)
            return 1
        conn._do_close(code, reason)
        return 1

    cdef int discard(self) except -1:
        self.discarding = True
        return 0

    cdef int cancel_all(self) except -1:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        return len(tasks)

    # -- closing -----------------------------------------------------------------------

    cdef bint _in_own_handler(self, Connection conn) except -1:
        if conn.running:
            return True
        if conn.task is None:
            return False
        return _current_task(self.loop) is conn.task

    def _resolve_pending_close(self, Connection conn):
        if conn.task is not None and conn.task.done():
            return
        self._close_pending(conn)

    cdef int _close_pending(self, Connection conn) except -1:
        if conn.pending_close is not None:
            code, reason = conn.pending_close
            conn.pending_close = None
            conn._do_close(code, reason)
        return 0

    # -- the backlog ---------------------------------------------------------------------

    cdef int _enqueue(self, Connection conn, object job) except -1:
        if conn.task is None and not conn.running and (conn.queue is None or not conn.queue):
            # Nothing waits and nothing runs: the job runs now, through no
            # backlog (a deque is ~780 bytes; an idle connection keeps none).
            if self.discarding and job is not _CLOSE:
                return self._drop_job()
            self._run_job(conn, job)
            return self._pump(conn)     # what arrived while it ran
        if conn.queue is None:
            conn.queue = _deque()
        conn.queue.append(job)
        if conn.task is not None or conn.running:
            if (not conn.backlog_paused and conn.state == ST_OPEN
                    and len(conn.queue) >= conn.settings.high_water):
                conn.backlog_pause(True)
            return 0
        return self._pump(conn)

    cdef int _drop_job(self) except -1:
        # Shutdown's grace period is over: only close handlers still run.
        if self.discarded == 0:
            _log.warning("shutdown: dropping messages still waiting for their handlers")
        self.discarded += 1
        return 0

    cdef int _pump(self, Connection conn) except -1:
        cdef object queue = conn.queue
        cdef object job
        if queue is None:
            return 0
        while queue and conn.task is None and not conn.running:
            job = queue.popleft()
            if self.discarding and job is not _CLOSE:
                self._drop_job()
                continue
            self._run_job(conn, job)
        if conn.backlog_paused and len(queue) <= conn.settings.low_water:
            conn.backlog_pause(False)
        if not queue and conn.task is None and not conn.running and conn.queue is queue:
            conn.queue = None           # drained: the backlog is made again when next needed
        return 0

    # -- running a job -------------------------------------------------------------------

    cdef int _run_job(self, Connection conn, object job) except -1:
        cdef object handler = _handler_for(conn, job)
        cdef object ctx, result
        cdef object task = None
        if handler is None:
            return self._job_done(conn, job)
        ctx = PyContext_Copy(self.context)
        conn.running = True
        try:
            PyContext_Enter(ctx)
            try:
                if job is _CONNECT or job is _CLOSE:
                    result = handler(conn.connector)
                else:
                    result = handler(conn.connector, job)
            finally:
                PyContext_Exit(ctx)
            if _is_coroutine(result):
                task = _start_task(self.loop, result, ctx)
        except Exception as exc:
            return self._handler_error(conn, job, exc)
        except _CancelledError:
            return self._cancelled(conn, job)
        finally:
            conn.running = False
        if task is None:
            return self._finish_job(conn, job, result)
        if task.done():  # it finished within its eager first step
            return self._task_outcome(conn, job, task)
        conn.task = task
        conn.current_job = job
        self.tasks[task] = conn
        task.add_done_callback(self.task_done_cb)
        # Suspended: a Close its first step asked for goes now.
        return self._close_pending(conn)

    def _task_done(self, task):
        cdef Connection conn = self.tasks.pop(task)
        job = conn.current_job
        conn.current_job = None
        conn.task = None
        self._task_outcome(conn, job, task)
        self._pump(conn)

    cdef int _task_outcome(self, Connection conn, object job, object task) except -1:
        if task.cancelled():
            return self._cancelled(conn, job)
        exc = task.exception()
        if exc is not None:
            return self._handler_error(conn, job, exc)
        return self._finish_job(conn, job, task.result())

    cdef int _cancelled(self, Connection conn, object job) except -1:
        _log.debug("websocket %s: %s handler cancelled", conn.key, _event_name(job))
        self._close_pending(conn)
        return self._job_done(conn, job)

    cdef int _finish_job(self, Connection conn, object job, object result) except -1:
        cdef bytes frame = None
        if result is not None and job is not _CLOSE:
            if not conn.large_payload(result):
                try:
                    frame = _frame(result, self.hub.json_dumps)
                except Exception as exc:
                    _log.error("websocket %s: %s handler %s returned a value that cannot be sent (%s: %s); "
                               "nothing was sent", conn.key, _event_name(job), _handler_name(_handler_for(conn, job)),
                               type(exc).__name__, exc)
                    return self._after_error(conn, job)
            if conn.state == ST_OPEN:
                if frame is None:
                    conn.send_large(result)
                else:
                    conn.send_data(frame, None)
            else:
                _log.debug("websocket %s: connection closing; the handler's return value was dropped", conn.key)
        self._close_pending(conn)
        return self._job_done(conn, job)

    cdef int _handler_error(self, Connection conn, object job, object exc) except -1:
        _log.error("websocket %s: %s handler %s raised", conn.key, _event_name(job),
                   _handler_name(_handler_for(conn, job)), exc_info=exc)
        return self._after_error(conn, job)

    cdef int _after_error(self, Connection conn, object job) except -1:
        self.hub.m.handler_errors += 1
        if conn.pending_close is not None:
            self._close_pending(conn)
        elif conn.settings.close_on_error and job is not _CLOSE:
            conn._do_close(1011, "internal error")
        return self._job_done(conn, job)

    cdef int _job_done(self, Connection conn, object job) except -1:
        if job is _CLOSE and not conn.done:
            conn.done = True
            # Nothing runs for this connection any more: let go of the connector
            # (it refers to the connection) and the handlers (a closure may too,
            # as the access log's does), so the cycles end here and reference
            # counting frees the connection once nobody else holds the
            # connector. A connector kept by user code still works, as a
            # closed one.
            conn.connector = None
            conn.handlers = _NO_HANDLERS
            self.hub.finished(conn)
        return 0

    @property
    def live_tasks(self):
        """Handler Tasks started and not yet done."""
        return len(self.tasks)


@cython.final
cdef class Hub:
    """The connections of one WebSocket endpoint on one event loop.

    Created by the server with the endpoint's
    :class:`~robyn_fast._core.protocol.Settings` (or its
    :class:`~robyn_fast.config.Config`, read once into them), the JSON
    encoder used for ``dict``/``list`` messages and the loop's
    :class:`LoopResources` (default: resources of its own). ``context`` is
    the ``contextvars.Context`` every handler call runs in a copy of
    (default: a copy of the current one).
    """

    def __cinit__(self):
        self.connections = {}
        self.rooms = {}
        self.idle_waiters = []
        self.m = current_counters()

    def __init__(self, loop, settings, *, json_dumps, context=None, LoopResources resources=None):
        if not callable(json_dumps):
            raise TypeError("json_dumps must be callable")
        if resources is None:
            resources = LoopResources(loop)
        elif resources.loop is not loop:
            raise ValueError("the LoopResources belong to another event loop")
        self.loop = loop
        self.json_dumps = json_dumps
        self.dispatcher = Dispatcher(self, context if context is not None else contextvars.copy_context())
        self.settings = settings if isinstance(settings, Settings) else Settings.from_config(settings)
        self.shared_deflaters = [None] * 7
        self.resources = resources
        resources.register(self)

    @property
    def flushes(self):
        """Flush rounds run on this hub's loop (for tests and benchmarks)."""
        return self.resources.flushes

    @property
    def writes(self):
        """Transport write calls made by those flushes and at the end of reads."""
        return self.resources.writes

    def flush(self):
        """Write out every connection of the loop queued since the last flush."""
        self.resources.flush()

    # -- permessage-deflate ---------------------------------------------------------

    cdef Inflater inflater(self):
        """The decompressor shared by every connection whose client keeps no context."""
        if self.shared_inflater is None:
            self.shared_inflater = Inflater(15, no_context_takeover=True)
        return self.shared_inflater

    cdef Deflater deflater_for(self, int window_bits):
        """The compressor without context takeover for frames of ``window_bits``,
        shared by every connection of this hub (and used once per broadcast)."""
        cdef Deflater d = self.shared_deflaters[window_bits - 9]
        if d is None:
            d = Deflater(window_bits, mem_level=8, level=self.settings.compress_level, no_context_takeover=True)
            self.shared_deflaters[window_bits - 9] = d
        return d

    # -- table ------------------------------------------------------------------

    cdef int add(self, Connection conn) except -1:
        self.connections[conn.key] = conn
        self.resources.open_count += 1
        self.live += 1
        self.m.opened += 1
        return 0

    cdef int remove(self, Connection conn) except -1:
        cdef object room
        cdef dict members
        if self.connections.get(conn.key) is conn:
            del self.connections[conn.key]
            self.resources.open_count -= 1
        if conn.rooms:
            for room in conn.rooms:
                members = self.rooms.get(room)
                if members is not None:
                    members.pop(conn.key, None)
                    if not members:
                        del self.rooms[room]
                        if self.on_room is not None:
                            self.on_room(room, False)
            conn.rooms = None
        if self.resources.open_count == 0 and self.resources.sweep_timer is not None:
            self.resources.sweep_timer.cancel()
            self.resources.sweep_timer = None
        return 0

    cdef int finished(self, Connection conn) except -1:
        """``conn``'s close handler has finished: it no longer counts as live."""
        cdef list waiters
        self.live -= 1
        if self.live == 0 and self.idle_waiters:
            waiters, self.idle_waiters = self.idle_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        return 0

    def wait_idle(self):
        """A future resolved once every connection started on this hub has
        closed and its close handler has finished (at once if none is live)."""
        fut = self.loop.create_future()
        if self.live == 0:
            fut.set_result(None)
        else:
            self.idle_waiters.append(fut)
        return fut

    @property
    def tasks(self):
        """The handler Tasks started for this endpoint and not yet done (a snapshot)."""
        return set(self.dispatcher.tasks)

    @property
    def live_tasks(self):
        """Handler Tasks started for this endpoint and not yet done."""
        return len(self.dispatcher.tasks)

    @property
    def discarded(self):
        """Queued messages dropped at the end of a shutdown's grace period."""
        return self.dispatcher.discarded

    cpdef int join(self, Connection conn, object room) except -1:
        cdef dict members
        if conn.state != ST_OPEN:
            return 0
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = {}
            if self.on_room is not None:
                self.on_room(room, True)
        members[conn.key] = conn
        if conn.rooms is None:
            conn.rooms = set()
        conn.rooms.add(room)
        return 1

    cpdef int leave(self, Connection conn, object room) except -1:
        cdef dict members = self.rooms.get(room)
        if members is None or members.pop(conn.key, None) is None:
            return 0
        if conn.rooms is not None:
            conn.rooms.discard(room)
        if not members:
            del self.rooms[room]
            if self.on_room is not None:
                self.on_room(room, False)
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

    # -- shutdown -----------------------------------------------------------------------

    def count_handler_error(self):
        """Count a handler error (``handler_errors``) that happened outside
        the dispatcher: a receive-loop handler's own Task raised."""
        self.m.handler_errors += 1

    def close_all(self, int code=1001, str reason=""):
        """Send a Close frame to every open connection at once, whatever its
        handler is doing; returns how many were asked to close."""
        cdef Connection conn
        cdef Py_ssize_t count = 0
        for conn in PyDict_Values(self.connections):
            if conn.state == ST_OPEN:
                conn._do_close(code, reason)
                count += 1
        return count

    def abort_all(self):
        """The end of the shutdown grace period: drop every TCP connection,
        discard message jobs still queued (close handlers still run) and
        cancel the handler Tasks still running. Returns how many Tasks were
        cancelled."""
        cdef Connection conn
        self.dispatcher.discard()
        for conn in PyDict_Values(self.connections):
            conn.abort()
        return self.dispatcher.cancel_all()


cdef Py_ssize_t _broadcast(dict members, bytes frame, object exclude):
    cdef Py_ssize_t count = 0
    cdef Connection conn
    cdef list cache = None
    # A snapshot of the members: whatever a send leads to (a close, a
    # connection_lost a transport reports at once, a join or leave) cannot
    # change what this loop walks.
    for conn in PyDict_Values(members):
        if conn.state != ST_OPEN or conn is exclude:
            continue
        try:
            if conn.deflater is None:
                count += conn.send_frame(frame)         # the plain frame, the same object for all
            else:
                if cache is None:
                    cache = [None] * 7
                count += conn.send_data(frame, cache)
        except Exception:
            _log.exception("websocket %s: broadcast send failed", conn.key)
    return count


cdef class Connection(WSProtocol):
    """One upgraded WebSocket connection; the transport's protocol after the 101.

    Created with the endpoint's :class:`Hub` (its table and settings), the
    connection id and the endpoint's handlers; then :meth:`start` is called
    with the transport and any bytes that arrived after the handshake request.
    """

    def __init__(self, Hub hub not None, str key not None, on_connect=None, on_message=None, on_close=None):
        self.hub = hub
        self._init_protocol(hub.settings, key)
        # One tuple for all the endpoint's connections (16 bytes less per
        # connection than three slots), unless their handlers differ (the
        # access log wraps each connection's close handler).
        cdef tuple handlers = hub.handlers
        if (handlers is None or handlers[0] is not on_connect or handlers[1] is not on_message
                or handlers[2] is not on_close):
            handlers = hub.handlers = (on_connect, on_message, on_close)
        self.handlers = handlers

    # -- lifecycle ------------------------------------------------------------

    def start(self, transport, bytes initial=b""):
        """Take over ``transport`` (after the 101 was written) and run the
        connect handler; ``initial`` holds bytes read past the handshake."""
        if self.started:
            raise InvalidState(f"websocket {self.key} was already started")
        self.started = True
        self.transport = transport
        self.hub.m.bytes_in += <size_t>len(initial)
        # A TLS transport encrypts each buffer of writelines() as a TLS record
        # of its own (uvloop and asyncio alike): 22 bytes and an encryption
        # call per frame. Joined, a flush is one record per 16 KiB.
        self.join_writes = transport.get_extra_info("sslcontext") is not None
        self.fd = -1 if self.join_writes else FD_UNKNOWN
        self.hub.add(self)
        self.opened(self.hub.loop.time())
        self.hub.dispatcher.connect(self)
        if initial and self.state == ST_OPEN:
            if self.parser is None:
                self._new_parser()
            self.parser.append_input(<const uint8_t *><char *>initial, <size_t>len(initial))
            self._read(0)

    def enable_deflate(self, params):
        """Use permessage-deflate as agreed in ``params`` (a
        :class:`~robyn_fast.websocket.extensions.DeflateParams`); before
        :meth:`start`. A client without context takeover shares the hub's
        decompressor, frames without it the hub's compressor for their
        window; otherwise this connection gets its own, allocated when first
        used."""
        cdef int server_bits = params.server_max_window_bits
        cdef int client_bits = params.client_max_window_bits
        cdef Hub hub = self.hub
        if self.started:
            raise InvalidState(f"websocket {self.key}: enable_deflate() after start()")
        if not 9 <= server_bits <= 15 or not 8 <= client_bits <= 15:
            raise ValueError("server_max_window_bits must be 9..15 and client_max_window_bits 8..15")
        if self.parser is None:
            self._new_parser()
        if params.client_no_context_takeover:
            self.parser.set_inflater(hub.inflater())
        else:
            self.parser.set_inflater(Inflater(client_bits if client_bits >= 9 else 9, no_context_takeover=False))
        if params.server_no_context_takeover:
            self.deflater = hub.deflater_for(server_bits)
            self.deflate_shared = True
        else:
            self.deflater = Deflater(server_bits, mem_level=hub.settings.compress_mem_level,
                                     level=hub.settings.compress_level,
                                     no_context_takeover=False)
            self.deflate_shared = False
        self.deflate_bits = server_bits
        self.deflate_params = params

    def connection_made(self, transport):
        # Not called after set_protocol(); kept so the class is a complete protocol.
        if self.transport is None:
            self.transport = transport

    def get_buffer(self, Py_ssize_t sizehint):
        cdef object window
        if self.parser is None:
            self._new_parser()
        if self.parser.can_parse_external():
            window = self.hub.resources.lend_window()
            if window is not None:
                self.using_shared = True
                return window
        self.using_shared = False
        return self.parser.read_window()

    def buffer_updated(self, Py_ssize_t nbytes):
        self.hub.m.bytes_in += <size_t>nbytes
        self._read(<size_t>nbytes)

    def data_received(self, bytes data):
        # For transports that do not read through get_buffer() (the server
        # installs BufferedConnection, so uvloop's and asyncio's do): copy the
        # read into the shared buffer, since the codec unmasks in place.
        cdef size_t n = <size_t>len(data)
        cdef object window = None
        self.hub.m.bytes_in += n
        if self.parser is None:
            self._new_parser()
        if self.parser.can_parse_external() and n <= SHARED_READ:
            window = self.hub.resources.lend_window()
        if window is not None:
            memcpy(self.hub.resources.shared, <const char *>data, n)
            self.using_shared = True
        else:
            self.using_shared = False
            self.parser.append_input(<const uint8_t *><char *>data, n)
            n = 0
        self._read(n)

    def eof_received(self):
        return False

    def pause_writing(self):
        # The client takes our bytes slower than we make them: read no more
        # (what it sends would only queue more answers) until it catches up.
        self.set_writing_paused(True)
        self._set_reading()
        if self.hub.on_congestion is not None:
            self.hub.on_congestion(self, True)

    def resume_writing(self):
        self.set_writing_paused(False)
        self._set_reading()
        if self.hub.on_congestion is not None:
            self.hub.on_congestion(self, False)

    cdef int backlog_pause(self, bint paused) except -1:
        self.backlog_paused = paused
        return self._set_reading()

    def hold_reading(self, bint held):
        """Stop reading this connection's socket (``held``), or read again.
        For an endpoint whose handler takes messages from a queue of its own
        (the receive-loop API): a handler that stops taking them stops the
        client, and the connection's close still runs in order, behind no
        suspended message job. The hold ends when the connection starts
        closing (the peer's Close must be read). Reading also pauses for the
        handler backlog and while writes are backed up; it resumes once no
        reason holds."""
        self.reading_held = held
        self._set_reading()

    cdef int _set_reading(self) except -1:
        """Pause reading while any reason holds (handlers behind, writes
        backed up, held by the endpoint); resume once none does."""
        cdef bint want = self.backlog_paused or self.writing_paused or (self.reading_held and self.state == ST_OPEN)
        if want == self.reading_paused or self.state == ST_CLOSED:
            return 0
        self.reading_paused = want
        if want:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
        return 0

    def connection_lost(self, exc=None):
        if self.state == ST_CLOSED:
            return
        self.connection_lost_c()
        # A connector kept by user code must not keep zlib state or buffers:
        # drop the compressor (sends are refused from now on anyway) and the
        # parser's buffers, inflater and its cycles with us and its window.
        self.deflater = None
        if not self.parsing and self.parser is not None:
            self.parser.release()
        self.hub.remove(self)
        if self.writing_paused and self.hub.on_congestion is not None:
            self.hub.on_congestion(self, False)
        self.hub.dispatcher.lost(self)

    # -- reading ---------------------------------------------------------------

    cdef int _read(self, size_t nbytes) except -1:
        cdef Hub hub
        if self.parser is None:         # buffer_updated() without a get_buffer() first
            self._new_parser()
        self.in_read = True
        try:
            self.parsing = True
            try:
                if self.using_shared:
                    self.using_shared = False
                    hub = self.hub
                    self.parser.parse_external(hub.resources.shared, nbytes, None)
                else:
                    if nbytes:
                        self.parser.input_received(nbytes)
                    self.parser.parse(None)
            except ProtocolError as exc:
                self._fail(exc.close_code, exc.reason)
            finally:
                self.parsing = False
            if self.inbox is not None and (<Inbox>self.inbox).deferred:
                (<Inbox>self.inbox).wake_deferred()
        finally:
            self.in_read = False
            if self.write_after_read:
                # What this read's messages produced (replies, Pongs, a
                # Close) leaves now, in one write, instead of joining the
                # end-of-iteration flush: a lone message on an idle
                # connection costs no call_soon and no extra loop
                # iteration (uvloop still sends it at the end of this
                # iteration, with whatever else is written to the
                # transport before then).
                self.write_after_read = False
                self._flush_now()
        if self.state == ST_CLOSED:
            self.parser.release()       # connection_lost came while the parser was on the stack
        else:
            self.parser.shrink_if_idle()
        return 0

    cdef int on_data(self, int opcode, object data, int rsv) except -1:
        self.m.messages_in += 1
        return self.hub.dispatcher.message(self, data)

    # -- closing ------------------------------------------------------------------

    def close(self, int code=1000, str reason not None=""):
        """Send a Close frame (RFC 6455 §5.5.1) with ``code`` and ``reason``
        after the messages already queued, at once, whatever this
        connection's handler is doing.

        Called by this connection's own handler while it runs, the Close
        follows that handler's return value (or goes when the handler next
        suspends). Afterwards sends to this connection are dropped (they
        return False). Returns False if the connection was already closing.
        Raises ValueError (or TypeError) for a code or reason a peer would
        reject, before anything changes."""
        build_close(code, reason)       # validates before anything changes
        if self.state != ST_OPEN:
            return False
        return self.hub.dispatcher.request_close(self, code, reason) == 1

    def abort(self):
        """Drop the TCP connection at once, without a closing handshake."""
        if self.state != ST_CLOSED and self.transport is not None:
            self.transport.abort()

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
        open or the message was refused by the backpressure policy. Raises
        TypeError (or ValueError) for a value that cannot be sent."""
        if self.large_payload(data):
            return self.send_large(data) == 1
        return self.send_data(_frame(data, self.hub.json_dumps), None) == 1

    def send_frame_bytes(self, bytes frame not None):
        """Queue a prebuilt server data frame (from ``message_frame``; it is
        compressed for this connection if deflate was negotiated). Returns
        False if it was not queued."""
        return self.send_data(frame, None) == 1

    cdef bint large_payload(self, object value):
        return type(value) is bytes and PyBytes_GET_SIZE(value) >= SPLIT_MIN and self.deflater is None

    cdef int send_large(self, bytes payload) except -1:
        # bytes never change: the transport may keep the payload object as
        # it is, so the frame is its header, then the payload (one writev on
        # uvloop), instead of a copy of both.
        return self.send_frame_parts(build_header_c(OPC_BINARY, <size_t>PyBytes_GET_SIZE(payload)), payload)

    cdef int send_data(self, bytes frame, list cache) except -1:
        cdef Hub hub = self.hub
        cdef Deflater d = self.deflater
        cdef bytes out
        cdef size_t off, n
        cdef int slot
        cdef const uint8_t *p
        if d is None or self.state != ST_OPEN:
            return self.send_frame(frame)
        off = frame_payload(frame, &n)
        if n < self.settings.compress_threshold or n > 0x40000000 or off < 2:
            # Small, over 1 GiB (zlib's int sizes), or not a frame: it goes out as it is.
            return self.send_frame(frame)
        p = <const uint8_t *>PyBytes_AS_STRING(frame)
        if cache is not None:
            slot = self.deflate_bits - 9
            out = cache[slot]
            if out is None:
                out = hub.deflater_for(self.deflate_bits).frame_c(p[0] & 0x0F, p + off, n, NULL)
                hub.compressions += 1
                cache[slot] = out
            if not self.deflate_shared:
                # The client's decoder now holds bytes this connection's compressor
                # never saw: its next message must refer to nothing before.
                d.forget()
            return self.send_frame(out)
        out = d.frame_c(p[0] & 0x0F, p + off, n, NULL)
        hub.compressions += 1
        if self.send_frame(out):
            return 1
        if not self.deflate_shared:
            d.forget()          # dropped: the client never sees what the compressor now remembers
        return 0

    cdef int _flush(self) except -1:
        cdef list out = self.take_output()
        if self.state == ST_CLOSED:
            return 0
        if out:
            if not self._write_direct(out):
                self.tx_clear = False
                if len(out) == 1:
                    self.transport.write(out[0])
                elif self.join_writes:
                    self.transport.write(b"".join(out))
                else:
                    self.transport.writelines(out)
            self.hub.resources.writes += 1
        if self.close_after_flush:
            self.close_after_flush = False
            self.transport.close()
        return 0

    cdef int _write_direct(self, list out) except -1:
        """Write ``out`` to the socket with one send, as the transport's own
        write would, when the transport holds nothing of ours (its write
        would try the same syscall at once) and is not closing (uvloop closes
        the fd before connection_lost: it may be another connection's by
        now); what the kernel does not take goes to the transport, in order,
        and counts for its flow control as before. Returns 0 (nothing
        written) when the transport has to do it all."""
        cdef int fd = self.fd
        cdef Py_ssize_t n = len(out), i, total = 0, sent
        cdef iovec iov[DIRECT_IOV]
        cdef msghdr msg
        cdef bytes frame
        cdef list rest
        if fd == FD_UNKNOWN:
            fd = self.fd = _direct_fd(self.transport)
        if fd < 0 or self.tbuf != 0 or n > DIRECT_IOV or self.transport.is_closing():
            return 0
        if n == 1:
            frame = <bytes>out[0]
            total = PyBytes_GET_SIZE(frame)
            while True:
                sent = send(fd, PyBytes_AS_STRING(frame), <size_t>total, MSG_NOSIGNAL | MSG_DONTWAIT)
                if sent >= 0 or errno != EINTR:
                    break
        else:
            for i in range(n):
                frame = <bytes>out[i]
                iov[i].iov_base = PyBytes_AS_STRING(frame)
                iov[i].iov_len = <size_t>PyBytes_GET_SIZE(frame)
                total += PyBytes_GET_SIZE(frame)
            memset(&msg, 0, sizeof(msg))
            msg.msg_iov = iov
            msg.msg_iovlen = <size_t>n
            while True:
                sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)
                if sent >= 0 or errno != EINTR:
                    break
        if sent == total:
            self.tx_clear = True
            return 1
        if sent < 0:
            if not ((errno == EAGAIN) | (errno == EWOULDBLOCK)):
                return 0        # a dead connection: the transport's write meets the error and closes
            sent = 0
        # The kernel took part: the rest goes to the transport, which buffers
        # it (pausing us past its high mark) and writes it when it can.
        self.tx_clear = False
        rest = []
        for frame in out:
            if sent >= PyBytes_GET_SIZE(frame):
                sent -= PyBytes_GET_SIZE(frame)
            elif sent:
                rest.append(memoryview(frame)[sent:])
                sent = 0
            else:
                rest.append(frame)
        if len(rest) == 1:
            self.transport.write(rest[0])
        else:
            self.transport.writelines(rest)
        return 1

    @property
    def buffered_amount(self):
        """Bytes queued for this client and not yet handed to the kernel."""
        if self.transport is None or self.state == ST_CLOSED:
            return self.out_bytes
        return self.out_bytes + self.transport.get_write_buffer_size()

    @property
    def read_buffer_size(self):
        """Bytes of read/reassembly buffer this connection holds (0 when idle)."""
        return 0 if self.parser is None else self.parser.allocated

    # -- WSProtocol hooks: the I/O ---------------------------------------------------------

    cdef Py_ssize_t _transport_buffered(self) except -1:
        cdef Py_ssize_t n
        if self.tx_clear:
            return 0        # only our flushes write to the transport, and the last one left nothing in it
        n = self.transport.get_write_buffer_size()
        self.tx_clear = n == 0
        return n

    cdef int _output_ready(self) except -1:
        if self.in_read:
            self.write_after_read = True     # _read writes it when the read is handled
            return 0
        return self.hub.resources.mark_dirty(self)

    cdef int _flush_now(self) except -1:
        try:
            self._flush()
        except Exception:
            _log.exception("websocket %s: write failed", self.key)
        return 0

    cdef double _now(self) except? -1.0:
        return self.hub.loop.time()

    cdef int _on_abort(self) except -1:
        self.transport.abort()
        return 0

    cdef int _on_closing(self) except -1:
        if self.reading_held:
            # The endpoint's hold ends with the open state: the peer's Close
            # (or its answer to ours) must be read.
            self._set_reading()
        return self.hub.dispatcher.closing(self)

    cdef int _timer_armed(self) except -1:
        return self.hub.resources.want_sweep()

    cdef object _peer(self):
        return self.transport.get_extra_info("peername")


cdef bytes _frame(object value, object json_dumps):
    """The one server frame for a message value: ``str`` as text, bytes-like
    as binary, ``dict``/``list`` as JSON text made by ``json_dumps``.
    TypeError for anything else; what ``json_dumps`` raises for a value it
    cannot encode."""
    cdef object t = type(value)
    if t is str or t is bytes or t is bytearray or t is memoryview:
        return build_message_c(value, NULL)
    if t is dict or t is list or isinstance(value, (dict, list)):
        text = json_dumps(value)
        if type(text) is not str:
            raise TypeError(f"the JSON encoder returned {type(text).__name__}, not str")
        return build_message_c(text, NULL)
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return build_message_c(value, NULL)
    raise TypeError(f"cannot send a {t.__name__}: send str, bytes, dict or list")


def message_frame(value, json_dumps):
    """The server frame for ``value`` as handlers' sends and return values
    make it (``str`` text, bytes-like binary, ``dict``/``list`` JSON text
    from ``json_dumps``); TypeError for anything else, and what
    ``json_dumps`` raises for a value it cannot encode."""
    return _frame(value, json_dumps)


class BufferedConnection(Connection, asyncio.BufferedProtocol):
    """The protocol the server installs: the compiled Connection, declared an
    ``asyncio.BufferedProtocol`` so that asyncio's transports, which check
    the type, read through ``get_buffer()``/``buffer_updated()`` as uvloop's
    do (uvloop only checks that the methods exist). No ``__dict__``.

    ``data_received`` is None: both loops' transports (plain and TLS) read a
    BufferedProtocol through ``get_buffer()``/``buffer_updated()`` only, and
    uvloop keeps a bound method of ``protocol.data_received`` per transport
    (64 bytes per idle connection) unless the attribute is None."""

    __slots__ = ()
    data_received = None


def start_task(loop, coro, context):
    """A Task running ``coro`` in ``context`` (a ``contextvars.Context``
    nothing has entered), started eagerly where asyncio can (Python >= 3.12:
    the first step runs inside this call, with the Task current; if the
    coroutine finishes there, the Task is returned done)."""
    return _start_task(loop, coro, context)


cdef enum:
    IB_IDLE = 0          # no receive waits
    IB_WAITING = 1       # a receive waits (its Task is suspended on the inbox)
    IB_READY = 2         # a message was handed to the waiting receive (value), its Task is being woken
    IB_FAILED = 3        # the connection closed under the waiting receive (value: the WebSocketDisconnect)
    IB_CANCELLED = 4     # the waiting receive was cancelled


@cython.final
cdef class Inbox:
    """The receive-loop API's end of a connection: what its handler has not
    received yet, and what a waiting ``receive_*()`` awaits.

    Created by the endpoint for each connection (``Inbox(conn, high, low)``
    sets ``conn.inbox``); from then on the connection's messages come here
    instead of to its message handler, whenever no job of the connection's
    own handlers (an async connect handler) is in the way. A message finds a
    waiting receive and wakes its Task, or else is queued; with ``high``
    messages queued the connection stops reading its socket until the
    handler has taken them down to ``low``. Awaiting the inbox takes the
    oldest queued message without suspending, or else suspends the awaiting
    Task on the inbox itself: it is Future-compatible for asyncio's Task
    (``_asyncio_future_blocking``, ``add_done_callback``, ``result``,
    ``cancel``, ...) and re-armed for every receive, so a message costs no
    Future. One receive waits at a time (another gets ``RuntimeError``); a
    cancelled receive loses nothing (a message that was already on its way
    to it is queued back first); :meth:`disconnect` wakes a waiting receive
    with the exception, which every receive raises once the queue is empty.
    """

    def __init__(self, Connection conn not None, Py_ssize_t high, Py_ssize_t low):
        self.conn = conn
        self.loop = conn.hub.loop
        self.high = high
        self.low = low
        conn.inbox = self

    # -- fed by the connection ---------------------------------------------------------

    cdef int put(self, object msg) except -1:
        if self.finished:
            return 0
        if self.state == IB_WAITING:
            if self.callback is not None and self.more_callbacks is None:
                if self.conn.parsing:
                    # Within a read: the Task is woken once the read's
                    # messages are all in (the rest queue behind this one),
                    # so a pipelined batch costs one wake-up.
                    self.state = IB_READY
                    self.value = msg
                    self.deferred = True
                    return 0
                if _current_task(self.loop) is None:
                    self.state = IB_READY
                    self.value = msg
                    return self._wake_inline()
            return self._resolve(IB_READY, msg)
        if self.messages is None:
            self.messages = _deque()
        elif len(self.messages) >= self.high and self.conn.state != ST_OPEN:
            # The socket is read again while closing (for the peer's Close):
            # what a client sends after our Close is dropped past the bound.
            return 0
        self.messages.append(msg)
        if len(self.messages) >= self.high and not self.held:
            # Stop reading until the handler has taken the queue down to
            # `low` (what one read already brought still arrives).
            self._hold(True)
        return 0

    cdef int _hold(self, bint held) except -1:
        cdef Connection conn = self.conn
        self.held = held
        conn.reading_held = held
        return conn._set_reading()

    def put_message(self, msg):
        """Deliver ``msg`` (what the connection does itself when nothing is
        in the way; the endpoint's message handler calls this otherwise)."""
        self.put(msg)

    def disconnect(self, exc not None):
        """The connection closed: ``exc`` is what receives raise from now on
        (once the queue is empty); a waiting receive gets it now."""
        self.gone = exc
        if self.state == IB_WAITING:
            self._resolve(IB_FAILED, exc)

    def finish(self):
        """The handler returned: drop what is queued and what comes, and let
        the connection read again."""
        self.finished = True
        self.messages = None
        if self.held:
            self._hold(False)

    @property
    def pending(self):
        """How many messages are queued."""
        return 0 if self.messages is None else len(self.messages)

    cdef object _take(self):
        msg = self.messages.popleft()
        if self.held and len(self.messages) <= self.low:
            self._hold(False)
        return msg

    cdef int wake_deferred(self) except -1:
        self.deferred = False
        if self.callback is None or self.state != IB_READY:
            return 0
        if _current_task(self.loop) is None:
            return self._wake_inline()
        return self._resolve(IB_READY, self.value)

    cdef int _wake_inline(self) except -1:
        # The waiting Task's step runs now, inside the message event (no
        # task is running: the connection's read callback), as a sync
        # handler would, instead of on the next loop iteration through
        # call_soon: the message costs no Handle and no iteration. As in any
        # step of the handler's Task, a close() it asks for goes at once
        # (the parse goes on as after a Close of ours between two reads).
        cdef object ctx = self.cb_context
        cdef object cb = self.callback
        try:
            PyContext_Enter(ctx)
        except RuntimeError:  # the context is in use (not the Task's own): wake it the usual way
            return self._resolve(IB_READY, self.value)
        self.callback = None
        self.cb_context = None
        try:
            cb(self)
        finally:
            PyContext_Exit(ctx)
        return 0

    cdef int _resolve(self, int state, object value) except -1:
        self.state = state
        self.value = value
        cb = self.callback
        if cb is not None:
            self.callback = None
            self.loop.call_soon(cb, self, context=self.cb_context)
            self.cb_context = None
        if self.more_callbacks is not None:
            more, self.more_callbacks = self.more_callbacks, None
            for fn, ctx in more:
                self.loop.call_soon(fn, self, context=ctx)
        return 0

    # -- awaited by the handler ----------------------------------------------------------

    def __await__(self):
        if self.messages:
            return self._take()
        if self.gone is not None:
            raise self.gone
        if self.state != IB_IDLE:
            raise RuntimeError("another coroutine is already waiting for the next message of this websocket")
        self.state = IB_WAITING
        self._asyncio_future_blocking = True
        try:
            yield self
        except BaseException:
            # Thrown in by the Task: the disconnect or a cancellation (a
            # message already handed over goes back to the queue's front).
            if self.state == IB_READY:
                if self.messages is None:
                    self.messages = _deque()
                self.messages.appendleft(self.value)
            self.state = IB_IDLE
            self.value = None
            raise
        if self.state != IB_READY:  # woken without a message: not by a Task
            self.state = IB_IDLE
            self.value = None
            raise RuntimeError("the websocket inbox was resumed before a message came")
        msg = self.value
        self.state = IB_IDLE
        self.value = None
        return msg

    # -- the Future protocol asyncio's Task uses -------------------------------------------------------

    def get_loop(self):
        return self.loop

    def done(self):
        return self.state > IB_WAITING

    def cancelled(self):
        return self.state == IB_CANCELLED

    def result(self):
        if self.state == IB_READY:
            return self.value
        if self.state == IB_FAILED:
            raise self.value
        if self.state == IB_CANCELLED:
            raise _CancelledError() if self.value is None else _CancelledError(self.value)
        raise _InvalidStateError("no message yet")

    def exception(self):
        if self.state == IB_READY:
            return None
        if self.state == IB_FAILED:
            return self.value
        if self.state == IB_CANCELLED:
            raise _CancelledError() if self.value is None else _CancelledError(self.value)
        raise _InvalidStateError("no message yet")

    def cancel(self, msg=None):
        if self.state != IB_WAITING:
            return False
        self._resolve(IB_CANCELLED, msg)
        return True

    def add_done_callback(self, fn, *, context=None):
        if context is None:
            context = _copy_context()
        if self.state > IB_WAITING:
            self.loop.call_soon(fn, self, context=context)
        elif self.callback is None:
            self.callback = fn
            self.cb_context = context
        else:
            if self.more_callbacks is None:
                self.more_callbacks = []
            self.more_callbacks.append((fn, context))

    def remove_done_callback(self, fn):
        cdef Py_ssize_t removed = 0
        if self.callback is not None and self.callback == fn:
            self.callback = self.cb_context = None
            removed += 1
        if self.more_callbacks:
            kept = [(f, c) for f, c in self.more_callbacks if f != fn]
            removed += len(self.more_callbacks) - len(kept)
            self.more_callbacks = kept or None
        return removed

    def __repr__(self):
        return f"<Inbox of {self.conn.key} queued={self.pending} state={self.state}>"
