"""Nodes joined by a Redis Cluster with sharded PUB/SUB
(``redis+cluster://host:port[,host:port...]``, ``rediss+cluster://`` for
TLS): the same :class:`~robyn_fast.broker.Broker` as
:class:`~robyn_fast.broker.redis.RedisBroker`, with the channels of
:mod:`robyn_fast.broker.channels` spread over the cluster's shards.

Each channel lives in a hash slot (CRC16 of its name, :func:`key_slot`), each
slot on one master. A node keeps one :class:`_Shard` per master it needs
(made when it first publishes to one of its channels or subscribes one
there): a :class:`RedisBroker` on that master alone that publishes with
``SPUBLISH`` and subscribes with ``SSUBSCRIBE``/``SUNSUBSCRIBE`` (one command
per slot, as Redis requires), with its own publisher and subscriber
connections, corking, outage buffer and reconnects. So the single-node path
is the plain :class:`RedisBroker`, untouched by any of this.

The slot map (``CLUSTER SLOTS``) is read from a known master or a seed at
start, and again: after a ``MOVED``/``ASK`` (the refused ``SPUBLISH`` goes
once to the node named, after ``ASKING`` for ``ASK``; refused, not delivered,
so still at-most-once), after Redis unsubscribes a channel we want (its slot
moved away: a ``sunsubscribe`` push), when a connection to a master is lost
(every 0.5 s while a shard is down) and every 5 s. When a master is gone from
the map (a replica took over its slots), its shard is closed and what it
buffered meanwhile goes to the new owners; the new shard subscribes the
channels of its slots. One warning when a shard's outage starts (its own),
one line when it ends (here), with the counts. Without any map (no seed
answers) messages wait in an outage buffer (``outage_limit`` bytes), then
are dropped and counted; said once until a node answers.

Ordering: per sender per channel only. Each shard has its own connection,
so messages one node sends to channels on different shards (two rooms,
a room and a ``send_to``) may arrive in another order; messages to one
channel keep their order (one connection, one Redis). A failover may lose
what was in flight on the dead master (counted in ``dropped``).

Presence: the query goes on the endpoint's channel of its shard; the
``SPUBLISH`` reply counts that shard's subscribers of the channel, which are
all of them (a channel lives on one shard).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Callable, Tuple

from ..logs import get_logger
from . import Answer, Broker, Deliver, no_answer, not_started
from .channels import ChannelNames, Channels
from .interest import Batcher, Topic
from .presence import ClusterPresence, PresenceQuery, QueryBook
from .redis import (
    DEFAULT_BUFFER_LIMIT, DEFAULT_OUTAGE_LIMIT, ChannelPublisher, InFlight, Link, RedisBroker, ask, node_address,
)
from .resp import BrokerURLError, RedisAddress, command
from .topology import Redirect, SlotMap, TopologyError, key_slot, parse_redirect
from .wire import Key

__all__ = ["RedisClusterBroker", "REFRESH_EVERY"]

log = get_logger("robyn_fast.broker")

REFRESH_EVERY = 5.0  # seconds between slot map reads when nothing happens
REFRESH_DOWN = 0.5  # ... while a shard is down (a failover to notice)
ROUTE_CACHE_MAX = 65536  # channels whose shard is remembered (cleared when full or when the map changes)

Master = Tuple[str, int]


class _Shard(RedisBroker):
    """One master of the cluster: SPUBLISH and SSUBSCRIBE there."""

    PUBLISH = b"SPUBLISH"
    KEEP_SENT = True

    def __init__(self, cluster: RedisClusterBroker, master: Master) -> None:
        super().__init__(cluster.address.at(*master), cluster.node, outage_limit=cluster.outage_limit,
                         buffer_limit=cluster.buffer_limit)
        self.cluster = cluster
        self.at = master
        self.names = cluster.names
        self.queries = cluster.queries
        self._leaving: set[bytes] = set()  # SUNSUBSCRIBEd by us: their sunsubscribe push is no slot move

    @property
    def answer(self) -> Answer:
        """The cluster's (set after the shard was made, too)."""
        return self.cluster.answer

    @answer.setter
    def answer(self, value: Answer) -> None:
        pass

    #: Queue a message for this master (the cluster chose it).
    send_here = RedisBroker._send

    def _subscriptions(self) -> list[bytes]:
        return self.cluster.channels_on(self.at)

    def _subscribe_commands(self, channels: list[bytes], unsubscribe: bool = False) -> list[bytes]:
        verb = "SUNSUBSCRIBE" if unsubscribe else "SSUBSCRIBE"
        if unsubscribe:
            self._leaving.update(channels)
        by_slot: dict[int, list[bytes]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        return [command(verb, *chans) for chans in by_slot.values()]

    def _unsubscribed(self, channel: bytes) -> None:
        if channel in self._leaving:
            self._leaving.discard(channel)
        else:  # Redis's: the slot moved away
            self.cluster.refresh_soon()

    def _route(self, channel: bytes, message: bytes) -> None:
        self.cluster.route(channel, message)

    def _redis_error(self, link: Link, text: str, entry: InFlight) -> None:
        redirect = parse_redirect(text)
        if redirect is not None and isinstance(entry, tuple) and entry[2] is not None:
            self.cluster.redirect(redirect, entry)
            return
        super()._redis_error(link, text, entry)

    def _link_lost(self, link: Link) -> None:
        super()._link_lost(link)
        if not self._closed:
            self.cluster.refresh_soon()

    def resend(self, entry: InFlight, asking: bool) -> bool:
        """A command a MOVED/ASK sent here: written once more (never again)."""
        publisher = self._writable()
        if publisher is None or publisher.transport is None or not isinstance(entry, tuple) or entry[2] is None:
            return False
        if asking:
            publisher.transport.write(command("ASKING"))
            publisher.in_flight.append(0)
        publisher.transport.write(entry[2])
        publisher.in_flight.append((entry[0], entry[1], None))
        return True


class RedisClusterBroker(ChannelPublisher, Broker):
    """A node on a Redis Cluster (see the module docstring)."""

    def __init__(self, url: str | RedisAddress, node: int, *, outage_limit: int = DEFAULT_OUTAGE_LIMIT,
                 buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self.address = node_address(url, node)
        if self.address.mode != "cluster":
            raise BrokerURLError(f"broker URL {self.address.url!r}: not a redis+cluster:// URL")
        self.node = node
        self.outage_limit = outage_limit
        self.buffer_limit = buffer_limit
        self.names = ChannelNames(self.address.prefix)
        self.rooms = Batcher(self.address.room_linger, self._subscribe)
        self.channels = Channels(self.names, node, self.rooms.interest)
        self.queries = QueryBook()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.deliver: Deliver = not_started
        self.answer: Answer = no_answer
        self.slots: SlotMap | None = None
        self.shards: dict[Master, _Shard] = {}
        self._route_cache: dict[bytes, _Shard] = {}
        self._early: list[tuple[bytes, bytes]] = []  # (channel, message) before any slot map
        self._early_bytes = 0
        self._early_dropped = 0
        self._refresh = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._map_error: str | None = None  # the current episode of no map (said once)
        self.published = 0
        self.dropped = 0  # here (no map) and by retired shards
        self.redirects = 0  # MOVED/ASK followed
        self.refreshes = 0  # slot maps read
        self.failovers = 0  # masters gone from the map
        self._retired: dict[str, int] = {}  # counters of closed shards
        self._retiring: set[_Shard] = set()  # shards gone from the map, closing

    # -- topology ---------------------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, answer: Answer = no_answer) -> None:
        """Read the slot map and connect to the shards of our channels; wait
        up to a second, then go on either way."""
        self.loop = loop
        self.deliver = deliver
        self.answer = answer
        self.rooms.start(loop)
        self._spawn(self._keep_map())
        if not await self.wait_connected(1.0):
            log.warning("broker: the Redis Cluster at %s is not reachable yet; serving on, messages to other "
                        "nodes are buffered (%d bytes at most per shard) then dropped until it is",
                        self.address.url, self.outage_limit)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refresh_soon(self) -> None:
        self._refresh.set()

    async def _read_map(self) -> SlotMap:
        """CLUSTER SLOTS from the first known master or seed that answers."""
        login = self.address.login()
        known = list(self.slots.masters) if self.slots is not None else []
        errors = []
        for host, port in dict.fromkeys([*known, *self.address.seeds]):
            try:
                replies = await ask(host, port, self.address.tls, login + [command("CLUSTER", "SLOTS")],
                                    len(login) + 1)
                return SlotMap(replies[-1], (host, port))
            except (OSError, asyncio.TimeoutError, TopologyError) as exc:
                errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
        raise ConnectionError("; ".join(errors))

    async def _keep_map(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                slots = await self._read_map()
            except ConnectionError as exc:
                if self._map_error is None:
                    log.warning("broker: no node of the Redis Cluster %s answered CLUSTER SLOTS (%s); retrying",
                                self.address.url, exc)
                self._map_error = str(exc)
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            backoff = 0.1
            self.refreshes += 1
            if self._map_error is not None:
                log.warning("broker: the Redis Cluster %s answers again (%d masters)", self.address.url,
                            len(slots.masters))
                self._map_error = None
            self._apply(slots)
            down = any(not shard.connected for shard in self.shards.values())
            self._refresh.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), REFRESH_DOWN if down else REFRESH_EVERY)
            await asyncio.sleep(0.05)  # a burst of MOVED/lost links: one read

    def _apply(self, slots: SlotMap) -> None:
        old = self.slots
        if old is not None and old == slots:
            return
        self.slots = slots
        self._route_cache.clear()
        wanted = self._wanted()
        if old is not None:
            # Channels whose slot changed master: subscribed where they live now (the old one said sunsubscribe).
            moved: dict[Master, list[bytes]] = {}
            for channel in wanted:
                slot = key_slot(channel)
                owner = slots.owner(slot)
                if owner != old.owner(slot) and owner in self.shards:
                    moved.setdefault(owner, []).append(channel)
            for owner, chans in moved.items():
                self.shards[owner].write_subscriptions(chans, [])
        for master in [m for m in self.shards if m not in slots.masters]:
            self._retire(master)
        for channel in wanted:
            self._shard(slots.owner(key_slot(channel)))
        early, self._early, self._early_bytes = self._early, [], 0
        for channel, message in early:
            self._send(channel, message)
        if self._early_dropped:
            log.warning("broker: %d message(s) were dropped before the Redis Cluster's slot map was known",
                        self._early_dropped)
            self._early_dropped = 0

    def _retire(self, master: Master) -> None:
        """A master gone from the map: what its shard still holds goes to the
        slots' new owners; one line ends its outage."""
        shard = self.shards.pop(master)
        self.failovers += 1
        buffered = shard.take_buffered()
        for key, value in shard.stats().items():
            if type(value) is int and key not in ("node", "subscriptions"):
                self._retired[key] = self._retired.get(key, 0) + value
        down = shard.down_for()
        resent = sum(self._send(channel, message) for channel, message in buffered)
        log.warning("broker: Redis Cluster shard %s:%d is gone from the slot map after %.1f s down (its slots "
                    "moved to another master); %d buffered message(s) sent on, %d dropped meanwhile",
                    master[0], master[1], down, resent, shard.dropped + len(buffered) - resent)
        self._retiring.add(shard)
        self._spawn(self._close_retired(shard))

    async def _close_retired(self, shard: _Shard) -> None:
        try:
            await shard.close()
        finally:
            self._retiring.discard(shard)

    def _shard(self, master: Master) -> _Shard:
        shard = self.shards.get(master)
        if shard is None:
            shard = self.shards[master] = _Shard(self, master)
            shard.launch(self.loop, self.deliver, self.answer)
        return shard

    def _shard_of(self, channel: bytes) -> _Shard | None:
        shard = self._route_cache.get(channel)
        if shard is None:
            if self.slots is None:
                return None
            if len(self._route_cache) >= ROUTE_CACHE_MAX:
                self._route_cache.clear()
            shard = self._route_cache[channel] = self._shard(self.slots.owner(key_slot(channel)))
        return shard

    def redirect(self, redirect: Redirect, entry: InFlight) -> None:
        """A SPUBLISH refused with MOVED/ASK: sent once to the node named."""
        self.redirects += 1
        if redirect.kind == "MOVED" and self.slots is not None:
            self.slots.moved(redirect.slot, redirect.node)
            self._route_cache.clear()
            # The map now names the new owner, so the next read will not show the move: our channels of
            # that slot are subscribed there now (Redis dropped them on the old one: a sunsubscribe push).
            ours = [c for c in self._wanted() if key_slot(c) == redirect.slot]
            if ours:
                self._shard(redirect.node).write_subscriptions(ours, [])
        self.refresh_soon()
        if not self._shard(redirect.node).resend(entry, redirect.kind == "ASK"):
            self.dropped += entry[0] if isinstance(entry, tuple) else entry

    # -- subscriptions ------------------------------------------------------------------------------

    def _wanted(self) -> list[bytes]:
        return [self.channels.own, *(self.names.topic(t) for t in self.rooms.interest.subscribed)]

    def channels_on(self, master: Master) -> list[bytes]:
        """Our channels that live on ``master`` (what its subscriber subscribes)."""
        slots = self.slots
        if slots is None:
            return []
        return [c for c in self._wanted() if slots.owner(key_slot(c)) == master]

    def watch(self, endpoint: str, room: Key) -> None:
        self.rooms.want((endpoint, room))

    def unwatch(self, endpoint: str, room: Key) -> None:
        self.rooms.unwant((endpoint, room))

    def _subscribe(self, subscribe: list[Topic], unsubscribe: list[Topic]) -> None:
        if self.slots is None:
            return  # the shards subscribe the whole set when the map comes
        changes: dict[_Shard, tuple[list[bytes], list[bytes]]] = {}
        for topics, i in ((subscribe, 0), (unsubscribe, 1)):
            for topic in topics:
                channel = self.names.topic(topic)
                shard = self._shard_of(channel)
                if shard is not None:
                    changes.setdefault(shard, ([], []))[i].append(channel)
        for shard, (sub, unsub) in changes.items():
            shard.write_subscriptions(sub, unsub)

    # -- publishing -----------------------------------------------------------------------------

    def _send(self, channel: bytes, message: bytes, counted: Callable[[int], None] | None = None) -> bool:
        shard = self._route_cache.get(channel) or self._shard_of(channel)
        if shard is not None:
            return shard.send_here(channel, message, counted)
        if self._early_bytes + len(message) > self.outage_limit:
            self.dropped += 1
            self._early_dropped += 1
            return False
        self._early.append((channel, message))
        self._early_bytes += len(message)
        return True

    def route(self, channel: bytes, message: bytes) -> None:
        """A shard's control message (a presence reply): to its channel's shard."""
        self._send(channel, message)

    async def presence(self, endpoint: str, room: Key, local: list[str], timeout: float) -> ClusterPresence:
        """Asked on the shard of the endpoint's channel (where every node
        that serves the endpoint subscribes it)."""
        shard = self._shard_of(self.names.endpoint(endpoint))
        if shard is None:
            return PresenceQuery(self.loop, self.node, local).result()
        return await shard.presence(endpoint, room, local, timeout)

    # -- the rest -----------------------------------------------------------------------------------

    async def wait_connected(self, timeout: float) -> bool:
        """True once the map is known and the shards of our channels are up."""
        deadline = time.monotonic() + timeout
        while True:
            if self.slots is not None and self.shards and all(s.connected for s in self.shards.values()):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    @property
    def connected(self) -> bool:
        return self.slots is not None and all(s.connected for s in self.shards.values())

    async def close(self) -> None:
        self._closed = True
        self.rooms.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(shard.close() for shard in [*self.shards.values(), *self._retiring]),
                             return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        totals = dict(self._retired)
        for shard in self.shards.values():
            for key, value in shard.stats().items():
                if type(value) is int and key not in ("node", "subscriptions"):
                    totals[key] = totals.get(key, 0) + value
        return {
            **totals,
            "kind": "redis",
            "mode": "cluster",
            "url": self.address.url,
            "node": self.node,
            "connected": self.connected,
            "published": self.published,
            "dropped": totals.get("dropped", 0) + self.dropped,
            "buffered": totals.get("buffered", 0) + len(self._early),
            "subscriptions": len(self.channels),
            "shards": {f"{h}:{p}": s.connected for (h, p), s in self.shards.items()},
            "redirects": self.redirects,
            "refreshes": self.refreshes,
            "failovers": self.failovers,
        }
