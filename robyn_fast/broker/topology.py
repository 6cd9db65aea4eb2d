"""Where Redis is, sans-I/O: the answers of Redis Sentinel and Redis Cluster
read into addresses, and a channel's hash slot.

- **Sentinel**: ``SENTINEL get-master-addr-by-name NAME`` answers the
  master's ``[host, port]`` (or nil: no such master); a sentinel publishes
  ``+switch-master NAME old-host old-port new-host new-port`` when a
  failover promoted a replica; ``ROLE`` on the node we reached says whether
  it is (still) the master.
- **Cluster**: a channel belongs to one of 16384 hash slots (CRC16/XMODEM of
  the channel, or of its ``{hash tag}``, modulo 16384), each slot to one
  shard; ``CLUSTER SLOTS`` lists each range of slots with its master (and
  replicas); a command sent to the wrong node is answered ``MOVED slot
  host:port`` (the slot lives there now) or ``ASK slot host:port`` (being
  migrated: ask there once). Sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``,
  Redis 7.0) delivers within the shard that owns the channel's slot.

Nothing here does I/O: :mod:`robyn_fast.broker.redis` asks and acts.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple

__all__ = ["SLOTS", "crc16", "key_slot", "SlotMap", "Redirect", "parse_redirect", "parse_master_addr",
           "parse_switch_master", "parse_role", "TopologyError"]

SLOTS = 16384


class TopologyError(ValueError):
    """An answer about where Redis is that cannot be used; ``str()`` says why."""


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC = _table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster uses."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: bytes) -> int:
    """The hash slot of a key or channel: of the part between the first
    ``{`` and the next ``}`` when that is not empty, else of the whole."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) % SLOTS


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise TopologyError(f"expected a string, got {value!r:.60}")


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise TopologyError(f"bad port {value!r:.30}") from None
    if not 0 < port < 65536:
        raise TopologyError(f"bad port {port}")
    return port


class SlotMap:
    """Which node serves each hash slot: built from a ``CLUSTER SLOTS``
    reply. ``asked``: the node that answered (a master listed with an empty
    host is that node). Every slot must be covered, else the cluster is not
    ready (``TopologyError``)."""

    def __init__(self, reply: Any, asked: tuple[str, int]) -> None:
        if not isinstance(reply, list) or not reply:
            raise TopologyError("CLUSTER SLOTS answered no slot ranges (is the cluster made?)")
        ranges: list[tuple[int, int, tuple[str, int]]] = []
        for entry in reply:
            if not isinstance(entry, list) or len(entry) < 3 or not isinstance(entry[2], list) \
                    or len(entry[2]) < 2:
                raise TopologyError(f"a CLUSTER SLOTS entry that is no slot range: {entry!r:.80}")
            start, end = int(entry[0]), int(entry[1])
            if not 0 <= start <= end < SLOTS:
                raise TopologyError(f"a slot range out of bounds: {start}-{end}")
            host = _text(entry[2][0]) or asked[0]
            if host == "?":
                raise TopologyError(f"the master of slots {start}-{end} has no known address")
            ranges.append((start, end, (host, _port(entry[2][1]))))
        ranges.sort()
        covered = 0
        for start, end, _ in ranges:
            if start != covered:
                raise TopologyError(f"slots {covered}-{start - 1} have no master (the cluster is not ready)")
            covered = end + 1
        if covered != SLOTS:
            raise TopologyError(f"slots {covered}-{SLOTS - 1} have no master (the cluster is not ready)")
        self._starts = [start for start, _, _ in ranges]
        self._owners = [owner for _, _, owner in ranges]
        self.masters: tuple[tuple[str, int], ...] = tuple(dict.fromkeys(self._owners))

    def __eq__(self, other: object) -> bool:
        """The same masters for the same slots."""
        if not isinstance(other, SlotMap):
            return NotImplemented
        return self._starts == other._starts and self._owners == other._owners

    __hash__ = None  # type: ignore[assignment]  # mutable (moved())

    def owner(self, slot: int) -> tuple[str, int]:
        """The master serving ``slot``."""
        return self._owners[bisect.bisect_right(self._starts, slot) - 1]

    def moved(self, slot: int, node: tuple[str, int]) -> None:
        """``MOVED slot host:port``: that slot alone lives on ``node`` now
        (the map is re-read soon after; until then this slot goes there)."""
        i = bisect.bisect_right(self._starts, slot) - 1
        start, owner = self._starts[i], self._owners[i]
        end = self._starts[i + 1] - 1 if i + 1 < len(self._starts) else SLOTS - 1
        pieces = [(start, owner)] if slot > start else []
        pieces.append((slot, node))
        if slot < end:
            pieces.append((slot + 1, owner))
        self._starts[i:i + 1] = [s for s, _ in pieces]
        self._owners[i:i + 1] = [o for _, o in pieces]
        self.masters = tuple(dict.fromkeys(self._owners))


class Redirect(NamedTuple):
    kind: str  # "MOVED" or "ASK"
    slot: int
    node: tuple[str, int]


def parse_redirect(text: str) -> Redirect | None:
    """A ``MOVED``/``ASK`` error reply's redirection, or None for any other error."""
    parts = text.split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK") or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    host, colon, port = parts[2].rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()):
        return None
    host = host.strip("[]")
    return Redirect(parts[0], int(parts[1]), (host, _port(port)))


def parse_master_addr(reply: Any) -> tuple[str, int] | None:
    """``SENTINEL get-master-addr-by-name``'s answer: (host, port), or None
    when the sentinel knows no master of that name."""
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) != 2:
        raise TopologyError(f"a sentinel's answer is no [host, port]: {reply!r:.60}")
    host = _text(reply[0])
    if not host:
        raise TopologyError("a sentinel answered an empty host")
    return host, _port(reply[1])


def parse_switch_master(payload: bytes) -> tuple[str, tuple[str, int], tuple[str, int]]:
    """A ``+switch-master`` message: (master name, old address, new address)."""
    parts = payload.decode("utf-8", "replace").split()
    if len(parts) != 5:
        raise TopologyError(f"a +switch-master message that is not 'name host port host port': {payload!r:.80}")
    return parts[0], (parts[1], _port(parts[2])), (parts[3], _port(parts[4]))


def parse_role(reply: Any) -> str:
    """The role in a ``ROLE`` reply: ``master``, ``slave`` or ``sentinel``."""
    if not isinstance(reply, list) or not reply:
        raise TopologyError(f"a ROLE answer that is no list: {reply!r:.60}")
    return _text(reply[0])
