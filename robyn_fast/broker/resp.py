"""Redis, sans-I/O: RESP2 commands as bytes (redis.io/docs/reference/protocol-spec)
and the broker URL. Replies are parsed by ``hiredis.Reader`` (C) in
:mod:`robyn_fast.broker.redis`.

A broker URL is one of::

    redis://[[user]:password@]host[:port][/db][?prefix=NAME]
    rediss://...   (TLS; ?ssl_cert_reqs=none, ?ssl_ca_certs=PATH, ?ssl_check_hostname=false)
    unix://[[user]:password@]/path/to/redis.sock[?db=N&prefix=NAME]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/db][?sentinel_password=...]
    redis+cluster://[[user]:password@]host:port[,host:port...][?prefix=NAME]
    rediss+sentinel://..., rediss+cluster://...   (TLS to every node, with the rediss options)

With ``+sentinel`` the hosts are Redis Sentinels (port 26379 by default),
asked for the address of the master named ``MASTER``; the user and password
are the master's (``sentinel_password``, and ``sentinel_username``, log in
to the sentinels when they want it). With ``+cluster`` the hosts are seeds:
any nodes of one Redis Cluster, asked for its shards (a cluster has no db:
only db 0). In both, ``host`` and ``port`` are the first one given, and
``seeds`` all of them.

``prefix`` names the channels (default ``robyn_fast``): servers of one app
share it, different apps on one Redis use different ones.
``room_linger`` (seconds, default 2) is how long a node stays subscribed to
a room's channel after its last member there left (see
:mod:`robyn_fast.broker.interest`).
``max_reply_size`` (bytes, default 64 MiB, at least 1 MiB) bounds what one
reply from Redis may make the client buffer: past it the connection is
dropped, counted and logged, and a message that could not cross it is not
published (dropped and counted).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, unquote, urlsplit

from ..exceptions import RobynFastError
from .interest import DEFAULT_LINGER

__all__ = ["command", "BrokerURLError", "RedisAddress", "parse_url", "redact_url", "DEFAULT_PREFIX",
           "DEFAULT_MAX_REPLY", "MIN_MAX_REPLY", "DEFAULT_ROOM_LINGER"]

DEFAULT_PREFIX = "robyn_fast"
# Setting (issue 16, item 6): the broker URL's ?max_reply_size=BYTES, like ?prefix (no flag of its own).
DEFAULT_MAX_REPLY = 64 * 1024 * 1024
MIN_MAX_REPLY = 1024 * 1024  # a joined PUBLISH payload (512 KiB) and its push must fit
# Setting: the broker URL's ?room_linger=SECONDS (default: robyn_fast.broker.interest's).
DEFAULT_ROOM_LINGER = DEFAULT_LINGER
MAX_ROOM_LINGER = 3600.0


class BrokerURLError(RobynFastError, ValueError):
    """A broker URL that cannot be used; ``str()`` says why in one line."""


def command(*args: bytes | str | int) -> bytes:
    """One RESP2 command: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n" % len(raw))
        out.append(raw)
        out.append(b"\r\n")
    return b"".join(out)


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is and how to log in. ``url`` is for logs: no password."""

    url: str
    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None = field(repr=False)  # never shown: not in url, repr() or any message
    tls: ssl.SSLContext | None
    server_hostname: str | None
    prefix: str
    max_reply: int = DEFAULT_MAX_REPLY  # bytes one reply from Redis may make the client buffer
    room_linger: float = DEFAULT_ROOM_LINGER  # seconds a room stays subscribed after its last member left
    mode: str = "single"  # "single", "sentinel" (seeds are sentinels) or "cluster" (seeds are cluster nodes)
    seeds: tuple[tuple[str, int], ...] = ()  # sentinel / cluster: every host:port given, in order
    master_name: str | None = None  # sentinel: the master's name
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def at(self, host: str, port: int) -> RedisAddress:
        """The same login, TLS and options, on another node (a sentinel's
        master, a cluster's shard): a single-node address."""
        scheme = "rediss" if self.tls is not None else "redis"
        return replace(self, url=f"{scheme}://{host}:{port}" + (f"/{self.db}" if self.db else ""), host=host,
                       port=port, path=None, server_hostname=host if self.tls is not None else None,
                       mode="single", seeds=(), master_name=None)

    def sentinel_login(self) -> list[bytes]:
        """What a new connection to a sentinel sends first."""
        if self.sentinel_password is None:
            return []
        if self.sentinel_username:
            return [command("AUTH", self.sentinel_username, self.sentinel_password)]
        return [command("AUTH", self.sentinel_password)]

    def login(self) -> list[bytes]:
        """The commands a new connection sends first (AUTH, then SELECT)."""
        cmds = []
        if self.password is not None:
            if self.username:
                cmds.append(command("AUTH", self.username, self.password))
            else:
                cmds.append(command("AUTH", self.password))
        if self.db:
            cmds.append(command("SELECT", self.db))
        return cmds


def _flag(query: dict[str, list[str]], name: str, url: str) -> bool | None:
    values = query.pop(name, None)
    if values is None:
        return None
    value = values[-1].lower()
    if value in ("1", "true", "yes", "required"):
        return True
    if value in ("0", "false", "no", "none"):
        return False
    raise BrokerURLError(f"broker URL {url!r}: {name}={values[-1]!r} is not a yes/no value")


def redact_url(url: str) -> str:
    """``url`` safe to print: whatever stands between ``scheme://`` (or the
    start) and the last ``@`` is the user information, and its password
    becomes ``***`` (a user name is kept). Works on URLs that do not parse,
    since those are the ones an error message shows; over-redacting a path
    that holds an ``@`` is the price of never showing a password."""
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    at = url.rfind("@", start)
    if at < 0:
        return url
    user, colon, _ = url[start:at].partition(":")
    return f"{url[:start]}{user}:***@{url[at + 1:]}" if colon else f"{url[:start]}***@{url[at + 1:]}"


def _seeds(netloc: str, default_port: int, given: str) -> tuple[tuple[str, int], ...]:
    """``host[:port],host[:port]...`` (IPv6 in brackets) of a sentinel or cluster URL."""
    seeds = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            raise BrokerURLError(f"broker URL {given!r}: an empty host in the list of hosts")
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise BrokerURLError(f"broker URL {given!r}: bad IPv6 host {item!r}")
            port_text = rest[1:]
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise BrokerURLError(f"broker URL {given!r}: no host in {item!r}")
        if port_text:
            if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
                raise BrokerURLError(f"broker URL {given!r}: bad port in {item!r}")
            port = int(port_text)
        else:
            port = default_port
        if (host, port) not in seeds:
            seeds.append((host, port))
    return tuple(seeds)


def _split_userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis://secret@host: the password alone, as redis-py reads it
        return None, unquote(user), hosts
    return (unquote(user) or None), unquote(password), hosts


def _parse_multi(url: str, given: str, scheme: str) -> RedisAddress:
    """A ``redis+sentinel://`` or ``redis+cluster://`` URL."""
    base, _, mode = scheme.partition("+")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [ of an IPv6 host
        raise BrokerURLError(f"broker URL {given!r}: bad IPv6 host: {exc}") from None
    username, password, netloc = _split_userinfo(parts.netloc)
    seeds = _seeds(netloc, 26379 if mode == "sentinel" else 6379, given)
    if not seeds:
        raise BrokerURLError(f"broker URL {given!r}: no host")
    query = parse_qs(parts.query, keep_blank_values=True)
    prefix = query.pop("prefix", [DEFAULT_PREFIX])[-1]
    if not prefix or any(c.isspace() for c in prefix):
        raise BrokerURLError(f"broker URL {given!r}: prefix must be non-empty without spaces")
    max_reply = _max_reply(query, given)
    room_linger = _room_linger(query, given)
    path = [unquote(p) for p in parts.path.split("/") if p]
    master_name = None
    db = 0
    db_in_path = len(path) > 1
    if mode == "sentinel":
        if not path:
            raise BrokerURLError(f"broker URL {given!r}: no master name (redis+sentinel://host:port/MASTER[/db])")
        master_name = path.pop(0)
        if path:
            db = _db(path.pop(0), given)
        if path:
            raise BrokerURLError(f"broker URL {given!r}: the path is /MASTER[/db], not {parts.path!r}")
    elif path:
        raise BrokerURLError(f"broker URL {given!r}: a cluster URL has no path (a cluster has no db but 0)")
    db_text = query.pop("db", [None])[-1]
    if db_text is not None:
        if mode == "cluster" or db_in_path:
            raise BrokerURLError(f"broker URL {given!r}: " + ("a cluster has no db but 0" if mode == "cluster"
                                                              else "the db is given twice"))
        db = _db(db_text, given)
    sentinel_username = query.pop("sentinel_username", [None])[-1]
    sentinel_password = query.pop("sentinel_password", [None])[-1]
    if mode != "sentinel" and (sentinel_username is not None or sentinel_password is not None):
        raise BrokerURLError(f"broker URL {given!r}: sentinel_username/sentinel_password are for redis+sentinel://")
    tls = _tls(query, given) if base == "rediss" else None
    if query:
        raise BrokerURLError(f"broker URL {given!r}: unknown option(s) {', '.join(sorted(query))}")
    host, port = seeds[0]
    listed = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in seeds)
    shown = f"{scheme}://{listed}" + (f"/{master_name}" if master_name else "") + (f"/{db}" if db else "")
    return RedisAddress(shown, host, port, None, db, username, password, tls, host if tls else None, prefix,
                        max_reply, room_linger=room_linger, mode=mode, seeds=seeds, master_name=master_name,
                        sentinel_username=sentinel_username, sentinel_password=sentinel_password)


def _max_reply(query: dict[str, list[str]], given: str) -> int:
    max_reply_text = query.pop("max_reply_size", [None])[-1]
    if max_reply_text is None:
        return DEFAULT_MAX_REPLY
    if not (max_reply_text.isascii() and max_reply_text.isdigit()) or not MIN_MAX_REPLY <= int(max_reply_text) <= 1 << 40:
        raise BrokerURLError(f"broker URL {given!r}: max_reply_size is a number of bytes from {MIN_MAX_REPLY} "
                             f"to 2**40, not {max_reply_text!r}")
    return int(max_reply_text)


def _room_linger(query: dict[str, list[str]], given: str) -> float:
    linger_text = query.pop("room_linger", [None])[-1]
    if linger_text is None:
        return DEFAULT_ROOM_LINGER
    try:
        room_linger = float(linger_text)
    except ValueError:
        room_linger = -1.0
    if not 0 <= room_linger <= MAX_ROOM_LINGER:
        raise BrokerURLError(f"broker URL {given!r}: room_linger is a number of seconds from 0 to "
                             f"{MAX_ROOM_LINGER:g}, not {linger_text!r}")
    return room_linger


def _db(text: str, given: str) -> int:
    try:
        db = int(text) if text else 0
    except ValueError:
        raise BrokerURLError(f"broker URL {given!r}: the db is a number, not {text!r}") from None
    if db < 0:
        raise BrokerURLError(f"broker URL {given!r}: the db is 0 or more")
    return db


def _tls(query: dict[str, list[str]], given: str) -> ssl.SSLContext:
    """The TLS context of a ``rediss`` URL, from its ssl_* options."""
    tls = ssl.create_default_context()
    ca = query.pop("ssl_ca_certs", None)
    if ca:
        try:
            tls.load_verify_locations(cafile=ca[-1])
        except (OSError, ssl.SSLError) as exc:
            raise BrokerURLError(f"broker URL {given!r}: cannot load ssl_ca_certs: {exc}") from None
    verify = _flag(query, "ssl_cert_reqs", given)
    check = _flag(query, "ssl_check_hostname", given)
    if verify is False:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    elif check is False:
        tls.check_hostname = False
    return tls


def parse_url(url: str) -> RedisAddress:
    """The :class:`RedisAddress` of a broker URL (see the module docstring);
    BrokerURLError naming what is wrong."""
    if not isinstance(url, str) or not url:
        raise BrokerURLError(f"a broker URL is a non-empty str, not {type(url).__name__ if url else repr(url)}")
    given = redact_url(url)  # what every message shows
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        return _parse_multi(url, given, scheme)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BrokerURLError(f"broker URL {given!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise BrokerURLError(f"broker URL {given!r}: the scheme is redis://, rediss://, unix://, redis+sentinel://, "
                             f"redis+cluster:// (or rediss+...), not {scheme!r}://")
    query = parse_qs(parts.query, keep_blank_values=True)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:  # redis://secret@host: the password alone, as redis-py reads it
        username, password = None, username
    prefix = query.pop("prefix", [DEFAULT_PREFIX])[-1]
    if not prefix or any(c.isspace() for c in prefix):
        raise BrokerURLError(f"broker URL {given!r}: prefix must be non-empty without spaces")
    db_text = query.pop("db", [None])[-1]
    max_reply = _max_reply(query, given)
    room_linger = _room_linger(query, given)
    host: str | None = None
    path: str | None = None
    tls: ssl.SSLContext | None = None
    server_hostname = None
    if scheme == "unix":
        path = unquote(parts.path)
        if not path:
            raise BrokerURLError(f"broker URL {given!r}: no socket path")
        port = 0
    else:
        host = parts.hostname or "127.0.0.1"
        port = port or 6379
        tail = parts.path.strip("/")
        if tail:
            if db_text is not None:
                raise BrokerURLError(f"broker URL {given!r}: the db is given twice")
            db_text = tail
        if scheme == "rediss":
            tls = _tls(query, given)
            server_hostname = host
    db = _db(db_text or "", given)
    if query:
        raise BrokerURLError(f"broker URL {given!r}: unknown option(s) {', '.join(sorted(query))}")
    where = path if path is not None else f"{host}:{port}"
    shown = f"{scheme}://{where}" + (f"/{db}" if db else "")
    return RedisAddress(shown, host, port, path, db, username, password, tls, server_hostname, prefix, max_reply,
                        room_linger)
