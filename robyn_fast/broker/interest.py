"""Which topics a node needs from the others, with hysteresis, sans-I/O.

A *topic* is ``(endpoint path, room)``: a room of an endpoint, or (room
None) the endpoint's broadcasts. A node needs a room while it has at least
one member there. :class:`Interest` turns the joins and leaves of the
node's connections into batches of subscribe/unsubscribe requests that a
broker sends (Redis SUBSCRIBE/UNSUBSCRIBE commands, or interest messages to
the other workers of the local bus):

- a room that gets its first member is subscribed in the next batch (the
  broker takes one batch per loop iteration: every room joined in one
  iteration costs one command);
- a room whose last member leaves stays subscribed for ``linger`` seconds
  and is unsubscribed only if nobody joined it meanwhile, so a room that
  empties and fills again (a member reconnecting, churn) costs nothing; a
  join and a leave within one iteration cost nothing either.

So however fast connections join and leave one room, its subscription
changes at most once per ``linger`` seconds each way.
"""

from __future__ import annotations

import asyncio
from typing import Callable, List, Tuple

from .wire import Key

__all__ = ["Topic", "Interest", "Batcher", "DEFAULT_LINGER"]

#: ``(endpoint path, room)``; room None: the endpoint's broadcasts.
Topic = Tuple[str, Key]

#: Seconds a room stays subscribed after its last member left.
DEFAULT_LINGER = 2.0


class Interest:
    """The topics a node subscribes to, and the batches that change them."""

    __slots__ = ("linger", "subscribed", "_to_subscribe", "_lingering")

    def __init__(self, linger: float = DEFAULT_LINGER) -> None:
        if not linger >= 0:
            raise ValueError(f"a room's linger is 0 or more seconds, not {linger!r}")
        self.linger = linger
        #: The topics subscribed (the batches taken so far): what a new link
        #: subscribes again and what a new peer is told.
        self.subscribed: set[Topic] = set()
        self._to_subscribe: dict[Topic, None] = {}  # wanted, for the next batch (in the order wanted)
        # Subscribed, nobody there any more: when each is to be unsubscribed (in that order: linger is fixed).
        self._lingering: dict[Topic, float] = {}

    def want(self, topic: Topic) -> bool:
        """The node has a member in ``topic`` now; True when the next batch
        has something to send for it (the caller schedules one)."""
        if self._lingering.pop(topic, None) is not None:
            return False  # still subscribed: the unsubscribe is called off
        if topic in self.subscribed or topic in self._to_subscribe:
            return False
        self._to_subscribe[topic] = None
        return True

    def unwant(self, topic: Topic, now: float) -> float | None:
        """The node's last member of ``topic`` left at ``now``; when its
        unsubscribe falls due (None: nothing to do, it was never sent)."""
        if topic in self._to_subscribe:
            del self._to_subscribe[topic]  # wanted and unwanted before any batch: nothing was, or will be, sent
            return None
        if topic not in self.subscribed:
            return None
        due = self._lingering.get(topic)
        if due is None:
            due = self._lingering[topic] = now + self.linger
        return due

    @property
    def pending(self) -> bool:
        """A subscription waits for the next batch."""
        return bool(self._to_subscribe)

    @property
    def deadline(self) -> float | None:
        """When the first lingering topic falls due (None: none lingers)."""
        for due in self._lingering.values():
            return due
        return None

    def take(self, now: float) -> tuple[list[Topic], list[Topic]]:
        """The batch due at ``now``: the topics to subscribe and those to
        unsubscribe (each list may be empty). They count as done."""
        subscribe = list(self._to_subscribe)
        self._to_subscribe.clear()
        self.subscribed.update(subscribe)
        unsubscribe: list[Topic] = []
        lingering = self._lingering
        while lingering:
            topic, due = next(iter(lingering.items()))
            if due > now:
                break
            del lingering[topic]
            self.subscribed.discard(topic)
            unsubscribe.append(topic)
        return subscribe, unsubscribe

    def clear(self) -> None:
        """Forget everything (the node leaves)."""
        self.subscribed.clear()
        self._to_subscribe.clear()
        self._lingering.clear()


#: ``send(subscribe, unsubscribe)``: a batch for the broker to carry out.
SendBatch = Callable[[List[Topic], List[Topic]], None]


class Batcher:
    """An :class:`Interest` on an event loop: ``want``/``unwant`` as the
    node's rooms fill and empty; ``send`` is called with one batch per loop
    iteration that changed something, and when a linger runs out."""

    __slots__ = ("interest", "send", "loop", "_scheduled", "_timer", "_closed")

    def __init__(self, linger: float, send: SendBatch) -> None:
        self.interest = Interest(linger)
        self.send = send
        self.loop: asyncio.AbstractEventLoop | None = None  # until start(): changes wait for it
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if self.interest.pending:
            self._schedule()

    def want(self, topic: Topic) -> None:
        if not self._closed and self.interest.want(topic) and self.loop is not None:
            self._schedule()

    def unwant(self, topic: Topic) -> None:
        if self._closed or self.loop is None:
            return
        due = self.interest.unwant(topic, self.loop.time())
        if due is not None and self._timer is None:
            self._timer = self.loop.call_at(due, self._linger_over)

    def _schedule(self) -> None:
        if not self._scheduled and self.loop is not None:
            self._scheduled = True
            self.loop.call_soon(self._batch)

    def _linger_over(self) -> None:
        self._timer = None
        self._batch()

    def _batch(self) -> None:
        self._scheduled = False
        if self._closed or self.loop is None:
            return
        subscribe, unsubscribe = self.interest.take(self.loop.time())
        if subscribe or unsubscribe:
            self.send(subscribe, unsubscribe)
        due = self.interest.deadline
        if due is not None and self._timer is None:
            self._timer = self.loop.call_at(due, self._linger_over)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
