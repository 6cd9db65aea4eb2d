"""The bytes of an HTTP/1.1 response on the fast path of a plain route (RFC 9112 §4, §6).

A route with no middleware, authentication, parameter or reshaping (decided by
robyn_fast.http.routes when the route's chain is resolved) answers a ``str``,
``bytes`` or ``dict`` through :func:`build_response`: one allocation, the
head's bytes copied once. The output is byte for byte what
``robyn_fast.http.types.serialize_response`` writes for the same status,
fields and body (its oracle, in tests/test_http_fast.py).

The ``Date`` field is formatted once per second, in C, with the English day
and month names RFC 9110 §5.6.7 requires whatever the C locale says.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy
from libc.stdio cimport snprintf
from libc.time cimport time_t, time, tm

cdef extern from "<time.h>" nogil:
    tm *gmtime_r(const time_t *timep, tm *result)

cdef const char *_DAYS[7]
_DAYS[:] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"]
cdef const char *_MONTHS[12]
_MONTHS[:] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"]

cdef time_t _date_second = -1
cdef bytes _date = b""

cdef const char *_CLOSE = b"connection: close\r\n"
cdef Py_ssize_t _CLOSE_LEN = 19
cdef const char *_LENGTH = b"content-length: "
cdef Py_ssize_t _LENGTH_LEN = 16


cpdef bytes date_line():
    """``date: Sun, 06 Nov 1994 08:49:37 GMT\\r\\n`` for now (the second it is)."""
    global _date_second, _date
    cdef time_t now = time(NULL)
    cdef tm parts
    cdef char buf[64]
    cdef int n
    if now != _date_second:
        gmtime_r(&now, &parts)
        n = snprintf(buf, sizeof(buf), b"date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     _DAYS[parts.tm_wday], parts.tm_mday, _MONTHS[parts.tm_mon], parts.tm_year + 1900,
                     parts.tm_hour, parts.tm_min, parts.tm_sec)
        _date = PyBytes_FromStringAndSize(buf, n)
        _date_second = now
    return _date


cpdef bytes build_response(bytes head, bytes body, bint keep_alive, bint head_only):
    """``head`` (status line and fields), ``connection: close`` unless
    ``keep_alive``, the date, ``content-length`` of ``body``, the blank line,
    then ``body`` unless ``head_only`` (a HEAD request: RFC 9110 §9.3.2)."""
    cdef bytes date = date_line()
    cdef Py_ssize_t body_len = PyBytes_GET_SIZE(body)
    cdef char digits[24]
    cdef int ndigits = snprintf(digits, sizeof(digits), b"%zd\r\n\r\n", body_len)
    cdef Py_ssize_t head_len = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t date_len = PyBytes_GET_SIZE(date)
    cdef Py_ssize_t total = head_len + date_len + _LENGTH_LEN + ndigits
    if not keep_alive:
        total += _CLOSE_LEN
    if not head_only:
        total += body_len
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(head), head_len)
    p += head_len
    if not keep_alive:
        memcpy(p, _CLOSE, _CLOSE_LEN)
        p += _CLOSE_LEN
    memcpy(p, PyBytes_AS_STRING(date), date_len)
    p += date_len
    memcpy(p, _LENGTH, _LENGTH_LEN)
    p += _LENGTH_LEN
    memcpy(p, digits, ndigits)
    p += ndigits
    if not head_only:
        memcpy(p, PyBytes_AS_STRING(body), body_len)
    return out
