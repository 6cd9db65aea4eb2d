"""Pure-Python reference implementations, the oracle the tests compare the
compiled core with (same API, same behaviour, byte for byte). The server
never runs on them."""
