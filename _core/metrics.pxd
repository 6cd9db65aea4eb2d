# Contract of the compiled counters (robyn_fast._core.metrics).
#
# One ws_counters_t per process: every Hub of the process holds a pointer to
# it (Hub.m) and bumps its fields with plain C increments on the hot path (no
# Python object per message). The block lives in a malloc'd slot of its own,
# or, in a worker forked by robyn_fast.workers.supervisor, in the worker's
# slot of a MAP_SHARED block the supervisor created before forking: one
# writer per slot (the worker's event loop), so any process may sum the
# slots without a round trip. Aligned 64-bit loads and stores do not tear.

from libc.stdint cimport uint64_t

cdef enum:
    CLOSE_CODES = 16          # close codes 1000..1015 get a counter each
    CLOSE_OTHER = 16          # index of the counter for every other code

ctypedef struct ws_counters_t:
    uint64_t opened               # connections started (after the 101)
    uint64_t closed[17]           # connections ended, by final close code - 1000 (CLOSE_OTHER: the rest)
    uint64_t messages_in          # data messages received (after reassembly)
    uint64_t messages_out         # data messages queued for a client (one per client of a broadcast)
    uint64_t bytes_in             # wire bytes read from clients (headers, masks, control frames included)
    uint64_t bytes_out            # wire bytes handed to the transport (the same, outward)
    uint64_t backpressure_drops   # sends refused and dropped by the "drop" policy
    uint64_t backpressure_closes  # connections closed 1008 by the "close" policy
    uint64_t pings_sent           # keepalive pings
    uint64_t pings_received
    uint64_t pongs_sent           # answers to pings
    uint64_t pongs_received
    uint64_t handler_errors       # handler raised, or returned a value that cannot be sent
    # The broker's figures, copied from Broker.stats() by the Python layer
    # (robyn_fast.metrics) about once a second, so other processes can sum them.
    uint64_t broker_up            # 1 while the broker is connected (Redis) / linked to every peer (bus)
    uint64_t broker_reconnects    # connections lost and made again (Redis outages)
    uint64_t broker_published     # messages sent to other nodes
    uint64_t broker_received      # messages received from other nodes
    uint64_t broker_dropped       # messages dropped on the way (bounded buffers)

# This process's counters (never NULL once the module is imported).
cdef ws_counters_t *current_counters() noexcept nogil

cdef inline void count_close(ws_counters_t *m, object code):
    cdef long c
    if code is None:
        m.closed[CLOSE_OTHER] += 1
        return
    c = code
    if 1000 <= c < 1000 + CLOSE_CODES:
        m.closed[c - 1000] += 1
    else:
        m.closed[CLOSE_OTHER] += 1
