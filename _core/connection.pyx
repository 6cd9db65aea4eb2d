# Compiled WebSocket connection (contract: connection.pxd).
#
# Read path: the transport writes into the FrameParser's own buffer
# (get_buffer/buffer_updated); every complete frame of a read is parsed in one
# pass. Control frames are answered here; data messages go to the endpoint's
# handlers, one at a time and in arrival order. Everything written while one
# read is processed (handler replies, pongs, the Close) leaves in one write.
#
# Close handshake (RFC 6455 §5.5.1, §7): a Close from the peer is echoed with
# its code and TCP is closed (the server closes first, §7.1.1); a Close we send
# waits up to close_timeout for the peer's answer, then the transport is
# aborted. A protocol error sends Close with the codec's code (1002, 1007,
# 1009) and closes.

cimport cython
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdint cimport uint8_t

from robyn_fast._core.codec cimport (
    FrameParser, Message, build_frame_c, build_message_c,
    OPC_TEXT, OPC_BINARY, OPC_CLOSE, OPC_PING, OPC_PONG,
)

import asyncio
import collections
import json
import logging
import types

from robyn_fast._core.codec import build_close
from robyn_fast.exceptions import ProtocolError

cdef object _log = logging.getLogger("robyn_fast.websocket")
cdef object _deque = collections.deque
cdef object _json_dumps = json.dumps
cdef object _CONNECT = object()           # job marker: run the connect handler
cdef object _CLOSE = object()             # job marker: run the close handler
cdef object _coroutine_type = types.CoroutineType
cdef object _iscoroutine = asyncio.iscoroutine


cdef inline bint _is_coroutine(object value):
    return type(value) is _coroutine_type or (value is not None and _iscoroutine(value))


@cython.final
cdef class Connection:
    """One upgraded WebSocket connection; the transport's protocol after the 101.

    Created by the HTTP layer with the endpoint's handlers and configuration,
    then :meth:`start` is called with the transport and any bytes that arrived
    after the handshake request.
    """

    def __cinit__(self):
        self.state = ST_OPEN
        self.out = []
        self.queue = _deque()
        self.close_reason = ""

    def __init__(self, loop, config, table, str key, on_connect=None, on_message=None, on_close=None):
        mms = config.max_message_size
        self.loop = loop
        self.parser = FrameParser(mms)
        self.table = table
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

    # -- lifecycle ------------------------------------------------------------

    def start(self, transport, bytes initial=b""):
        """Take over ``transport`` (after the 101 was written) and run the
        connect handler; ``initial`` holds bytes read past the handshake."""
        self.transport = transport
        self._schedule_keepalive()
        self._enqueue(_CONNECT)
        if initial and self.state == ST_OPEN:
            self.parser.append_input(<const uint8_t *><char *>initial, <size_t>len(initial))
            self._process()

    def connection_made(self, transport):
        # Not called after set_protocol(); kept so the class is a complete protocol.
        if self.transport is None:
            self.transport = transport

    def get_buffer(self, Py_ssize_t sizehint):
        return self.parser.read_window()

    def buffer_updated(self, Py_ssize_t nbytes):
        self.parser.input_received(<size_t>nbytes)
        self._process()

    def data_received(self, bytes data):
        # Used if a transport does not support buffered protocols.
        self.parser.append_input(<const uint8_t *><char *>data, <size_t>len(data))
        self._process()

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
        self._cancel_timers()
        self.out = []
        self.out_bytes = 0
        if self.table is not None:
            if self.table.get(self.key) is self:
                del self.table[self.key]
        self._enqueue(_CLOSE)

    # -- reading ---------------------------------------------------------------

    cdef int _process(self) except -1:
        cdef list msgs = []
        cdef object err = None
        cdef Message m
        try:
            self.parser.parse(msgs)
        except ProtocolError as exc:
            err = exc
        self.corked = True
        try:
            for m in msgs:
                self._on_frame(m)
            if err is not None:
                self._fail(err.close_code, err.reason)
        finally:
            self.corked = False
            self._flush()
        self.parser.shrink_if_idle()
        return 0

    cdef int _on_frame(self, Message m) except -1:
        cdef int op = m.opcode
        cdef bytes payload
        if op == OPC_TEXT or op == OPC_BINARY:
            self._enqueue(m.data)
        elif op == OPC_PING:
            if self.state == ST_OPEN:
                payload = m.data
                self._write_control(build_frame_c(OPC_PONG, <const uint8_t *><char *>payload,
                                                  <size_t>PyBytes_GET_SIZE(payload), True, 0, NULL))
        elif op == OPC_PONG:
            if self.ping_payload is not None and m.data == self.ping_payload:
                self.ping_payload = None
                if self.pong_timer is not None:
                    self.pong_timer.cancel()
                    self.pong_timer = None
                self._schedule_keepalive()
        elif op == OPC_CLOSE:
            self._on_close_frame(m)
        return 0

    cdef int _on_close_frame(self, Message m) except -1:
        self.close_received = True
        if not self.close_sent:
            self.close_code = m.close_code if m.close_code is not None else 1005
            self.close_reason = m.close_reason
            # Echo the code (RFC 6455 §5.5.1); an empty Close answers an empty one.
            self._write_control(build_close(m.close_code))
            self.close_sent = True
        self.state = ST_CLOSING
        self._cancel_timers()
        self._flush()
        self.transport.close()
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
            self._write_control(build_close(code, _truncate_reason(reason)))
            self.close_sent = True
        self.state = ST_CLOSING
        self._cancel_timers()
        self._flush()
        self.transport.close()
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
        self._write_control(build_close(code, reason))
        self.close_sent = True
        self.state = ST_CLOSING
        self._cancel_timers()
        if not self.corked:
            self._flush()
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

    def abort(self):
        """Drop the TCP connection at once, without a closing handshake."""
        if self.state != ST_CLOSED and self.transport is not None:
            self.transport.abort()

    # -- handlers -------------------------------------------------------------------

    cdef int _enqueue(self, object job) except -1:
        self.queue.append(job)
        if self.busy:
            if (not self.reading_paused and self.state == ST_OPEN
                    and len(self.queue) >= self.high_water):
                self.reading_paused = True
                self.transport.pause_reading()
            return 0
        return self._pump()

    cdef int _pump(self) except -1:
        while self.queue and not self.busy:
            self._run_job(self.queue.popleft())
        if self.reading_paused and len(self.queue) <= self.low_water and self.state == ST_OPEN:
            self.reading_paused = False
            self.transport.resume_reading()
        return 0

    cdef int _run_job(self, object job) except -1:
        cdef object handler
        cdef object result
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
        except Exception as exc:
            self.in_handler = False
            self._handler_error(exc)
            return 0
        if _is_coroutine(result):
            self.busy = True
            self.current_job = job
            task = self.loop.create_task(result)
            task.add_done_callback(self._task_done)
            return 0
        self.in_handler = False
        return self._finish_job(job, result)

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

    # -- writing --------------------------------------------------------------------

    def send(self, data):
        """Queue ``data`` as one message: ``str`` as text, bytes-like as
        binary. Returns False if the connection is not open or the message was
        refused by the backpressure policy."""
        return self.send_value(data) == 1

    def send_frame_bytes(self, bytes frame):
        """Queue a prebuilt server frame (used by broadcasts: one frame object
        for every connection). Returns False if it was not queued."""
        return self.send_frame(frame) == 1

    cdef int send_value(self, object value) except -1:
        """1 if queued, 0 if refused."""
        cdef object t = type(value)
        cdef bytes frame
        if t is str or t is bytes or t is bytearray or t is memoryview:
            frame = build_message_c(value, NULL)
        elif t is dict or t is list or isinstance(value, (dict, list)):
            frame = build_message_c(_json_dumps(value), NULL)
        elif isinstance(value, (str, bytes, bytearray, memoryview)):
            frame = build_message_c(value, NULL)
        else:
            _log.error("websocket %s: cannot send a %s (send str, bytes, dict or list); nothing sent",
                       self.key, t.__name__)
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
        if self.corked:
            self.out.append(frame)
            self.out_bytes += size
        else:
            self.transport.write(frame)
        return 1

    cdef int _write_control(self, bytes frame) except -1:
        if self.corked:
            self.out.append(frame)
            self.out_bytes += <size_t>PyBytes_GET_SIZE(frame)
        elif self.state != ST_CLOSED:
            self.transport.write(frame)
        return 0

    cdef int _flush(self) except -1:
        cdef list out = self.out
        if not out or self.state == ST_CLOSED:
            return 0
        if len(out) == 1:
            self.transport.write(out[0])
        else:
            self.transport.writelines(out)
        self.out = []
        self.out_bytes = 0
        return 0

    @property
    def buffered_amount(self):
        """Bytes queued for this client and not yet handed to the kernel."""
        if self.transport is None or self.state == ST_CLOSED:
            return self.out_bytes
        return self.out_bytes + self.transport.get_write_buffer_size()

    # -- keepalive ----------------------------------------------------------------------

    cdef void _schedule_keepalive(self):
        if self.ping_interval > 0 and self.state == ST_OPEN:
            if self.ping_timer is not None:
                self.ping_timer.cancel()
            self.ping_timer = self.loop.call_later(self.ping_interval, self._keepalive_ping)

    def _keepalive_ping(self):
        self.ping_timer = None
        if self.state != ST_OPEN:
            return
        self.ping_seq += 1
        self.ping_payload = b"ka" + self.ping_seq.to_bytes(4, "big")
        self._write_control(build_frame_c(OPC_PING, <const uint8_t *><char *>self.ping_payload,
                                          6, True, 0, NULL))
        if self.ping_timeout > 0:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_expired)

    def _keepalive_expired(self):
        self.pong_timer = None
        if self.state == ST_OPEN:
            _log.info("websocket %s: no pong within %.1fs; closing", self.key, self.ping_timeout)
            self._do_close(1011, "keepalive ping timeout")

    cdef void _cancel_timers(self):
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        if self.state == ST_CLOSED and self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None


cdef str _truncate_reason(str reason):
    """A close reason that fits a Close frame (123 bytes of UTF-8)."""
    cdef bytes raw = reason.encode("utf-8")
    if len(raw) <= 123:
        return reason
    return raw[:123].decode("utf-8", "ignore")
