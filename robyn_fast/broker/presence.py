"""Who is connected to an endpoint (or in one of its rooms) across every
node: the answer type and the bookkeeping of one query, sans-I/O.

A query goes once to every node of the endpoint (one message each: a
broadcast on the endpoint's channel over Redis, one message per worker on
the local bus); each node answers once, with a snapshot of its own
connections taken when the query reaches it, to the asker alone. The asker
waits for every answer it expects, at most ``timeout`` seconds.

Consistency: each node's part is exact at the moment that node answered;
the parts are taken at different moments, so a connection that joins,
leaves or moves while the query is under way may be counted or not (never
twice: a connection lives on one node), and one that is gone by the time
the answer is read may still be listed. Cost: one query message to every
node of the endpoint and one reply per node, whose size grows with the
node's connections (about 40 bytes per id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

from .wire import Key, Message

__all__ = ["ClusterPresence", "PresenceQuery", "QueryBook", "answer_query"]


class ClusterPresence(Mapping[str, int]):
    """Connection id -> the node tag of the process holding it, for every
    node that answered in time (this one included), in node order, each
    node's ids in its own order (joining order for a room).

    ``complete`` is True when every node that was asked answered.
    Otherwise ``missing`` says how many did not answer in time (or could
    not be asked: a worker that is down, Redis away); ``silent`` names
    those among them that are known by tag (None for ``missing`` when how
    many nodes there are is not known: Redis did not confirm the query in
    time). ``nodes`` are the tags of the nodes whose connections are listed."""

    __slots__ = ("_members", "nodes", "missing", "silent")

    def __init__(self, members: dict[str, int], nodes: tuple[int, ...], missing: int | None = 0,
                 silent: frozenset[int] = frozenset()) -> None:
        self._members = members
        self.nodes = nodes
        self.missing = missing
        self.silent = silent

    @property
    def complete(self) -> bool:
        """Every node of the endpoint answered."""
        return self.missing == 0

    def __getitem__(self, conn_id: str) -> int:
        return self._members[conn_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def on_node(self, node: int) -> list[str]:
        """The ids held by ``node``."""
        return [i for i, n in self._members.items() if n == node]

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"missing={self.missing}"
        return f"<ClusterPresence {len(self._members)} connection(s) on {len(self.nodes)} node(s), {state}>"


class PresenceQuery:
    """One query of this node, while it waits for the answers."""

    __slots__ = ("node", "parts", "asked", "expected", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop, node: int, local: list[str]) -> None:
        self.node = node
        self.parts: dict[int, list[str]] = {node: local}  # node -> its ids, this node's first
        self.asked: set[int] = set()  # the tags of the nodes asked, where the broker knows them
        # How many other nodes were asked (None until the broker knows: Redis answers the PUBLISH).
        self.expected: int | None = None
        self.done: asyncio.Future[None] = loop.create_future()

    def answer(self, node: int, ids: list[str]) -> None:
        """``node``'s answer (a second one from the same node is ignored)."""
        if node not in self.parts:
            self.parts[node] = ids
            self._check()

    def expect(self, count: int) -> None:
        """``count`` other nodes were asked."""
        self.expected = count
        self._check()

    def _check(self) -> None:
        if self.expected is not None and len(self.parts) - 1 >= self.expected and not self.done.done():
            self.done.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until every expected answer is in, or ``timeout`` seconds."""
        if not self.done.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.done), timeout)
            except asyncio.TimeoutError:
                pass

    def result(self, unreachable: int = 0) -> ClusterPresence:
        """The answer so far; ``unreachable``: nodes that could not be
        asked at all (counted as missing)."""
        members: dict[str, int] = {}
        for node, ids in self.parts.items():
            for conn_id in ids:
                members.setdefault(conn_id, node)
        answered = len(self.parts) - 1
        missing = None if self.expected is None else max(0, self.expected - answered) + unreachable
        silent = frozenset(self.asked - self.parts.keys())
        return ClusterPresence(members, tuple(self.parts), missing, silent)


class QueryBook:
    """A broker's queries in flight, by request id."""

    __slots__ = ("queries", "_next")

    def __init__(self) -> None:
        self.queries: dict[int, PresenceQuery] = {}
        self._next = 0

    def open(self, query: PresenceQuery) -> int:
        """A request id for ``query`` (32 bits, not in use)."""
        while True:
            self._next = (self._next + 1) & 0xFFFFFFFF
            if self._next not in self.queries:
                self.queries[self._next] = query
                return self._next

    def close(self, request: int) -> None:
        self.queries.pop(request, None)

    def answer(self, request: int, node: int, ids: list[str]) -> bool:
        """A reply; False when no query of ours has that id (it timed out)."""
        query = self.queries.get(request)
        if query is None:
            return False
        query.answer(node, ids)
        return True


def answer_query(answer: Callable[[str, Key], list[str] | None], query: Message, log: logging.Logger) -> list[str]:
    """This node's part of ``query`` (another node's): what ``answer``
    (the server's) says, or nothing when it raises (logged)."""
    try:
        return answer(query.endpoint, query.key) or []
    except Exception:
        log.exception("broker: answering a presence query from node %08x failed", query.origin)
        return []
