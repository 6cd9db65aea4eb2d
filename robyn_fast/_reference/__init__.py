"""Pure-Python reference implementations, used as the test oracle and as the
fallback when the compiled extensions are disabled (``ROBYN_FAST_NO_EXTENSIONS=1``)."""
