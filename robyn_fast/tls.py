"""TLS for the server (HTTPS and WSS): a server-side :class:`ssl.SSLContext`
from PEM files, with errors that say what is wrong.

``Config(ssl=context)``, ``app.start(ssl=context)`` or the command line's
``--ssl-certfile``/``--ssl-keyfile`` turn TLS on. The context is made once,
before any worker process is forked, and every worker inherits it (OpenSSL
contexts survive a fork; nothing is loaded again per worker).

:func:`transport_maker` picks what encrypts each connection
(``Config.tls_transport``): aiofastnet's TLS transport when the optional
``aiofastnet`` package is installed (``pip install 'robyn_fast[tls]'``) and
the context allows it, else the event loop's own (uvloop's or asyncio's
``SSLProtocol``). aiofastnet is a Cython transport over OpenSSL memory BIOs
(the ``libssl`` Python's ``_ssl`` uses, opened at run time, and the
``SSL_CTX`` of the very ``ssl.SSLContext`` given): it decrypts straight
into the buffer our protocol lends (``get_buffer``) and encrypts each
``write`` without a Python-level copy, on any loop with ``add_reader``
(uvloop and asyncio alike). The measurements that chose it are in
bench/README.md ("Which TLS transport").
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from .config import TlsTransport
from .exceptions import ConfigError
from .files import MAX_CONFIG_FILE, UnusableFile, read_limited
from .logs import get_logger

__all__ = ["server_context", "transport_maker", "TlsTransport", "ConnectAccepted"]

log = get_logger("robyn_fast.server")

#: ``loop.connect_accepted_socket``'s shape: (protocol factory, socket, keywords) -> (transport, protocol).
ConnectAccepted = Callable[..., Coroutine[Any, Any, tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]]

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"


class _NoPassword(Exception):
    """OpenSSL asked for the password of an encrypted key and none was given."""


def _read(what: str, path: str) -> bytes:
    # Bounded, and refusing what is not a regular file: /dev/zero or a FIFO would hang the start.
    try:
        return read_limited(path, MAX_CONFIG_FILE)
    except FileNotFoundError:
        raise ConfigError(f"TLS {what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"TLS {what} {path}: is a directory, not a file") from None
    except UnusableFile as exc:
        raise ConfigError(f"TLS {what} {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"TLS {what} {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"TLS {what} {path}: cannot be a file name: {exc}") from None


def server_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    password: str | bytes | None = None,
) -> ssl.SSLContext:
    """A server-side context that presents the certificate chain of
    ``certfile`` (PEM: the server's certificate first, then its
    intermediates) with the private key of ``keyfile`` (PEM; ``None``: the
    key is in ``certfile``), decrypted with ``password`` if it is encrypted.

    The settings are Python's defaults for a server
    (``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)``: TLS 1.2 and
    newer, no client certificate asked for), and ALPN offers ``http/1.1``.

    Raises :class:`~robyn_fast.exceptions.ConfigError`, one line naming the
    file: a file missing or unreadable, one without a PEM certificate or
    key, an encrypted key without a password or with the wrong one, a key
    that does not match the certificate.
    """
    cert_path = os.fspath(certfile)
    key_path = os.fspath(keyfile) if keyfile is not None else None
    cert_pem = _read("certificate file", cert_path)
    if _CERT_MARK not in cert_pem:
        raise ConfigError(f"TLS certificate file {cert_path}: no PEM certificate in it (expected {_CERT_MARK.decode()})")
    if key_path is None:
        if _KEY_MARK not in cert_pem:
            raise ConfigError(f"TLS certificate file {cert_path}: no private key in it; give the key file too")
        key_where = cert_path
    else:
        if _KEY_MARK not in _read("key file", key_path):
            raise ConfigError(f"TLS key file {key_path}: no PEM private key in it")
        key_where = key_path
    asked = []

    def give_password() -> str | bytes:
        asked.append(True)
        if password is None:
            raise _NoPassword
        return password

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_path, key_path, password=give_password)
    except _NoPassword:
        raise ConfigError(f"TLS key file {key_where}: the private key is encrypted; give its password") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"TLS key file {key_where}: the private key does not match the certificate in {cert_path}"
            ) from None
        if asked:
            raise ConfigError(f"TLS key file {key_where}: cannot decrypt the private key (wrong password?)") from None
        raise ConfigError(
            f"TLS certificate {cert_path} / key {key_where}: OpenSSL cannot load them ({exc.reason or 'malformed PEM data'})"
        ) from None
    except (TypeError, ValueError) as exc:  # a password of the wrong type, or over OpenSSL's length limit
        raise ConfigError(f"TLS key file {key_where}: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _loop_only(context: ssl.SSLContext) -> str | None:
    """Why ``context`` needs the loop's TLS transport, or None. aiofastnet
    drives the context's ``SSL_CTX`` with connections of its own, which
    are not ``ssl`` module objects: the callbacks the ``ssl`` module
    installs on the context look for one and cannot run there."""
    if context.sni_callback is not None:
        return "the context has an sni_callback"
    if getattr(context, "keylog_filename", None):
        return "the context has a keylog_filename"
    if getattr(context, "_msg_callback", None) is not None:
        return "the context has a _msg_callback"
    return None


def _aiofastnet() -> Any:
    try:
        import aiofastnet
    except ImportError:
        return None
    if getattr(aiofastnet, "OPENSSL_DYN_LIBS", None) is None:
        return None  # it found no libssl of Python's to open: its fallback engine is the loop's speed at best
    return aiofastnet


def transport_maker(
    loop: asyncio.AbstractEventLoop, context: ssl.SSLContext, choice: TlsTransport = "auto",
) -> tuple[ConnectAccepted, str]:
    """The function that makes the TLS transport of an accepted socket (with
    ``loop.connect_accepted_socket``'s arguments) and its name for the log:

    - ``"auto"``: aiofastnet's when it is installed and ``context`` allows
      it (no ``sni_callback``, ``keylog_filename`` or ``_msg_callback``,
      which only the ``ssl`` module's own connections can run), else the
      loop's;
    - ``"aiofastnet"``: aiofastnet's, or ``ConfigError`` when it is missing
      or ``context`` cannot use it;
    - ``"loop"``: the loop's.
    """
    if choice == "loop":
        return loop.connect_accepted_socket, "the event loop's TLS transport (Config.tls_transport='loop')"
    module = _aiofastnet()
    why_not = "aiofastnet is not installed (pip install 'robyn_fast[tls]')" if module is None else _loop_only(context)
    if why_not is None:
        connect: ConnectAccepted = functools.partial(module.connect_accepted_socket, loop)
        return connect, f"aiofastnet {module.__version__}'s TLS transport"
    if choice == "aiofastnet":
        raise ConfigError(f"Config.tls_transport='aiofastnet': {why_not}")
    return loop.connect_accepted_socket, f"the event loop's TLS transport ({why_not})"
