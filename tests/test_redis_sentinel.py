"""The Redis broker behind Redis Sentinel (``redis+sentinel://``), against
real processes the tests start (tests/redis_helpers.py): a master, its
replica and three sentinels. Two nodes exchange messages through the master
the sentinels name; the master is killed mid-traffic, the sentinels promote
the replica, and delivery resumes on the new master within seconds, with
what was lost counted and the episode logged as one outage (a line when it
starts, one when it ends). Also: a sentinel that is down is skipped, a
master name no sentinel knows is retried and said once, and the URLs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from robyn_fast.broker.resp import BrokerURLError, parse_url
from robyn_fast.broker.wire import ALL

from .redis_helpers import SentinelSet, sentinel_set
from .test_redis_broker import Node, run_on

# -- URLs (no Redis needed) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "mode", "seeds", "master", "db", "password", "shown"),
    [
        ("redis+sentinel://s1:26380,s2,s3:1/mymaster", "sentinel", (("s1", 26380), ("s2", 26379), ("s3", 1)),
         "mymaster", 0, None, "redis+sentinel://s1:26380,s2:26379,s3:1/mymaster"),
        ("redis+sentinel://:pw@10.0.0.1:5000/m/3?prefix=chat", "sentinel", (("10.0.0.1", 5000),), "m", 3, "pw",
         "redis+sentinel://10.0.0.1:5000/m/3"),
        ("rediss+sentinel://[::1]:7,[::2]/m?ssl_cert_reqs=none", "sentinel", (("::1", 7), ("::2", 26379)), "m", 0,
         None, "rediss+sentinel://[::1]:7,[::2]:26379/m"),
        ("redis+cluster://a:7000,b:7001", "cluster", (("a", 7000), ("b", 7001)), None, 0, None,
         "redis+cluster://a:7000,b:7001"),
        ("redis+cluster://u:pw@a", "cluster", (("a", 6379),), None, 0, "pw", "redis+cluster://a:6379"),
    ],
)
def test_sentinel_and_cluster_urls(url: str, mode: str, seeds: tuple[Any, ...], master: str | None, db: int,
                                   password: str | None, shown: str) -> None:
    a = parse_url(url)
    assert (a.mode, a.seeds, a.master_name, a.db, a.password, a.url) == (mode, seeds, master, db, password, shown)
    assert (a.host, a.port) == seeds[0]
    one = a.at("10.1.1.1", 6390)  # a node it names: the same login on another address
    assert (one.mode, one.host, one.port, one.password, one.db) == ("single", "10.1.1.1", 6390, password, db)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:26379", "no master name"),
        ("redis+sentinel://s1,,s2/m", "an empty host"),
        ("redis+sentinel://s1:x/m", "bad port"),
        ("redis+sentinel://s1:70000/m", "bad port"),
        ("redis+sentinel://s1:\u00b2/m", "bad port"),  # a digit to str.isdigit, not to int()
        ("redis://h:1?max_reply_size=\u00b2", "max_reply_size is a number"),
        ("redis+sentinel://s1/m/x", "db is a number"),
        ("redis+sentinel://s1/m/1/2", "the path is /MASTER[/db]"),
        ("redis+sentinel://s1/m/1?db=2", "the db is given twice"),
        ("redis+cluster://a:7000/1", "a cluster has no db"),
        ("redis+cluster://a:7000?db=1", "a cluster has no db"),
        ("redis+cluster://a?sentinel_password=x", "are for redis+sentinel"),
        ("redis+cluster://a?color=red", "unknown option(s) color"),
        ("redis+sentinel://[::1/m", "bad IPv6 host"),
    ],
)
def test_bad_sentinel_and_cluster_urls_say_why(url: str, says: str) -> None:
    with pytest.raises(BrokerURLError, match=None) as info:
        parse_url(url)
    assert says in str(info.value), str(info.value)


def test_a_sentinel_url_never_shows_its_passwords() -> None:
    url = "redis+sentinel://:topsecret@s1:1/m?sentinel_password=alsosecret"
    a = parse_url(url)
    assert a.password == "topsecret" and a.sentinel_password == "alsosecret"
    assert "topsecret" not in a.url and "alsosecret" not in a.url
    assert "secret" not in repr(a)
    with pytest.raises(BrokerURLError) as info:
        parse_url("redis+sentinel://:topsecret@s1:x/m")
    assert "topsecret" not in str(info.value)


# -- against real sentinels -----------------------------------------------------------------------------------


@pytest.fixture()
def sentinels() -> Iterator[SentinelSet]:
    with sentinel_set() as s:
        yield s


@pytest.mark.full_scope
def test_a_failover_is_followed_within_seconds(sentinels: SentinelSet, loop_kind: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    first_master = sentinels.master.port

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a = await Node(sentinels.url + "?prefix=failover", 0xA1).start()
        b = await Node(sentinels.url + "?prefix=failover", 0xB2).start()
        assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
        assert a.broker.stats()["master"] == f"127.0.0.1:{first_master}"
        sent = 0

        async def traffic_until(done: Any, timeout: float) -> None:
            nonlocal sent
            deadline = time.monotonic() + timeout
            while not done():
                assert time.monotonic() < deadline, f"not within {timeout} s: {a.broker.stats()} {b.got[-1:]}"
                a.broker.publish(ALL, "/chat", None, b"m%d" % sent)
                sent += 1
                await asyncio.sleep(0.01)

        await traffic_until(lambda: len(b.got) >= 20, 5)
        kill = loop.run_in_executor(None, sentinels.kill_master)
        # Traffic goes on while the master is down and the sentinels elect the replica.
        await traffic_until(kill.done, 30)
        new_master = (await kill).port
        t0 = time.monotonic()
        got_before = len(b.got)
        await traffic_until(lambda: len(b.got) >= got_before + 20 and a.broker.connected, 10)
        resumed = time.monotonic() - t0
        assert resumed < 10, resumed
        stats = a.broker.stats()
        assert stats["master"] == f"127.0.0.1:{new_master}" and stats["failovers"] >= 1, stats
        assert b.broker.stats()["master"] == f"127.0.0.1:{new_master}"
        # In order and never twice (at-most-once: what was published while b's subscriber was away is lost).
        received = [int(m[3][1:]) for m in b.got]
        assert received == sorted(received) and len(set(received)) == len(received)
        assert received[-1] == sent - 1 or len(b.got) >= got_before + 20
        for node in (a, b):
            await node.broker.close()

    with caplog.at_level(logging.INFO, logger="robyn_fast.broker"):
        run_on(loop_kind, main, timeout=90)
    lines = [r.getMessage() for r in caplog.records if r.name == "robyn_fast.broker" and r.levelno >= logging.WARNING]
    # One outage per node: a line when it starts ("reconnecting") and one when it ends ("again after").
    assert sum("reconnecting" in line for line in lines) == 2, lines
    assert sum("again after" in line and f":{sentinels.master.port})" in line for line in lines) == 2, lines
    assert not [line for line in lines if "retrying" in line], lines


@pytest.mark.full_scope
def test_a_dead_sentinel_is_skipped_and_an_unknown_master_is_said_once(
        sentinels: SentinelSet, loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        # The first sentinel listed is gone: the others answer.
        sentinels.sentinels[0].kill()
        sentinels.sentinels[0].wait()
        a = await Node(sentinels.url + "?prefix=skip", 0xA1).start()
        assert await a.broker.wait_connected(10)
        assert a.broker.stats()["master"] == f"127.0.0.1:{sentinels.master.port}"
        await a.broker.close()
        # A master no sentinel knows: not connected, retried, said once (not once per attempt).
        url = sentinels.url.replace("/rfmaster", "/nosuchmaster")
        b = await Node(url + "?prefix=skip", 0xB2).start()
        assert not await b.broker.wait_connected(2.5)  # several attempts (backoff 0.1 s doubling to 1 s)
        assert not b.broker.stats()["connected"] and b.broker.stats()["master"] is None
        await b.broker.close()

    with caplog.at_level(logging.WARNING, logger="robyn_fast.broker"):
        run_on(loop_kind, main, timeout=60)
    said = [r.getMessage() for r in caplog.records if "knows no master named 'nosuchmaster'" in r.getMessage()]
    assert len(said) == 1, said
