"""A real ``redis-server`` (Debian's package; ``make test`` installs it) for
the broker tests: started on 127.0.0.1 at a port that is retried until one
is free, and on a Unix socket in a private directory; stopped, killed,
paused and restarted on the same address by the tests. A test that cannot
start it fails: it never skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import hiredis

from robyn_fast.broker.resp import command

__all__ = ["RedisServer", "redis_server", "SentinelSet", "sentinel_set", "tcp_command", "RedisCluster",
           "redis_cluster"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``url``/``unix_url`` reach it."""

    def __init__(self, password: str | None = None, extra: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
        self.binary = binary
        self.password = password
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="rf-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, on the same port once it had one); wait for PING."""
        for _ in range(20):
            port = self.port or _free_port()
            args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
                    "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir,
                    *(("--requirepass", self.password) if self.password else ()), *self.extra]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    if self.command("PING") in (b"PONG", "PONG"):
                        self.port = port
                        return
                time.sleep(0.02)
            out = self._stop()
            if b"Address already in use" not in out or self.port:
                raise AssertionError(f"redis-server did not start on port {port}: {out.decode(errors='replace')}")
        raise AssertionError("no free port for redis-server after 20 tries")

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        """One command over the Unix socket (logged in); the reply."""
        reader = hiredis.Reader()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            first = command("AUTH", self.password) if self.password else b""
            s.sendall(first + command(*args))
            replies = []
            while len(replies) < (2 if self.password else 1):
                data = s.recv(65536)
                if not data:
                    raise OSError("redis closed the connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    replies.append(reply)
        reply = replies[-1]
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _stop(self, sig: int = signal.SIGKILL) -> bytes:
        proc, self.proc = self.proc, None
        if proc is None:
            return b""
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        return out or b""

    def kill(self) -> None:
        """Gone at once, as a crash (SIGKILL)."""
        self._stop(signal.SIGKILL)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self._stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(password: str | None = None, extra: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    server = RedisServer(password, extra)
    try:
        server.start()
        yield server
    finally:
        server.close()


def tcp_command(port: int, *args: Any, password: str | None = None, timeout: float = 5.0) -> Any:
    """One command to 127.0.0.1:``port`` (a sentinel, a cluster node); the reply."""
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall((command("AUTH", password) if password else b"") + command(*args))
        replies: list[Any] = []
        while len(replies) < (2 if password else 1):
            data = s.recv(65536)
            if not data:
                raise OSError("the server closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    if isinstance(replies[-1], hiredis.ReplyError):
        raise replies[-1]
    return replies[-1]


def wait_for(what: str, check: Any, timeout: float) -> Any:
    """``check()`` until it returns something true (errors count as not yet); AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, hiredis.ReplyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r:.200})")


class SentinelSet:
    """A master, a replica and three sentinels watching them as ``name``
    (quorum 2, a master down for ``down_after_ms`` is failed over): real
    ``redis-server`` processes on free ports, the sentinels started by
    ``redis-server CONF --sentinel``. ``url`` names the sentinels."""

    def __init__(self, name: str = "rfmaster", password: str | None = None, down_after_ms: int = 400) -> None:
        self.name = name
        self.password = password
        self.down_after_ms = down_after_ms
        self.master = RedisServer(password, ("--masterauth", password) if password else ())
        self.replica: RedisServer | None = None
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []
        self.dir = tempfile.mkdtemp(prefix="rf-sentinel-")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{auth}{hosts}/{self.name}"

    def start(self) -> None:
        self.master.start()
        replica_args = ("--replicaof", "127.0.0.1", str(self.master.port))
        if self.password:
            replica_args += ("--masterauth", self.password)
        self.replica = RedisServer(self.password, replica_args)
        self.replica.start()
        wait_for("the replica's sync", lambda: b"master_link_status:up" in self.replica.command("INFO", "replication"), 20)
        binary = shutil.which("redis-server")
        assert binary
        for i in range(3):
            for _ in range(20):
                port = _free_port()
                conf = os.path.join(self.dir, f"sentinel-{i}.conf")
                with open(conf, "w") as f:
                    f.write(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2\n"
                            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                            f"sentinel failover-timeout {self.name} 4000\n"
                            f"sentinel parallel-syncs {self.name} 1\n"
                            + (f"sentinel auth-pass {self.name} {self.password}\n" if self.password else ""))
                proc = subprocess.Popen([binary, conf, "--sentinel"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_for(f"sentinel {i} on port {port}", lambda: tcp_command(port, "PING") == b"PONG", 10)
                except AssertionError:
                    proc.kill()
                    proc.wait()
                    continue
                self.sentinels.append(proc)
                self.sentinel_ports.append(port)
                break
            else:
                raise AssertionError("no free port for a sentinel after 20 tries")
        self.wait_watching()

    def wait_watching(self, timeout: float = 30.0) -> None:
        """Until every sentinel knows the replica and the two other sentinels (a failover needs both)."""
        for port in self.sentinel_ports:
            wait_for(f"sentinel {port} to know the replica",
                     lambda: tcp_command(port, "SENTINEL", "replicas", self.name), timeout)
            wait_for(f"sentinel {port} to know the other sentinels",
                     lambda: len(tcp_command(port, "SENTINEL", "sentinels", self.name)) >= 2, timeout)

    def master_port(self) -> int:
        host, port = tcp_command(self.sentinel_ports[0], "SENTINEL", "get-master-addr-by-name", self.name)
        return int(port)

    def kill_master(self, timeout: float = 30.0) -> RedisServer:
        """SIGKILL the master; wait until the sentinels name the replica; the new master."""
        assert self.replica is not None
        old, new = self.master, self.replica
        old.kill()
        wait_for("the failover", lambda: all(
            int(tcp_command(p, "SENTINEL", "get-master-addr-by-name", self.name)[1]) == new.port
            for p in self.sentinel_ports), timeout)
        self.master, self.replica = new, None
        old.close()
        return new

    def close(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.master.close()
        if self.replica is not None:
            self.replica.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def sentinel_set(**kwargs: Any) -> Iterator[SentinelSet]:
    sentinels = SentinelSet(**kwargs)
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.close()


def _free_cluster_port() -> int:
    """A port free with its cluster bus port (port + 10000)."""
    for _ in range(100):
        port = _free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no port free with its cluster bus port after 100 tries")


class RedisCluster:
    """A Redis Cluster of ``masters`` masters with one replica each (real
    ``redis-server --cluster-enabled yes`` processes, made one cluster by
    ``redis-cli --cluster create``), a node that is not answered for
    ``node_timeout_ms`` is failed over. ``url`` names two of the nodes as seeds."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.count = masters * 2
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        live = [n for n in self.nodes if n.proc is not None]
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in live[:2])

    def start(self) -> None:
        for _ in range(self.count):
            node = RedisServer()
            node.port = _free_cluster_port()
            node.extra = ("--cluster-enabled", "yes", "--cluster-config-file", os.path.join(node.dir, "nodes.conf"),
                          "--cluster-node-timeout", str(self.node_timeout_ms))
            node.start()
            self.nodes.append(node)
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is not installed (Debian's redis-tools, with redis-server)"
        out = subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                              "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and agrees on the masters of all slots, and every
        replica has synced with its master."""
        def agreed() -> bool:
            views = set()
            for node in self.nodes:
                if node.proc is None:
                    continue
                if b"cluster_state:ok" not in node.command("CLUSTER", "INFO"):
                    return False
                replication = node.command("INFO", "replication")
                if b"role:slave" in replication and b"master_link_status:up" not in replication:
                    return False  # a replica that has not synced would not take over
                views.add(tuple(sorted((r[0], r[1], int(r[2][1])) for r in node.command("CLUSTER", "SLOTS"))))
            return len(views) == 1
        wait_for("the cluster to be ready and agree on its slots", agreed, timeout)

    def owner(self, slot: int) -> RedisServer:
        """The node serving ``slot`` as the cluster says now."""
        live = next(n for n in self.nodes if n.proc is not None)
        for start, end, master, *_ in live.command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no owner of slot {slot}")

    def kill(self, node: RedisServer, timeout: float = 30.0) -> None:
        """SIGKILL ``node`` (a master: its replica is promoted); wait until the cluster is ok again."""
        live = next(n for n in self.nodes if n.proc is not None and n is not node)
        served = [(start, end) for start, end, master, *_ in live.command("CLUSTER", "SLOTS")
                  if int(master[1]) == node.port]
        node.kill()
        if served:
            wait_for(f"a replica to take over node {node.port}'s slots",
                     lambda: all(self.owner(start) is not node for start, _ in served), timeout)
        self.wait_ok(timeout)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


@contextlib.contextmanager
def redis_cluster(**kwargs: Any) -> Iterator[RedisCluster]:
    cluster = RedisCluster(**kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
