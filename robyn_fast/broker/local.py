"""The bus between the worker processes of one host: a mesh of Unix stream
sockets, no service to run.

Every worker listens on ``<rundir>/<slot>.sock`` (the run directory the
supervisor made, mode 0700) and dials every other worker's socket. A link
carries messages one way, from the dialer to the listener, so the messages
from one worker to another travel one ordered stream; both ends open it
with a hello naming their node tag, which is how a worker learns that a slot
was restarted (and dials its new generation). A worker that starts while a
peer is still starting simply misses it; the peer dials it when it comes up.

Reads are flow-controlled: at most ``DELIVERY_SLICE`` bytes of frames from
the bus reach this worker's connections per loop iteration, and while the
server holds delivery back (:meth:`LocalBus.pause_delivery`: some client's
transport is over its write high-water mark) the inbound links stop reading.
So a worker that resumes after a stall with megabytes waiting on its links
hands them to its clients at the pace they read them, never all in one
burst past their ``max_backpressure``; the waiting is done in the senders'
bounded backlogs.

Rooms: a worker sends a room's messages only to the workers that have
members there. Each worker tells the others which rooms it needs
(*interest* messages, :mod:`robyn_fast.broker.interest`: a room is wanted
from the loop iteration its first member joins, and given up ``linger``
seconds after its last member left, unless one joined meanwhile). A link,
once both hellos are exchanged, starts with the dialer's whole interest set
and a *synced* marker, then carries the changes in order with the messages.
Until a worker's set has arrived (it is starting, or its link to us was
lost) it gets every room message, as before. The cost of a room message is
one write per worker that needs it; ``stats()["filtered"]`` counts the
(message, worker) pairs spared.

Presence (:meth:`LocalBus.presence`): a query to every worker with a link,
each answering on its own link to the asker.

Writes are corked: every message published to a peer during one loop
iteration leaves in one ``writelines`` at its end. Each peer's backlog (the
corked messages plus what its transport still buffers) is bounded by
``buffer_limit``; past it, or while a peer is down, messages to it are
dropped and counted, with one warning when an episode starts and one line
when it ends (a slow peer's episode ends when its backlog is down to half
the limit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from typing import Any, cast

from ..logs import get_logger
from . import Answer, Broker, Deliver, no_answer, node_slot, not_started
from .interest import DEFAULT_LINGER, Batcher, Topic
from .presence import ClusterPresence, PresenceQuery, QueryBook, answer_query
from .wire import (
    HELLO, INTEREST, QUERY, REPLY, ROOM, SYNCED, TO, Decoder, Key, Message, WireError, encode, encode_hello,
    encode_interest, encode_query, encode_reply, encode_synced, query_id, reply_ids,
)

__all__ = ["LocalBus", "DEFAULT_BUFFER_LIMIT"]

log = get_logger("robyn_fast.bus")

DEFAULT_BUFFER_LIMIT = 8 * 1024 * 1024
#: Bytes of frames delivered from the bus in one loop iteration, all links
#: together: each iteration's flush hands the clients at most this much from
#: the bus, whatever the number of workers, however much a link has waiting.
DELIVERY_SLICE = 256 * 1024
#: Interest messages go past a peer's backlog limit: one lost would leave the
#: peer sending a room's messages to a worker that left it, or none to one
#: that joined (they are few: one per room that fills or empties, per linger).
_CONTROL_LIMIT = 1 << 62


class _Outbound(asyncio.Protocol):
    """Our end of a link to a peer: messages go out, only its hello comes in."""

    def __init__(self, bus: LocalBus, slot: int) -> None:
        self.bus = bus
        self.slot = slot
        self.tag: int | None = None  # the peer's node tag, once its hello arrived
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.flush_scheduled = False
        self.decoder = Decoder()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses: no isinstance() here.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(encode_hello(self.bus.node))

    def data_received(self, data: bytes) -> None:
        try:
            for m in self.decoder.feed(data):
                if m.kind != HELLO or self.tag is not None:
                    raise WireError("a peer sent more than its hello on our link")
                host, slot, _ = node_slot(m.origin)
                if host != self.bus.host or slot != self.slot:
                    raise WireError(f"a hello from node {m.origin:#010x}, not worker {self.slot} of this server")
                self.tag = m.origin
                self.bus._outbound_ready(self)
        except WireError as exc:
            log.error("bus: link to worker %d: %s; closing it", self.slot, exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pending = []
        self.bus._outbound_lost(self)

    def queue(self, message: bytes, limit: int) -> bool:
        """Cork ``message``; False (nothing queued) when the backlog would pass ``limit``."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        backlog = self.pending_bytes + transport.get_write_buffer_size()
        if backlog and backlog + len(message) > limit:
            return False
        self.pending.append(message)
        self.pending_bytes += len(message)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.bus.loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        self.flush_scheduled = False
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        if not pending:
            return
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            # The link went (its peer stopped, or we are shutting down) after these were queued: a
            # closed asyncio transport must not be written to (3.12+ raises), and they are dropped.
            self.bus._dropped_on_closed_link(self.slot, len(pending))
            return
        transport.writelines(pending)
        self.bus.writes += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Inbound(asyncio.Protocol):
    """A peer's link to us: its hello, then its messages."""

    def __init__(self, bus: LocalBus) -> None:
        self.bus = bus
        self.peer: int | None = None
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder()
        # Messages read but not delivered yet (delivery held, or this iteration's slice
        # spent), in order; reading stays paused until they are delivered.
        self.backlog: collections.deque[Message] = collections.deque()
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.bus._inbound.add(self)

    def data_received(self, data: bytes) -> None:
        bus = self.bus
        try:
            messages = self.decoder.feed(data)
            if self.backlog:  # read before reading paused: behind what waits
                self.backlog.extend(messages)
                return
            for i, m in enumerate(messages):
                if self.peer is not None and (bus._holding or bus._slice_left <= 0):
                    self.backlog.extend(messages[i:])
                    self._pause_reading()
                    bus._waiting.append(self)
                    return
                self._handle(m)
        except WireError as exc:
            self._malformed(exc)

    def drain(self) -> bool:
        """Deliver the backlog while the bus may; True once it is empty (reading resumes)."""
        bus = self.bus
        backlog = self.backlog
        try:
            while backlog:
                if bus._holding or bus._slice_left <= 0:
                    return False
                self._handle(backlog.popleft())
        except WireError as exc:
            self._malformed(exc)
            backlog.clear()
        transport = self.transport
        if not self.reading and transport is not None and not transport.is_closing():
            self.reading = True
            transport.resume_reading()
        return True

    def _handle(self, m: Message) -> None:
        """The peer's hello first, then deliveries; WireError for anything else."""
        bus = self.bus
        if self.peer is None:
            if m.kind != HELLO:
                raise WireError("a link that does not start with a hello")
            if not bus._accept_peer(m.origin):
                raise WireError(f"a hello from node {m.origin:#010x}, not a worker of this server")
            self.peer = m.origin
            bus._peer_linked(self)
            assert self.transport is not None
            self.transport.write(encode_hello(bus.node))
            return
        if m.kind == HELLO:
            raise WireError("a second hello")
        if m.kind > TO:
            bus._control(self, m)
            return
        bus.received += 1
        bus._slice_left -= len(m.frame)
        try:
            bus.deliver(m.kind, m.endpoint, m.key, m.frame)
        except Exception:  # the app's business (an endpoint gone...): never the link's
            log.exception("bus: delivering a message from worker %d failed", node_slot(m.origin)[1])
        if not bus._slice_scheduled:
            # After the delivery: the connections' flush (scheduled by it) comes first in the
            # next iteration, then the next slice, so one flush carries at most one slice.
            bus._slice_scheduled = True
            bus.loop.call_soon(bus._next_slice)

    def _pause_reading(self) -> None:
        transport = self.transport
        if self.reading and transport is not None and not transport.is_closing():
            self.reading = False
            transport.pause_reading()

    def _malformed(self, error: WireError) -> None:
        who = f"worker {node_slot(self.peer)[1]}" if self.peer is not None else "an unknown peer"
        log.error("bus: malformed message from %s: %s; closing the link", who, error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        # What it left in the backlog is still delivered, in turn (see LocalBus._next_slice).
        self.bus._inbound.discard(self)
        self.bus._peer_unlinked(self)


class LocalBus(Broker):
    """The mesh between the ``slots`` worker processes of one host (see the
    module docstring). ``node`` is this worker's tag
    (:func:`~robyn_fast.broker.make_node_tag`)."""

    def __init__(self, rundir: str, node: int, slots: int, *, buffer_limit: int = DEFAULT_BUFFER_LIMIT,
                 linger: float = DEFAULT_LINGER) -> None:
        host, slot, _ = node_slot(node)
        if not 0 <= slot < slots:
            raise ValueError(f"slot {slot} outside 0..{slots - 1}")
        self.rundir = rundir
        self.node = node
        self.host = host
        self.slot = slot
        self.slots = slots
        self.buffer_limit = buffer_limit
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.deliver: Deliver = not_started
        self.answer: Answer = no_answer
        self.links: dict[int, _Outbound] = {}  # slot -> our ready link to it
        self._dialing: dict[int, _Outbound] = {}
        self._inbound: set[_Inbound] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._meshed: asyncio.Future[None] | None = None
        self._closed = False
        self._dropping: dict[int, int] = {}  # slot -> messages dropped in the current episode
        # Inbound flow control: delivery held by the server (pause_delivery), what is left of
        # this iteration's slice, and the links with a backlog, in the order they stopped.
        self._holding = False
        self._slice_left = DELIVERY_SLICE
        self._slice_scheduled = False
        self._waiting: collections.deque[_Inbound] = collections.deque()
        # Rooms: ours (what we tell the others), and theirs (whom we send a room's messages).
        self.rooms = Batcher(linger, self._tell_peers)
        self.interest = self.rooms.interest
        self._peer_topics: dict[int, set[Topic]] = {}  # slot -> the rooms it said it needs
        self._room_peers: dict[Topic, set[int]] = {}  # room -> the slots that need it
        self._synced: set[int] = set()  # slots whose whole set arrived (the others get every room message)
        self._inbound_of: dict[int, _Inbound] = {}  # slot -> the link its interest comes on
        self.queries = QueryBook()
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.writes = 0
        self.filtered = 0  # (room message, worker) pairs not sent: the worker has no member there
        self.subscribe_commands = 0  # interest messages sent: a room wanted ...
        self.unsubscribe_commands = 0  # ... or given up
        self.queries_sent = 0

    def path(self, slot: int) -> str:
        return os.path.join(self.rundir, f"{slot}.sock")

    async def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, answer: Answer = no_answer) -> None:
        self.loop = loop
        self.deliver = deliver
        self.answer = answer
        self.rooms.start(loop)
        own = self.path(self.slot)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own)  # left by this slot's previous generation
        self._server = await loop.create_unix_server(lambda: _Inbound(self), own)
        await asyncio.gather(*(self._dial(slot) for slot in range(self.slots) if slot != self.slot))

    async def _dial(self, slot: int) -> None:
        if self._closed or slot in self._dialing:
            return
        link = _Outbound(self, slot)
        self._dialing[slot] = link
        try:
            await self.loop.create_unix_connection(lambda: link, self.path(slot))
        except OSError:
            self._dialing.pop(slot, None)  # not up yet: it dials us when it starts

    def _spawn_dial(self, slot: int) -> None:
        task = self.loop.create_task(self._dial(slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept_peer(self, tag: int) -> bool:
        """A hello on an inbound link: a worker of ours (new, or a new generation) is up."""
        host, slot, _ = node_slot(tag)
        if host != self.host or not 0 <= slot < self.slots or slot == self.slot:
            return False
        link = self.links.get(slot)
        if (link is None or link.tag != tag) and slot not in self._dialing:
            self._spawn_dial(slot)
        return True

    def _outbound_ready(self, link: _Outbound) -> None:
        slot = link.slot
        if self._dialing.get(slot) is link:
            del self._dialing[slot]
        old = self.links.get(slot)
        self.links[slot] = link
        if old is not None and old is not link:
            old.close()
        # Our whole interest set first, then the marker: the peer knows what we need from here on.
        for endpoint, room in self.interest.subscribed:
            link.queue(encode_interest(self.node, endpoint, room, True), _CONTROL_LIMIT)
        link.queue(encode_synced(self.node), _CONTROL_LIMIT)
        dropped = self._dropping.pop(slot, 0)
        if dropped:
            log.warning("bus: worker %d reachable again; %d message(s) to it were dropped meanwhile", slot, dropped)
        if self._meshed is not None and not self._meshed.done() and len(self.links) == self.slots - 1:
            self._meshed.set_result(None)

    async def wait_meshed(self, timeout: float) -> bool:
        """Wait until this worker has a link to every other slot; False after
        ``timeout`` (some worker is down or still starting)."""
        if len(self.links) == self.slots - 1:
            return True
        if self._meshed is None or self._meshed.done():
            self._meshed = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._meshed), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _outbound_lost(self, link: _Outbound) -> None:
        if self.links.get(link.slot) is link:
            del self.links[link.slot]
        if self._dialing.get(link.slot) is link:
            del self._dialing[link.slot]

    def _drop(self, slot: int, why: str) -> None:
        self.dropped += 1
        count = self._dropping.get(slot, 0)
        if count == 0 and not self._closed:
            log.warning("bus: worker %d %s; dropping messages to it until it catches up", slot, why)
        self._dropping[slot] = count + 1

    def _dropped_on_closed_link(self, slot: int, count: int) -> None:
        for _ in range(count):
            self._drop(slot, "went away with messages queued to it")

    def _send(self, slot: int, message: bytes) -> bool:
        link = self.links.get(slot)
        if link is None:
            self._drop(slot, "is unreachable")
            return False
        dropped = self._dropping.get(slot)
        # In an episode, the backlog must come down to half the limit before
        # anything is queued again: a peer that still reads nothing does not
        # "catch up" because a smaller message fits in the room left.
        if not link.queue(message, self.buffer_limit // 2 if dropped else self.buffer_limit):
            self._drop(slot, f"is too slow (backlog over {self.buffer_limit} bytes)")
            return False
        if dropped:
            # A message went through: the episode is over.
            del self._dropping[slot]
            log.warning("bus: worker %d caught up; %d message(s) to it were dropped", slot, dropped)
        return True

    def publish(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        message = encode(kind, self.node, endpoint, key, frame)
        self.published += 1
        if kind == ROOM:
            wanted = self._room_peers.get((endpoint, key), ())
            synced = self._synced
            for slot in range(self.slots):
                if slot != self.slot:
                    if slot in synced and slot not in wanted:
                        self.filtered += 1
                    else:
                        self._send(slot, message)
            return
        for slot in range(self.slots):
            if slot != self.slot:
                self._send(slot, message)

    def peers_for(self, endpoint: str, room: Key) -> frozenset[int]:
        """The slots a message to ``room`` of ``endpoint`` goes to now:
        those that said they have members there, and those whose interest
        is not known yet."""
        wanted = self._room_peers.get((endpoint, room), set())
        return frozenset(s for s in range(self.slots) if s != self.slot and (s not in self._synced or s in wanted))

    # -- rooms: ours ---------------------------------------------------------------------------

    def watch(self, endpoint: str, room: Key) -> None:
        if room is not None:  # every worker serves every endpoint of the app: broadcasts go to all
            self.rooms.want((endpoint, room))

    def unwatch(self, endpoint: str, room: Key) -> None:
        if room is not None:
            self.rooms.unwant((endpoint, room))

    def _tell_peers(self, subscribe: list[Topic], unsubscribe: list[Topic]) -> None:
        """Tell every peer the rooms wanted and given up since the last batch."""
        messages = [encode_interest(self.node, e, r, True) for e, r in subscribe]
        messages += [encode_interest(self.node, e, r, False) for e, r in unsubscribe]
        self.subscribe_commands += len(subscribe)
        self.unsubscribe_commands += len(unsubscribe)
        for link in self.links.values():
            for message in messages:
                link.queue(message, _CONTROL_LIMIT)
            # Out now, not at the end of the next iteration: before the joining client hears back
            # (its reply is flushed after this batch), so a send that answers that reply finds the
            # sender's worker told (the join race, narrowed to what the kernel still holds).
            link.flush()

    # -- rooms: theirs, and queries -------------------------------------------------------------

    def _peer_linked(self, inbound: _Inbound) -> None:
        """A hello on ``inbound``: what that slot needs comes on it from now
        on; until its set is complete it gets every room message."""
        assert inbound.peer is not None
        slot = node_slot(inbound.peer)[1]
        self._forget_peer(slot)
        self._inbound_of[slot] = inbound

    def _peer_unlinked(self, inbound: _Inbound) -> None:
        if inbound.peer is None:
            return
        slot = node_slot(inbound.peer)[1]
        if self._inbound_of.get(slot) is inbound:
            del self._inbound_of[slot]
            self._forget_peer(slot)

    def _forget_peer(self, slot: int) -> None:
        self._synced.discard(slot)
        for topic in self._peer_topics.pop(slot, ()):
            self._peer_left(slot, topic)

    def _peer_left(self, slot: int, topic: Topic) -> None:
        peers = self._room_peers.get(topic)
        if peers is not None:
            peers.discard(slot)
            if not peers:
                del self._room_peers[topic]

    def _control(self, inbound: _Inbound, m: Message) -> None:
        """A message for the bus itself (interest, a presence query or reply)."""
        assert inbound.peer is not None
        slot = node_slot(inbound.peer)[1]
        if self._inbound_of.get(slot) is not inbound:
            return  # an old link of that slot: its successor speaks for it
        if m.kind == INTEREST:
            if m.frame not in (b"\x00", b"\x01"):
                raise WireError(f"an interest flag of {m.frame!r}")
            topic = (m.endpoint, m.key)
            mine = self._peer_topics.setdefault(slot, set())
            if m.frame == b"\x01":
                mine.add(topic)
                self._room_peers.setdefault(topic, set()).add(slot)
            else:
                mine.discard(topic)
                self._peer_left(slot, topic)
        elif m.kind == SYNCED:
            self._synced.add(slot)
        elif m.kind == QUERY:
            ids = answer_query(self.answer, m, log)
            self._send(slot, encode_reply(self.node, m.endpoint, query_id(m.frame), ids))
        elif m.kind == REPLY:
            assert isinstance(m.key, int)
            self.queries.answer(m.key, m.origin, reply_ids(m.frame))

    async def presence(self, endpoint: str, room: Key, local: list[str], timeout: float) -> ClusterPresence:
        """A query to every other worker with a link (one message each),
        then their replies, at most ``timeout`` seconds; workers without a
        link (down, restarting) count as missing."""
        query = PresenceQuery(self.loop, self.node, local)
        request = self.queries.open(query)
        try:
            message = encode_query(self.node, endpoint, room, request)
            self.queries_sent += 1
            for link in list(self.links.values()):
                if link.tag is not None and link.queue(message, self.buffer_limit):
                    query.asked.add(link.tag)
            query.expect(len(query.asked))
            await query.wait(timeout)
        finally:
            self.queries.close(request)
        return query.result(unreachable=self.slots - 1 - len(query.asked))

    def publish_to(self, node: int, endpoint: str, conn_id: str, frame: bytes) -> bool:
        host, slot, _ = node_slot(node)
        if host != self.host or not 0 <= slot < self.slots or slot == self.slot:
            return False
        link = self.links.get(slot)
        if link is not None and link.tag is not None and link.tag != node:
            return False  # the id belongs to a generation of that worker that is gone
        self.published += 1
        return self._send(slot, encode(3, self.node, endpoint, conn_id, frame))

    def pause_delivery(self) -> None:
        """Hold back deliveries: each inbound link keeps what it reads next
        and stops reading (what its peer sends then waits in that peer's
        bounded backlog, dropped and counted past it)."""
        self._holding = True

    def resume_delivery(self) -> None:
        self._holding = False
        self._deliver_waiting()

    def _next_slice(self) -> None:
        """A new loop iteration: a new slice of deliveries for the links that wait."""
        self._slice_scheduled = False
        self._slice_left = DELIVERY_SLICE
        self._deliver_waiting()

    def _deliver_waiting(self) -> None:
        waiting = self._waiting
        while waiting and not self._holding:
            if not waiting[0].drain():
                return
            waiting.popleft()

    async def close(self) -> None:
        self._closed = True
        self._waiting.clear()
        self.rooms.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for link in [*self.links.values(), *self._dialing.values()]:
            link.flush()
            link.close()
        for inbound in list(self._inbound):
            if inbound.transport is not None:
                inbound.transport.close()
        self.links.clear()
        self._dialing.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(self.slot))
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "local",
            "node": self.node,
            "peers": len(self.links),
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "subscriptions": len(self.interest.subscribed),
            "subscribe_commands": self.subscribe_commands,
            "unsubscribe_commands": self.unsubscribe_commands,
            "filtered": self.filtered,
            "queries": self.queries_sent,
        }
