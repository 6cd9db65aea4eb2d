"""Delivery across the nodes of one server: the worker processes of a host
(:class:`~robyn_fast.broker.local.LocalBus`), or every worker of several
hosts joined by Redis (:class:`~robyn_fast.broker.redis.RedisBroker`). One
interface, :class:`Broker`, whatever carries the messages.

A node's server delivers to its own connections first, then hands the
broker one message per broadcast (the ready-built frame and a small header,
:mod:`robyn_fast.broker.wire`); each other node gives the same frame to its
connection table. Guarantees every broker keeps:

- local recipients are served first, synchronously;
- messages from one node to another arrive in the order they were
  published (one ordered stream per pair of nodes), so what one connection's
  handler sends to another connection arrives in order wherever the two live;
- at-most-once: nothing is retried; what cannot be carried (a peer that is
  down, slow past its buffer) is dropped and counted, and logged once per
  episode, never once per message;
- nothing blocks the event loop and nothing grows without bound.

Routing: a node tells its broker which rooms it has members in
(:meth:`Broker.watch` / :meth:`Broker.unwatch`, driven by the connection
tables) and receives a room's messages only while it has (and for a short
linger after its last member left: :mod:`robyn_fast.broker.interest`).
A member that joins a room on one node while another node publishes to it
is a race: a message published before the join reached the publisher's
broker (the other worker's interest message, or the SUBSCRIBE at Redis) is
not delivered to that member; what is published after is. Endpoint-wide
broadcasts reach every node that serves the endpoint, ``send_to`` the one
node that holds the id.

Presence (:meth:`Broker.presence`): who is connected to an endpoint, or in
one of its rooms, on every node (:mod:`robyn_fast.broker.presence`).
"""

from __future__ import annotations

import abc
import asyncio
import secrets
from collections.abc import Callable
from typing import Any, Optional

from .presence import ClusterPresence, PresenceQuery
from .wire import ALL, ROOM, TO, Key

__all__ = ["Broker", "Deliver", "Answer", "Key", "ALL", "ROOM", "TO", "node_slot", "make_node_tag", "random_node_tag",
           "not_started", "no_answer", "ClusterPresence"]

#: ``deliver(kind, endpoint path, key, frame)``: what a broker calls, on the
#: loop, for each message another node published (``key``: the room for
#: ROOM, the connection id for TO, None for ALL).
Deliver = Callable[[int, str, Key, bytes], None]


#: ``answer(endpoint path, room)``: the ids of this node's connections of the
#: endpoint (room None) or of its room, in order; what a broker replies to
#: another node's presence query.
Answer = Callable[[str, Key], Optional[list[str]]]


def not_started(kind: int, endpoint: str, key: Key, frame: bytes) -> None:
    """A broker's ``deliver`` until ``start()`` gives it the server's."""
    raise RuntimeError("a broker delivered a message before start()")


def no_answer(endpoint: str, room: Key) -> list[str] | None:
    """A broker's ``answer`` when the server gave none: nothing here."""
    return None


def make_node_tag(host: int, slot: int, generation: int) -> int:
    """A 32-bit node tag: 16 bits naming the host (random per supervisor
    start), 8 bits the worker slot, 8 bits the slot's generation (a restarted
    worker gets the next), never 0."""
    if not 0 < host < 1 << 16 or not 0 <= slot < 1 << 8 or not 0 <= generation < 1 << 8:
        raise ValueError(f"bad node tag parts: host={host} slot={slot} generation={generation}")
    return host << 16 | slot << 8 | generation


def random_node_tag() -> int:
    """A node tag for a node on a broker shared by several hosts: 32 random
    bits, not 0 (two of 100 nodes share one with odds of about 1 in a
    million; a restarted worker draws a new one)."""
    return secrets.randbits(32) or 1


def node_slot(tag: int) -> tuple[int, int, int]:
    """``(host, slot, generation)`` of a node tag."""
    return tag >> 16, (tag >> 8) & 0xFF, tag & 0xFF


class Broker(abc.ABC):
    """What a server needs from whatever joins it to its other nodes."""

    #: This node's tag (the first 32 bits of the ids of its connections).
    node: int

    @abc.abstractmethod
    async def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, answer: Answer = no_answer) -> None:
        """Join the other nodes; from now on ``deliver`` is called with what
        they publish, and ``answer`` with their presence queries."""

    def watch(self, endpoint: str, room: Key) -> None:
        """This node serves ``endpoint`` (``room`` None: its broadcasts
        reach it), or has its first member in ``room`` of it: from the next
        loop iteration on, what other nodes publish there reaches it. Never
        raises."""

    def unwatch(self, endpoint: str, room: Key) -> None:
        """The last member of ``room`` on this node left: after a linger
        (:mod:`robyn_fast.broker.interest`) its messages stop coming.
        Never raises."""

    async def presence(self, endpoint: str, room: Key, local: list[str], timeout: float) -> ClusterPresence:
        """Who is connected to ``endpoint`` (``room`` None) or in ``room``,
        on every node: ``local`` (this node's ids) and what the other nodes
        answer within ``timeout`` seconds (see
        :class:`~robyn_fast.broker.presence.ClusterPresence`). A broker
        that asks nobody answers with ``local`` alone, complete."""
        query = PresenceQuery(asyncio.get_running_loop(), self.node, local)
        query.expect(0)
        return query.result()

    @abc.abstractmethod
    def publish(self, kind: int, endpoint: str, key: Key, frame: bytes) -> None:
        """``frame`` to every other node (ALL, ROOM): one message each,
        corked until the end of the loop iteration."""

    @abc.abstractmethod
    def publish_to(self, node: int, endpoint: str, conn_id: str, frame: bytes) -> bool:
        """``frame`` to the connection ``conn_id`` on node ``node`` only.
        False when that node is known to be gone or unreachable (the message
        is dropped); True when it was handed over (delivery is not known)."""

    def pause_delivery(self) -> None:
        """This node's clients are behind: stop taking in what other nodes
        publish (it waits in their buffers, which are bounded and count what
        they drop) until :meth:`resume_delivery`. Calls come in pairs. A
        broker that cannot hold messages back ignores them."""

    def resume_delivery(self) -> None:
        """Deliver again what other nodes publish (see :meth:`pause_delivery`)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the other nodes; nothing is delivered afterwards."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counters: ``peers`` connected, messages ``published``,
        ``received``, ``dropped``; ``subscriptions`` (topics this node
        receives), ``subscribe_commands`` and ``unsubscribe_commands``
        (batches sent to change them), ``filtered`` (messages this node did
        not need: see each broker), ``queries`` (presence queries asked)."""
