"""Nodes on several hosts joined by Redis PUB/SUB: the same :class:`Broker`
as the local bus, so broadcasts, rooms and ``send_to`` reach every
connection of every server that names the same Redis and prefix.

Every worker process is a node with two connections to Redis (a thin
``asyncio.Protocol`` with ``hiredis``' C reply parser):

- a **publisher**: each message goes on the channel of its destination
  (:mod:`robyn_fast.broker.channels`): an endpoint's broadcasts on the
  endpoint's channel, a room's messages on the room's channel, ``send_to``
  on the owning node's channel; every message published during one loop
  iteration is corked, consecutive messages to one channel are joined into
  one PUBLISH payload (the bus format of :mod:`robyn_fast.broker.wire`
  concatenates), and all of them leave in one write;
- a **subscriber** on its own node channel, the channel of every endpoint
  the node serves, and the channel of every room it has members in:
  subscribed in the loop iteration the room's first member joins (one
  SUBSCRIBE for every room joined in that iteration), unsubscribed when its
  last member left ``room_linger`` seconds ago (a URL option, 2 s by
  default) and nobody joined meanwhile (:mod:`robyn_fast.broker.interest`).
  So a node receives only the rooms its clients are in, and however fast
  members come and go, a room costs at most one SUBSCRIBE and one
  UNSUBSCRIBE per linger.

Plain channels send a node its own publications back when it is subscribed
to them (an endpoint it serves, a room it has members in): the header's
origin is ours, and the subscriber drops such a payload whole without
decoding it (one origin check per PUBLISH payload; counted in
``filtered``). That costs Redis one more copy per PUBLISH (the sender is one
more subscriber) and the node the read; a PSUBSCRIBE-based exclusion would
instead cost Redis a glob match per pattern per node on *every* PUBLISH,
room messages included, which grows with the number of nodes. A node that
publishes much faster than it reads may meet Redis's
``client-output-buffer-limit pubsub`` with its own messages, and then
reconnects like any slow subscriber.

Redis runs one connection's commands in order and appends each PUBLISH to
every matching subscriber's output at once, so the messages of one
publisher connection reach a subscriber in the order they were published,
whatever mix of channels they used (a room's, an endpoint's, a node's):
what one node sends another arrives in order, as on the local bus.
Delivery is at-most-once. A SUBSCRIBE takes effect when Redis runs it: a
message published to a room before the SUBSCRIBE of a node whose first
member just joined is not delivered to that node (PUB/SUB keeps nothing).

Presence (:meth:`RedisBroker.presence`): the query is published on the
endpoint's channel; Redis's answer to that PUBLISH says how many nodes
received it (this one, subscribed too, not counted), which is how many
replies to wait for; each node replies on the asker's node channel.

Faults: Redis down or unreachable (at start-up or later), a connection
reset, a Redis that stops answering (a PING every second; no answer in 3 s
drops the link) or disconnects a slow subscriber: local delivery goes on;
messages for other nodes go into an outage buffer (``outage_limit`` bytes),
then are dropped and counted; one warning when the outage starts and one
line when it ends, with the counts. A publisher is ready only once Redis
answered it (its AUTH, SELECT and a PING): a peer that accepts connections
and never answers (a paused Redis, a black hole) gets nothing but the PING.
The PUBLISHes written and not yet answered when a link is lost are counted
as dropped (a paused Redis may still carry some of them later: delivery is
at-most-once, the count at-least). Each connection reconnects with a
backoff from 0.1 s doubling to 1 s, logs in again (AUTH, SELECT) and
resubscribes, so delivery resumes within about a second of Redis coming
back. Messages other nodes published during the outage are lost (PUB/SUB
keeps nothing).

What arrives is bounded and cannot stall the loop: one reply may make the
client buffer at most ``max_reply_size`` bytes (the URL option, 64 MiB by
default; past it the link is dropped, counted in ``protocol_errors``, and
the next attempt waits 1 s, doubling to 30 s); a push that is not a
well-formed ``message``/``pmessage`` is a counted protocol error and
ignored; received payloads are decoded and delivered in slices of
``DELIVER_SLICE`` messages per loop iteration, the subscriber link's
reading paused meanwhile. A message on our channels that is not ours
(malformed, a hello, foreign) is counted in ``malformed`` and ignored, with
the rest of its payload. Each kind of these is logged at most once per
10 s, and so is an outage that recurs for one reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, Callable, List, Optional, Tuple, Union

from ..logs import Throttle, get_logger, more_since
from . import Answer, Broker, Deliver, no_answer, not_started
from .channels import ChannelNames, Channels
from .interest import Batcher, Topic
from .presence import ClusterPresence, PresenceQuery, QueryBook, answer_query
from .resp import BrokerURLError, RedisAddress, command, parse_url
from .topology import TopologyError, parse_master_addr, parse_role, parse_switch_master
from .wire import (
    ALL, HELLO, QUERY, REPLY, TO, Key, Message, WireError, count_messages, decode_at, encode, encode_query,
    encode_reply, origin_of, query_id, reply_ids,
)

__all__ = ["RedisBroker", "ChannelPublisher", "Link", "ask", "DEFAULT_OUTAGE_LIMIT", "DEFAULT_BUFFER_LIMIT",
           "hiredis_available"]

log = get_logger("robyn_fast.broker")

DEFAULT_OUTAGE_LIMIT = 1024 * 1024  # bytes kept for other nodes while Redis is away
DEFAULT_BUFFER_LIMIT = 16 * 1024 * 1024  # bytes queued to a connected Redis that reads slowly
PING_INTERVAL = 1.0
PING_TIMEOUT = 3.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0
PROTOCOL_BACKOFF_MAX = 30.0  # after a link dropped for a protocol error
CONNECT_TIMEOUT = 3.0
MAX_PUBLISH = 512 * 1024  # bytes of joined messages in one PUBLISH
MALFORMED_LOG_EVERY = 10.0
DELIVER_SLICE = 512  # received messages decoded and delivered per loop iteration (then the loop runs)


def node_address(url: str | RedisAddress, node: int) -> RedisAddress:
    """The address of a Redis broker's node: ``url`` parsed, once hiredis and
    the node tag are checked (what every Redis broker's constructor checks)."""
    if not hiredis_available():
        raise ImportError("a Redis broker needs hiredis: pip install 'robyn_fast[redis]' (or hiredis)")
    if type(node) is not int or not 0 < node < 1 << 32:
        raise ValueError(f"a node tag is an int in 1..2**32-1, got {node!r}")
    return url if isinstance(url, RedisAddress) else parse_url(url)


def hiredis_available() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


#: A command in flight on the publisher: its message count, or the count, who
#: waits for the PUBLISH's receiver count (or None) and the command itself
#: (kept in cluster mode, to follow a MOVED/ASK; else None).
InFlight = Union[int, Tuple[int, Optional[List[Callable[[int], None]]], Optional[bytes]]]


def _messages(entry: InFlight) -> int:
    return entry[0] if isinstance(entry, tuple) else entry


async def ask(host: str, port: int, tls: Any, commands: list[bytes], replies: int,
              timeout: float = CONNECT_TIMEOUT) -> list[Any]:
    """``commands`` to a node (a sentinel, a cluster node) on a new
    connection; its first ``replies`` replies (ConnectionError if it
    answers an error, closes or times out)."""
    import hiredis

    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None), timeout)
    try:
        writer.write(b"".join(commands))
        parser = hiredis.Reader()
        out: list[Any] = []
        deadline = loop.time() + timeout
        while len(out) < replies:
            data = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - loop.time()))
            if not data:
                raise ConnectionError("the node closed the connection")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise ConnectionError(f"the node answered {reply}")
                out.append(reply)
        return out
    finally:
        writer.close()


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
        self.protocol_failure = False  # dropped for a protocol error (not Redis's protocol, a reply too big)
        self.unparsed = 0  # bytes fed to the reader since its last complete reply (bounded by max_reply)
        self.paused = False  # subscriber: reading paused while the broker delivers what it has
        # Publisher: what each command in flight carried, in order (a PUBLISH's message count, 0 for a PING;
        # with the callbacks that want its receiver count, for a presence query), so that an error reply
        # counts the messages it lost.
        self.in_flight: collections.deque[InFlight] = collections.deque()
        # Sentinel: the index among the set-up replies of ROLE's (the node must be the master), else -1.
        self.role_reply = -1
        self.setup_seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are no asyncio.Transport subclasses
        self.connected_at = time.monotonic()
        self.broker.links[self.role] = self
        address = self.broker.address
        first = address.login()
        if address.mode == "sentinel":  # what a sentinel named may have been demoted since: check
            self.role_reply = len(first)
            first.append(command("ROLE"))
        if self.role == "subscriber":
            channels = self.broker._subscriptions()
            handshake = len(first) + len(channels)  # one reply per channel
            if channels:
                subscribe = self.broker._subscribe_commands(channels)
                self.broker.subscribe_commands += len(subscribe)
                first.extend(subscribe)
            else:  # a shard of a cluster with none of our channels (yet)
                first.append(command("PING"))
                handshake += 1
            self.handshake = handshake
        else:
            # Ready once Redis answered something: a paused Redis or a black hole accepts connections too.
            first.append(command("PING"))
            self.handshake = len(first)
        self.transport.write(b"".join(first))  # type: ignore[union-attr]

    def _ready(self) -> None:
        self.ready = True
        self.broker._link_ready(self)

    def data_received(self, data: bytes) -> None:
        import hiredis

        if self.failed:
            return
        self.reader.feed(data)
        self.unparsed += len(data)
        replied = False
        try:
            while not self.failed:
                reply = self.reader.gets()
                if reply is False:
                    break
                replied = True
                self._reply(reply)
        except hiredis.ProtocolError as exc:
            self.broker._protocol_error(self, f"not Redis's protocol: {exc}")
            self.protocol_failure = True
            self.fail(f"not Redis's protocol: {exc}")
            return
        if replied:
            self.unparsed = self.reader.len()  # what the next reply has of it so far (within a read)
        if self.unparsed > self.broker.address.max_reply and not self.failed:
            why = f"a reply of more than {self.broker.address.max_reply} bytes (max_reply_size)"
            self.broker._protocol_error(self, why, oversize=True)
            self.protocol_failure = True
            self.fail(why)

    def _reply(self, reply: Any) -> None:
        import hiredis

        self.ping_sent = None  # any reply shows Redis is alive
        if isinstance(reply, hiredis.ReplyError):
            if not self.ready:
                self.fail(f"Redis refused the connection's set-up (AUTH, SELECT, SUBSCRIBE): {reply}")
            else:
                entry = self.in_flight.popleft() if self.role == "publisher" and self.in_flight else 0
                self.broker._redis_error(self, str(reply), entry)
            return
        if not self.ready:
            if self.setup_seen == self.role_reply:
                try:
                    role = parse_role(reply)
                except TopologyError as exc:
                    role = str(exc)
                if role != "master":
                    self.fail(f"the node the sentinels named is not the master (ROLE: {role})")
                    return
            self.setup_seen += 1
            self.handshake -= 1
            if self.handshake <= 0:
                self._ready()
            return
        if self.role == "subscriber":
            if type(reply) is list and reply:
                kind = reply[0]
                if kind == b"message" and len(reply) == 3 and type(reply[2]) is bytes:
                    self.broker._on_payload(reply[2])
                    return
                if kind == b"smessage" and len(reply) == 3 and type(reply[2]) is bytes:  # sharded (cluster)
                    self.broker._on_payload(reply[2])
                    return
                if kind == b"pmessage" and len(reply) == 4 and type(reply[3]) is bytes:
                    self.broker._on_payload(reply[3])
                    return
                if kind in (b"pong", b"subscribe", b"unsubscribe", b"ssubscribe") and len(reply) in (2, 3):
                    return
                if kind == b"sunsubscribe" and len(reply) == 3:  # ours, or Redis's when a slot moved away
                    self.broker._unsubscribed(reply[1])
                    return
            self.broker._protocol_error(self, f"a reply that is no push of ours: {reply!r:.60}")
        elif self.in_flight:
            entry = self.in_flight.popleft()
            if isinstance(entry, tuple):  # a PUBLISH kept (cluster mode) or whose receiver count someone waits for
                waiters = entry[1]
                entry = entry[0]
                if waiters is not None and type(reply) is int:
                    for waiter in waiters:
                        waiter(reply)
            if entry:
                self.broker._published_ok()

    def fail(self, why: str) -> None:
        if self.error is None:  # the first reason, not what follows from it
            self.error = why
        self.failed = True
        self.ready = False  # nothing more is written to it (a transport accepts writes after abort())
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.failed:
            self.paused = True
            with contextlib.suppress(Exception):  # a transport closing meanwhile
                self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.transport is not None and not self.failed:
                with contextlib.suppress(Exception):
                    self.transport.resume_reading()

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


#: The connection type, for the cluster's shards.
Link = _Link


class ChannelPublisher:
    """``publish``/``publish_to`` onto the destination's channel through
    ``_send``: a node on one Redis, or on a cluster (which picks the shard)."""

    names: ChannelNames
    node: int
    published: int

    def _send(self, channel: bytes, message: bytes, counted: Callable[[int], None] | None = None) -> bool:
        raise NotImplementedError

    def publish(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        self.published += 1
        channel = self.names.endpoint(endpoint) if kind == ALL else self.names.room(endpoint, key)
        self._send(channel, encode(kind, self.node, endpoint, key, frame))

    def publish_to(self, node: int, endpoint: str, conn_id: str, frame: bytes) -> bool:
        if node == self.node:
            return False
        self.published += 1
        return self._send(self.names.node(node), encode(TO, self.node, endpoint, conn_id, frame))


class RedisBroker(ChannelPublisher, Broker):
    """A node on Redis (see the module docstring). ``url``: a broker URL
    (:func:`robyn_fast.broker.resp.parse_url`); ``node``: this node's tag,
    the first 32 bits of its connections' ids, unique among the nodes.
    (One shard of a Redis Cluster is one of these too, with the sharded
    commands: :mod:`robyn_fast.broker.cluster`.)"""

    PUBLISH = b"PUBLISH"  # SPUBLISH on a cluster's shard
    KEEP_SENT = False  # keep each command in flight, to send it again where a MOVED/ASK says

    def __init__(self, url: str | RedisAddress, node: int, *, outage_limit: int = DEFAULT_OUTAGE_LIMIT,
                 buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self.address = node_address(url, node)
        if self.address.mode == "cluster":
            raise BrokerURLError(f"broker URL {self.address.url!r}: a cluster URL is for RedisClusterBroker")
        self.node = node
        self.outage_limit = outage_limit
        self.buffer_limit = buffer_limit
        self.names = ChannelNames(self.address.prefix)
        self.own_channel = self.names.node(node)  # send_to an id of this node
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.deliver: Deliver = not_started
        self.answer: Answer = no_answer
        self.rooms = Batcher(self.address.room_linger, self._subscribe)
        self.channels = Channels(self.names, node, self.rooms.interest)
        self.queries = QueryBook()
        self.links: dict[str, _Link | None] = {"publisher": None, "subscriber": None}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._first_ready: asyncio.Future[None] | None = None
        # Corked for the publisher: [channel, [messages], bytes, receiver-count callbacks or None] runs,
        # in publish order.
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
        self._not_ours = Throttle(MALFORMED_LOG_EVERY)
        self._bad_replies = Throttle(MALFORMED_LOG_EVERY)
        self._too_big = Throttle(MALFORMED_LOG_EVERY)  # replies past max_reply_size
        self._too_big_to_send = Throttle(MALFORMED_LOG_EVERY)
        self._lost_in_flight = 0  # PUBLISHed messages lost with a link in the current episode
        # Received payloads not yet delivered, and where the first one's next message starts.
        self._inbox: collections.deque[bytes] = collections.deque()
        self._inbox_pos = 0
        self._drain_scheduled = False
        self.connected = False
        self._connected_event = asyncio.Event()
        self._down_reason: str | None = None
        self._last_outage: tuple[str | None, float] = (None, 0.0)  # reason and time of the last outage line
        self._quiet_outage = False  # the current outage was not logged (the same reason within 10 s)
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.malformed = 0
        self.protocol_errors = 0
        self.dropped_in_flight = 0  # of dropped: written to a link that was lost before Redis answered
        self.outages = 0
        self.publishes = 0  # PUBLISH commands sent (several messages may share one)
        self.subscribe_commands = 0  # SUBSCRIBE commands sent (a connection's first one included)
        self.unsubscribe_commands = 0
        self.filtered = 0  # our own messages that came back on a channel we subscribe to (dropped)
        self.queries_sent = 0
        # Sentinel: the master's address as last answered, and the failovers seen (+switch-master).
        self.master: tuple[str, int] | None = None
        self.failovers = 0
        self._sentinel_next = 0  # the sentinel asked first next time (the last that answered)

    def node_channel(self, node: int) -> bytes:
        return self.names.node(node)

    # -- subscriptions ---------------------------------------------------------------------

    def watch(self, endpoint: str, room: Key) -> None:
        self.rooms.want((endpoint, room))

    def unwatch(self, endpoint: str, room: Key) -> None:
        self.rooms.unwant((endpoint, room))

    def _subscribe(self, subscribe: list[Topic], unsubscribe: list[Topic]) -> None:
        """One SUBSCRIBE for the rooms wanted since the last batch, one
        UNSUBSCRIBE for those whose linger is over. Without a subscriber
        connection they only change the set the next one subscribes."""
        subscriber = self.links["subscriber"]
        if subscriber is None or subscriber.transport is None or subscriber.failed \
                or subscriber.transport.is_closing():
            return
        self.write_subscriptions([*map(self.names.topic, subscribe)], [*map(self.names.topic, unsubscribe)],
                                 subscriber)

    def write_subscriptions(self, subscribe: list[bytes], unsubscribe: list[bytes],
                            subscriber: _Link | None = None) -> None:
        """(UN)SUBSCRIBE these channels on the subscriber connection, if
        there is one (before the set-up's replies are in, too: Redis
        answers in order, after them)."""
        if subscriber is None:
            subscriber = self.links["subscriber"]
            if subscriber is None or subscriber.transport is None or subscriber.failed \
                    or subscriber.transport.is_closing():
                return
        out = []
        if subscribe:
            out += self._subscribe_commands(subscribe)
            self.subscribe_commands += len(out)
        if unsubscribe:
            commands = self._subscribe_commands(unsubscribe, unsubscribe=True)
            self.unsubscribe_commands += len(commands)
            out += commands
        if out:
            subscriber.transport.write(b"".join(out))  # type: ignore[union-attr]

    def _subscribe_commands(self, channels: list[bytes], unsubscribe: bool = False) -> list[bytes]:
        return [command("UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE", *channels)]

    def _unsubscribed(self, channel: bytes) -> None:
        """A ``sunsubscribe`` push (cluster mode only)."""

    def _subscriptions(self) -> list[bytes]:
        """Every channel a new subscriber connection subscribes to."""
        return self.channels.everything(self.loop.time())

    # -- connections -----------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, answer: Answer = no_answer) -> None:
        """Start connecting; wait up to a second for Redis, then go on
        either way (an unreachable Redis never stops a server from serving)."""
        self.launch(loop, deliver, answer)
        assert self._first_ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._first_ready), 1.0)
        except asyncio.TimeoutError:
            log.warning("broker: Redis at %s is not reachable yet; serving on, messages to other nodes are "
                        "buffered (%d bytes at most) then dropped until it is", self.address.url, self.outage_limit)

    def launch(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, answer: Answer = no_answer) -> None:
        """Start connecting (without waiting)."""
        self.loop = loop
        self.deliver = deliver
        self.answer = answer
        self.rooms.start(loop)
        self._first_ready = loop.create_future()
        self._down_since = time.monotonic()
        self._down_reason = "not connected yet"
        for role in ("publisher", "subscriber"):
            self._spawn(self._keep_connected(role))
        self._spawn(self._pinger())
        if self.address.mode == "sentinel":
            self._spawn(self._watch_sentinels())

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_connected(self, role: str) -> None:
        backoff = BACKOFF_FIRST
        while not self._closed:
            lost: asyncio.Future[None] = self.loop.create_future()
            factory: Callable[[], _Link] = lambda: _Link(self, role, lost)  # noqa: E731
            address = self.address
            try:
                if address.mode == "sentinel":
                    address = await self._master_address()
                if address.path is not None:
                    connect = self.loop.create_unix_connection(factory, address.path, ssl=address.tls,
                                                               server_hostname=address.server_hostname)
                else:
                    connect = self.loop.create_connection(factory, address.host or "127.0.0.1", address.port,
                                                          ssl=address.tls, server_hostname=address.server_hostname)
                _, link = await asyncio.wait_for(connect, CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                if self.address.mode == "sentinel":  # one reason while the master is away: no line per attempt
                    self._note_down(f"cannot connect to the master {address.url}: {reason}", "master unreachable")
                else:
                    self._note_down(f"cannot connect to {address.url}: {reason}", reason)
            else:
                await lost
                if link.protocol_failure:
                    # It answers, but not as Redis: no reconnect storm (1 s, doubling to 30 s).
                    backoff = max(BACKOFF_MAX, min(PROTOCOL_BACKOFF_MAX, backoff * 2))
                    await asyncio.sleep(backoff)
                    continue
                if link.ready:
                    backoff = BACKOFF_FIRST
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    # -- Sentinel ------------------------------------------------------------------------------

    async def _master_address(self) -> RedisAddress:
        """The master's address as the first sentinel that answers names it
        (starting with the one that answered last); OSError when none does."""
        address = self.address
        seeds = address.seeds
        name = address.master_name or ""
        login = address.sentinel_login()
        errors = []
        for i in range(len(seeds)):
            at = (self._sentinel_next + i) % len(seeds)
            host, port = seeds[at]
            try:
                replies = await ask(host, port, self.address.tls,
                                    login + [command("SENTINEL", "get-master-addr-by-name", name)], len(login) + 1)
                master = parse_master_addr(replies[-1])
            except (OSError, asyncio.TimeoutError, TopologyError) as exc:
                errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
                continue
            if master is None:
                errors.append(f"{host}:{port}: knows no master named {name!r}")
                continue
            self._sentinel_next = at
            if self.master is not None and master != self.master:
                self.failovers += 1  # noticed on reconnecting (the +switch-master message may have been missed)
            self.master = master
            return address.at(*master)
        raise ConnectionError("no sentinel named the master: " + "; ".join(errors))

    async def _watch_sentinels(self) -> None:
        """Listen to a sentinel's ``+switch-master``: on a failover of our
        master, drop both links at once (they reconnect to the new master)
        instead of waiting for the old one to time out."""
        import hiredis

        address = self.address
        login = address.sentinel_login()
        backoff = BACKOFF_FIRST
        while not self._closed:
            host, port = address.seeds[self._sentinel_next % len(address.seeds)]
            try:
                tls = address.tls
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None),
                    CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                self._sentinel_next += 1
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            try:
                writer.write(b"".join(login + [command("SUBSCRIBE", "+switch-master")]))
                parser = hiredis.Reader()
                while not self._closed:
                    data = await reader.read(65536)
                    if not data:
                        break
                    backoff = BACKOFF_FIRST
                    parser.feed(data)
                    while (reply := parser.gets()) is not False:
                        if isinstance(reply, hiredis.ReplyError):
                            raise ConnectionError(f"the sentinel answered {reply}")
                        if type(reply) is list and len(reply) == 3 and reply[0] == b"message" \
                                and type(reply[2]) is bytes:
                            self._switch_master(reply[2])
            except (OSError, ConnectionError):
                pass
            finally:
                writer.close()
            self._sentinel_next += 1
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _switch_master(self, payload: bytes) -> None:
        try:
            name, old, new = parse_switch_master(payload)
        except TopologyError as exc:
            self._protocol_error_text("sentinel", str(exc))
            return
        if name != self.address.master_name or new == self.master:
            return
        self.failovers += 1
        self.master = new
        why = f"sentinel failover: master {name!r} moved from {old[0]}:{old[1]} to {new[0]}:{new[1]}"
        for link in list(self.links.values()):
            if link is not None:
                link.fail(why)

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
            # Written, never answered: Redis may have taken some (a paused one may carry them later),
            # or none; at-most-once, so they count as dropped.
            lost = sum(_messages(entry) for entry in link.in_flight)
            link.in_flight.clear()
            if lost and not self._closed:
                self.dropped += lost
                self.dropped_in_flight += lost
                self._lost_in_flight += lost
            self._requeue_pending()
        if not self._closed:
            # Behind Sentinel a lost master, a failover and a demoted master are one episode: one reason.
            reason = "master unreachable" if self.address.mode == "sentinel" else link.error or "lost"
            self._note_down(f"the {link.role} connection to {self._where()} was lost"
                            + (f" ({link.error})" if link.error else ""), reason)

    def _note_down(self, why: str, reason: str) -> None:
        """Log a connection problem: once when an outage starts, then once
        per new ``reason`` while it lasts (whichever connection hit it)."""
        if self.connected:
            self.connected = False
            self._connected_event.clear()
            self.outages += 1
            now = self._down_since = time.monotonic()
            self._down_reason = reason
            # A link that flaps for one reason (a peer whose every reply is too big) says so once per 10 s.
            self._quiet_outage = reason == self._last_outage[0] and now - self._last_outage[1] < MALFORMED_LOG_EVERY
            if not self._quiet_outage:
                self._last_outage = (reason, now)
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
        lost, self._lost_in_flight = self._lost_in_flight, 0
        quiet, self._quiet_outage = self._quiet_outage, False
        if quiet and not (buffered or self._outage_dropped or lost):
            pass
        elif self.outages or buffered or self._outage_dropped or lost:
            log.warning("broker: connected to Redis at %s again after %.1f s; %d buffered message(s) sent, "
                        "%d dropped (%d over the buffer, %d in flight on a lost link)", self._where(), down,
                        buffered, self._outage_dropped + lost, self._outage_dropped, lost)
        else:
            log.info("broker: connected to Redis at %s as node %08x", self._where(), self.node)
        self._outage_dropped = 0

    def down_for(self) -> float:
        """Seconds since the current outage started (0 when up)."""
        return time.monotonic() - self._down_since if self._down_since is not None else 0.0

    def _where(self) -> str:
        """The URL, and with Sentinel the master it named."""
        if self.address.mode == "sentinel" and self.master is not None:
            return f"{self.address.url} (master {self.master[0]}:{self.master[1]})"
        return self.address.url

    def _redis_error(self, link: _Link, text: str, entry: InFlight) -> None:
        """An error reply after set-up (a PUBLISH refused by an ACL, a Redis
        out of memory): its messages are counted as dropped; one line per
        episode, which ends at the next PUBLISH that succeeds."""
        lost = _messages(entry)
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
        """A payload from the subscriber: delivered now if the inbox was
        empty, up to a slice; the rest on the next loop iterations."""
        self._inbox.append(payload)
        if not self._drain_scheduled:
            self._drain()

    def _drain(self) -> None:
        """Decode and deliver up to DELIVER_SLICE messages; while more wait,
        the subscriber stops reading (nothing grows) and the loop runs."""
        self._drain_scheduled = False
        if self._closed:
            self._inbox.clear()
            return
        budget = DELIVER_SLICE
        inbox = self._inbox
        node = self.node
        deliver = self.deliver
        while inbox and budget > 0:
            payload = inbox[0]
            if not payload:
                inbox.popleft()
                self._not_ours_seen("an empty payload", payload)
                budget -= 1
                continue
            if self._inbox_pos == 0 and origin_of(payload) == node:
                # Our own PUBLISH back (one publisher's payload holds its messages only): dropped whole.
                inbox.popleft()
                self.filtered += count_messages(payload)
                budget -= 1
                continue
            try:
                messages, pos = decode_at(payload, self._inbox_pos, budget)
            except WireError as exc:
                inbox.popleft()
                self._inbox_pos = 0
                self._not_ours_seen(str(exc), payload)
                budget -= 1
                continue
            budget -= len(messages)
            if pos >= len(payload):
                inbox.popleft()
                self._inbox_pos = 0
            else:
                self._inbox_pos = pos
            for m in messages:
                if m.kind == HELLO:  # the local bus's; never on Redis: the rest of this payload is not ours either
                    if inbox and inbox[0] is payload:
                        inbox.popleft()
                        self._inbox_pos = 0
                    self._not_ours_seen(f"a hello from node {m.origin:08x}", payload)
                    break
                if m.origin == node:
                    self.filtered += 1
                    continue  # our own (another node with our tag): not for us
                if m.kind > TO:
                    self._control(m)
                    continue
                self.received += 1
                try:
                    deliver(m.kind, m.endpoint, m.key, m.frame)
                except Exception:
                    log.exception("broker: delivering a message from node %08x failed", m.origin)
        subscriber = self.links["subscriber"]
        if inbox:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)
            if subscriber is not None:
                subscriber.pause()
        elif subscriber is not None and subscriber.paused:
            subscriber.resume()

    def _control(self, m: Message) -> None:
        """A presence query (answered on the asker's channel) or a reply to
        one of ours; anything else is not ours."""
        if m.kind == QUERY:
            ids = answer_query(self.answer, m, log)
            self._route(self.node_channel(m.origin), encode_reply(self.node, m.endpoint, query_id(m.frame), ids))
        elif m.kind == REPLY:
            assert isinstance(m.key, int)
            try:
                ids = reply_ids(m.frame)
            except WireError as exc:
                self._not_ours_seen(str(exc), m.frame)
                return
            self.queries.answer(m.key, m.origin, ids)
        else:
            self._not_ours_seen(f"a message of kind {m.kind} from node {m.origin:08x}", m.frame)

    async def presence(self, endpoint: str, room: Key, local: list[str], timeout: float) -> ClusterPresence:
        """One query on the endpoint's channel; Redis's receiver count for
        it says how many replies to wait for (at most ``timeout`` seconds).
        With the publisher down the query is not sent (nor buffered) and
        the answer is ``local`` alone, ``missing`` None."""
        query = PresenceQuery(self.loop, self.node, local)
        request = self.queries.open(query)

        def counted(receivers: int) -> None:
            # This node is one of them while its subscriber is up (it serves the endpoint).
            subscriber = self.links["subscriber"]
            query.expect(max(0, receivers - (1 if subscriber is not None and subscriber.ready else 0)))

        try:
            message = encode_query(self.node, endpoint, room, request)
            if self._writable() is not None and self._send(self.names.endpoint(endpoint), message, counted):
                self.queries_sent += 1
                await query.wait(timeout)
        finally:
            self.queries.close(request)
        return query.result()

    def _route(self, channel: bytes, message: bytes) -> None:
        """Send a control message (a cluster's shard hands it to the cluster)."""
        self._send(channel, message)

    def _not_ours_seen(self, why: str, payload: bytes) -> None:
        self.malformed += 1
        unreported = self._not_ours.hit()
        if unreported is not None:
            log.warning("broker: ignored a message on our Redis channels that is not one of ours: %s; first bytes "
                        "%r%s", why, payload[:32], more_since(unreported))

    def _protocol_error(self, link: _Link, why: str, oversize: bool = False) -> None:
        """A reply Redis cannot have meant for us, or (``oversize``) one past max_reply_size."""
        self._protocol_error_text(link.role, why, oversize)

    def _protocol_error_text(self, role: str, why: str, oversize: bool = False) -> None:
        self.protocol_errors += 1
        throttle = self._too_big if oversize else self._bad_replies
        unreported = throttle.hit()
        if unreported is not None:
            log.error("broker: protocol error on the %s connection to %s: %s%s", role, self.address.url,
                      why, more_since(unreported))

    # -- publishing -----------------------------------------------------------------------------

    def _writable(self) -> _Link | None:
        """The publisher link if it can take writes now (asyncio 3.12+ raises
        writing to a transport that close() was called on)."""
        publisher = self.links["publisher"]
        if publisher is None or not publisher.ready or publisher.transport is None \
                or publisher.transport.is_closing():
            return None
        return publisher

    def _send(self, channel: bytes, message: bytes, counted: Callable[[int], None] | None = None) -> bool:
        if len(message) > self.address.max_reply - 1024:  # its push would be past every node's reader cap
            self.dropped += 1
            unreported = self._too_big_to_send.hit()
            if unreported is not None:
                log.error("broker: a message of %d bytes is over max_reply_size (%d): not published, dropped%s",
                          len(message), self.address.max_reply, more_since(unreported))
            return False
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
        self._cork(channel, message, counted)
        return True

    def _drop_in_outage(self) -> None:
        self.dropped += 1
        if not self._outage_dropped:
            log.warning("broker: the outage buffer is full (%d bytes); dropping messages to other nodes until "
                        "Redis is back", self.outage_limit)
        self._outage_dropped += 1

    def _cork(self, channel: bytes, message: bytes, counted: Callable[[int], None] | None = None) -> None:
        pending = self._pending
        # Consecutive messages to one channel share a PUBLISH, up to MAX_PUBLISH bytes: Redis disconnects
        # subscribers whose output buffer passes 8-32 MB, so no single payload comes near that.
        if pending and pending[-1][0] == channel and pending[-1][2] + len(message) <= MAX_PUBLISH:
            run = pending[-1]
            run[1].append(message)
            run[2] += len(message)
        else:
            run = [channel, [message], len(message), None]
            pending.append(run)
        if counted is not None:
            if run[3] is None:
                run[3] = []
            run[3].append(counted)
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
        verb = self.PUBLISH
        commands = [command(verb, channel, b"".join(messages)) for channel, messages, _, _ in pending]
        publisher.transport.writelines(commands)
        if self.KEEP_SENT:
            publisher.in_flight.extend((len(run[1]), run[3], cmd) for run, cmd in zip(pending, commands))
        else:
            publisher.in_flight.extend(len(messages) if waiters is None else (len(messages), waiters, None)
                                       for _, messages, _, waiters in pending)
        self.publishes += len(pending)

    def take_buffered(self) -> list[tuple[bytes, bytes]]:
        """What waits to be sent (outage buffer, then corked), taken away:
        (channel, message) in order."""
        self._requeue_pending()
        out, self._outage, self._outage_bytes = self._outage, [], 0
        return out

    def _requeue_pending(self) -> None:
        """Corked messages of a publisher that went away go back to the
        outage buffer, in order (as far as it has room)."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for channel, messages, _, _ in pending:  # a presence query waiting for a count just times out
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
        self.rooms.close()
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
            "protocol_errors": self.protocol_errors,
            "dropped_in_flight": self.dropped_in_flight,
            "outages": self.outages,
            "publishes": self.publishes,
            "subscriptions": len(self.channels),
            "subscribe_commands": self.subscribe_commands,
            "unsubscribe_commands": self.unsubscribe_commands,
            "filtered": self.filtered,
            "queries": self.queries_sent,
            **({"master": f"{self.master[0]}:{self.master[1]}" if self.master else None,
                "failovers": self.failovers} if self.address.mode == "sentinel" else {}),
        }
