# Type stub for the compiled handshake helpers (robyn_fast._core.handshake);
# checked against the built module by tests/test_packaging.py (mypy.stubtest).

def accept_key(key: bytes) -> bytes: ...
def parse_upgrade_head(
    data: bytes, max_request_line: int, max_header_size: int, max_headers: int, max_head_size: int
) -> tuple[int, str, list[tuple[bytes, bytes]]] | None: ...
def handshake_fields(
    headers: object,
) -> tuple[int, bytes, bool, bool, bool, bool, int, bytes, int, bytes, int, bytes, list[bytes]] | None: ...
