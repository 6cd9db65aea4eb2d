# WebSocket protocol state machine, sans-I/O (contract: protocol.pxd).
#
# No event loop, no transport: bytes and `now` in, frames to send, events and
# the next deadline out, in the manner of websockets' Protocol. The compiled
# Connection (connection.pyx) subclasses WSProtocol and supplies the I/O
# through the hooks at the end of the class; without it, events are recorded
# and frames are taken with data_to_send().
#
# Write path: every byte queued, ours or the transport's, counts against
# max_backpressure: data over it follows backpressure_policy, a Pong over it
# closes with 1008. While the client keeps up (nothing of ours waits in the
# transport) every Ping gets its Pong (Autobahn 2.10); once it is behind, one
# Pong per batch, for the latest payload (RFC 6455 §5.5.3), and none while
# the transport's write buffer is over its high mark (the glue pauses
# reading then): the latest Ping is answered when writing resumes.
#
# Close handshake (RFC 6455 §5.5.1, §7): a Close from the peer is echoed with
# its code and TCP is closed (the server closes first, §7.1.1); a Close we
# send waits up to close_timeout for the peer's answer, then TCP is aborted.
# A protocol error sends Close with the codec's code (1002, 1007, 1009) and
# closes. All three go through one transition, _start_closing.

cimport cython
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdint cimport uint8_t

from robyn_fast._core.codec cimport FrameParser, Message, MessageSink, build_frame_c, OPC_CLOSE, OPC_PING, OPC_PONG
from robyn_fast._core.metrics cimport count_close, current_counters

import os

from robyn_fast._core.codec import build_close
from robyn_fast.exceptions import ProtocolError
from robyn_fast.logs import get_logger

cdef object _log = get_logger("robyn_fast.websocket")
cdef object _urandom = os.urandom


cdef str _truncate_reason(str reason):
    """A close reason that fits a Close frame (123 bytes of UTF-8)."""
    cdef bytes raw = reason.encode("utf-8")
    if len(raw) <= 123:
        return reason
    return raw[:123].decode("utf-8", "ignore")


@cython.final
cdef class Settings:
    """The settings of one WebSocket endpoint, typed, made once from its
    :class:`~robyn_fast.config.Config` (:meth:`from_config`) and shared by
    its hubs and connections."""

    @staticmethod
    def from_config(config):
        """Settings from a :class:`~robyn_fast.config.Config` (validated there)."""
        cdef Settings s = Settings.__new__(Settings)
        s.max_message_size = config.max_message_size
        s.close_timeout = config.close_timeout
        s.ping_interval = config.ping_interval if config.ping_interval is not None else 0.0
        s.ping_timeout = config.ping_timeout if config.ping_timeout is not None else 0.0
        s.max_backpressure = config.max_backpressure
        s.drop_policy = config.backpressure_policy == "drop"
        s.close_on_error = config.close_on_handler_error
        s.high_water = config.read_high_water
        s.low_water = config.read_low_water
        s.compression = config.compression
        s.compress_threshold = config.compression_threshold
        s.compress_level = config.compression_level
        s.compress_mem_level = config.compression_mem_level
        # One sweep per loop checks every deadline: often enough for a close
        # timeout to fire at most a quarter late, and for keepalive.
        cdef double tick = s.close_timeout / 4.0
        if s.ping_interval > 0 and s.ping_interval / 4.0 < tick:
            tick = s.ping_interval / 4.0
        s.sweep_tick = min(max(tick, 0.02), 5.0)
        return s


cdef class WSProtocol(MessageSink):
    """The protocol rules of one server-side WebSocket connection (RFC 6455),
    without I/O.

    Feed it what the client sent with :meth:`receive_data` and the time with
    :meth:`tick`; take the frames to write with :meth:`data_to_send` (a final
    ``b""`` means: close the TCP connection now) and what happened with
    :meth:`events_received`: ``("message", data)``, ``("ping", payload)``,
    ``("pong", payload)``, ``("close", code, reason)`` (a Close frame arrived),
    ``("abort",)`` (the close timeout passed: drop TCP).
    """

    def __cinit__(self):
        self.state = ST_OPEN
        self.close_reason = ""
        self.pong_slot = -1
        self.m = current_counters()

    def __init__(self, Settings settings not None, str key not None="ws", double now=0.0):
        self._init_protocol(settings, key)
        self.events = []
        self.clock = now
        self.opened(now)

    cdef int _init_protocol(self, Settings settings, str key) except -1:
        self.settings = settings
        self.key = key
        return 0

    cdef FrameParser _new_parser(self):
        # Made when the first byte arrives: a connection that has sent
        # nothing yet holds no parser (~250 bytes). After connection_lost it
        # is made released, so what a transport still reads is ignored.
        cdef FrameParser p = FrameParser(self.settings.max_message_size)
        p.set_sink(self)
        self.parser = p
        if self.state == ST_CLOSED:
            p.release()
        return p

    cdef int opened(self, double now) except -1:
        if self.settings.ping_interval > 0:
            self.next_ping = now + self.settings.ping_interval
            self._timer_armed()
        return 0

    # -- loop-free API (tests, tools) -------------------------------------------------

    def receive_data(self, data, double now=-1.0):
        """Parse ``data`` (bytes the client sent); ``now`` (loop time) if given."""
        cdef const uint8_t[:] view = memoryview(data).cast("B") if len(data) else None
        if now >= 0:
            self.clock = now
        if self.state == ST_CLOSED:
            return
        if self.parser is None:
            self._new_parser()
        try:
            if view is not None:
                self.parser.append_input(&view[0], <size_t>view.shape[0])
            self.parser.parse(None)
        except ProtocolError as exc:
            self._fail(exc.close_code, exc.reason)

    def send_frame_bytes(self, bytes frame not None):
        """Queue a server data frame (from ``message_frame``). True if it was
        queued; False if refused (not open, or over max_backpressure)."""
        return self.send_frame(frame) == 1

    def close(self, int code=1000, str reason not None=""):
        """Start the closing handshake (RFC 6455 §7.1.2): queue a Close frame
        with ``code`` and ``reason``. False if already closing."""
        build_close(code, reason)
        if self.state != ST_OPEN:
            return False
        self._do_close(code, reason)
        return True

    def tick(self, double now):
        """Run the deadlines due at ``now``; returns the next deadline (0: none)."""
        self.clock = now
        return self.tick_c(now)

    def data_to_send(self):
        """The frames to write, in order, as one batch; ``b""`` last when the
        TCP connection must be closed after them."""
        cdef list out = self.take_output()
        cdef list result = out if out is not None else []
        if self.close_after_flush and self.state != ST_CLOSED:
            self.close_after_flush = False
            result.append(b"")
        return result

    def events_received(self):
        """What happened since the last call, in order."""
        cdef list events = self.events
        self.events = []
        return events

    def set_transport_buffered(self, Py_ssize_t nbytes):
        """How many of our bytes the (imaginary) transport still holds unsent."""
        self.transport_buffered = <size_t>nbytes

    def pause_writing(self):
        self.set_writing_paused(True)

    def resume_writing(self):
        self.set_writing_paused(False)

    def connection_lost(self, exc=None):
        """The TCP connection is gone."""
        self.connection_lost_c()

    @property
    def next_deadline(self):
        """The earliest deadline set (loop time), or 0.0."""
        cdef double d = 0.0
        for t in (self.next_ping, self.pong_deadline, self.close_deadline):
            if t > 0 and (d == 0 or t < d):
                d = t
        return d

    @property
    def buffered_amount(self):
        """Bytes queued and not yet taken, plus what the transport holds."""
        if self.state == ST_CLOSED:
            return self.out_bytes
        return self.out_bytes + <size_t>self._transport_buffered()

    # -- receiving (MessageSink) ------------------------------------------------------

    cdef int on_data(self, int opcode, object data, int rsv) except -1:
        self.m.messages_in += 1
        return self._on_message(opcode, data)

    cdef int on_control(self, Message m) except -1:
        cdef int op = m.opcode
        if op == OPC_PING:
            self.m.pings_received += 1
            if self.events is not None:
                self._record(("ping", m.data))
            if self.state == ST_OPEN:
                if self.writing_paused:
                    self.pending_pong = m.data      # only the latest Ping needs an answer (§5.5.3)
                else:
                    self._queue_pong(m.data)
        elif op == OPC_PONG:
            self.m.pongs_received += 1
            if self.events is not None:
                self._record(("pong", m.data))
            if self.ping_payload is not None and m.data == self.ping_payload:
                self.ping_payload = None
                self.pong_deadline = 0.0
                if self.settings.ping_interval > 0 and self.state == ST_OPEN:
                    self.next_ping = self._now() + self.settings.ping_interval
        elif op == OPC_CLOSE:
            if self.events is not None:
                self._record(("close", m.close_code, m.close_reason))
            self._on_close_frame(m)
        return 0

    # -- closing (RFC 6455 §7) --------------------------------------------------------

    cdef int _on_close_frame(self, Message m) except -1:
        self.close_received = True
        # Echo the code (§5.5.1); an empty Close answers an empty one. Then the
        # server closes TCP first (§7.1.1).
        return self._start_closing(m.close_code if m.close_code is not None else 1005, m.close_reason,
                                   build_close(m.close_code), True)

    cdef int _fail(self, int code, str reason) except -1:
        """Fail the connection (§7.1.7): Close with `code`, then close TCP."""
        if self.state == ST_CLOSED:
            return 0
        _log.info("websocket %s: failing connection with %d: %s", self.key, code, reason)
        return self._start_closing(code, reason, build_close(code, _truncate_reason(reason)), True)

    cdef int _do_close(self, int code, str reason) except -1:
        if self.state != ST_OPEN:
            return 0
        return self._start_closing(code, reason, build_close(code, reason), False)

    cdef int _start_closing(self, object code, str reason, bytes frame, bint close_tcp) except -1:
        if self.state == ST_CLOSED:
            return 0
        if not self.close_sent:
            self.close_code = code
            self.close_reason = reason
            self._queue_control(frame)
            self.close_sent = True
        self.state = ST_CLOSING
        self.next_ping = self.pong_deadline = 0.0
        self._on_closing()
        if close_tcp:
            self.close_after_flush = True
            if not self.in_dirty:
                self._start_output()
        if self.close_deadline == 0 and self.state != ST_CLOSED:
            self.close_deadline = self._now() + self.settings.close_timeout
            self._timer_armed()
        return 0

    cdef int connection_lost_c(self) except -1:
        if self.state == ST_CLOSED:
            return 0
        self.state = ST_CLOSED
        if self.close_code is None:
            self.close_code = 1006      # closed without a Close frame (RFC 6455 §7.1.5)
        count_close(self.m, self.close_code)
        self.next_ping = self.pong_deadline = self.close_deadline = 0.0
        self.out = None
        self.out_bytes = 0
        self.pong_slot = -1
        self.pending_pong = None
        return 0

    # -- deadlines ----------------------------------------------------------------------

    cdef double tick_c(self, double now) except -1.0:
        cdef Settings s = self.settings
        if self.state == ST_CLOSED:
            return 0.0
        if self.close_deadline > 0:
            if now < self.close_deadline:
                return self.close_deadline
            self.close_deadline = 0.0
            _log.info("websocket %s: no closing handshake within %.1fs; aborting", self.key, s.close_timeout)
            self._on_abort()
            return 0.0
        if self.state != ST_OPEN or s.ping_interval <= 0:
            return 0.0
        if self.pong_deadline > 0:
            if now < self.pong_deadline:
                return self.pong_deadline
            if self.stalled_since_ping and self._drained() > self.ping_drained:
                # Its Pong may wait unread behind input we stopped reading
                # while our writes were backed up (it may be flowing again
                # now, with the Pong still far behind); but the client did
                # take bytes since the Ping: give it time.
                self.ping_drained = self._drained()
                self.stalled_since_ping = self.writing_paused
                self.pong_deadline = now + s.ping_timeout
                return self.pong_deadline
            self.pong_deadline = 0.0
            _log.info("websocket %s: no pong within %.1fs; closing", self.key, s.ping_timeout)
            self._do_close(1011, "keepalive ping timeout")
            return self.close_deadline
        if self.next_ping > 0 and now >= self.next_ping:
            # Unpredictable, so that only a client that read our Ping can answer it.
            self.ping_payload = _urandom(8)
            self._queue_control(build_frame_c(OPC_PING, <const uint8_t *><char *>self.ping_payload,
                                              8, True, 0, NULL))
            self.m.pings_sent += 1
            self.ping_drained = self._drained()
            self.stalled_since_ping = self.writing_paused
            self.next_ping = 0.0
            if s.ping_timeout > 0:
                self.pong_deadline = now + s.ping_timeout
                return self.pong_deadline
            self.next_ping = now + s.ping_interval
        return self.next_ping

    # -- sending ------------------------------------------------------------------------

    cdef int send_frame(self, bytes frame) except -1:
        if not self._admit(<size_t>PyBytes_GET_SIZE(frame)):
            return 0
        if self.out is None:
            self.out = [frame]
        else:
            self.out.append(frame)
        return 1

    cdef int send_frame_parts(self, bytes head, bytes payload) except -1:
        if not self._admit(<size_t>PyBytes_GET_SIZE(head) + <size_t>PyBytes_GET_SIZE(payload)):
            return 0
        if self.out is None:
            self.out = [head, payload]
        else:
            self.out.append(head)
            self.out.append(payload)
        return 1

    cdef int _admit(self, size_t size) except -1:
        """1 if a data frame of `size` bytes may be queued now (counted as
        queued), 0 if it is refused (not open, dropped, or the connection
        closes 1008)."""
        if self.state != ST_OPEN:
            return 0
        if not self.in_dirty:
            self._start_output()
            if self.state != ST_OPEN:
                return 0        # the transport reported the connection lost just now
        if self._over_budget(size):
            if self.settings.drop_policy:
                self.dropped += 1
                self.m.backpressure_drops += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    _log.warning("websocket %s: client reads too slowly; %d message(s) dropped "
                                 "(write buffer over max_backpressure=%d)",
                                 self.key, self.dropped, self.settings.max_backpressure)
                return 0
            return self._too_slow(size)
        self.out_bytes += size
        self.m.messages_out += 1
        return 1

    cdef bint _over_budget(self, size_t size):
        # The bound is on backlog: one message larger than the limit still goes
        # out to a client that has read everything before it.
        cdef size_t buffered = self.out_bytes + self.tbuf
        cdef size_t limit = self.settings.max_backpressure
        return buffered != 0 and (buffered > limit or size > limit - buffered)

    cdef int _too_slow(self, size_t size) except -1:
        """Close with 1008: queueing `size` more bytes would pass
        max_backpressure. Logged once (the connection is closing afterwards)."""
        if self.state != ST_OPEN:
            return 0
        _log.warning("websocket %s (peer %s): client reads too slowly: %d bytes queued for it, %d more would pass "
                     "max_backpressure=%d; closing with 1008",
                     self.key, self._peer(), self.out_bytes + self.tbuf, size, self.settings.max_backpressure)
        self.m.backpressure_closes += 1
        self._do_close(1008, "client too slow")
        return 0

    cdef int _queue_pong(self, bytes payload) except -1:
        cdef bytes frame
        cdef size_t size, old = 0
        if self.state != ST_OPEN:
            return 0
        if not self.in_dirty:
            self._start_output()
            if self.state != ST_OPEN:
                return 0        # the transport reported the connection lost just now
        frame = build_frame_c(OPC_PONG, <const uint8_t *><char *>payload, <size_t>PyBytes_GET_SIZE(payload),
                              True, 0, NULL)
        size = <size_t>PyBytes_GET_SIZE(frame)
        if self.pong_slot >= 0 and self.tbuf != 0:
            # The client has not read what we sent before, and a Ping earlier in
            # this batch is not answered yet: the answer to this one replaces
            # it, in its place (§5.5.3). A client that keeps up gets every Pong.
            old = <size_t>PyBytes_GET_SIZE(self.out[self.pong_slot])
            self.out_bytes -= old
        if self._over_budget(size):
            self.out_bytes += old
            return self._too_slow(size)
        if old:
            self.out[self.pong_slot] = frame    # replaces a Pong not yet sent: not another one
        elif self.out is None:
            self.out = [frame]
            self.pong_slot = 0
        else:
            self.pong_slot = len(self.out)
            self.out.append(frame)
        if not old:
            self.m.pongs_sent += 1
        self.out_bytes += size
        return 0

    cdef int _queue_control(self, bytes frame) except -1:
        if self.state == ST_CLOSED:
            return 0
        if not self.in_dirty:
            self._start_output()
        if self.out is None:
            self.out = [frame]
        else:
            self.out.append(frame)
        self.out_bytes += <size_t>PyBytes_GET_SIZE(frame)
        return 0

    cdef int _start_output(self) except -1:
        """The first output of this batch: note what the transport still
        buffers (it cannot grow before the batch is written, so later sends
        in the batch need not ask again) and tell the glue."""
        self.tbuf = <size_t>self._transport_buffered()      # may raise: then nothing changed
        self.in_dirty = True
        return self._output_ready()

    cdef list take_output(self):
        cdef list out = self.out
        self.in_dirty = False
        self.pong_slot = -1
        if self.state == ST_CLOSED:
            return None
        if out:
            self.m.bytes_out += self.out_bytes
            self.written += self.out_bytes
            self.out = None
            self.out_bytes = 0
        return out

    cdef int set_writing_paused(self, bint paused) except -1:
        cdef bytes payload
        self.writing_paused = paused
        if paused:
            self.stalled_since_ping = True
        else:
            payload = self.pending_pong
            if payload is not None:
                self.pending_pong = None
                self._queue_pong(payload)
        return 0

    cdef unsigned long long _drained(self) except? 0:
        """Bytes the client has taken from us so far (written to the socket)."""
        return self.written - <unsigned long long>self._transport_buffered()

    # -- hooks (overridden by the I/O glue) ----------------------------------------------

    cdef int _record(self, tuple event) except -1:
        if self.events is not None:
            self.events.append(event)
        return 0

    cdef int _on_message(self, int opcode, object data) except -1:
        return self._record(("message", data))

    cdef Py_ssize_t _transport_buffered(self) except -1:
        return <Py_ssize_t>self.transport_buffered

    cdef int _output_ready(self) except -1:
        return 0

    cdef double _now(self) except? -1.0:
        return self.clock

    cdef int _on_abort(self) except -1:
        return self._record(("abort",))

    cdef int _on_closing(self) except -1:
        return 0

    cdef int _timer_armed(self) except -1:
        return 0

    cdef object _peer(self):
        return None
