# cython: language_level=3
"""The hot part of the server's opening handshake (RFC 6455 §4.2), sans-I/O:
bytes in, Python values out, no socket, no loop.

``accept_key`` is ``Sec-WebSocket-Accept`` from a C SHA-1 and base64
(wsutil.c); ``robyn_fast.websocket.handshake`` keeps the hashlib version as
the reference the tests compare it with.

``parse_upgrade_head`` reads the request head of a connection's first read
when it is the common WebSocket upgrade, in one pass in C, so the HTTP
protocol need not run httptools' callbacks (a Python call per header) for
it. It is deliberately narrow: it answers only for a head that httptools
(llhttp) would parse to exactly the same method, target and header list, and
that no HTTP rule of ``robyn_fast.http.protocol`` would refuse; for anything
else it returns None and the caller parses with httptools as before, so
every error answer and every edge case stays where it was.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t
from libc.string cimport memcmp


cdef extern from "wsutil.h" nogil:
    enum: RF_WS_ACCEPT_LEN
    void rf_ws_accept(const uint8_t *key, size_t n, char *out)


def accept_key(bytes key not None):
    """``base64(SHA-1(key + GUID))`` (RFC 6455 §1.3, §4.2.2 step 5.4) of the
    key's bytes exactly as given: the 28-byte ``Sec-WebSocket-Accept`` value."""
    cdef char out[RF_WS_ACCEPT_LEN]
    rf_ws_accept(<const uint8_t *>PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key), out)
    return PyBytes_FromStringAndSize(out, RF_WS_ACCEPT_LEN)


# Character classes, one bit each, for the bytes a plain head may hold.
cdef enum:
    C_TCHAR = 1     # token (RFC 9110 §5.6.2): a header name
    C_TARGET = 2    # what an origin-form target is made of (RFC 3986 unreserved, sub-delims, ":@/?%" and "[]#")
    C_VALUE = 4     # a field value's visible ASCII (no obs-text: that is left to httptools)

cdef unsigned char CLS[256]


cdef void _classes():
    cdef int c
    cdef bytes tchar = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    cdef bytes target = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-._~!$&'()*+,;=:@/?%[]#"
    for c in range(256):
        CLS[c] = C_VALUE if 0x21 <= c <= 0x7E else 0
    for c in tchar:
        CLS[c] |= C_TCHAR
    for c in target:
        CLS[c] |= C_TARGET


_classes()


cdef inline unsigned char _lower(unsigned char c):
    return c + 32 if 65 <= c <= 90 else c


cdef bint _name_is(const unsigned char *p, Py_ssize_t n, const char *lower, Py_ssize_t size):
    cdef Py_ssize_t i
    if n != size:
        return False
    for i in range(n):
        if _lower(p[i]) != <unsigned char>lower[i]:
            return False
    return True


cdef bint _has_token(const unsigned char *p, Py_ssize_t n, const char *lower, Py_ssize_t size):
    """Whether the comma-separated list p[:n] holds the token ``lower``, ignoring case and OWS."""
    cdef Py_ssize_t i = 0, start, end
    while i <= n:
        start = i
        while i < n and p[i] != 44:  # ","
            i += 1
        end = i
        while start < end and (p[start] == 32 or p[start] == 9):
            start += 1
        while end > start and (p[end - 1] == 32 or p[end - 1] == 9):
            end -= 1
        if _name_is(p + start, end - start, lower, size):
            return True
        i += 1
    return False


def parse_upgrade_head(bytes data not None, Py_ssize_t max_request_line, Py_ssize_t max_header_size,
                       Py_ssize_t max_headers, Py_ssize_t max_head_size):
    """``(end, target, headers)`` when ``data`` starts with a complete
    request head ``GET <origin-form target> HTTP/1.1`` whose fields ask to
    switch protocols (an ``Upgrade`` field with the ``websocket`` token and a
    ``Connection`` field with ``upgrade``) and that is plain: one ``Host``;
    no ``Content-Length``, ``Transfer-Encoding`` or ``Expect``; names tokens
    and values visible ASCII with inner spaces, none empty, each line ending
    in CRLF; within the four limits of ``Config`` (request line, header line,
    header count, head size). ``end`` is the offset just past the blank
    line, ``target`` the request target as a str, ``headers`` the
    ``(name, value)`` pairs as sent (values without their leading OWS).
    None for anything else: not a complete head yet, not an upgrade, or not
    plain (the caller's HTTP parser decides those)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i, start, name_end, value_start, target_start, target_end, fields = 0, count = 0
    cdef int hosts = 0
    cdef bint upgrade = False, connection = False
    cdef list headers = []
    if n < 16 or memcmp(p, b"GET /", 5) != 0:
        return None
    # Request line.
    target_start = 4
    i = target_start
    while i < n and CLS[p[i]] & C_TARGET:
        i += 1
    target_end = i
    if n - i < 11 or memcmp(p + i, b" HTTP/1.1\r\n", 11) != 0:
        return None
    if target_end - target_start > max_request_line:
        return None
    i += 11
    # Header lines, up to the blank line.
    while True:
        if n - i < 2:
            return None
        if p[i] == 13:
            if p[i + 1] != 10:
                return None
            i += 2
            break
        start = i
        while i < n and CLS[p[i]] & C_TCHAR:
            i += 1
        if i == start or i >= n or p[i] != 58:  # ":"
            return None
        name_end = i
        i += 1
        while i < n and (p[i] == 32 or p[i] == 9):
            i += 1
        value_start = i
        while i < n and (CLS[p[i]] & C_VALUE or ((p[i] == 32 or p[i] == 9) and i > value_start)):
            i += 1
        if i == value_start or n - i < 2 or p[i] != 13 or p[i + 1] != 10:
            return None  # incomplete, empty, a control byte, obs-text or a bare LF
        if p[i - 1] == 32 or p[i - 1] == 9:
            return None  # trailing whitespace: how httptools trims it is its business
        count += 1
        if (name_end - start) + (i - value_start) + 2 > max_header_size or count > max_headers:
            return None
        fields += (name_end - start) + (i - value_start) + 4
        if (target_end - target_start) + fields > max_head_size:
            return None
        name = PyBytes_FromStringAndSize(<const char *>p + start, name_end - start)
        value = PyBytes_FromStringAndSize(<const char *>p + value_start, i - value_start)
        headers.append((name, value))
        if _name_is(p + start, name_end - start, b"host", 4):
            hosts += 1
        elif _name_is(p + start, name_end - start, b"upgrade", 7):
            upgrade = upgrade or _has_token(p + value_start, i - value_start, b"websocket", 9)
        elif _name_is(p + start, name_end - start, b"connection", 10):
            connection = connection or _has_token(p + value_start, i - value_start, b"upgrade", 7)
        elif (_name_is(p + start, name_end - start, b"content-length", 14)
              or _name_is(p + start, name_end - start, b"transfer-encoding", 17)
              or _name_is(p + start, name_end - start, b"expect", 6)
              or _name_is(p + start, name_end - start, b"proxy-connection", 16)):
            return None
        i += 2
    if not (upgrade and connection and hosts == 1) or i > max_head_size:
        return None
    return i, PyBytes_FromStringAndSize(<const char *>p + target_start, target_end - target_start).decode("ascii"), \
        headers


def handshake_fields(object headers):
    """What the opening handshake checks read from the request's fields, in
    one pass (RFC 6455 §4.2.1; names matched ignoring case, list values split
    on commas with OWS stripped): ``(host_count, host, upgrade_seen,
    upgrade_ok, connection_seen, connection_ok, version_count, version,
    key_count, key, origin_count, origin, protocols)``; ``host``,
    ``version``, ``key`` and ``origin`` are the last such field's value (b""
    when there is none), ``upgrade_ok`` whether an ``Upgrade`` field holds
    ``websocket``, ``connection_ok`` whether a ``Connection`` field holds
    ``upgrade``, ``protocols`` every ``Sec-WebSocket-Protocol`` value in
    order. None when an item of ``headers`` is not a pair of ``bytes`` (the
    caller converts, or refuses)."""
    cdef Py_ssize_t host_count = 0, version_count = 0, key_count = 0, origin_count = 0, n, m
    cdef bint upgrade_seen = False, upgrade_ok = False, connection_seen = False, connection_ok = False
    cdef bytes host = b"", version = b"", key = b"", origin = b""
    cdef list protocols = []
    cdef const unsigned char *p
    cdef const unsigned char *v
    for item in headers:
        if type(item) is not tuple or len(<tuple>item) != 2:
            return None
        name = (<tuple>item)[0]
        value = (<tuple>item)[1]
        if type(name) is not bytes or type(value) is not bytes:
            return None
        p = <const unsigned char *>PyBytes_AS_STRING(name)
        n = PyBytes_GET_SIZE(name)
        v = <const unsigned char *>PyBytes_AS_STRING(value)
        m = PyBytes_GET_SIZE(value)
        if _name_is(p, n, b"host", 4):
            host_count += 1
            host = value
        elif _name_is(p, n, b"upgrade", 7):
            upgrade_seen = True
            upgrade_ok = upgrade_ok or _has_token(v, m, b"websocket", 9)
        elif _name_is(p, n, b"connection", 10):
            connection_seen = True
            connection_ok = connection_ok or _has_token(v, m, b"upgrade", 7)
        elif _name_is(p, n, b"sec-websocket-key", 17):
            key_count += 1
            key = value
        elif _name_is(p, n, b"sec-websocket-version", 21):
            version_count += 1
            version = value
        elif _name_is(p, n, b"origin", 6):
            origin_count += 1
            origin = value
        elif _name_is(p, n, b"sec-websocket-protocol", 22):
            protocols.append(value)
    return (host_count, host, upgrade_seen, upgrade_ok, connection_seen, connection_ok, version_count, version,
            key_count, key, origin_count, origin, protocols)
