"""Where Redis is, sans-I/O (robyn_fast.broker.topology): hash slots as
Redis Cluster computes them, CLUSTER SLOTS answers read into a slot map
(checked for holes), MOVED/ASK redirections, and the answers of Sentinel."""

from __future__ import annotations

import pytest

from robyn_fast.broker.topology import (SLOTS, SlotMap, TopologyError, crc16, key_slot, parse_master_addr,
                                        parse_redirect, parse_role, parse_switch_master)


def test_crc16_and_key_slots_match_redis() -> None:
    assert crc16(b"123456789") == 0x31C3  # the XMODEM check value (Redis Cluster spec, appendix A)
    # Values redis-cli's CLUSTER KEYSLOT gives (Redis 7.0).
    assert key_slot(b"foo") == 12182
    assert key_slot(b"bar") == 5061
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers") == key_slot(b"user1000") == 3443
    assert key_slot(b"foo{}{bar}") == key_slot(b"foo{}{bar}")  # an empty tag: the whole key
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")  # the first { to the next }
    assert key_slot(b"") == 0
    assert all(0 <= key_slot(bytes([i])) < SLOTS for i in range(256))


THREE = [[0, 5460, [b"", 7000, b"a"]], [5461, 10922, [b"127.0.0.1", 7001, b"b"], [b"127.0.0.1", 7004, b"r"]],
         [10923, 16383, [b"127.0.0.1", 7002, b"c"]]]


def test_a_slot_map_names_each_slot_s_master() -> None:
    m = SlotMap(THREE, ("10.0.0.9", 7000))
    assert m.owner(0) == m.owner(5460) == ("10.0.0.9", 7000)  # an empty host: the node that answered
    assert m.owner(5461) == ("127.0.0.1", 7001)  # the master, not the replica
    assert m.owner(16383) == ("127.0.0.1", 7002)
    assert m.masters == (("10.0.0.9", 7000), ("127.0.0.1", 7001), ("127.0.0.1", 7002))
    m.moved(100, ("127.0.0.1", 7002))  # one slot migrated
    assert [m.owner(s) for s in (99, 100, 101, 5460)] == [("10.0.0.9", 7000), ("127.0.0.1", 7002),
                                                         ("10.0.0.9", 7000), ("10.0.0.9", 7000)]
    m.moved(0, ("127.0.0.1", 7001))
    m.moved(16383, ("127.0.0.1", 7001))
    assert m.owner(0) == m.owner(16383) == ("127.0.0.1", 7001) and m.owner(1) == ("10.0.0.9", 7000)
    assert m.owner(16382) == ("127.0.0.1", 7002)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ([], "no slot ranges"),
        ([[0, 100, [b"h", 1]]], "slots 101-16383 have no master"),
        ([[1, 16383, [b"h", 1]]], "slots 0-0 have no master"),
        ([[0, 10, [b"h", 1]], [20, 16383, [b"h", 1]]], "slots 11-19 have no master"),
        ([[0, 16384, [b"h", 1]]], "out of bounds"),
        ([[0, 16383, [b"?", 1]]], "no known address"),
        ([[0, 16383, [b"h", 0]]], "bad port"),
        ([[0, 16383]], "no slot range"),
    ],
)
def test_a_slot_map_with_holes_or_garbage_says_why(reply: object, says: str) -> None:
    with pytest.raises(TopologyError) as info:
        SlotMap(reply, ("h", 1))
    assert says in str(info.value)


def test_redirections_sentinel_answers_and_roles() -> None:
    assert parse_redirect("MOVED 3999 127.0.0.1:6381") == ("MOVED", 3999, ("127.0.0.1", 6381))
    assert parse_redirect("ASK 1 [::1]:7000") == ("ASK", 1, ("::1", 7000))
    assert parse_redirect("ERR unknown command") is None
    assert parse_redirect("MOVED x h:1") is None and parse_redirect("MOVED 1 h") is None
    assert parse_master_addr([b"127.0.0.1", b"6380"]) == ("127.0.0.1", 6380)
    assert parse_master_addr(None) is None
    with pytest.raises(TopologyError):
        parse_master_addr([b"h"])
    assert parse_switch_master(b"mymaster 127.0.0.1 6379 127.0.0.1 6380") == (
        "mymaster", ("127.0.0.1", 6379), ("127.0.0.1", 6380))
    with pytest.raises(TopologyError):
        parse_switch_master(b"mymaster 127.0.0.1 6379")
    assert parse_role([b"master", 10, []]) == "master"
    assert parse_role([b"slave", b"h", 1, b"connected", 5]) == "slave"
    with pytest.raises(TopologyError):
        parse_role(b"master")
