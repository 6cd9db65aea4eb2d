"""The one launch path: from resolved settings to a serving process.

:func:`launch` is what ``Robyn.start()`` calls (and so ``python -m
robyn_fast app.py``, which runs the script); the supervisor and the
reloader are started from here and nowhere else. In this order:

1. Bind: :func:`robyn_fast.listener.listen` makes the listening sockets,
   one per address the host resolves to (IPv4 and IPv6 alike), whether one
   process serves them, worker processes (the supervisor adds a socket per
   worker to the same addresses with ``SO_REUSEPORT``, set only after this
   first bind) or ``--dev`` children (they inherit the reloader's through
   ``exec``). The bind itself is without ``SO_REUSEPORT``: an address that
   anything listens on already, another robyn_fast server with workers
   included, cannot be bound, so a second server never shares connections
   with a first. ``--uds`` binds a Unix socket instead
   (:func:`robyn_fast.listener.listen_unix`; this process removes its file
   on exit) and ``--fd`` takes an inherited one
   (:func:`robyn_fast.listener.inherited`); worker processes and ``--dev``
   children share that one socket.
2. An address that cannot be bound is one line on stderr, ``robyn_fast:
   cannot listen on HOST:PORT: REASON``, and exit status 1; it is printed
   here and only here.
3. Serve: the reloader (``--dev``), the supervisor (more than one process)
   or this process alone.

:func:`serve` is the same path inside a running event loop
(``await app.serve()``, :func:`robyn_fast.testing.serve`): the same binding
(an address that cannot be bound raises ``OSError`` with the same words
instead of exiting) and the same :class:`~robyn_fast.server.Server` life
cycle (:func:`~robyn_fast.server.serve_until_stopped`), in one process. With a Redis broker, each serving process is a
   node with a random tag, built by :func:`_node` (in a worker, after the
   fork: a broker holds an event loop's connections).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..broker import Broker, random_node_tag
from ..broker.cluster import RedisClusterBroker
from ..broker.redis import RedisBroker
from ..broker.resp import RedisAddress
from ..listener import inherited, listen, listen_unix, remove_unix, reuse_port_available
from ..server import ServedApp, Server, run, serve_until_stopped
from ..websocket.ids import set_node_tag
from .reloader import Reloader, inherited_fds, is_dev_child
from .supervisor import Supervisor

__all__ = ["launch", "serve", "bind", "where"]


def where(host: str, port: int) -> str:
    """``host:port`` as the "cannot listen on" line names it (IPv6 in
    brackets, ``*`` for every interface)."""
    if not host:
        return f"*:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def launch(
    app: ServedApp,
    host: str,
    port: int,
    *,
    processes: int = 1,
    dev: bool = False,
    broker: RedisAddress | None = None,
    close_timeout: float,
    on_serving: Callable[[str], None] | None = None,
    argv: Sequence[str] = (),
    root: str = ".",
    env_file_names: Sequence[str] = (),
    loop_factory: Callable[[], Any] | None = None,
    uds: str | None = None,
    fd: int | None = None,
) -> int:
    """Serve ``app`` on ``host:port`` until SIGTERM/SIGINT; the process exit
    status (0; 1 when the address cannot be bound, or a worker fails at
    start-up).

    ``processes`` > 1: that many worker processes (:class:`Supervisor`).
    ``dev`` (in the process the user started): a reloader that runs ``argv``
    again as a child serving the same sockets and restarts it when a file
    under ``root`` changes (:class:`Reloader`; ``env_file_names`` are the
    variables taken from ``robyn.env``, which each child reads afresh).
    ``broker``: every serving process is a node on that Redis.
    ``close_timeout``: the longest of the app's, how long the supervisor or
    reloader waits for a graceful stop before SIGKILL.
    ``uds``: serve on a Unix socket at that path instead (removed on exit
    by the process that made it); ``fd``: on the inherited listening socket
    with that descriptor. Worker processes share either one.
    """
    made: os.stat_result | None = None
    try:
        if is_dev_child() or (uds is None and fd is None):
            sockets = bind(host, port, app.config.backlog, shareable=processes > 1 and not dev)
        elif uds is not None:
            sockets = [listen_unix(uds, app.config.backlog)]
            made = os.lstat(uds)
        else:
            assert fd is not None
            sockets = [inherited(fd)]
    except OSError as exc:
        # The exit message of the command line, as a usage error's is: printed whatever logging shows.
        if is_dev_child() or (uds is None and fd is None):
            print(f"robyn_fast: {exc.strerror}", file=sys.stderr)  # bind's "cannot listen on HOST:PORT: REASON"
        else:
            place = f"unix:{uds}" if uds is not None else f"fd {fd}"
            print(f"robyn_fast: cannot listen on {place}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    binder = os.getpid()
    try:
        if dev and not is_dev_child():
            return Reloader(list(argv), root, sockets, host if uds is None and fd is None else None,
                            close_timeout=close_timeout,
                            env_file_names=env_file_names).run()
        node = None if broker is None else (lambda: _node(broker))
        if processes > 1:
            return Supervisor(app, sockets, processes, close_timeout=close_timeout,
                              loop_factory=loop_factory, on_serving=on_serving, node=node).run()
        return run(app, sockets, loop_factory=loop_factory, broker=None if node is None else node(),
                   on_serving=on_serving)
    finally:
        for sock in sockets:
            sock.close()
        if made is not None and uds is not None and os.getpid() == binder:
            remove_unix(uds, made)


def bind(host: str, port: int, backlog: int, *, shareable: bool = False) -> list[socket.socket]:
    """The listening sockets for ``host:port`` (a ``--dev`` child's: its
    reloader's). ``OSError`` whose ``strerror`` is the one line,
    ``cannot listen on HOST:PORT: REASON``, when the address cannot be bound."""
    try:
        return _sockets(host, port, backlog, shareable=shareable)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {where(host, port)}: {exc.strerror or exc}") from None


async def serve(
    app: ServedApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    sock: socket.socket | None = None,
    handle_signals: bool = False,
    on_ready: Callable[[Server], Awaitable[None]] | None = None,
) -> None:
    """Serve ``app`` on the running loop, on ``host:port`` (bound now) or on
    ``sock`` (listening), until :meth:`Server.stop` or cancellation, then
    shut down gracefully (:func:`~robyn_fast.server.serve_until_stopped`).
    The listening sockets, ``sock`` included, are closed on the way out."""
    sockets = [sock] if sock is not None else bind(host, port, app.config.backlog)
    try:
        server = Server(app, asyncio.get_running_loop())
        await serve_until_stopped(server, sockets, handle_signals=handle_signals, on_ready=on_ready)
    finally:
        for one in sockets:
            one.close()


def _sockets(host: str, port: int, backlog: int, *, shareable: bool) -> list[socket.socket]:
    """The listening sockets: a dev child's from its reloader, else bound now."""
    try:
        fds = inherited_fds()
    except ValueError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    if not fds:
        return listen(host, port, backlog, shareable=shareable and reuse_port_available())
    sockets: list[socket.socket] = []
    try:
        for fd in fds:
            sock = socket.socket(fileno=fd)
            sockets.append(sock)
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise OSError(errno.EINVAL, f"descriptor {fd} from the reloader is not a listening socket")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _node(address: RedisAddress) -> Broker:
    """This process's broker as a node on Redis, with a random node tag
    (the ids of its connections carry it)."""
    tag = random_node_tag()
    set_node_tag(tag)
    if address.mode == "cluster":
        return RedisClusterBroker(address, tag)
    return RedisBroker(address, tag)
