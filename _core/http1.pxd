# The compiled HTTP/1.1 response builder (robyn_fast._core.http1): what the fast path of a plain
# route writes. The Python serializer (robyn_fast.http.types.serialize_response) is its oracle.

cpdef bytes date_line()
# "date: <IMF-fixdate>\r\n" (RFC 9110 §5.6.7) for the current second, formatted once per second.

cpdef bytes build_response(bytes head, bytes body, bint keep_alive, bint head_only)
# head: the status line and the field lines (validated, lower-cased names, each ending CRLF);
# then "connection: close" when not keep_alive, the date, content-length, the blank line and
# body (not for a HEAD request, head_only).
