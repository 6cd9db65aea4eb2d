"""Robyn's command line, for ``python app.py [flags]`` and ``python -m
robyn_fast app.py [flags]``: flags, environment variables and ``robyn.env``.

Every setting of the command line and the environment is declared once, as a
:class:`robyn_fast.settings.Setting`: the launch settings (host, port,
processes, workers, dev mode, log level, broker, TLS files...) in
:data:`LAUNCH` here, the ones that are ``Config`` fields (``--metrics-path``,
``--access-log``, ``ROBYN_CLIENT_TIMEOUT``, ``ROBYN_KEEP_ALIVE_TIMEOUT``) on
their field in :mod:`robyn_fast.config`. The parser, ``--help`` (each flag
with its variable), the reading of the environment and the README's table
come from those declarations; a variable's text goes through the same parser
and check as its flag's argument.

Flags (Robyn's): ``--processes N`` and ``--workers M`` (N x M worker
processes: Robyn's workers are threads, which add no core under the GIL),
``--fast`` (one process per CPU, log level WARNING), ``--dev`` (one process,
restarted on source changes), ``--log-level``, ``--open-browser``; robyn_fast's
``--log-config`` (:func:`robyn_fast.logs.configure_logging`), ``--broker``, ``--metrics-path``,
``--access-log``, ``--ssl-*``, and where to listen and who to believe behind a
proxy: ``--host``/``--port``, ``--uds PATH`` (a Unix socket), ``--fd N`` (an
inherited socket, systemd's socket activation), ``--forwarded-allow-ips``,
``--proxy-protocol``.
``--version``/``--help`` print and exit 0; ``--disable-openapi`` is read by
the compat app (no ``/openapi.json`` or ``/docs``; a native app serves them
only when it calls ``serve_openapi``); ``--create``, ``--docs``, ``--compile-rust-path`` and
``--create-rust-file`` are Robyn's tools, not a server's: each says so in one
line and exits 2. Anything else that cannot be used (an unknown flag,
``--processes two``, ``ROBYN_PORT=abc``) is a usage error: one line on
stderr (after the usage, for a flag), exit status 2.

A flag wins over the environment, which wins over the arguments of
``app.start()``. ``robyn.env`` next to the app (``KEY=VALUE`` lines, ``#``
comments) fills in variables that are not set yet, when the app object is
created (as Robyn does). A broker URL is never shown with its password, a
key's password never at all.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import ssl as _ssl
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .broker.resp import BrokerURLError, RedisAddress, parse_url, redact_url
from .config import SETTINGS as CONFIG_SETTINGS
from .exceptions import ConfigError, RobynFastError
from .files import MAX_CONFIG_FILE, UnusableFile, read_limited
from .logs import AUTO, LogConfig
from .settings import Setting, anything, boolean, choice, markdown_table, switch_text, text, whole_number
from .tls import server_context
from .version import version_line

__all__ = ["Options", "Settings", "UsageError", "parse", "resolve", "environment", "load_env_file", "LOG_LEVELS",
           "LAUNCH", "SETTINGS", "help_text", "command_line_table"]

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


def _broker_url(value: str) -> RedisAddress:
    try:
        return parse_url(value)
    except BrokerURLError as exc:  # its message shows the URL without its password
        raise ValueError(str(exc)) from None


def _loop(value: str) -> str:
    if value not in ("asyncio", "uvloop"):
        raise ValueError(f"expected asyncio or uvloop, got {value!r}")
    return value


def _log_config(value: str) -> str:
    if value.lower() in (AUTO, "none"):
        return value.lower()
    if not os.path.isfile(value):
        raise ValueError(f"no such file: {value!r} (expected auto, none, or a .json, .yaml or .ini logging "
                         "configuration file)")
    return value


def _hidden(value: str) -> str:
    return "***"


def _any_text(value: str) -> str:
    return value


#: How to serve: the settings that are not Config fields, in --help's order.
LAUNCH: tuple[Setting, ...] = (
    Setting("processes", 1, "worker processes; N × M in all with `--workers` (1 × 1: one process, no supervisor)",
            anything, parse=whole_number(1), flag="--processes", env="ROBYN_PROCESSES", metavar="N"),
    Setting("workers", 1, "workers per process, each a process too: N × M in all (Robyn's workers are threads, "
            "which add no core under the GIL)", anything, parse=whole_number(1), flag="--workers",
            env="ROBYN_WORKERS", metavar="M"),
    Setting("fast", False, "one worker process per CPU and log level WARNING (Robyn's 2 × CPUs + 1 processes of 2 "
            "threads would only add context switches here)", boolean, flag="--fast"),
    Setting("dev", False, "one process, restarted when a `.py` file or `robyn.env` under the app's directory "
            "changes (open WebSockets get 1001); not with `--processes`/`--workers`", boolean, parse=switch_text,
            flag="--dev", env="ROBYN_DEV_MODE"),
    Setting("log_level", None, "DEBUG, INFO, WARNING (or WARN), ERROR or CRITICAL: the root logger's when robyn_fast "
            "configures logging, else the `robyn_fast` logger's (DEBUG with `--dev`, WARNING with `--fast`)", anything, parse=choice(tuple(LOG_LEVELS)), flag="--log-level",
            metavar="LEVEL", shown="INFO"),
    Setting("log_config", AUTO, "`auto`: configure logging (a handler on stderr, the root logger at the log level) "
            "only when the app has not (no `basicConfig`/`dictConfig` before `app.start()`); `none`: never; or a "
            "`.json`, `.yaml` or `.ini` file to configure it with (see [Logging](#logging))", anything,
            parse=_log_config, flag="--log-config", env="ROBYN_FAST_LOG_CONFIG", metavar="CONFIG"),
    Setting("open_browser", False, "open the served URL in a browser", boolean, parse=switch_text,
            flag="--open-browser", env="ROBYN_BROWSER_OPEN"),
    Setting("host", "127.0.0.1", "the address to listen on (`app.start(host)` otherwise); `0.0.0.0` or `::` "
            "every interface", anything, parse=text("a host name or address"), flag="--host", env="ROBYN_HOST",
            metavar="HOST", shown="`app.start()`'s"),
    Setting("port", 8080, "the port to listen on, 0: any free one (`app.start(port)` otherwise)", anything,
            parse=whole_number(0, 65535), flag="--port", env="ROBYN_PORT", metavar="PORT",
            shown="`app.start()`'s"),
    Setting("uds", None, "listen on this Unix socket instead of a host and port (a stale socket file left by a "
            "server that is gone is replaced; the file is removed on exit; its mode follows the umask); not with "
            "`--host`/`--port`/`--fd`", anything, parse=text("a socket path", spaces=True), flag="--uds",
            env="ROBYN_UDS", metavar="PATH"),
    Setting("fd", None, "accept on this inherited listening socket (systemd socket activation passes fd 3) "
            "instead of binding; every worker of `--processes` serves it; not with `--host`/`--port`/`--uds`",
            anything, parse=whole_number(0), flag="--fd", env="ROBYN_FD", metavar="N"),
    Setting("broker", None, "join the servers that name the same Redis: `redis://[user:password@]host:port/db`, "
            "`rediss://...` (TLS) or `unix:///path` (see above); `None`: the workers of this host only", anything,
            parse=_broker_url, flag="--broker", env="ROBYN_FAST_BROKER", metavar="URL", redact=redact_url),
    Setting("ssl_certfile", None, "serve HTTPS and WSS with this PEM certificate chain, server certificate first "
            "(see [TLS](#tls))", anything, parse=text("a file name", spaces=True), flag="--ssl-certfile",
            env="ROBYN_FAST_SSL_CERTFILE", metavar="PATH"),
    Setting("ssl_keyfile", None, "the PEM private key of `--ssl-certfile` (`None`: in the certificate file)",
            anything, parse=text("a file name", spaces=True), flag="--ssl-keyfile", env="ROBYN_FAST_SSL_KEYFILE",
            metavar="PATH"),
    Setting("ssl_keyfile_password", None, "the password of an encrypted key (the variable keeps it out of `ps`)",
            anything, parse=_any_text, flag="--ssl-keyfile-password", env="ROBYN_FAST_SSL_KEYFILE_PASSWORD",
            metavar="PASSWORD", redact=_hidden, strip=False),
    Setting("loop", None, "`asyncio` forces asyncio's event loop, `uvloop` uvloop's (`None`: uvloop when it is "
            "installed)", anything, parse=_loop, env="ROBYN_FAST_LOOP", strip=False),
)

#: Every setting of the command line and the environment: LAUNCH, then the Config fields that have a flag or a variable.
SETTINGS: tuple[Setting, ...] = LAUNCH + tuple(s for s in CONFIG_SETTINGS if s.flag or s.env)
_FLAGGED = tuple(s for s in SETTINGS if s.flag)
_FLAG_NAMES = frozenset(s.name for s in _FLAGGED)
_BY_NAME = {s.name: s for s in SETTINGS}


class Options:
    """What the command line asked for: one attribute per flag of
    :data:`SETTINGS` (``Options(processes=2).processes``), ``None`` when the
    flag was not given (``False`` for a switch such as ``--fast``)."""

    __slots__ = ("_given",)

    def __init__(self, **given: Any) -> None:
        unknown = sorted(set(given) - _FLAG_NAMES)
        if unknown:
            raise TypeError(f"Options() has no setting {', '.join(unknown)}")
        self._given = {s.name: given.get(s.name, False if s.switch else None) for s in _FLAGGED}

    def __getattr__(self, name: str) -> Any:
        if name == "_given":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        try:
            return self._given[name]
        except KeyError:
            raise AttributeError(f"Options has no setting {name!r}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._given == other._given

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={'***' if _BY_NAME[name].redact is _hidden else value!r}"
                          for name, value in self._given.items() if value not in (None, False))
        return f"Options({shown})"


@dataclass(frozen=True)
class Settings:
    """How to serve, once flags, environment and ``app.start()`` arguments are combined."""

    host: str
    port: int
    processes: int  # worker processes in all (processes x workers)
    dev: bool
    log_level: int
    open_browser: bool
    broker: RedisAddress | None = None  # None: no broker (the workers of this host share a local bus)
    log_config: LogConfig = AUTO  # robyn_fast.logs.configure_logging's: "auto", None, a dict or a file
    log_level_given: bool = False  # the level came from --log-level (not a default, --dev's or --fast's)
    # The Config fields that flags, the environment or app.start() set (the app's Config keeps the others).
    config: Mapping[str, Any] = field(default_factory=dict)
    uds: str | None = None  # serve on this Unix socket (not host and port)
    fd: int | None = None  # serve on this inherited listening socket

    @property
    def header_timeout(self) -> float | None:
        return self.config.get("header_timeout")

    @property
    def keep_alive_timeout(self) -> float | None:
        return self.config.get("keep_alive_timeout")

    @property
    def metrics_path(self) -> str | None:
        return self.config.get("metrics_path")

    @property
    def access_log(self) -> bool:
        return bool(self.config.get("access_log", False))

    @property
    def ssl(self) -> _ssl.SSLContext | None:
        return self.config.get("ssl")


def _argument(spec: Setting) -> Any:
    def convert(value: str) -> Any:
        try:
            return spec.from_text(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = spec.name  # argparse names the type in some messages
    return convert


def _plain(doc: str) -> str:
    """A doc line for --help: markdown's backticks and links dropped, % escaped for argparse."""
    return re.sub(r"\[([^\]]+)\]\(#[^)]*\)", r"\1 in the README", doc.replace("`", "")).replace("%", "%%")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    env_only = [s for s in SETTINGS if s.env and not s.flag]
    epilog = "environment variables without a flag (a flag wins over its variable; robyn.env fills in unset ones):\n"
    for s in env_only:
        epilog += textwrap.fill(f"{s.env}: {_plain(s.described()).replace('%%', '%')}", 100, initial_indent="  ",
                                subsequent_indent="      ") + "\n"
    p = _Parser(prog=prog, description="Serve this app with robyn_fast (Robyn's command line).",
                allow_abbrev=False, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    for s in _FLAGGED:
        if s.flag is None:  # (for the type checker: _FLAGGED holds only settings with a flag)
            continue
        doc = _plain(s.described()) + (f" [{s.env}]" if s.env else "")
        if s.switch:
            p.add_argument(s.flag, dest=s.name, action="store_true", help=doc)
        else:
            p.add_argument(s.flag, dest=s.name, type=_argument(s), metavar=s.metavar, help=doc)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--disable-openapi", action="store_true", help="a Robyn app (python -m robyn_fast) serves no /openapi.json or /docs")
    p.add_argument("--create", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--docs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile-rust-path", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--create-rust-file", metavar="NAME", help=argparse.SUPPRESS)
    return p


def help_text(prog: str) -> str:
    """The ``--help`` text."""
    return _parser(prog).format_help()


def command_line_table() -> list[str]:
    """The README's table of flags and variables (checked by tests/test_readme.py)."""
    return markdown_table(SETTINGS, command_line=True)


def parse(argv: Sequence[str], prog: str) -> Options:
    """The options of ``argv`` (the arguments after the script). Prints and
    exits 0 for ``--help``/``--version``; exits 2 with the usage and one line
    for anything it cannot use."""
    args = _parser(prog).parse_args(list(argv))
    if args.version:
        print(version_line())
        raise SystemExit(0)
    for name, why in _NOT_A_SERVER_FLAG.items():
        if getattr(args, name):
            flag = "--" + name.replace("_", "-")
            print(f"{prog}: {flag} is not supported by robyn_fast: {why}", file=sys.stderr)
            raise SystemExit(2)
    if args.dev and (args.processes not in (None, 1) or args.workers not in (None, 1) or args.fast):
        print(f"{prog}: --dev serves one process; it cannot be combined with --processes, --workers or --fast",
              file=sys.stderr)
        raise SystemExit(2)
    return Options(**{s.name: getattr(args, s.name) for s in _FLAGGED})


def environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings that ``env`` gives, by name, each parsed and checked as
    its flag's argument is; an empty (or all-blank) variable is not set.
    UsageError naming the variable (and showing its text, a password never)
    for one that cannot be used."""
    values: dict[str, Any] = {}
    for s in SETTINGS:
        if s.env is None:
            continue
        raw = env.get(s.env)
        if raw is None:
            continue
        value = raw.strip() if s.strip else raw
        if value.strip() == "":
            continue
        try:
            values[s.name] = s.from_text(value)
        except ValueError as exc:
            raise UsageError(f"{s.env}={s.shown_text(raw)!r}: {exc}") from None
    return values


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
    log_config: LogConfig = AUTO,
) -> Settings:
    """Flags over environment over ``app.start()`` arguments. UsageError for
    a malformed environment variable or argument, or TLS files that cannot
    be used."""
    for name, value in (("processes", processes), ("workers", workers)):
        if value is not None and (type(value) is not int or value < 1):
            raise UsageError(f"app.start({name}={value!r}): expected a whole number of 1 or more")
    from_env = environment(env)

    def given(name: str) -> tuple[bool, Any]:
        """Whether a flag or else a variable gives setting ``name``, and its value."""
        if name in _FLAG_NAMES:
            value = getattr(options, name)
            if value is not None and value is not False:
                return True, value
        if name in from_env:
            return True, from_env[name]
        return False, None

    uds, fd = given("uds")[1], given("fd")[1]
    if uds is not None and fd is not None:
        raise UsageError("--uds and --fd (or ROBYN_UDS and ROBYN_FD) each name the socket to serve on: give one")
    if uds is not None or fd is not None:
        chosen = "--uds (or ROBYN_UDS)" if uds is not None else "--fd (or ROBYN_FD)"
        for name in ("host", "port"):
            if given(name)[0]:
                raise UsageError(f"{chosen} serves on that socket: --{name} (or ROBYN_{name.upper()}) cannot be "
                                 f"combined with it")
    host = given("host")[1] if given("host")[0] else host
    port = given("port")[1] if given("port")[0] else port
    if type(port) is not int or not 0 <= port <= 65535:
        raise UsageError(f"invalid port {port!r}: expected 0..65535")
    # --fast is a flag: one process per CPU this process may run on, over the environment and app.start();
    # only --processes says otherwise.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = options.processes or (cpus if options.fast else None) or from_env.get("processes") or processes
    m = options.workers or from_env.get("workers") or workers
    dev = bool(given("dev")[1])
    total = (n or 1) * (m or 1)
    if total > MAX_PROCESSES:
        raise UsageError(f"{n or 1} x {m or 1} = {total} worker processes; at most {MAX_PROCESSES}")
    if dev and total > 1:
        raise UsageError("dev mode (--dev or ROBYN_DEV_MODE) serves one process; drop --processes/--workers")
    level_name = options.log_level or ("WARNING" if options.fast else None) or ("DEBUG" if dev else "INFO")
    found, chosen = given("log_config")
    if found:
        log_config = None if chosen == "none" else chosen
    address = given("broker")[1]
    if address is None and broker:
        try:
            address = parse_url(broker) if isinstance(broker, str) else broker
        except BrokerURLError as exc:
            raise UsageError(str(exc)) from None
    if isinstance(address, str):  # Options(broker="redis://...") made by hand
        try:
            address = parse_url(address)
        except BrokerURLError as exc:
            raise UsageError(str(exc)) from None
    if address is not None and importlib.util.find_spec("hiredis") is None:
        raise UsageError("a Redis broker needs hiredis: pip install 'robyn_fast[redis]'")
    if from_env.get("loop") == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise UsageError("ROBYN_FAST_LOOP='uvloop': uvloop is not installed (pip install uvloop)")
    config: dict[str, Any] = {}
    for s in CONFIG_SETTINGS:
        found, value = given(s.name)
        if found:
            config[s.name] = value
    start_config: tuple[tuple[str, str, float | None], ...] = (
        ("header_timeout", "client_timeout", client_timeout),
        ("keep_alive_timeout", "keep_alive_timeout", keep_alive_timeout),
    )
    for name, argument, start_value in start_config:
        if name not in config and start_value is not None:
            spec = _BY_NAME[name]
            try:
                config[name] = spec.check(start_value, spec.where)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"app.start({argument}={start_value!r}): {exc}") from None
    if config.get("proxy_protocol") and (given("ssl_certfile")[0] or ssl is not None):
        raise UsageError("--proxy-protocol (or ROBYN_PROXY_PROTOCOL) with TLS: the PROXY header comes before the "
                         "TLS handshake, which this server does not read; terminate TLS at the proxy")
    context = _tls(given, ssl)
    if context is not None:
        config["ssl"] = context
    return Settings(
        host=host,
        port=port,
        processes=total,
        dev=dev,
        log_level=LOG_LEVELS[level_name],
        open_browser=bool(given("open_browser")[1]),
        broker=address,
        config=config,
        uds=uds,
        fd=fd,
        log_config=log_config,
        log_level_given=options.log_level is not None,
    )


def _tls(given: Any, start_ssl: _ssl.SSLContext | None) -> _ssl.SSLContext | None:
    """The TLS context the flags or the environment ask for (loaded now, in
    the process that forks the workers), else ``app.start(ssl=...)``'s."""
    certfile = given("ssl_certfile")[1]
    keyfile = given("ssl_keyfile")[1]
    password = given("ssl_keyfile_password")[1]
    if certfile is None:
        if keyfile is not None:
            raise UsageError("--ssl-keyfile (or ROBYN_FAST_SSL_KEYFILE) needs --ssl-certfile "
                             "(or ROBYN_FAST_SSL_CERTFILE): the certificate to present with the key")
        if password is not None:
            raise UsageError("--ssl-keyfile-password (or ROBYN_FAST_SSL_KEYFILE_PASSWORD) needs --ssl-certfile")
        if start_ssl is not None and not isinstance(start_ssl, _ssl.SSLContext):
            raise UsageError(f"app.start(ssl=...): expected an ssl.SSLContext, not {type(start_ssl).__name__}")
        if start_ssl is not None and start_ssl.protocol == _ssl.PROTOCOL_TLS_CLIENT:
            raise UsageError("app.start(ssl=...): a client-side context (PROTOCOL_TLS_CLIENT); a server needs "
                             "one of ssl.Purpose.CLIENT_AUTH (robyn_fast.tls.server_context)")
        return start_ssl
    try:
        return server_context(certfile, keyfile, password)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def load_env_file(directory: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    """Set the variables of ``<directory>/robyn.env`` that are not set yet
    (in ``os.environ`` by default); returns their names. Lines are
    ``KEY=VALUE`` (the value is everything after the first ``=``; surrounding
    whitespace is dropped), blank, or ``#`` comments. UsageError naming the
    file (and the line) for anything else: a file that is not a regular file
    or is larger than 1 MiB (read no further), not UTF-8, a line that is not
    one of those, a NUL in a value (no environment can hold one). The values
    are checked when the app starts, as every variable is."""
    target = os.environ if environ is None else environ
    path = Path(directory) / "robyn.env"
    try:
        text = read_limited(path, MAX_CONFIG_FILE).decode("utf-8")
    except FileNotFoundError:
        return []
    except UnusableFile as exc:
        raise UsageError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}") from None
    loaded = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not key or not (key.replace("_", "a").isalnum() and key.isascii() and not key[0].isdigit()):
            raise UsageError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        if "\x00" in value:
            raise UsageError(f"{path}:{number}: the value of {key} holds a NUL byte, which no environment variable "
                             f"can hold")
        if key not in target:
            target[key] = value.strip()
            loaded.append(key)
    return loaded
