"""TLS for the server (HTTPS and WSS): a server-side :class:`ssl.SSLContext`
from PEM files, with errors that say what is wrong.

``Config(ssl=context)``, ``app.start(ssl=context)`` or the command line's
``--ssl-certfile``/``--ssl-keyfile`` turn TLS on. The context is made once,
before any worker process is forked, and every worker inherits it (OpenSSL
contexts survive a fork; nothing is loaded again per worker).
"""

from __future__ import annotations

import os
import ssl

from .exceptions import ConfigError
from .files import MAX_CONFIG_FILE, UnusableFile, read_limited

__all__ = ["server_context"]

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
