"""The Redis channels of the broker and which of them a node subscribes
to, sans-I/O: the broker asks :class:`Channels` "what to subscribe, what
to unsubscribe" and sends the commands over whatever carries them (one
subscriber connection today; a connection per shard would group the same
lists by the shard that owns each channel).

Names (``prefix`` from the broker URL; one namespace per app)::

    <prefix>:n:<node tag, 8 hex digits>               send_to an id of that node, presence replies
    <prefix>:e:<endpoint path>                        the endpoint's broadcasts and presence queries
    <prefix>:r:<path length>:<endpoint path>:s:<room> a room named by a str
    <prefix>:r:<path length>:<endpoint path>:i:<room> a room named by an int (decimal)

The path length (in bytes of UTF-8) keeps every name unambiguous whatever
the path and room hold (``:`` included), and room ``7`` apart from room
``"7"``, as the connection tables keep them.
"""

from __future__ import annotations

from .interest import Interest, Topic
from .wire import Key

__all__ = ["ChannelNames", "Channels"]


class ChannelNames:
    """The channel of each destination, for one prefix."""

    __slots__ = ("prefix", "_endpoints")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._endpoints: dict[str, bytes] = {}  # an app has few endpoints: each name is built once

    def node(self, node: int) -> bytes:
        return f"{self.prefix}:n:{node:08x}".encode()

    def endpoint(self, endpoint: str) -> bytes:
        name = self._endpoints.get(endpoint)
        if name is None:
            name = self._endpoints[endpoint] = f"{self.prefix}:e:{endpoint}".encode()
        return name

    def room(self, endpoint: str, room: Key) -> bytes:
        path = endpoint.encode()
        if type(room) is str:
            return b"%s:r:%d:%s:s:%s" % (self.prefix.encode(), len(path), path, room.encode())
        if type(room) is int:
            return b"%s:r:%d:%s:i:%d" % (self.prefix.encode(), len(path), path, room)
        raise TypeError(f"a room on the broker is a str or an int, not {type(room).__name__}")

    def topic(self, topic: Topic) -> bytes:
        endpoint, room = topic
        return self.endpoint(endpoint) if room is None else self.room(endpoint, room)


class Channels:
    """A node's subscriptions: its own node channel, always, and the
    channel of every topic its :class:`~robyn_fast.broker.interest.Interest`
    holds (the endpoints it serves, the rooms it has members in)."""

    __slots__ = ("names", "own", "interest")

    def __init__(self, names: ChannelNames, node: int, interest: Interest) -> None:
        self.names = names
        self.own = names.node(node)
        self.interest = interest

    def everything(self, now: float) -> list[bytes]:
        """Every channel to subscribe on a new connection (what was due is
        taken: a new connection starts from the whole set)."""
        self.interest.take(now)
        return [self.own, *(self.names.topic(t) for t in self.interest.subscribed)]

    def __len__(self) -> int:
        """Channels subscribed (the node's own and those of its topics)."""
        return 1 + len(self.interest.subscribed)
