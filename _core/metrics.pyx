# Compiled counters (contract: metrics.pxd).
#
# Every process starts with a private block. A supervisor that forks workers
# makes one MAP_SHARED block with a slot per worker (new_block) before the
# first fork; each worker attaches to its slot before it creates its hubs.
# Any process holding the block sums the slots (totals) without asking the
# others: a scrape served by one worker sees every worker's counters.

from libc.stdint cimport uint64_t
from libc.string cimport memset

import mmap

cdef ws_counters_t _own
cdef ws_counters_t *_cur = &_own
cdef object _view = None           # an export of the shared block: keeps it mapped while _cur points into it
cdef const uint64_t *_words = NULL # the shared block as words (for totals)
cdef Py_ssize_t _slots = 0

#: Bytes of one slot.
SLOT_SIZE = sizeof(ws_counters_t)

# Field names in struct order; "closed" expands to CLOSE_CODES + 1 words.
_FIELDS = ("opened", "closed", "messages_in", "messages_out", "bytes_in", "bytes_out", "backpressure_drops",
           "backpressure_closes", "pings_sent", "pings_received", "pongs_sent", "pongs_received", "handler_errors",
           "broker_up", "broker_reconnects", "broker_published", "broker_received", "broker_dropped")

memset(&_own, 0, sizeof(ws_counters_t))


cdef ws_counters_t *current_counters() noexcept nogil:
    return _cur


def new_block(int slots):
    """A zeroed anonymous MAP_SHARED block of ``slots`` counter slots, shared
    with every process forked after this call."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    return mmap.mmap(-1, slots * sizeof(ws_counters_t), flags=mmap.MAP_SHARED,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)


def attach(block, int slot):
    """Count this process in ``slot`` of ``block`` (from :func:`new_block`),
    from now on: hubs created afterwards write there. Call once, before any
    hub exists. The slot keeps what an earlier process in it counted (a
    restarted worker continues its predecessor's counters, so the sums never
    go down); connections that predecessor left open died with it and are
    counted closed with 1006."""
    global _cur, _view, _words, _slots
    cdef unsigned char[::1] raw = block
    cdef Py_ssize_t size = sizeof(ws_counters_t)
    cdef ws_counters_t *m
    cdef uint64_t ended = 0
    cdef int i
    if raw.shape[0] % size or not 0 <= slot < raw.shape[0] // size:
        raise ValueError(f"slot {slot} is not in a block of {raw.shape[0] // size} slot(s)")
    m = <ws_counters_t *>&raw[slot * size]
    for i in range(CLOSE_CODES + 1):
        ended += m.closed[i]
    if m.opened > ended:
        m.closed[1006 - 1000] += m.opened - ended
    _view = raw
    _words = <const uint64_t *>&raw[0]
    _slots = raw.shape[0] // size
    _cur = m


cdef dict _as_dict(const uint64_t *w):
    cdef dict out = {}
    cdef int i = 0
    cdef int k
    for name in _FIELDS:
        if name == "closed":
            closed = {}
            for k in range(CLOSE_CODES):
                closed[1000 + k] = w[i + k]
            closed["other"] = w[i + CLOSE_CODES]
            out[name] = closed
            i += CLOSE_CODES + 1
        else:
            out[name] = w[i]
            i += 1
    return out


def counters():
    """This process's counters: a dict of ints, ``closed`` a dict by close
    code (1000..1015, and ``"other"``)."""
    return _as_dict(<const uint64_t *>_cur)


def totals():
    """The counters summed over every slot of the shared block (this
    process's own counters when it has none)."""
    cdef Py_ssize_t words = sizeof(ws_counters_t) // 8
    cdef uint64_t sums[64]
    cdef Py_ssize_t s, i
    if _slots == 0:
        return counters()
    if words > 64:
        raise AssertionError("ws_counters_t outgrew totals()")
    memset(sums, 0, sizeof(sums))
    for s in range(_slots):
        for i in range(words):
            sums[i] += _words[s * words + i]
    return _as_dict(sums)


def set_broker(bint up, uint64_t reconnects, uint64_t published, uint64_t received, uint64_t dropped):
    """Copy this process's broker figures into its counters."""
    _cur.broker_up = up
    _cur.broker_reconnects = reconnects
    _cur.broker_published = published
    _cur.broker_received = received
    _cur.broker_dropped = dropped


def slots():
    """How many processes' slots :func:`totals` sums (0: not attached)."""
    return _slots
