"""A worker that stalls while the other workers broadcast: a real
``--processes 3`` server, one worker SIGSTOPped for 10 s while the two others
each broadcast 1 KB messages at 1000/s (so its backlog on the bus, up to the
per-peer bound from each, is well over what one client may queue,
``max_backpressure``), clients that read promptly on every worker and, on the
stalled one, a client that reads nothing. When it resumes, the bus delivers
that backlog at the pace its clients take it: no healthy client is closed
with 1008 (only the one that reads nothing is), and every message either
arrives, in order, or is one the senders counted as dropped."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket as wsclient

from robyn_fast.broker import node_slot
from robyn_fast.websocket.ids import node_of

from .process_helpers import ServerProcess, owner, serve_script, worker_pids
from .server_helpers import eventually

RATE = 1000         # messages a second from each sending worker
STALL = 10.0        # seconds the stalled worker is stopped
BLAST = int(RATE * (STALL + 4))  # each sender keeps broadcasting a while after the stall ends

APP = """
    import asyncio
    from robyn_fast import Robyn, WebSocket

    app = Robyn(__file__)
    feed = WebSocket(app, "/feed")
    PAD = "x" * 1000
    state = {"seq": 0}
    tasks = set()


    async def blast(origin, tag, count, rate):
        # `rate` messages a second, paced by the loop clock in 10 ms steps.
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while sent < count:
            due = min(count, int((loop.time() - start) * rate) + 1)
            while sent < due:
                feed.broadcast(f"{tag} {state['seq']} {PAD}")
                state["seq"] += 1
                sent += 1
            await asyncio.sleep(0.01)
        feed.send_to(origin, f"blasted {tag} {state['seq']}")


    @feed.on("connect")
    def connect(ws):
        return f"welcome {ws.id}"


    @feed.on("message")
    def message(ws, msg):
        cmd, tag, count, rate = msg.split()
        task = asyncio.get_running_loop().create_task(blast(ws.id, tag, int(count), int(rate)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return f"blasting {tag}"


    app.start(host="127.0.0.1", port=0)
"""


class Reader:
    """A client that reads everything as it comes, in a thread of its own,
    keeping the sequence numbers of the feed's messages by sender tag."""

    def __init__(self, port: int, rcvbuf: int = 0) -> None:
        sockopt = ((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf),) if rcvbuf else ()
        self.ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/feed", timeout=30, sockopt=sockopt)
        first = self.ws.recv()
        assert isinstance(first, str) and first.startswith("welcome "), first
        self.id = first.split()[1]
        self.seqs: dict[str, list[int]] = {}
        self.replies: list[str] = []
        self.close: tuple[int, bytes] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                frame = self.ws.recv_frame()
                if frame.opcode == wsclient.ABNF.OPCODE_CLOSE:
                    self.close = (struct.unpack("!H", frame.data[:2])[0], frame.data[2:]) if frame.data else (1005, b"")
                    return
                text = frame.data.decode()
                tag, _, rest = text.partition(" ")
                if len(tag) == 1:
                    self.seqs.setdefault(tag, []).append(int(rest.partition(" ")[0]))
                else:
                    self.replies.append(text)
        except BaseException as exc:  # the socket closed under us (the test's end) or the server went
            self.error = exc

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=1)
        if self._thread.is_alive():
            self._thread.join(5)


def _place(port: int, pids: list[int], want: dict[int, int], rcvbuf: int = 0, limit: int = 60,
           ) -> dict[int, list[Reader]]:
    """Open clients until worker ``pid`` holds ``want[pid]`` of them (extras are closed)."""
    placed: dict[int, list[Reader]] = {pid: [] for pid in pids}
    for _ in range(limit):
        if all(len(placed[pid]) >= n for pid, n in want.items()):
            return placed
        reader = Reader(port, rcvbuf)
        pid = owner(reader.ws.sock, port, pids)
        if len(placed[pid]) < want[pid]:
            placed[pid].append(reader)
        else:
            reader.stop()
    raise AssertionError(f"{limit} connections and still {({p: len(r) for p, r in placed.items()})}")


@contextlib.contextmanager
def _stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _dropped_to(server: ServerProcess, slot: int) -> int:
    """Messages the senders counted as dropped on their way to worker ``slot``."""
    return sum(int(n) for s, n in re.findall(
        r"bus: worker (\d+) (?:caught up|reachable again); (\d+) message\(s\) to it were dropped", server.output())
        if int(s) == slot)


@pytest.mark.full_scope
def test_a_worker_stopped_ten_seconds_catches_up_without_closing_its_clients(tmp_path: Path, loop_kind: str) -> None:
    script = tmp_path / "feed.py"
    script.write_text(textwrap.dedent(APP))
    readers: list[Reader] = []
    with serve_script(script, loop_kind, args=["--processes", "3"], cwd=tmp_path) as server:
        port = server.port
        assert port is not None
        pids = worker_pids(server.pid)
        stalled, senders = pids[0], pids[1:]
        placed = _place(port, pids, {stalled: 2, senders[0]: 1, senders[1]: 1})
        readers = [r for rs in placed.values() for r in rs]
        # ... and on the stalled worker a client that reads nothing at all: it must not hold back
        # the bus for the others (for long), and its own backpressure policy closes it.
        stuck = _place(port, pids, {stalled: 1, senders[0]: 0, senders[1]: 0}, rcvbuf=4096)[stalled][0]
        readers.append(stuck)
        try:
            for reader in readers:
                if reader is not stuck:
                    reader.start()
            watchers = placed[stalled]
            _, slot, _ = node_slot(node_of(watchers[0].id) or 0)
            tags = {"a": placed[senders[0]][0], "b": placed[senders[1]][0]}
            for tag, sender in tags.items():
                sender.ws.send(f"blast {tag} {BLAST} {RATE}")
            # The bus carries both senders' messages to the stalled worker's clients before the stall.
            eventually(lambda: [len(w.seqs.get(t, ())) for w in watchers for t in tags], lambda ns: min(ns) > 0)
            with _stopped(stalled):
                time.sleep(STALL)  # the fault itself: the worker is stopped this long
            last = {tag: int(eventually(
                lambda s=sender, t=tag: [r for r in s.replies if r.startswith(f"blasted {t} ")], timeout=60,
            )[0].split()[2]) for tag, sender in tags.items()}
            # One more message from each sender after the burst: it ends any drop episode (and logs
            # its count), and once every watcher has it, everything before it was delivered or dropped.
            for tag, sender in tags.items():
                sender.ws.send(f"blast {tag} 1 1")
            eventually(lambda: [w.seqs.get(t, [-1])[-1] for w in watchers for t in tags] + [w.close for w in watchers],
                       lambda v: all(w.close is not None for w in watchers)
                       or all(w.seqs.get(t, [-1])[-1] >= last[t] for w in watchers for t in tags), timeout=60)
            for reader in readers:
                assert reader is stuck or reader.close is None, f"client {reader.id} closed: {reader.close}"
            dropped = _dropped_to(server, slot)
            # The scenario is honest: the senders' backlog to the stalled worker reached the bus bound.
            assert dropped > 0, server.output()[-3000:]
            for watcher in watchers:
                missing = 0
                for tag in tags:
                    seqs = watcher.seqs[tag]
                    assert seqs == sorted(set(seqs)), f"out of order or repeated from {tag}"
                    assert seqs[-1] == last[tag]
                    missing += last[tag] + 1 - len(seqs)
                assert missing == dropped, (missing, dropped)
            # The client that reads nothing is the only one closed for it.
            server.wait_output(rf"websocket {stuck.id} .*closing with 1008", timeout=30)
            assert len(re.findall("closing with 1008", server.output())) == 1, server.output()[-3000:]
        finally:
            for reader in readers:
                reader.stop()
