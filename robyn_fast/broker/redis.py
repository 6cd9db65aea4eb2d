"""Nodes on several hosts joined by Redis PUB/SUB: the same :class:`Broker`
as the local bus, so broadcasts, rooms and ``send_to`` reach every
connection of every server that names the same Redis and prefix.

Every worker process is a node with two connections to Redis (a thin
``asyncio.Protocol`` with ``hiredis``' C reply parser):

- a **subscriber** on ``<prefix>:all`` (broadcasts and room broadcasts) and
  ``<prefix>:n:<node tag>`` (``send_to`` an id of this node);
- a **publisher**: every message published during one loop iteration is
  corked, consecutive messages to one channel are joined into one PUBLISH
  payload (the bus format of :mod:`robyn_fast.broker.wire` concatenates), and
  all of them leave in one write. A receiving node drops its own echo.

Redis delivers the messages of one publisher connection to a subscriber in
the order they were published, so what one node sends another arrives in
order, as on the local bus. Delivery is at-most-once.

Faults: Redis down or unreachable (at start-up or later), a connection
reset, a Redis that stops answering (a PING every second; no answer in 3 s
drops the link) or disconnects a slow subscriber: local delivery goes on;
messages for other nodes go into an outage buffer (``outage_limit`` bytes),
then are dropped and counted; one warning when the outage starts and one
line when it ends, with the counts. Each connection reconnects with a
backoff from 0.1 s doubling to 1 s, logs in again (AUTH, SELECT) and
resubscribes, so delivery resumes within about a second of Redis coming
back. Messages other nodes published during the outage are lost (PUB/SUB
keeps nothing). A message on our channels that is not ours (malformed,
foreign) is counted and logged (the first, then at most one line per 10 s)
and ignored.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, Callable

from ..logs import get_logger
from . import Broker, Deliver, not_started
from .resp import RedisAddress, command, parse_url
from .wire import TO, Decoder, Key, WireError, encode

__all__ = ["RedisBroker", "DEFAULT_OUTAGE_LIMIT", "DEFAULT_BUFFER_LIMIT", "hiredis_available"]

log = get_logger("robyn_fast.broker")

DEFAULT_OUTAGE_LIMIT = 1024 * 1024  # bytes kept for other nodes while Redis is away
DEFAULT_BUFFER_LIMIT = 16 * 1024 * 1024  # bytes queued to a connected Redis that reads slowly
PING_INTERVAL = 1.0
PING_TIMEOUT = 3.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0
CONNECT_TIMEOUT = 3.0
MAX_PUBLISH = 512 * 1024  # bytes of joined messages in one PUBLISH
MALFORMED_LOG_EVERY = 10.0


def hiredis_available() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


class _Link(asyncio.Protocol):
    """One connection to Redis: log in, then publish or subscribe."""

    def __init__(self, broker: RedisBroker, role: str, lost: asyncio.Future[None]) -> None:
        import hiredis

        self.broker = broker
        self.role = role  # "publisher" or "subscriber"
        self.lost = lost
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.handshake = 0  # replies still expected before the link is ready
        self.ready = False
        self.ping_sent: float | None = None
        self.error: str | None = None
        self.failed = False
        self.connected_at = 0.0
        # Publisher: what each command in flight carried, in order (a PUBLISH's message count, 0 for a PING),
        # so that an error reply counts the messages it lost.
        self.in_flight: collections.deque[int] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are no asyncio.Transport subclasses
        self.connected_at = time.monotonic()
        self.broker.links[self.role] = self
        address = self.broker.address
        first = address.login()
        if self.role == "subscriber":
            first.append(command("SUBSCRIBE", *self.broker.channels))
            self.handshake = len(first) - 1 + len(self.broker.channels)
        else:
            self.handshake = len(first)
        if first:
            self.transport.write(b"".join(first))  # type: ignore[union-attr]
        else:
            self._ready()

    def _ready(self) -> None:
        self.ready = True
        self.broker._link_ready(self)

    def data_received(self, data: bytes) -> None:
        import hiredis

        self.reader.feed(data)
        try:
            while not self.failed:
                reply = self.reader.gets()
                if reply is False:
                    break
                self._reply(reply)
        except hiredis.ProtocolError as exc:
            self.fail(f"not Redis's protocol: {exc}")

    def _reply(self, reply: Any) -> None:
        import hiredis

        self.ping_sent = None  # any reply shows Redis is alive
        if isinstance(reply, hiredis.ReplyError):
            if not self.ready:
                self.fail(f"Redis refused the connection's set-up (AUTH, SELECT, SUBSCRIBE): {reply}")
            else:
                lost = self.in_flight.popleft() if self.role == "publisher" and self.in_flight else 0
                self.broker._redis_error(self, str(reply), lost)
            return
        if not self.ready:
            self.handshake -= 1
            if self.handshake <= 0:
                self._ready()
            return
        if self.role == "subscriber":
            if isinstance(reply, list) and reply and reply[0] == b"message":
                self.broker._on_payload(reply[2])
        elif self.in_flight and self.in_flight.popleft():
            self.broker._published_ok()

    def fail(self, why: str) -> None:
        if self.error is None:  # the first reason, not what follows from it
            self.error = why
        self.failed = True
        self.ready = False  # nothing more is written to it (a transport accepts writes after abort())
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None and exc is not None:
            self.error = str(exc) or type(exc).__name__
        if not self.lost.done():
            self.lost.set_result(None)
        self.broker._link_lost(self)

    def ping(self, now: float) -> None:
        if self.transport is None or self.failed:
            return
        if not self.ready:
            if now - self.connected_at > PING_TIMEOUT:  # a peer that accepts and never answers the set-up
                self.fail(f"no answer to the connection's set-up within {PING_TIMEOUT:g} s")
            return
        if self.ping_sent is not None:
            if now - self.ping_sent > PING_TIMEOUT:
                self.fail(f"no answer to PING within {PING_TIMEOUT:g} s")
            return
        self.ping_sent = now
        if self.role == "publisher":
            self.in_flight.append(0)
        self.transport.write(command("PING"))


class RedisBroker(Broker):
    """A node on Redis (see the module docstring). ``url``: a broker URL
    (:func:`robyn_fast.broker.resp.parse_url`); ``node``: this node's tag,
    the first 32 bits of its connections' ids, unique among the nodes."""

    def __init__(self, url: str | RedisAddress, node: int, *, outage_limit: int = DEFAULT_OUTAGE_LIMIT,
                 buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        if not hiredis_available():
            raise ImportError("a Redis broker needs hiredis: pip install 'robyn_fast[redis]' (or hiredis)")
        if type(node) is not int or not 0 < node < 1 << 32:
            raise ValueError(f"a node tag is an int in 1..2**32-1, got {node!r}")
        self.address = url if isinstance(url, RedisAddress) else parse_url(url)
        self.node = node
        self.outage_limit = outage_limit
        self.buffer_limit = buffer_limit
        prefix = self.address.prefix
        self.all_channel = f"{prefix}:all".encode()
        self.channels = [self.all_channel, self.node_channel(node)]
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.deliver: Deliver = not_started
        self.links: dict[str, _Link | None] = {"publisher": None, "subscriber": None}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._first_ready: asyncio.Future[None] | None = None
        # Corked for the publisher: [channel, [messages]] runs, in publish order.
        self._pending: list[list[Any]] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._outage: list[tuple[bytes, bytes]] = []  # (channel, message) kept while the publisher is down
        self._outage_bytes = 0
        self._down_since: float | None = None  # monotonic time the current outage started
        self._outage_dropped = 0
        self._outage_sent = 0  # buffered messages sent since the publisher came back
        self._refused = 0  # messages Redis refused in the current episode
        self._slow_dropped = 0
        self._last_malformed_log = 0.0
        self._malformed_unlogged = 0
        self.connected = False
        self._connected_event = asyncio.Event()
        self._down_reason: str | None = None
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.malformed = 0
        self.outages = 0
        self.publishes = 0  # PUBLISH commands sent (several messages may share one)

    def node_channel(self, node: int) -> bytes:
        return f"{self.address.prefix}:n:{node:08x}".encode()

    # -- connections -----------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Start connecting; wait up to a second for Redis, then go on
        either way (an unreachable Redis never stops a server from serving)."""
        self.loop = loop
        self.deliver = deliver
        self._first_ready = loop.create_future()
        self._down_since = time.monotonic()
        self._down_reason = "not connected yet"
        for role in ("publisher", "subscriber"):
            self._spawn(self._keep_connected(role))
        self._spawn(self._pinger())
        try:
            await asyncio.wait_for(asyncio.shield(self._first_ready), 1.0)
        except asyncio.TimeoutError:
            log.warning("broker: Redis at %s is not reachable yet; serving on, messages to other nodes are "
                        "buffered (%d bytes at most) then dropped until it is", self.address.url, self.outage_limit)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_connected(self, role: str) -> None:
        backoff = BACKOFF_FIRST
        address = self.address
        while not self._closed:
            lost: asyncio.Future[None] = self.loop.create_future()
            factory: Callable[[], _Link] = lambda: _Link(self, role, lost)  # noqa: E731
            try:
                if address.path is not None:
                    connect = self.loop.create_unix_connection(factory, address.path, ssl=address.tls,
                                                               server_hostname=address.server_hostname)
                else:
                    connect = self.loop.create_connection(factory, address.host or "127.0.0.1", address.port,
                                                          ssl=address.tls, server_hostname=address.server_hostname)
                _, link = await asyncio.wait_for(connect, CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                self._note_down(f"cannot connect to {address.url}: {reason}", reason)
            else:
                await lost
                if link.ready:
                    backoff = BACKOFF_FIRST
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def _pinger(self) -> None:
        while not self._closed:
            await asyncio.sleep(PING_INTERVAL)
            now = time.monotonic()
            for link in list(self.links.values()):
                if link is not None:
                    link.ping(now)

    def _link_ready(self, link: _Link) -> None:
        if link.role == "publisher" and self._outage:
            # What waited goes first, before anything published from now on.
            outage, self._outage, self._outage_bytes = self._outage, [], 0
            self._outage_sent += len(outage)
            for channel, message in outage:
                self._cork(channel, message)
        if all(lk is not None and lk.ready for lk in self.links.values()):
            self._up()

    def _link_lost(self, link: _Link) -> None:
        if self.links.get(link.role) is link:
            self.links[link.role] = None
        if link.role == "publisher":
            self._requeue_pending()
        if not self._closed:
            self._note_down(f"the {link.role} connection to {self.address.url} was lost"
                            + (f" ({link.error})" if link.error else ""), link.error or "lost")

    def _note_down(self, why: str, reason: str) -> None:
        """Log a connection problem: once when an outage starts, then once
        per new ``reason`` while it lasts (whichever connection hit it)."""
        if self.connected:
            self.connected = False
            self._connected_event.clear()
            self.outages += 1
            self._down_since = time.monotonic()
            self._down_reason = reason
            log.warning("broker: %s; reconnecting; messages to other nodes are buffered (%d bytes at most), "
                        "then dropped", why, self.outage_limit)
        elif reason != self._down_reason:
            # Still down, for another reason (a refused login, a new error): say it once.
            self._down_reason = reason
            log.warning("broker: %s; retrying", why)

    def _up(self) -> None:
        if self.connected:
            return
        self.connected = True
        self._connected_event.set()
        self._down_reason = None
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_result(None)
        buffered, self._outage_sent = self._outage_sent, 0
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        if self.outages or buffered or self._outage_dropped:
            log.warning("broker: connected to Redis at %s again after %.1f s; %d buffered message(s) sent, "
                        "%d dropped", self.address.url, down, buffered, self._outage_dropped)
        else:
            log.info("broker: connected to Redis at %s as node %08x", self.address.url, self.node)
        self._outage_dropped = 0

    def _redis_error(self, link: _Link, text: str, lost: int) -> None:
        """An error reply after set-up (a PUBLISH refused by an ACL, a Redis
        out of memory): its messages are counted as dropped; one line per
        episode, which ends at the next PUBLISH that succeeds."""
        self.dropped += lost
        if not self._refused:
            log.error("broker: Redis answered the %s with an error: %s; messages it refuses are dropped",
                      link.role, text)
        self._refused += lost

    def _published_ok(self) -> None:
        if self._refused:
            log.warning("broker: Redis accepts messages again; %d were refused", self._refused)
            self._refused = 0

    # -- receiving ----------------------------------------------------------------------------

    def _on_payload(self, payload: bytes) -> None:
        decoder = Decoder()
        try:
            messages = decoder.feed(payload)
            if decoder.buffered:
                raise WireError(f"{decoder.buffered} byte(s) of a truncated message")
            if not messages:
                raise WireError("an empty payload")
        except WireError as exc:
            self._malformed(exc, payload)
            return
        for m in messages:
            if m.origin == self.node:
                continue  # our own broadcast, back from Redis
            self.received += 1
            try:
                self.deliver(m.kind, m.endpoint, m.key, m.frame)
            except Exception:
                log.exception("broker: delivering a message from node %08x failed", m.origin)

    def _malformed(self, exc: WireError, payload: bytes) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now - self._last_malformed_log < MALFORMED_LOG_EVERY:
            self._malformed_unlogged += 1
            return
        more = f" ({self._malformed_unlogged} more since the last report)" if self._malformed_unlogged else ""
        self._last_malformed_log = now
        self._malformed_unlogged = 0
        log.warning("broker: ignored a message on our Redis channels that is not one of ours: %s; first bytes "
                    "%r%s", exc, payload[:32], more)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        self.published += 1
        self._send(self.all_channel, encode(kind, self.node, endpoint, key, frame))

    def publish_to(self, node: int, endpoint: str, conn_id: str, frame: bytes) -> bool:
        if node == self.node:
            return False
        self.published += 1
        return self._send(self.node_channel(node), encode(TO, self.node, endpoint, conn_id, frame))

    def _writable(self) -> _Link | None:
        """The publisher link if it can take writes now (asyncio 3.12+ raises
        writing to a transport that close() was called on)."""
        publisher = self.links["publisher"]
        if publisher is None or not publisher.ready or publisher.transport is None \
                or publisher.transport.is_closing():
            return None
        return publisher

    def _send(self, channel: bytes, message: bytes) -> bool:
        publisher = self._writable()
        if publisher is None or publisher.transport is None:
            if self._outage_bytes + len(message) > self.outage_limit:
                self._drop_in_outage()
                return False
            self._outage.append((channel, message))
            self._outage_bytes += len(message)
            return True
        backlog = self._pending_bytes + publisher.transport.get_write_buffer_size()
        if backlog + len(message) > self.buffer_limit:
            self.dropped += 1
            if not self._slow_dropped:
                log.warning("broker: Redis reads too slowly (over %d bytes queued); dropping messages to other "
                            "nodes", self.buffer_limit)
            self._slow_dropped += 1
            return False
        if self._slow_dropped:
            log.warning("broker: Redis caught up; %d message(s) were dropped", self._slow_dropped)
            self._slow_dropped = 0
        self._cork(channel, message)
        return True

    def _drop_in_outage(self) -> None:
        self.dropped += 1
        if not self._outage_dropped:
            log.warning("broker: the outage buffer is full (%d bytes); dropping messages to other nodes until "
                        "Redis is back", self.outage_limit)
        self._outage_dropped += 1

    def _cork(self, channel: bytes, message: bytes) -> None:
        pending = self._pending
        # Consecutive messages to one channel share a PUBLISH, up to MAX_PUBLISH bytes: Redis disconnects
        # subscribers whose output buffer passes 8-32 MB, so no single payload comes near that.
        if pending and pending[-1][0] == channel and pending[-1][2] + len(message) <= MAX_PUBLISH:
            pending[-1][1].append(message)
            pending[-1][2] += len(message)
        else:
            pending.append([channel, [message], len(message)])
        self._pending_bytes += len(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        publisher = self._writable()
        if publisher is None or publisher.transport is None:
            self._requeue_pending()
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        publisher.transport.writelines([command("PUBLISH", channel, b"".join(messages))
                                        for channel, messages, _ in pending])
        publisher.in_flight.extend(len(messages) for _, messages, _ in pending)
        self.publishes += len(pending)

    def _requeue_pending(self) -> None:
        """Corked messages of a publisher that went away go back to the
        outage buffer, in order (as far as it has room)."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for channel, messages, _ in pending:
            for message in messages:
                if self._outage_bytes + len(message) > self.outage_limit:
                    self._drop_in_outage()
                    continue
                self._outage.append((channel, message))
                self._outage_bytes += len(message)

    # -- the rest -----------------------------------------------------------------------------------

    async def wait_connected(self, timeout: float) -> bool:
        """True once both connections are up (within ``timeout`` seconds)."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._pending:
            self._flush()
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for link in list(self.links.values()):
            if link is not None and link.transport is not None:
                link.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.connected = False

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "url": self.address.url,
            "node": self.node,
            "connected": self.connected,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "buffered": len(self._outage),
            "malformed": self.malformed,
            "outages": self.outages,
            "publishes": self.publishes,
        }
