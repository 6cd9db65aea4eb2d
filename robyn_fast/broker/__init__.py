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
"""

from __future__ import annotations

import abc
import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from .wire import ALL, ROOM, TO, Key

__all__ = ["Broker", "Deliver", "ALL", "ROOM", "TO", "node_slot", "make_node_tag", "random_node_tag", "not_started"]

#: ``deliver(kind, endpoint path, key, frame)``: what a broker calls, on the
#: loop, for each message another node published (``key``: the room for
#: ROOM, the connection id for TO, None for ALL).
Deliver = Callable[[int, str, Key, bytes], None]


def not_started(kind: int, endpoint: str, key: Key, frame: bytes) -> None:
    """A broker's ``deliver`` until ``start()`` gives it the server's."""
    raise RuntimeError("a broker delivered a message before start()")


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
    async def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Join the other nodes; from now on ``deliver`` is called with what they publish."""

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
        ``received``, ``dropped``."""
