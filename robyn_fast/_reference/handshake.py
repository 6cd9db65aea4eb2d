"""Pure-Python twins of ``robyn_fast._core.handshake.accept_key`` and
``handshake_fields``: the oracles of tests/test_handshake.py.
(``parse_upgrade_head``'s oracle is httptools itself.)"""

from __future__ import annotations

import hashlib
from base64 import b64encode

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> bytes:
    """``base64(SHA-1(key + GUID))`` (RFC 6455 §1.3, §4.2.2 step 5.4) of the key's bytes as given."""
    return b64encode(hashlib.sha1(key + GUID).digest())


def _has_token(value: bytes, token: bytes) -> bool:
    """Whether the comma-separated list ``value`` holds ``token`` (lowercase), ignoring case and OWS."""
    return any(part.strip(b" \t") == token for part in value.lower().split(b","))


def handshake_fields(
    headers: list[tuple[bytes, bytes]],
) -> tuple[int, bytes, bool, bool, bool, bool, int, bytes, int, bytes, int, bytes, list[bytes]] | None:
    """The twin of ``robyn_fast._core.handshake.handshake_fields`` (see there)."""
    host_count = version_count = key_count = origin_count = 0
    host = version = key = origin = b""
    upgrade_seen = upgrade_ok = connection_seen = connection_ok = False
    protocols: list[bytes] = []
    for item in headers:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not bytes or type(item[1]) is not bytes:
            return None
        name, value = item[0].lower(), item[1]
        if name == b"host":
            host_count += 1
            host = value
        elif name == b"upgrade":
            upgrade_seen = True
            upgrade_ok = upgrade_ok or _has_token(value, b"websocket")
        elif name == b"connection":
            connection_seen = True
            connection_ok = connection_ok or _has_token(value, b"upgrade")
        elif name == b"sec-websocket-key":
            key_count += 1
            key = value
        elif name == b"sec-websocket-version":
            version_count += 1
            version = value
        elif name == b"origin":
            origin_count += 1
            origin = value
        elif name == b"sec-websocket-protocol":
            protocols.append(value)
    return (host_count, host, upgrade_seen, upgrade_ok, connection_seen, connection_ok, version_count, version,
            key_count, key, origin_count, origin, protocols)
