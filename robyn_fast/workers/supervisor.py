"""Worker processes on one host: :class:`Supervisor` forks them before any
event loop exists, restarts those that die, and stops them gracefully.

Each worker is one process with one event loop (one core's worth of Python),
serving the whole app. The launch path binds the address once
(:func:`robyn_fast.listener.listen`, every address family), without
``SO_REUSEPORT``, so that it fails when anything listens there already; on
Linux the option is set after that bind, and the supervisor binds one more
socket per worker to the same addresses with it (:func:`robyn_fast.listener.join`),
before the fork: the kernel spreads new connections over the workers' sockets,
and a second server, which binds without the option, cannot listen on the
address while this one does (it exits 1). The supervisor holds every worker's
sockets, closes a dead worker's (unless they are the last: they hold the
port) and binds new ones for its replacement. Elsewhere every worker accepts on
the launch path's sockets, inherited. The workers are joined by a
:class:`~robyn_fast.broker.local.LocalBus`, so broadcasts, rooms and
``send_to`` reach every connection of the host. Each worker's ids carry its
node tag (:mod:`robyn_fast.websocket.ids`).

Supervision:

- SIGTERM or SIGINT: every worker gets SIGTERM and shuts down gracefully
  (Close 1001, close handlers, shutdown hooks); the supervisor waits for them
  (SIGKILL after the longest ``close_timeout`` plus 5 s) and exits 0.
- A worker that dies is logged with its exit status and restarted after a
  backoff (0.5 s, doubling with each restart of that slot in the last minute,
  at most 30 s) as the next generation of its slot, so ids of the dead one
  are never routed to the new one.
- A worker that exits before it serves (a startup hook that raises, a broker
  it cannot start) stops everything with exit status 1 when it is the first start
  or the third such failure in a row of a slot; its error is logged (by the worker).

Logging: the workers are forked after ``app.start()`` made its logging
decision (:func:`robyn_fast.logs.configure_logging`), so each inherits the
handlers and levels in force; every line of the supervisor and the workers
is a record of ``robyn_fast.workers`` (starts, readiness and exits at DEBUG).

What runs where: the code before ``app.start()`` runs once, in the
supervisor; startup and shutdown handlers run in every worker.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..broker import Broker, make_node_tag
from ..listener import join, joinable
from ..logs import get_logger
from ..broker.local import LocalBus
from ..server import ServedApp, Server, announce, run, url_of, websocket_urls
from ..websocket.ids import set_node_tag

__all__ = ["Supervisor", "MAX_WORKERS"]

log = get_logger("robyn_fast.workers")

MAX_WORKERS = 255  # a node tag has 8 bits for the slot
READY_TIMEOUT = 60.0  # a worker not serving by then counts as failed at start-up
MESH_TIMEOUT = 5.0  # how long a starting worker waits for links to every other worker
STARTUP_FAILURES = 3  # consecutive failures before serving that end a slot's restarts


@dataclass
class _Slot:
    index: int
    generation: int = 0
    pid: int | None = None
    ready_fd: int | None = None
    ready: bool = False
    started_at: float = 0.0
    failures_before_ready: int = 0
    restarts: list[float] = field(default_factory=list)
    restart_at: float | None = None
    sockets: list[socket.socket] | None = None  # what this slot's worker accepts on (None: to be bound)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _die_with(supervisor: int) -> None:
    """A worker whose supervisor dies (even by SIGKILL) gets SIGTERM and
    shuts down gracefully, instead of serving on as an orphan nobody stops
    (Linux: PR_SET_PDEATHSIG; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Serves ``app`` on ``sockets`` (listening) with ``processes`` worker
    processes. ``node``: each worker's broker when the workers are nodes on
    Redis (built in the worker, after the fork); None: the workers are
    joined by a LocalBus."""

    def __init__(
        self,
        app: ServedApp,
        sockets: Sequence[socket.socket],
        processes: int,
        *,
        close_timeout: float,
        loop_factory: Callable[[], Any] | None = None,
        on_serving: Callable[[str], None] | None = None,
        node: Callable[[], Broker] | None = None,
    ) -> None:
        if not 1 <= processes <= MAX_WORKERS:
            raise ValueError(f"processes must be 1..{MAX_WORKERS}, got {processes}")
        if not sockets:
            raise ValueError("a supervisor needs at least one listening socket")
        self.app = app
        self.sockets = list(sockets)
        # Linux, and the launch path bound them shareable: a socket of its own per worker.
        self.reuse_port = joinable(self.sockets)
        self.urls = [url_of(sock, tls=app.config.ssl is not None) for sock in self.sockets]
        self.slots = [_Slot(i) for i in range(processes)]
        self.close_timeout = close_timeout
        self.loop_factory = loop_factory
        self.on_serving = on_serving
        self.node = node
        self.host_id = secrets.randbelow(0xFFFF) + 1
        self.rundir = ""
        self.counters: Any = None  # the workers' shared counter block (robyn_fast.metrics), made by run()
        self.stopping = False
        self.exit_code = 0
        self.stop_deadline: float | None = None
        self.announced = False
        self._wakeup_r = self._wakeup_w = -1

    # -- the supervisor ------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a crash at start-up (1). The
        sockets stay open (the caller's)."""
        self.rundir = tempfile.mkdtemp(prefix="robyn_fast-")
        # One slot of counters per worker, shared by every process forked from here on: whichever
        # worker serves Config.metrics_path sums them without asking the others.
        self.counters = metrics.new_block(len(self.slots))
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(self._wakeup_w)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake select()
        self.slots[0].sockets = self.sockets
        if not self.reuse_port:
            for slot in self.slots:
                slot.sockets = self.sockets
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._loop()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._wakeup_r, self._wakeup_w):
                os.close(fd)
            for slot in self.slots:
                self._close_ready(slot)
                self._close_sockets(slot)
            shutil.rmtree(self.rundir, ignore_errors=True)
        return self.exit_code

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            log.info("workers: %s received; stopping the workers gracefully", signal.Signals(signum).name)
            self._stop(0)

    def _stop(self, code: int) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = code
        self.stop_deadline = time.monotonic() + self.close_timeout + 5.0
        for slot in self.slots:
            slot.restart_at = None
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)

    def _loop(self) -> None:
        while True:
            self._reap()
            if self.stopping:
                # The workers stop accepting on their own copies; the supervisor's would only let the
                # kernel queue connections nobody will accept (here, not in the signal handler, which
                # may interrupt _spawn between binding a worker's sockets and forking it).
                for slot in self.slots:
                    self._close_sockets(slot)
            live = [s for s in self.slots if s.pid is not None]
            if self.stopping and not live:
                return
            now = time.monotonic()
            if self.stopping and self.stop_deadline is not None and now >= self.stop_deadline:
                for slot in live:
                    log.warning("workers: worker %d (pid %d) still running; killing it", slot.index, slot.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signal.SIGKILL)  # type: ignore[arg-type]
                self.stop_deadline = None
            for slot in self.slots:
                if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                    slot.restart_at = None
                    self._spawn(slot)
                if (slot.pid is not None and not slot.ready and not self.stopping
                        and now - slot.started_at > READY_TIMEOUT):
                    log.error("workers: worker %d (pid %d) not serving after %.0f s; killing it",
                              slot.index, slot.pid, READY_TIMEOUT)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signal.SIGKILL)
            timeout = 1.0
            for when in [s.restart_at for s in self.slots if s.restart_at is not None] + (
                [self.stop_deadline] if self.stop_deadline is not None else []
            ):
                timeout = min(timeout, max(0.0, when - now))
            poller = select.poll()  # not select(): an app may hold fds past 1023 before start()
            for fd in [self._wakeup_r] + [s.ready_fd for s in self.slots if s.ready_fd is not None]:
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(timeout * 1000):
                if fd == self._wakeup_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wakeup_r, 512):
                            pass
                else:
                    self._on_ready_fd(fd)

    def _on_ready_fd(self, fd: int) -> None:
        slot = next(s for s in self.slots if s.ready_fd == fd)
        data = os.read(fd, 16)
        self._close_ready(slot)
        if data != b"R":
            return  # the worker died before it served: _reap handles it
        slot.ready = True
        slot.failures_before_ready = 0
        if self.announced:
            log.info("workers: worker %d (pid %s) serving again (generation %d)", slot.index, slot.pid,
                     slot.generation)
        else:
            log.debug("workers: worker %d (pid %s) serving", slot.index, slot.pid)
        if not self.announced and all(s.ready for s in self.slots):
            self.announced = True
            urls = self.urls
            pids = ", ".join(str(s.pid) for s in self.slots)
            announce(f"robyn_fast: serving on {', '.join(urls)} with {len(self.slots)} worker processes (pids {pids})"
                     f"{websocket_urls(self.app, urls[:1])}")
            if self.on_serving is not None:
                self.on_serving(urls[0])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue  # not a worker (something the app started before app.start())
            self._close_ready(slot)
            slot.pid = None
            was_ready, slot.ready = slot.ready, False
            if self.reuse_port and any(s.sockets for s in self.slots if s is not slot):
                # So that the kernel stops handing this worker's socket new connections (those
                # waiting in it are reset, as when any server dies); the replacement binds anew.
                self._close_sockets(slot)
            if self.stopping:
                if status != 0:
                    log.info("workers: worker %d (pid %d) stopped with %s", slot.index, pid, _describe(status))
                else:
                    log.debug("workers: worker %d (pid %d) stopped", slot.index, pid)
                continue
            if not was_ready:
                self._failed_to_start(slot, f"(pid {pid}) exited ({_describe(status)}) before it was serving")
            else:
                self._restart_later(slot, f"(pid {pid}) died ({_describe(status)})")

    def _failed_to_start(self, slot: _Slot, what: str) -> None:
        """A worker that never served: everything stops (exit 1) at the
        first start or after STARTUP_FAILURES in a row; else a restart."""
        slot.failures_before_ready += 1
        if not self.announced or slot.failures_before_ready >= STARTUP_FAILURES:
            log.error("workers: worker %d %s; stopping", slot.index, what)
            self._stop(1)
        else:
            self._restart_later(slot, what)

    def _restart_later(self, slot: _Slot, what: str) -> None:
        now = time.monotonic()
        slot.restarts = [t for t in slot.restarts if now - t < 60.0]
        delay = min(30.0, 0.5 * 2 ** len(slot.restarts))
        slot.restarts.append(now)
        slot.restart_at = now + delay
        log.warning("workers: worker %d %s; restarting it in %.1f s", slot.index, what, delay)

    def _close_sockets(self, slot: _Slot) -> None:
        if slot.sockets is not None:
            for sock in slot.sockets:
                sock.close()
            slot.sockets = None

    def _close_ready(self, slot: _Slot) -> None:
        if slot.ready_fd is not None:
            os.close(slot.ready_fd)
            slot.ready_fd = None

    def _spawn(self, slot: _Slot) -> None:
        if slot.pid is not None or self.stopping:
            return
        if slot.sockets is None:
            try:
                slot.sockets = join(next(s.sockets for s in self.slots if s.sockets), self.app.config.backlog)
            except OSError as exc:
                self._failed_to_start(slot, f"cannot bind its socket: {exc.strerror or exc}")
                return
        if slot.started_at:
            slot.generation = (slot.generation + 1) & 0xFF
        slot.started_at = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.getpid()
        # Stop signals wait until the fork is done and the pid recorded: one arriving in between would
        # otherwise miss the new worker (or run the supervisor's handler in it).
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            ready_r, ready_w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(ready_r)
                os.close(ready_w)
                raise
            if pid == 0:  # the worker
                os.close(ready_r)
                self._worker(slot, ready_w, supervisor)  # never returns
            os.close(ready_w)
            slot.pid = pid
            log.debug("workers: worker %d started (pid %d, generation %d)", slot.index, pid, slot.generation)
        except OSError as exc:  # no process or pipe to be had (a pid or fd limit)
            self._failed_to_start(slot, f"cannot start it: {exc}")
            return
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        slot.ready_fd = ready_r
        slot.ready = False

    # -- a worker --------------------------------------------------------------------------

    def _worker(self, slot: _Slot, ready_w: int, supervisor: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # blocked by _spawn
            _die_with(supervisor)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            for other in self.slots:
                if other.ready_fd is not None:
                    os.close(other.ready_fd)
                if other.sockets is not None and other.sockets is not slot.sockets:
                    for sock in other.sockets:  # else a dead worker's socket, closed by the supervisor, stays open
                        sock.close()
            code = self._serve(slot, ready_w)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            # a record of robyn_fast.workers like every other line (the handlers the fork inherited)
            log.exception("workers: worker %d (pid %d) failed", slot.index, os.getpid())
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _serve(self, slot: _Slot, ready_w: int) -> int:
        bus: Broker
        if self.node is not None:  # a node among the workers of every host on this Redis
            bus = self.node()
        else:
            tag = make_node_tag(self.host_id, slot.index, slot.generation)
            bus = LocalBus(self.rundir, tag, len(self.slots))
            set_node_tag(tag)
        metrics.attach(self.counters, slot.index)

        async def ready(server: Server) -> None:
            if isinstance(bus, LocalBus) and not await bus.wait_meshed(MESH_TIMEOUT):
                log.warning("workers: worker %d serving without links to every other worker (%d of %d)",
                            slot.index, len(bus.links), len(self.slots) - 1)
            os.write(ready_w, b"R")
            os.close(ready_w)

        assert slot.sockets is not None
        return run(self.app, slot.sockets, loop_factory=self.loop_factory, broker=bus, on_ready=ready)
