"""Issue 23, items 1 and 4: a room's messages reach only the nodes that have
members there, and who is connected where can be asked across every node.

Sans-I/O: the interest bookkeeping (hysteresis, batches) and the channel
names. On the local bus (real Unix sockets between buses in one process)
and on a real redis-server (``PUBSUB NUMSUB``): a node with no member in a
room gets none of its traffic; a join makes it arrive, the last leave plus
the linger stops it; 1000 fast joins and leaves cost a bounded number of
subscribe commands; a worker that starts late learns the others' rooms;
a presence query gathers every node's ids and, when one node does not
answer, returns a partial answer within its timeout. The same across real
servers joined by Redis (across real worker processes, on both Robyn APIs:
tests/test_workers.py and tests/test_ws_receive_api.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket as wsclient

from robyn_fast.broker import ALL, ROOM, make_node_tag
from robyn_fast.broker.channels import ChannelNames
from robyn_fast.broker.interest import Interest
from robyn_fast.broker.local import LocalBus
from robyn_fast.broker.presence import ClusterPresence
from robyn_fast.websocket.ids import node_of

from .process_helpers import ROOT
from .redis_helpers import RedisServer, redis_server
from .test_bus import HOST, TIMEOUT, Inbox, buses, rundir, run, until, watching  # noqa: F401 (rundir: fixture)
from .test_redis_broker import Node, run_on, subscribed
from .test_workers import Client
from .test_ws_receive_api import servers_over_redis

# -- sans-I/O --------------------------------------------------------------------------------------------


def test_a_room_is_subscribed_once_and_unsubscribed_after_its_linger() -> None:
    interest = Interest(linger=2.0)
    red = ("/chat", "red")
    assert interest.want(red) is True and interest.want(red) is False  # a second member: nothing to send
    assert interest.take(0.0) == ([red], []) and interest.subscribed == {red}
    assert interest.unwant(red, 10.0) == 12.0 and interest.deadline == 12.0
    assert interest.take(11.9) == ([], [])  # still lingering
    assert interest.want(red) is False and interest.deadline is None  # back before the linger ended: kept
    assert interest.unwant(red, 20.0) == 22.0
    assert interest.take(22.0) == ([], [red]) and interest.subscribed == set()
    # Joined and left within one batch: nothing is ever sent.
    assert interest.want(("/chat", 7)) is True
    assert interest.unwant(("/chat", 7), 30.0) is None
    assert interest.take(30.0) == ([], []) and not interest.pending
    with pytest.raises(ValueError):
        Interest(linger=-1)


def test_churn_changes_a_subscription_at_most_once_per_linger_each_way() -> None:
    interest = Interest(linger=1.0)
    room = ("/ws", "busy")
    sent = {"subscribe": 0, "unsubscribe": 0}
    now = 0.0
    for i in range(10_000):  # a join and a leave every millisecond, a batch every 5 ms, for 10 s
        interest.want(room)
        if i % 5 == 0:
            subscribe, unsubscribe = interest.take(now)
            sent["subscribe"] += len(subscribe)
            sent["unsubscribe"] += len(unsubscribe)
        interest.unwant(room, now)
        now += 0.001
    subscribe, unsubscribe = interest.take(now + 1.0)
    sent["subscribe"] += len(subscribe)
    sent["unsubscribe"] += len(unsubscribe)
    assert sent == {"subscribe": 1, "unsubscribe": 1}


def test_channel_names_are_unambiguous() -> None:
    names = ChannelNames("app")
    assert names.node(0xAB) == b"app:n:000000ab"
    assert names.endpoint("/chat") == b"app:e:/chat"
    assert names.room("/chat", "red") == b"app:r:5:/chat:s:red"
    assert names.room("/chat", 7) == b"app:r:5:/chat:i:7"
    made = {names.room(e, r) for e, r in [("/a:s:b", "c"), ("/a", "b:s:c"), ("/a", 7), ("/a", "7"), ("/é", -1)]}
    assert len(made) == 5
    with pytest.raises(TypeError):
        names.room("/a", 1.5)  # type: ignore[arg-type]


def test_presence_answers_compose() -> None:
    p = ClusterPresence({"a": 1, "b": 2}, (1, 2), missing=1, silent=frozenset({3}))
    assert dict(p) == {"a": 1, "b": 2} and p["b"] == 2 and len(p) == 2 and "a" in p
    assert not p.complete and p.on_node(2) == ["b"] and "missing=1" in repr(p)
    assert ClusterPresence({}, (1,)).complete


# -- the local bus --------------------------------------------------------------------------------------


def test_a_worker_gets_a_room_only_while_it_has_members_there(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        async with buses(rundir, 3, linger=0.2) as [(a, _), (b, ib), (c, ic)]:
            await until(lambda: a.peers_for("/ws", "r") == frozenset(), "told b and c need nothing")
            for i in range(100):
                a.publish(ROOM, "/ws", "r", b"\x81\x01x")
            a.publish(ALL, "/ws", None, b"\x81\x03all")
            assert [m[3] for m in await ib.wait(1)] == [b"\x81\x03all"]  # the broadcast, and no room message
            assert [m[3] for m in await ic.wait(1)] == [b"\x81\x03all"]
            assert a.stats()["filtered"] == 200
            # b joins: from then on it gets the room (c still does not).
            await watching([a, b, c], "/ws", "r", [b])
            assert b.stats()["subscriptions"] == 1 and b.stats()["subscribe_commands"] == 1
            a.publish(ROOM, "/ws", "r", b"\x81\x02in")
            a.publish(ALL, "/ws", None, b"\x81\x04end1")
            assert [m[3] for m in (await ib.wait(3))[1:]] == [b"\x81\x02in", b"\x81\x04end1"]
            assert [m[3] for m in (await ic.wait(2))[1:]] == [b"\x81\x04end1"]
            # b's last member leaves: after the linger, a stops sending.
            b.unwatch("/ws", "r")
            assert a.peers_for("/ws", "r") == frozenset({1})  # lingering
            started = time.monotonic()
            await until(lambda: a.peers_for("/ws", "r") == frozenset(), "told b left", timeout=5)
            assert time.monotonic() - started >= 0.15
            assert b.stats()["unsubscribe_commands"] == 1 and b.stats()["subscriptions"] == 0
            a.publish(ROOM, "/ws", "r", b"\x81\x03out")
            a.publish(ALL, "/ws", None, b"\x81\x04end2")
            assert [m[3] for m in (await ib.wait(4))[3:]] == [b"\x81\x04end2"]

    run(loop_kind, main)


def test_join_leave_churn_sends_a_bounded_number_of_interest_messages(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        async with buses(rundir, 2, linger=0.5) as [(a, _), (b, _)]:
            started = time.monotonic()
            for i in range(1000):
                b.watch("/ws", "churn")
                if i % 10 == 0:
                    await asyncio.sleep(0)  # batches go out between some of them
                b.unwatch("/ws", "churn")
                if i % 10 == 5:
                    await asyncio.sleep(0)
            took = time.monotonic() - started
            await until(lambda: b.stats()["unsubscribe_commands"] >= 1, "unsubscribed after the linger")
            stats = b.stats()
            # At most one subscribe per linger started while churning (plus the first).
            assert 1 <= stats["subscribe_commands"] <= 2 + int(took / 0.5), (stats, took)
            assert stats["unsubscribe_commands"] == stats["subscribe_commands"]
            await until(lambda: a.peers_for("/ws", "churn") == frozenset(), "told b left")

    run(loop_kind, main)


def test_a_worker_that_starts_late_learns_every_room_of_the_others(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with buses(rundir, 3, start=2, mesh=False) as [(a, ia), (b, ib)]:
            await until(lambda: 1 in a.links and 0 in b.links, "linked to each other")
            a.watch("/ws", "early")
            b.watch("/ws", "early")
            # Slot 2 is not up: its rooms are not known, so it would get every room message.
            await until(lambda: a.peers_for("/ws", "early") == frozenset({1, 2})
                        and b.peers_for("/ws", "early") == frozenset({0, 2})
                        and a.peers_for("/ws", "other") == frozenset({2}), "told each other's rooms")
            late = LocalBus(rundir, make_node_tag(HOST, 2, 0), 3)
            inbox = Inbox()
            try:
                await late.start(loop, inbox)
                assert await late.wait_meshed(TIMEOUT)
                # Before its set arrived it gets everything; then only what it needs.
                await until(lambda: late.peers_for("/ws", "early") == frozenset({0, 1}), "told the others' rooms")
                await until(lambda: a.peers_for("/ws", "early") == frozenset({1}), "told late needs nothing")
                late.publish(ROOM, "/ws", "early", b"\x81\x01e")
                assert [m[3] for m in await ia.wait(1)] == [b"\x81\x01e"]
                assert [m[3] for m in await ib.wait(1)] == [b"\x81\x01e"]
            finally:
                await late.close()
            # Its end is noticed: a and b forget what it said (it would get everything again).
            await until(lambda: 2 not in a.links, "unlinked from the late worker")

    run(loop_kind, main)


def test_presence_on_the_local_bus_and_a_worker_that_does_not_answer(loop_kind: str, rundir: str) -> None:
    async def main() -> None:
        async with buses(rundir, 3) as [(a, _), (b, _), (c, _)]:
            held = {b.node: ["b1", "b2"], c.node: ["c1"]}
            for bus in (b, c):
                bus.answer = lambda endpoint, room, ids=held[bus.node]: ids if endpoint == "/ws" else None
            got = await a.presence("/ws", None, ["a1"], timeout=5)
            assert dict(got) == {"a1": a.node, "b1": b.node, "b2": b.node, "c1": c.node}
            assert got.complete and got.missing == 0 and set(got.nodes) == {a.node, b.node, c.node}
            assert a.stats()["queries"] == 1
            # c holds back what it reads (as a server whose clients are slow does): it does not answer.
            c.pause_delivery()
            started = time.monotonic()
            got = await a.presence("/ws", "room", [], timeout=0.3)
            took = time.monotonic() - started
            assert 0.25 <= took < 2.0, took
            assert not got.complete and got.missing == 1 and got.silent == frozenset({c.node})
            assert dict(got) == {"b1": b.node, "b2": b.node}
            c.resume_delivery()  # its late answer finds no query: ignored
            await asyncio.sleep(0.05)
            assert not a.queries.queries

    run(loop_kind, main)


# -- Redis ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def test_a_node_subscribes_to_a_room_only_while_it_has_members(redis: RedisServer, loop_kind: str) -> None:
    async def main() -> None:
        url = redis.url + "?prefix=rr&room_linger=0.2"
        a = await Node(url, 0xA).start()
        b = await Node(url, 0xB).start()
        assert await a.broker.wait_connected(5) and await b.broker.wait_connected(5)
        red = a.broker.names.room("/ws", "red")
        await subscribed(redis, [red], 0)
        await subscribed(redis, [b"rr:e:/ws", b"rr:e:/chat"], 2)  # both serve both endpoints
        for i in range(50):
            a.broker.publish(ROOM, "/ws", "red", b"\x81\x01x")
        a.broker.publish(ALL, "/ws", None, b"\x81\x03all")
        await b.wait_count(1)
        assert [m[3] for m in b.got] == [b"\x81\x03all"] and b.broker.stats()["received"] == 1
        # b's first member joins: one SUBSCRIBE, then the room's messages reach it.
        before = b.broker.stats()["subscribe_commands"]
        b.broker.watch("/ws", "red")
        await subscribed(redis, [red], 1)
        assert b.broker.stats()["subscribe_commands"] == before + 1 and b.broker.stats()["subscriptions"] == 4
        a.broker.publish(ROOM, "/ws", "red", b"\x81\x02in")
        await b.wait_count(2)
        assert b.got[-1] == (ROOM, "/ws", "red", b"\x81\x02in")
        # The last member leaves: still subscribed for the linger, then not.
        b.broker.unwatch("/ws", "red")
        left = time.monotonic()
        await subscribed(redis, [red], 0)
        assert time.monotonic() - left >= 0.15
        assert b.broker.stats()["unsubscribe_commands"] == 1
        a.broker.publish(ROOM, "/ws", "red", b"\x81\x03out")
        a.broker.publish_to(0xB, "/ws", "id", b"\x81\x03end")  # after it, from the same publisher: in order
        await b.wait_count(3)
        assert [m[3] for m in b.got[2:]] == [b"\x81\x03end"]
        channels = await asyncio.get_running_loop().run_in_executor(None, redis.command, "PUBSUB", "CHANNELS",
                                                                    "rr:*")
        assert sorted(channels) == sorted([b"rr:e:/ws", b"rr:e:/chat", b"rr:n:0000000a", b"rr:n:0000000b"])
        for node in (a, b):
            await node.broker.close()

    run_on(loop_kind, main)


def test_churn_sends_a_bounded_number_of_subscribe_commands(redis: RedisServer, loop_kind: str) -> None:
    async def main() -> None:
        a = await Node(redis.url + "?prefix=churn&room_linger=0.5", 0xA).start()
        assert await a.broker.wait_connected(5)
        first = a.broker.stats()["subscribe_commands"]  # the connection's own SUBSCRIBE
        started = time.monotonic()
        for i in range(1000):
            a.broker.watch("/ws", "churn")
            if i % 10 == 0:
                await asyncio.sleep(0)
            a.broker.unwatch("/ws", "churn")
            if i % 10 == 5:
                await asyncio.sleep(0)
        took = time.monotonic() - started
        await subscribed(redis, [a.broker.names.room("/ws", "churn")], 0)
        stats = a.broker.stats()
        commands = stats["subscribe_commands"] - first
        print(f"{loop_kind}: 1000 joins and leaves in {took:.2f} s: {commands} SUBSCRIBE, "
              f"{stats['unsubscribe_commands']} UNSUBSCRIBE")
        assert 1 <= commands <= 2 + int(took / 0.5)
        assert 1 <= stats["unsubscribe_commands"] <= commands
        await a.broker.close()

    run_on(loop_kind, main)


def test_presence_over_redis_and_a_node_that_does_not_answer(redis: RedisServer, loop_kind: str) -> None:
    async def main() -> None:
        url = redis.url + "?prefix=who"
        nodes = [await Node(url, tag).start() for tag in (1, 2, 3)]
        for node in nodes:
            assert await node.broker.wait_connected(5)
        await subscribed(redis, [b"who:e:/ws"], 3)
        a, b, c = nodes
        b.broker.answer = lambda endpoint, room: ["b-" + str(room)]
        c.broker.answer = lambda endpoint, room: ["c1", "c2"] if room is None else []
        got = await a.broker.presence("/ws", None, ["a1"], timeout=5)
        assert dict(got) == {"a1": 1, "b-None": 2, "c1": 3, "c2": 3} and got.complete
        got = await a.broker.presence("/ws", "red", [], timeout=5)
        assert dict(got) == {"b-red": 2} and got.complete and set(got.nodes) == {1, 2, 3}
        # c's subscriber stops reading: it gets the query, never answers.
        sub = c.broker.links["subscriber"]
        assert sub is not None and sub.transport is not None
        sub.transport.pause_reading()
        started = time.monotonic()
        got = await a.broker.presence("/ws", None, [], timeout=0.3)
        took = time.monotonic() - started
        assert 0.25 <= took < 2.0, took
        assert not got.complete and got.missing == 1 and dict(got) == {"b-None": 2}
        sub.transport.resume_reading()
        assert a.broker.stats()["queries"] == 3
        for node in nodes:
            await node.broker.close()
        # Redis away: the query is not sent, the answer is this node's alone, how many are missing unknown.
        alone = await Node("redis://127.0.0.1:1/0?prefix=who", 9).start()
        got = await alone.broker.presence("/ws", None, ["x"], timeout=0.3)
        assert dict(got) == {"x": 9} and got.missing is None and not got.complete
        await alone.broker.close()

    run_on(loop_kind, main)


# -- real worker processes and real servers -------------------------------------------------------------

ROOMS = ROOT / "tests" / "robyn_apps" / "receive_rooms.py"


def ask(client: Client, command: str) -> dict[str, Any]:
    client.ws.send(command)
    answer: dict[str, Any] = json.loads(client.expect(r"^\{").string)
    return answer


def test_rooms_and_presence_across_two_servers_over_redis(loop_kind: str) -> None:
    """Two servers joined by a real Redis: a server subscribes to a room's
    channel only while it has members there (``PUBSUB NUMSUB``), presence
    gathers both servers' ids, and a server that does not answer (stopped)
    leaves a partial answer within the timeout."""
    import os
    import signal

    with redis_server() as redis:
        with servers_over_redis(ROOMS, loop_kind, f"{redis.url}?prefix=pres&room_linger=0.3") as (one, two):
            assert one.port is not None and two.port is not None
            a, b, outsider = Client(one.port, "/rooms"), Client(two.port, "/rooms"), Client(two.port, "/rooms")
            blue = ChannelNames("pres").room("/rooms", "blue")

            def numsub() -> int:
                return int(redis.command("PUBSUB", "NUMSUB", blue)[1])

            def until_numsub(n: int) -> None:
                deadline = time.monotonic() + 5
                while numsub() != n:
                    assert time.monotonic() < deadline, f"{numsub()} subscribers of {blue!r}, expected {n}"
                    time.sleep(0.01)

            try:
                assert numsub() == 0
                a.ws.send("join blue")
                a.expect("^joined blue$")
                until_numsub(1)  # server one only: two has no member in blue
                a.ws.send("room blue only here")
                a.expect("only here$")
                b.ws.send("join blue")
                b.expect("^joined blue$")
                until_numsub(2)
                a.ws.send("room blue both")
                for member in (a, b):
                    member.expect(f"^{a.id}@blue: both$")
                who = ask(outsider, "who 5")
                assert who["complete"] and who["ids"] == {c.id: node_of(c.id) for c in (a, b, outsider)}
                assert set(ask(a, "members blue 5")["ids"]) == {a.id, b.id}
                b.ws.send("leave blue")
                b.expect("^left blue True$")
                until_numsub(1)  # after the linger
                assert ask(b, "stats")["unsubscribe_commands"] == 1
                # Server two stops answering: a partial answer within the timeout.
                os.kill(two.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    who = ask(a, "who 0.5")
                    took = time.monotonic() - started
                finally:
                    os.kill(two.pid, signal.SIGCONT)
                assert not who["complete"] and who["missing"] == 1 and who["ids"] == {a.id: node_of(a.id)}
                assert took < 3.0
            finally:
                for c in (a, b, outsider):
                    c.close()


def test_presence_in_one_process_from_another_loop_and_its_errors(loop_kind: str) -> None:
    """Without workers or a broker the answer is the process's own table,
    complete; awaited on another event loop (a thread's) it runs on the
    server's; a bad timeout or a room that cannot be one is refused in
    the caller; an app not being served raises ServerNotRunning."""
    from robyn_fast import Robyn, WebSocket
    from robyn_fast.exceptions import ServerNotRunning

    from .server_helpers import running

    app = Robyn(__file__)
    ws = WebSocket(app, "/ws")

    @ws.on("message")
    def message(conn: Any, msg: str) -> str:
        conn.join(msg)
        return "in"

    with running(app, loop_kind) as srv:
        clients = [wsclient.create_connection(f"{srv.ws_url}/ws", timeout=5) for _ in range(3)]
        try:
            for c, room in zip(clients, ("red", "red", "blue")):
                c.send(room)
                assert c.recv() == "in"
            hub = srv.hub(ws)
            ids = srv.call(lambda: list(hub.connections))
            everyone = asyncio.run(ws.cluster_connections())  # this thread's own loop
            assert everyone.complete and set(everyone) == set(ids) and len(everyone.nodes) == 1
            red = asyncio.run(ws.cluster_room_members("red", timeout=0))
            assert list(red) == srv.call(lambda: list(hub.rooms["red"]))
            for bad in (-1, "1", float("nan"), 3601):
                with pytest.raises(ValueError, match="timeout"):
                    asyncio.run(ws.cluster_connections(bad))  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="hashable"):
                asyncio.run(ws.cluster_room_members(["not", "hashable"]))
        finally:
            for c in clients:
                c.close()
    with pytest.raises(ServerNotRunning):
        asyncio.run(ws.cluster_connections())
