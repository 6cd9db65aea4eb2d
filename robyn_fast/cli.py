"""Robyn's command line, for ``python app.py [flags]`` and ``python -m
robyn_fast app.py [flags]``: flags, environment variables and ``robyn.env``.

Flags (Robyn's):

- ``--processes N`` and ``--workers M``: serve with N x M worker processes.
  Robyn's workers are threads inside a process; with the GIL a thread adds
  no core, so here every worker is a process with its own event loop and the
  total is the product. Default 1 x 1: one process.
- ``--fast``: one worker process per CPU and log level WARNING (each can
  still be set by its own flag). Robyn's ``--fast`` asks for 2 x CPUs + 1
  processes of 2 threads each; for single-threaded processes that would only
  add context switches.
- ``--dev``: serve one process and restart it when a ``.py`` file or
  ``robyn.env`` under the app's directory changes (not with the flags above).
- ``--log-level LEVEL``: DEBUG, INFO (the default; DEBUG with ``--dev``),
  WARNING (or WARN), ERROR or CRITICAL, for the root logger.
- ``--open-browser``: open the served URL in a browser once serving.
- ``--ssl-certfile PATH``, ``--ssl-keyfile PATH``, ``--ssl-keyfile-password
  PASSWORD`` (robyn_fast's, as uvicorn's): serve HTTPS and WSS with that
  certificate chain and key (PEM; the key may be in the certificate file);
  loaded once, before the workers start, so a file that cannot be used is a
  usage error naming it (:func:`robyn_fast.tls.server_context`).
- ``--version``, ``--help``: print and exit 0, without serving.
- ``--disable-openapi`` is accepted and changes nothing (robyn_fast serves no
  OpenAPI docs); ``--create``, ``--docs``, ``--compile-rust-path`` and
  ``--create-rust-file`` are Robyn's tools, not a server's: each says so in
  one line and exits 2.

Anything else (an unknown flag, ``--processes two``) is a usage error: the
usage and one line saying what is wrong on stderr, exit status 2.

Environment: ``ROBYN_HOST``, ``ROBYN_PORT``, ``ROBYN_CLIENT_TIMEOUT`` (the
request-head timeout, seconds), ``ROBYN_KEEP_ALIVE_TIMEOUT``,
``ROBYN_DEV_MODE=true``, ``ROBYN_BROWSER_OPEN``, and robyn_fast's own
``ROBYN_PROCESSES`` / ``ROBYN_WORKERS`` and ``ROBYN_FAST_BROKER`` (as
``--broker URL``: every worker a node on that Redis,
:mod:`robyn_fast.broker.redis`), ``ROBYN_FAST_SSL_CERTFILE``,
``ROBYN_FAST_SSL_KEYFILE`` and ``ROBYN_FAST_SSL_KEYFILE_PASSWORD`` (as the
``--ssl-*`` flags; the variable keeps the password out of ``ps``). A flag wins over the environment,
which wins over the arguments of ``app.start()``. ``robyn.env`` next to the
app (``KEY=VALUE`` lines, ``#`` comments) fills in variables that are not set
yet, when the app object is created (as Robyn does).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import ssl as _ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .broker.resp import RedisAddress
from .exceptions import ConfigError, RobynFastError

__all__ = ["Options", "Settings", "UsageError", "parse", "resolve", "load_env_file", "LOG_LEVELS", "help_text"]

LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "WARN": logging.WARNING,
              "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}

_NOT_A_SERVER_FLAG = {
    "create": "creating a project is Robyn's scaffolding tool",
    "docs": "opening Robyn's documentation is Robyn's CLI",
    "compile_rust_path": "compiling Rust files is Robyn's build tool",
    "create_rust_file": "creating Rust files is Robyn's build tool",
}


MAX_PROCESSES = 255  # a worker's node tag has 8 bits for its slot (robyn_fast.workers.supervisor.MAX_WORKERS)


class UsageError(RobynFastError, ValueError):
    """A command line, environment variable or ``robyn.env`` that cannot be
    used; ``str()`` is the one line to print (exit status 2)."""


@dataclass(frozen=True)
class Options:
    """What the command line asked for (None: not given)."""

    processes: int | None = None
    workers: int | None = None
    fast: bool = False
    dev: bool = False
    log_level: str | None = None
    open_browser: bool = False
    broker: str | None = None
    metrics_path: str | None = None
    access_log: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: str | None = None


@dataclass(frozen=True)
class Settings:
    """How to serve, once flags, environment and ``app.start()`` arguments are combined."""

    host: str
    port: int
    processes: int  # worker processes in all (processes x workers)
    dev: bool
    log_level: int
    open_browser: bool
    header_timeout: float | None
    keep_alive_timeout: float | None
    broker: RedisAddress | None = None  # None: no broker (the workers of this host share a local bus)
    metrics_path: str | None = None  # Config.metrics_path from --metrics-path (None: the app's own)
    access_log: bool = False  # --access-log: Config.access_log on
    ssl: _ssl.SSLContext | None = None  # None: not asked for here (the app's Config decides)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _metrics_path(text: str) -> str:
    from .config import Config

    try:
        Config(metrics_path=text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _log_level(text: str) -> str:
    name = text.upper()
    if name not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return name


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Serve this app with robyn_fast (Robyn's command line).",
                allow_abbrev=False)
    p.add_argument("--processes", type=_positive_int, metavar="N", help="worker processes (default 1)")
    p.add_argument("--workers", type=_positive_int, metavar="M",
                   help="workers per process; each is a process too: N x M in all (default 1)")
    p.add_argument("--fast", action="store_true", help="one worker process per CPU, log level WARNING")
    p.add_argument("--dev", action="store_true", help="one process, restarted when a source file changes")
    p.add_argument("--log-level", type=_log_level, metavar="LEVEL",
                   help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO, DEBUG with --dev)")
    p.add_argument("--open-browser", action="store_true", help="open the served URL in a browser")
    p.add_argument("--broker", metavar="URL",
                   help="join the servers that name the same Redis: redis://[user:password@]host:port/db, "
                        "rediss://... (TLS) or unix:///path (default: none; the workers of this host only)")
    p.add_argument("--metrics-path", metavar="PATH", type=_metrics_path,
                   help="serve Prometheus metrics of every worker at PATH (e.g. /metrics)")
    p.add_argument("--access-log", action="store_true",
                   help="log every HTTP request and WebSocket open/close on the robyn_fast.access logger")
    p.add_argument("--ssl-certfile", metavar="PATH",
                   help="serve HTTPS and WSS with this PEM certificate chain (server certificate first)")
    p.add_argument("--ssl-keyfile", metavar="PATH",
                   help="the PEM private key of --ssl-certfile (default: in the certificate file)")
    p.add_argument("--ssl-keyfile-password", metavar="PASSWORD",
                   help="the password of an encrypted key (ROBYN_FAST_SSL_KEYFILE_PASSWORD keeps it out of ps)")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--disable-openapi", action="store_true", help="accepted; robyn_fast serves no OpenAPI docs")
    p.add_argument("--create", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--docs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile-rust-path", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--create-rust-file", metavar="NAME", help=argparse.SUPPRESS)
    return p


def help_text(prog: str) -> str:
    """The ``--help`` text."""
    return _parser(prog).format_help()


def parse(argv: Sequence[str], prog: str) -> Options:
    """The options of ``argv`` (the arguments after the script). Prints and
    exits 0 for ``--help``/``--version``; exits 2 with the usage and one line
    for anything it cannot use."""
    from . import __version__

    args = _parser(prog).parse_args(list(argv))
    if args.version:
        print(f"robyn_fast {__version__} (Robyn's WebSocket API; Python {sys.version.split()[0]})")
        raise SystemExit(0)
    for name, why in _NOT_A_SERVER_FLAG.items():
        if getattr(args, name):
            flag = "--" + name.replace("_", "-")
            print(f"{prog}: {flag} is not supported by robyn_fast: {why}", file=sys.stderr)
            raise SystemExit(2)
    if args.disable_openapi:
        print(f"{prog}: --disable-openapi changes nothing: robyn_fast serves no OpenAPI docs", file=sys.stderr)
    if args.dev and (args.processes not in (None, 1) or args.workers not in (None, 1) or args.fast):
        print(f"{prog}: --dev serves one process; it cannot be combined with --processes, --workers or --fast",
              file=sys.stderr)
        raise SystemExit(2)
    return Options(args.processes, args.workers, args.fast, args.dev, args.log_level, args.open_browser,
                   args.broker, args.metrics_path, args.access_log,
                   args.ssl_certfile, args.ssl_keyfile, args.ssl_keyfile_password)


def _env_number(env: Mapping[str, str], name: str, kind: type[int] | type[float], minimum: float,
                maximum: float = math.inf) -> float | None:
    text = env.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        value: float = kind(text.strip())
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a {'whole ' if kind is int else ''}number") from None
    if not math.isfinite(value) or value < minimum:
        raise UsageError(f"{name}={text!r} must be at least {minimum:g}")
    if value > maximum:
        raise UsageError(f"{name}={text!r} must be at most {maximum:g}")
    return value


def resolve(
    options: Options,
    env: Mapping[str, str],
    host: str,
    port: int,
    processes: int | None = None,
    workers: int | None = None,
    client_timeout: float | None = None,
    keep_alive_timeout: float | None = None,
    broker: str | None = None,
    ssl: _ssl.SSLContext | None = None,
) -> Settings:
    """Flags over environment over ``app.start()`` arguments. UsageError for
    a malformed environment variable or argument, or TLS files that cannot
    be used."""
    for name, value in (("processes", processes), ("workers", workers)):
        if value is not None and (type(value) is not int or value < 1):
            raise UsageError(f"app.start({name}={value!r}): expected a whole number of 1 or more")
    host = env.get("ROBYN_HOST", "").strip() or host  # an empty variable is no address (not "every interface")
    env_port = _env_number(env, "ROBYN_PORT", int, 0, 65535)
    port = int(env_port) if env_port is not None else port
    if type(port) is not int or not 0 <= port <= 65535:
        raise UsageError(f"invalid port {port!r}: expected 0..65535")
    env_processes = _env_number(env, "ROBYN_PROCESSES", int, 1)
    env_workers = _env_number(env, "ROBYN_WORKERS", int, 1)
    # --fast is a flag: one process per CPU this process may run on, over the environment and app.start();
    # only --processes says otherwise.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = options.processes or (cpus if options.fast else None) or (int(env_processes) if env_processes else None) \
        or processes
    m = options.workers or (int(env_workers) if env_workers else None) or workers
    dev = options.dev or env.get("ROBYN_DEV_MODE", "").strip().lower() in ("1", "true", "yes", "on")
    total = (n or 1) * (m or 1)
    if total > MAX_PROCESSES:
        raise UsageError(f"{n or 1} x {m or 1} = {total} worker processes; at most {MAX_PROCESSES}")
    if dev and total > 1:
        raise UsageError("dev mode (--dev or ROBYN_DEV_MODE) serves one process; drop --processes/--workers")
    level_name = options.log_level or ("WARNING" if options.fast else None) or ("DEBUG" if dev else "INFO")
    header_timeout = _env_number(env, "ROBYN_CLIENT_TIMEOUT", float, 0.001)
    env_keep_alive = _env_number(env, "ROBYN_KEEP_ALIVE_TIMEOUT", float, 0.001)
    browser = options.open_browser or env.get("ROBYN_BROWSER_OPEN", "").strip().lower() in ("1", "true", "yes", "on")
    broker_url = options.broker or env.get("ROBYN_FAST_BROKER", "").strip() or broker
    address = None
    if broker_url:
        from .broker.redis import hiredis_available
        from .broker.resp import BrokerURLError, parse_url

        try:
            address = parse_url(broker_url)
        except BrokerURLError as exc:
            raise UsageError(str(exc)) from None
        if not hiredis_available():
            raise UsageError("a Redis broker needs hiredis: pip install 'robyn_fast[redis]'")
    context = _tls(options, env, ssl)
    return Settings(
        ssl=context,
        broker=address,
        host=host,
        port=port,
        processes=total,
        dev=dev,
        log_level=LOG_LEVELS[level_name],
        open_browser=browser,
        header_timeout=header_timeout if header_timeout is not None else client_timeout,
        keep_alive_timeout=env_keep_alive if env_keep_alive is not None else keep_alive_timeout,
        metrics_path=options.metrics_path,
        access_log=options.access_log,
    )


def _tls(options: Options, env: Mapping[str, str], given: _ssl.SSLContext | None) -> _ssl.SSLContext | None:
    """The TLS context the flags or the environment ask for (loaded now, in
    the process that forks the workers), else ``app.start(ssl=...)``'s."""
    from .tls import server_context

    certfile = options.ssl_certfile or env.get("ROBYN_FAST_SSL_CERTFILE", "").strip() or None
    keyfile = options.ssl_keyfile or env.get("ROBYN_FAST_SSL_KEYFILE", "").strip() or None
    password = options.ssl_keyfile_password
    if password is None:
        password = env.get("ROBYN_FAST_SSL_KEYFILE_PASSWORD") or None
    if certfile is None:
        if keyfile is not None:
            raise UsageError("--ssl-keyfile (or ROBYN_FAST_SSL_KEYFILE) needs --ssl-certfile "
                             "(or ROBYN_FAST_SSL_CERTFILE): the certificate to present with the key")
        if password is not None:
            raise UsageError("--ssl-keyfile-password (or ROBYN_FAST_SSL_KEYFILE_PASSWORD) needs --ssl-certfile")
        if given is not None and not isinstance(given, _ssl.SSLContext):
            raise UsageError(f"app.start(ssl=...): expected an ssl.SSLContext, not {type(given).__name__}")
        if given is not None and given.protocol == _ssl.PROTOCOL_TLS_CLIENT:
            raise UsageError("app.start(ssl=...): a client-side context (PROTOCOL_TLS_CLIENT); a server needs "
                             "one of ssl.Purpose.CLIENT_AUTH (robyn_fast.tls.server_context)")
        return given
    try:
        return server_context(certfile, keyfile, password)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def load_env_file(directory: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    """Set the variables of ``<directory>/robyn.env`` that are not set yet
    (in ``os.environ`` by default); returns their names. Lines are
    ``KEY=VALUE`` (the value is everything after the first ``=``; surrounding
    whitespace is dropped), blank, or ``#`` comments. UsageError naming the
    file and line for anything else."""
    target = os.environ if environ is None else environ
    path = Path(directory) / "robyn.env"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}") from None
    loaded = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not key or not (key.replace("_", "a").isalnum() and not key[0].isdigit()):
            raise UsageError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        if key not in target:
            target[key] = value.strip()
            loaded.append(key)
    return loaded
