"""Accepting TCP connections, including when the process runs out of file descriptors.

:class:`Listener` accepts on one listening socket and hands each connection to
the loop with ``loop.connect_accepted_socket`` (a transport and protocol, as
``loop.create_server`` would make). It does its own ``accept()`` because
neither loop survives running out of descriptors well:

- asyncio (3.11) reports every failed ``accept()`` to the loop's exception
  handler (a traceback each) and does not stop after the first: up to
  ``backlog`` failures and as many retry timers per wake-up, which is a busy
  loop with tens of thousands of tracebacks;
- uvloop (libuv) closes a reserve descriptor, accepts and closes every
  pending connection and says nothing at all; and if the reserve cannot be
  reopened, uvloop closes the listening server for good.

What happens here instead (``accept()`` failing with ``EMFILE`` or
``ENFILE``): a reserve descriptor (``/dev/null``), held from the start, is
closed; each pending connection is accepted with the descriptor it frees,
answered with ``refusal`` (the server passes a ``503 Service Unavailable``),
and closed; the reserve is reopened. The client gets a clear answer at once
instead of waiting in the backlog for a descriptor that may not come back
soon (a WebSocket server's descriptors are held by long-lived
connections), and the count of refused connections is exact. When even that
fails (the reserve is lost to another thread, or ``ENOBUFS``/``ENOMEM``,
or any other ``accept()`` error), accepting pauses for a quarter of a
second and the backlog waits.

An *episode* starts with the first refusal and ends once no connection has
been refused for a second and a descriptor is free again; it is reported by
one warning line, at its end, naming how many connections were refused
(STYLE item 30: counted and logged once per episode). Lines are at least
10 s apart (a server hovering at its limit does not flood the log); an
episode that lasts longer than a minute gets one line a minute.

The price, measured on a loaded 2-vCPU machine (server CPU per connection,
client in another process): asyncio's own accept path and this one cost the
same; on uvloop a bare connection (accept, one byte each way, close) costs
about twice libuv's C path (~190 vs ~100 us here), while a whole WebSocket
cycle (connect, handshake, Close; ``rfload connect -c 16``, five alternating
rounds) moved from 251 to 256 us, within the noise: the handshake dominates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import socket
import stat
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from .logs import get_logger

__all__ = ["Listener", "listen", "join", "joinable", "reuse_port_available", "listen_unix", "remove_unix",
           "inherited"]

log = get_logger("robyn_fast.server")

#: accept() errors that mean "out of a resource", not "this connection failed".
_OUT_OF = {
    errno.EMFILE: "out of file descriptors (EMFILE)",
    errno.ENFILE: "the system is out of file descriptors (ENFILE)",
    errno.ENOBUFS: "out of socket memory (ENOBUFS)",
    errno.ENOMEM: "out of memory (ENOMEM)",
}

_BATCH = 128  # connections accepted per wake-up; the rest wait for the next one
_PAUSE = 0.25  # seconds accepting pauses when even the reserve cannot help
_CHECK = 1.0  # seconds between checks of an episode (and the quiet time that ends it)
_MIN_GAP = 10.0  # seconds at least between two episode lines
_REPORT_EVERY = 60.0  # a line at least this often while an episode lasts


def _open_reserve() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


class Listener:
    """Accepts connections on ``sock`` (bound and listening) for
    ``protocol_factory`` once :meth:`start` is called; see the module
    docstring for what happens when descriptors run out.

    ``refusal`` is written to each connection refused for want of a
    descriptor before it is closed (empty: closed without a word, as on a TLS
    port, where cleartext would mean nothing). ``refused`` counts them.
    ``transport_options`` go to ``connect`` (``loop.connect_accepted_socket``
    unless given; :func:`robyn_fast.tls.transport_maker` picks it for TLS)
    with each accepted connection (the TLS context and its timeouts).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
        refusal: bytes, transport_options: Mapping[str, Any] | None = None,
        connect: Callable[..., Coroutine[Any, Any, Any]] | None = None,
    ) -> None:
        self.loop = loop
        self._connect = connect if connect is not None else loop.connect_accepted_socket
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.refusal = refusal
        self.transport_options: dict[str, Any] = dict(transport_options or {})
        self.refused = 0
        self._fd = sock.fileno()
        self._reserve = _open_reserve()
        self._reading = False
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None
        # Connections whose transport is being made: referenced until it is.
        self._opening: dict[asyncio.Future[object], socket.socket] = {}
        # The current episode (None: there is none).
        self._episode: float | None = None  # when it started
        self._reason = ""
        self._window = 0.0  # start of what the next line reports
        self._window_refused = 0
        self._window_paused = 0.0  # seconds accepting was paused in it
        self._last_trouble = -math.inf
        self._last_line = -math.inf
        self._check_handle: asyncio.TimerHandle | None = None
        sock.setblocking(False)

    def start(self) -> None:
        if not self._closed and not self._reading:
            self.loop.add_reader(self._fd, self._accept)
            self._reading = True

    def close(self) -> None:
        """Stop accepting and close the listening socket (connections already
        accepted are not touched)."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        for handle in (self._resume, self._check_handle):
            if handle is not None:
                handle.cancel()
        self._resume = self._check_handle = None
        if self._episode is not None and self._window_refused:
            self._report(self.loop.time(), "the server is closing")
        self._episode = None
        self.sock.close()
        if self._reserve >= 0:
            os.close(self._reserve)
            self._reserve = -1

    def _stop_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self._fd)
            self._reading = False

    # -- accepting -------------------------------------------------------------------

    def _accept(self) -> None:
        sock = self.sock
        for _ in range(_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while it waited in the backlog
            except OSError as exc:
                self._out_of(exc.errno or 0)
                return
            conn.setblocking(False)
            task: asyncio.Future[object] = self.loop.create_task(
                self._connect(self.protocol_factory, conn, **self.transport_options)
            )
            self._opening[task] = conn
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Future[object]) -> None:
        conn = self._opening.pop(task, None)
        if task.cancelled():
            exc: BaseException | None = None
        else:
            exc = task.exception()
            if exc is None:
                return
        # The client went away before its transport was made (or the loop is
        # closing): nothing to serve.
        if conn is not None:
            conn.close()
        if exc is not None:
            log.debug("a connection closed while its transport was being made: %s", exc)

    def _out_of(self, code: int) -> None:
        now = self.loop.time()
        self._last_trouble = now
        if self._episode is None:
            self._episode = self._window = now
            self._window_refused = 0
            self._window_paused = 0.0
            self._check_handle = self.loop.call_later(_CHECK, self._check)
        reason = _OUT_OF.get(code)
        if reason is None:  # not a shortage; should it last, pausing keeps it from spinning
            reason = f"accept() failed ({errno.errorcode.get(code, code)}: {os.strerror(code)})"
        self._reason = reason
        refused = self._refuse_pending() if code in (errno.EMFILE, errno.ENFILE) else 0
        self.refused += refused
        self._window_refused += refused
        if refused == 0:
            # Nothing could be accepted: let the backlog wait a little.
            self._stop_reading()
            self._window_paused += _PAUSE
            self._resume = self.loop.call_later(_PAUSE, self._resume_reading)

    def _refuse_pending(self) -> int:
        """Close the reserve, then accept, answer and close the pending
        connections with the descriptor that frees; how many."""
        if self._reserve < 0:
            self._reserve = _open_reserve()  # whatever took it may have let go
            if self._reserve < 0:
                return 0
        os.close(self._reserve)
        self._reserve = -1
        refused = 0
        try:
            for _ in range(_BATCH):
                try:
                    conn, _ = self.sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionAbortedError:
                    continue
                except OSError:
                    break  # still none free (another thread took it): pause
                refused += 1
                _refuse(conn, self.refusal)
        finally:
            self._reserve = _open_reserve()
        return refused

    def _resume_reading(self) -> None:
        self._resume = None
        if not self._closed:
            self.start()

    # -- the episode's line -------------------------------------------------------------

    def _check(self) -> None:
        self._check_handle = None
        if self._closed or self._episode is None:
            return
        now = self.loop.time()
        if now - self._last_trouble >= _CHECK and self._reading and self._free_descriptor():
            if now - self._last_line >= _MIN_GAP:
                self._report(now, "accepting again")
                self._episode = None
                return
        elif now - self._window >= _REPORT_EVERY and (self._window_refused or self._window_paused):
            self._report(now, "still refusing")
        self._check_handle = self.loop.call_later(_CHECK, self._check)

    def _free_descriptor(self) -> bool:
        """Whether one more descriptor than the reserve can be opened now."""
        if self._reserve < 0:
            self._reserve = _open_reserve()
            if self._reserve < 0:
                return False
        try:
            fd = os.dup(self._reserve)
        except OSError:
            return False
        os.close(fd)
        return True

    def _report(self, now: float, outcome: str) -> None:
        paused = f", accepting paused for {self._window_paused:.1f} s" if self._window_paused else ""
        log.warning("%s: refused %d connections in the last %.1f s%s; %s",
                    self._reason, self._window_refused, now - self._window, paused, outcome)
        self._last_line = self._window = now
        self._window_refused = 0
        self._window_paused = 0.0


def _refuse(conn: socket.socket, refusal: bytes) -> None:
    try:
        conn.setblocking(False)
        if not refusal:
            return
        conn.send(refusal)  # a fresh socket's send buffer takes it whole
        # What the client sent already is read, so that close() sends a FIN
        # after the answer rather than a reset that could discard it.
        conn.recv(65536)
    except OSError:
        pass
    finally:
        conn.close()


def reuse_port_available() -> bool:
    """Whether sockets of several processes can listen on one address with
    ``SO_REUSEPORT`` and the kernel spreads new connections over them
    (Linux; elsewhere the option exists without the spreading)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listen(host: str | None, port: int, backlog: int, *, shareable: bool = False) -> list[socket.socket]:
    """The listening TCP sockets of a server: one per address ``host``
    resolves to (every interface, IPv4 and IPv6, for None or ``""``). With
    :func:`join`, the one place robyn_fast binds a listening socket.

    - Bound without ``SO_REUSEPORT``: binding fails (``EADDRINUSE``) when
      anything listens on the address already, another robyn_fast server
      with worker processes included. With ``shareable`` (a supervisor's,
      where :func:`reuse_port_available`), ``SO_REUSEPORT`` is set after the
      bind and before ``listen()``, so that :func:`join` can add a socket per
      worker to the same addresses, while a server that binds without it (as
      every robyn_fast server does) still cannot: whichever of two servers
      listens first keeps the address, the other one's ``bind()`` or
      ``listen()`` fails.
    - ``SO_REUSEADDR`` (not on Windows, where it would let a second process
      take the port): a restart binds at once over connections of the last
      run still in ``TIME_WAIT``.
    - An IPv6 socket is IPv6-only when ``host`` also resolves to IPv4
      addresses (each family gets a socket of its own), dual-stack when it
      resolves to IPv6 alone (``"::"`` serves IPv4 clients too, as Robyn's
      does).
    - With port 0, every socket gets the port the first one got.

    ``OSError`` when an address cannot be bound (the sockets already bound
    are closed); with several addresses its message names the one that
    failed.
    """
    infos = list(dict.fromkeys(socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)))
    families = {info[0] for info in infos}
    targets = [(family, kind, proto, address, family == socket.AF_INET6 and socket.AF_INET not in families)
               for family, kind, proto, _, address in infos]
    tries = 8 if port == 0 and len(infos) > 1 else 1  # the port the first got may be taken in another family
    for attempt in range(tries):
        try:
            return _listen(targets, backlog, "shareable" if shareable else "exclusive")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def join(group: Sequence[socket.socket], backlog: int) -> list[socket.socket]:
    """Listening sockets on the addresses of ``group`` (from
    ``listen(..., shareable=True)``), bound with ``SO_REUSEPORT``: the
    kernel spreads new connections over every socket of the group (a worker
    process's own). ``OSError`` when one cannot be bound."""
    targets = []
    for sock in group:
        dual = sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        targets.append((sock.family, sock.type, sock.proto, sock.getsockname(), dual))
    return _listen(targets, backlog, "join")


def joinable(group: Sequence[socket.socket]) -> bool:
    """Whether :func:`join` can add sockets to ``group``: made by
    ``listen(..., shareable=True)`` where :func:`reuse_port_available`."""
    return reuse_port_available() and all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in group)


def _listen(targets: list[tuple[Any, Any, int, Any, bool]], backlog: int, mode: str) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    chosen = 0
    try:
        for family, kind, proto, address, dual_stack in targets:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this host has no support for
            sockets.append(sock)
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if mode == "join":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(not dual_stack))
            if chosen:
                address = (address[0], chosen, *address[2:])
            try:
                sock.bind(address)
                if mode == "shareable":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.listen(backlog)
            except OSError as exc:
                if len(targets) == 1:
                    raise
                where = f"[{address[0]}]:{address[1]}" if family == socket.AF_INET6 else f"{address[0]}:{address[1]}"
                raise OSError(exc.errno, f"{where}: {(exc.strerror or str(exc)).lower()}") from None
            chosen = chosen or sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EADDRNOTAVAIL, "no address of a family this host supports")
    return sockets


def listen_unix(path: str, backlog: int) -> socket.socket:
    """A listening Unix stream socket at ``path`` (``--uds``). A socket file
    left there by a server that is gone (connecting to it is refused) is
    removed first; ``OSError`` when a server still listens there
    (``EADDRINUSE``) or ``path`` is something else than a socket (it is
    never removed then). The file's mode follows the umask."""
    if not hasattr(socket, "AF_UNIX"):
        raise OSError(errno.EAFNOSUPPORT, "Unix sockets are not available on this system")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket (not removed)")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: its server is gone
        except OSError:
            pass  # (a timeout: something still holds it; bind() will say EADDRINUSE)
        else:
            raise OSError(errno.EADDRINUSE, f"a server is listening on {path} already")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def remove_unix(path: str, made: os.stat_result) -> None:
    """Remove the socket file ``path`` if it is still the one ``made``
    describes (``os.lstat`` just after :func:`listen_unix`), not one that a
    later server made at the same path."""
    with contextlib.suppress(OSError):
        if os.path.samestat(os.lstat(path), made):
            os.unlink(path)


def inherited(fd: int) -> socket.socket:
    """The listening stream socket on descriptor ``fd``, inherited from
    whatever started this process (``--fd``; systemd's socket activation
    passes its first socket as fd 3). ``OSError`` when ``fd`` is not open
    or not a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(exc.errno or errno.EBADF, f"descriptor {fd} is not a socket "
                      f"({exc.strerror or exc})") from None
    try:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError(errno.EINVAL, f"descriptor {fd} is not a listening stream socket")
    except BaseException:
        sock.detach()  # not ours to close
        raise
    os.set_inheritable(fd, False)
    return sock
