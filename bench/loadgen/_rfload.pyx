# rfload core: a single-threaded epoll WebSocket load generator for 127.0.0.1.
#
# Client frames are built by robyn_fast's own codec (build_frame_c, masked with
# a per-connection key), once per connection as a template; per message only
# the sequence-number bytes of the payload are re-masked in the copy that goes
# into the output buffer. Server frames are read either by the codec's
# FrameParser(client=True) ("codec", the default) or by a minimal header parser
# that creates no Python object per message ("raw"); see bench/README.md for
# the measurement behind the default.
#
# Everything is bounded: connection set-up, every wait and the final close have
# deadlines, and the Python wrapper (bench/rfload.py) arms alarm() as a last
# resort. Only 127.0.0.1 is ever connected to (INADDR_LOOPBACK is hard-coded).
#
# permessage-deflate (RFC 7692), when offered (`deflate_offer`) and accepted:
# server messages are inflated by the codec's Inflater inside the FrameParser
# (with context takeover unless the server said server_no_context_takeover);
# client messages come from a pool of `pool_n` payloads compressed once at
# start-up (each without context, which is valid whatever was agreed, in the
# window the server allowed), so the generator spends no CPU compressing. A
# compressed message therefore carries its sequence number modulo pool_n.
# Given several payloads (`payloads`, e.g. rfload --json: documents that share
# a structure, not their values), message j carries payload j % pool_n, so a
# server compressing with context takeover sees a realistic stream rather
# than the same message again and again.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memcpy, memmove, memset
from libc.errno cimport errno, EAGAIN, EINTR, EINPROGRESS
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.resource cimport getrusage, rusage, RUSAGE_SELF
from posix.unistd cimport close as c_close

from robyn_fast._core.codec cimport (
    FrameParser, Inflater, Message, build_frame_c,
    OPC_CONT, OPC_TEXT, OPC_BINARY, OPC_CLOSE, OPC_PING, OPC_PONG,
)

import base64
import hashlib
import os

from robyn_fast._core.codec import Deflater

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr *addr, socklen_t len)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    enum:
        AF_INET
        SOCK_STREAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_NOSIGNAL
        SOL_SOCKET
        SO_ERROR

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    enum:
        IPPROTO_TCP
        INADDR_LOOPBACK
    uint16_t htons(uint16_t)
    uint32_t htonl(uint32_t)

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY


# -- constants ----------------------------------------------------------------

cdef enum:
    MODE_ECHO = 0
    MODE_FANOUT = 1
    MODE_CONNECT = 2
    MODE_IDLE = 3

# Connection states.
cdef enum:
    CS_FREE = 0          # no socket
    CS_CONNECTING = 1    # connect() in progress
    CS_HANDSHAKE = 2     # request sent, waiting for the 101
    CS_OPEN = 3
    CS_CLOSE_SENT = 4    # our Close is out, waiting for the server's Close
    CS_CLOSE_RCVD = 5    # Close exchanged, waiting for the server to close TCP
    CS_DEAD = 6          # failed or finished; not reused (except connect mode)

# Run phases.
cdef enum:
    P_SETUP = 0          # opening connections
    P_RUN = 1            # warm-up + measured window
    P_DRAIN = 2          # no new messages; let in-flight ones finish
    P_CLOSING = 3        # Close sent everywhere; waiting for the server
    P_DONE = 4

# Error counters.
cdef enum:
    E_CONNECT = 0
    E_HANDSHAKE = 1
    E_TIMEOUT = 2
    E_PROTOCOL = 3
    E_EOF = 4
    E_SERVER_CLOSE = 5
    E_SIZE = 6
    E_OPCODE = 7
    E_PAYLOAD = 8
    E_UNSOLICITED = 9
    E_ROUND_INCOMPLETE = 10
    E_CLOSE_TIMEOUT = 11
    E_CLOSE_CODE = 12
    E_CLOSE_WITHOUT_FRAME = 13
    N_ERRORS = 14

ERROR_NAMES = (
    "connect_fail", "handshake_fail", "timeout", "protocol", "conn_reset_or_eof",
    "server_close", "size_mismatch", "opcode_mismatch", "payload_mismatch",
    "unsolicited", "rounds_incomplete", "close_timeout", "close_code", "close_without_frame",
)

cdef enum:
    RECV_SIZE = 262144
    MAX_EVENTS = 1024
    HS_MAX = 8192          # largest handshake response accepted
    N_KEYS = 64            # pool of Sec-WebSocket-Key values
    HIST_SUB = 64          # sub-buckets per power of two
    HIST_N = 4096
    SEQ_DIGITS = 16        # hex digits of the sequence number in a payload (at seq_offset)
    HEAD_MAX = 64          # raw parser: first bytes of a message kept (seq_offset + SEQ_DIGITS at most)
    RSV1 = 0x40            # "compressed" (permessage-deflate, RFC 7692 §6)

cdef int64_t MS = 1000000
cdef const char *HEX = b"0123456789abcdef"

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef inline int64_t now_ns() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline double cpu_seconds():
    cdef rusage ru
    getrusage(RUSAGE_SELF, &ru)
    return (ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6)


cdef inline double user_seconds():
    cdef rusage ru
    getrusage(RUSAGE_SELF, &ru)
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6


# -- latency histogram --------------------------------------------------------

@cython.final
cdef class Hist:
    """Log-linear histogram of nanosecond values: exact below 64 ns, then 64
    buckets per power of two (< 1.6 % bucket width). No allocation per value."""

    cdef uint64_t counts[HIST_N]
    cdef uint64_t n
    cdef double total
    cdef uint64_t vmax

    def __cinit__(self):
        memset(self.counts, 0, sizeof(self.counts))

    cdef inline void add(self, int64_t v):
        cdef uint64_t u = <uint64_t>(v if v > 0 else 0)
        cdef int msb, shift, idx
        if u < HIST_SUB:
            idx = <int>u
        else:
            msb = 63 - __builtin_clzll(u)
            shift = msb - 6
            idx = (shift + 1) * HIST_SUB + <int>((u >> shift) - HIST_SUB)
            if idx >= HIST_N:
                idx = HIST_N - 1
        self.counts[idx] += 1
        self.n += 1
        self.total += <double>u
        if u > self.vmax:
            self.vmax = u

    cdef double value_at(self, int idx):
        cdef int shift
        if idx < HIST_SUB:
            return idx
        shift = idx // HIST_SUB - 1
        return (<double>((idx % HIST_SUB) + HIST_SUB) + 0.5) * (<double>(1 << shift))

    def percentile(self, double q):
        """Value (ns) at quantile q (0..1): the midpoint of its bucket."""
        cdef uint64_t target, acc = 0
        cdef int i
        if self.n == 0:
            return None
        target = <uint64_t>(q * self.n)
        if target >= self.n:
            target = self.n - 1
        for i in range(HIST_N):
            acc += self.counts[i]
            if acc > target:
                return min(self.value_at(i), <double>self.vmax)
        return <double>self.vmax

    def summary(self, str prefix=""):
        def us(v):
            return None if v is None else round(v / 1000.0, 1)
        return {
            prefix + "p50_us": us(self.percentile(0.50)),
            prefix + "p90_us": us(self.percentile(0.90)),
            prefix + "p99_us": us(self.percentile(0.99)),
            prefix + "p999_us": us(self.percentile(0.999)),
            prefix + "max_us": us(<double>self.vmax) if self.n else None,
            prefix + "mean_us": round(self.total / self.n / 1000.0, 1) if self.n else None,
            prefix + "lat_samples": self.n,
        }

    # test hook
    def _add(self, int64_t v):
        self.add(v)


# -- one connection -----------------------------------------------------------

@cython.final
cdef class Conn:
    cdef int idx
    cdef int fd
    cdef int state
    cdef bint is_pub             # fanout: the publisher
    cdef uint16_t port           # the server port this connection dials (connections spread over -u URLs)
    cdef bint epollout           # EPOLLOUT currently requested
    cdef bint close_sent
    cdef bint got_close          # the server's Close frame arrived
    cdef bint server_initiated   # the server sent Close first
    cdef int close_code          # code of the server's Close (-1: none, 0: empty)
    cdef int64_t t0              # start of the current step (connect, close wait)
    cdef int64_t t_cycle         # connect mode: when this cycle's connect() started
    cdef int64_t deadline        # 0: none
    cdef int64_t retry_at        # connect mode: when a failed slot starts again
    cdef int key_idx
    cdef uint8_t mask[4]
    # permessage-deflate as agreed in this connection's handshake
    cdef bint deflate            # negotiated: messages both ways are compressed
    cdef bint srv_nct            # server_no_context_takeover: each server message stands alone
    cdef int client_bits         # the window our compressed messages may use (client_max_window_bits)
    cdef bint use_codec          # server frames go through the codec's FrameParser (else the raw parser)
    cdef bint exchanging         # idle --exchange: open, its one message not echoed yet
    # message template: a whole masked frame
    cdef bytes frame
    cdef size_t hlen             # header length of `frame`
    # output
    cdef uint8_t *obuf
    cdef size_t olen
    cdef size_t ooff
    cdef size_t ocap
    # handshake / raw-parser input
    cdef uint8_t *ibuf
    cdef size_t ilen
    cdef size_t icap
    # codec parser
    cdef FrameParser parser
    # raw parser state
    cdef bint in_payload
    cdef uint64_t rem            # payload bytes left in the current data frame
    cdef bint fin
    cdef int cur_op              # opcode of the message being received (0: none)
    cdef uint64_t msg_len
    cdef int msg_rsv             # RSV bits of the message's first frame
    cdef uint8_t head[HEAD_MAX]
    cdef int head_n
    cdef bint parse_stopped      # a Close frame was parsed; ignore further input
    # echo: FIFO of in-flight messages
    cdef int64_t *ring_ts
    cdef uint64_t *ring_seq
    cdef int ring_cap
    cdef int ring_head
    cdef int ring_count
    cdef uint64_t next_seq
    # fanout
    cdef uint64_t last_round

    def __cinit__(self):
        self.fd = -1
        self.close_code = -1

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)
        free(self.obuf)
        free(self.ibuf)
        free(self.ring_ts)
        free(self.ring_seq)


cdef int reserve(uint8_t **buf, size_t *cap, size_t used, size_t extra) except -1:
    cdef size_t need = used + extra
    cdef size_t newcap
    cdef uint8_t *p
    if need <= cap[0]:
        return 0
    newcap = cap[0] * 2 if cap[0] else 4096
    while newcap < need:
        newcap *= 2
    p = <uint8_t *>realloc(buf[0], newcap)
    if p == NULL:
        raise MemoryError()
    buf[0] = p
    cap[0] = newcap
    return 0


cdef inline uint64_t low_digits(uint64_t v, size_t k):
    """v modulo 16**k: what a k-digit hex field can carry."""
    if k >= 16:
        return v
    return v & ((<uint64_t>1 << (4 * k)) - 1)


cdef inline uint64_t parse_seq(const uint8_t *p, size_t n, bint *ok):
    """The hex number in p[0:n] (n <= 16)."""
    cdef uint64_t v = 0
    cdef size_t i
    cdef uint8_t ch
    ok[0] = True
    for i in range(n):
        ch = p[i]
        if 48 <= ch <= 57:
            v = (v << 4) | (ch - 48)
        elif 97 <= ch <= 102:
            v = (v << 4) | (ch - 87)
        else:
            ok[0] = False
            return 0
    return v


cdef inline bint ieq_prefix(const uint8_t *p, size_t n, const char *lower_word, size_t wn):
    """Case-insensitive: does p[0:n] start with the lower-case word?"""
    cdef size_t i
    cdef uint8_t ch
    if n < wn:
        return False
    for i in range(wn):
        ch = p[i]
        if 65 <= ch <= 90:
            ch += 32
        if ch != <uint8_t>lower_word[i]:
            return False
    return True


# -- the load generator -------------------------------------------------------

@cython.final
cdef class Runner:
    # configuration
    cdef int mode
    cdef int nconns
    cdef int pipeline
    cdef size_t size
    cdef int opcode
    cdef int64_t warmup_ns
    cdef int64_t duration_ns
    cdef int64_t timeout_ns
    cdef int64_t settle_ns
    cdef int max_pending
    cdef bint use_codec
    cdef int inflate_every       # with deflate: only every Nth connection (and the publisher) uses the codec
    cdef tuple ports             # server ports; connection i dials ports[i % len(ports)]
    cdef bytes filler            # the payload with its sequence digits all '0' (default "x" * size)
    cdef size_t seq_off          # where the sequence digits start in the payload
    cdef size_t k                # how many digits: min(SEQ_DIGITS, size - seq_off)
    cdef bytes ext_offer         # Sec-WebSocket-Extensions value offered (None: no offer)
    cdef bint exchange           # idle: one echoed message per connection before the reading
    cdef bint vary               # several payloads: message seq carries plain[seq % pool_n]
    cdef int pool_n              # payloads in a pool: len(payloads), else 256 (16 over 64 KiB; fewer digits: fewer)
    cdef list plain              # vary: pool_n payloads, payload j with j in its sequence digits (else None)
    cdef dict pools              # client window bits -> the pool_n payloads compressed
    cdef list requests           # N_KEYS handshake requests (bytes)
    cdef list accepts            # the matching Sec-WebSocket-Accept values (bytes)
    cdef object server_pids
    cdef object rss_reader       # callable(pids) -> kB
    cdef object cpu_reader       # callable(pids) -> seconds
    cdef object io_reader        # callable(pids) -> (read syscalls, write syscalls)
    # state
    cdef int epfd
    cdef list conns
    cdef epoll_event *events
    cdef uint8_t *rbuf
    cdef list out                # reused list for FrameParser.parse
    cdef int phase
    cdef int64_t t_begin
    cdef int64_t t_start         # measured window
    cdef int64_t t_end
    cdef int64_t phase_deadline
    cdef int64_t last_scan
    cdef int64_t setup_deadline
    cdef readonly object first_bad_status
    cdef uint64_t not_attempted
    cdef bint measuring
    cdef int next_to_open
    cdef int pending             # connections connecting or handshaking
    cdef int n_open
    cdef int n_failed_open
    cdef uint64_t key_counter
    cdef uint64_t rng
    # fanout
    cdef Conn pub
    cdef uint64_t cur_round
    cdef int64_t t_pub
    cdef int round_got
    cdef bint round_active
    cdef int64_t pub_start_at
    cdef int n_subs_open
    # counters
    cdef uint64_t errors[N_ERRORS]
    cdef uint64_t msgs
    cdef uint64_t rx_bytes
    cdef uint64_t sends
    cdef uint64_t recvs
    cdef uint64_t epoll_waits
    cdef uint64_t pings
    cdef uint64_t sent_msgs
    cdef uint64_t rounds
    cdef uint64_t rounds_published
    cdef uint64_t late
    cdef uint64_t publisher_echoes
    cdef uint64_t handshakes
    cdef uint64_t handshakes_total
    cdef uint64_t cycles
    cdef uint64_t wire_rx        # bytes received while measuring (frames, headers included)
    cdef uint64_t wire_tx        # bytes sent while measuring
    cdef uint64_t rx_compressed  # counted messages that arrived with RSV1
    cdef uint64_t n_deflate      # connections that agreed permessage-deflate
    cdef uint64_t exchanged      # idle --exchange: connections whose message came back
    cdef readonly object first_ext   # the first Sec-WebSocket-Extensions value answered
    cdef uint64_t closed_clean
    cdef uint64_t close_timeouts_final
    cdef uint64_t eof_final
    cdef Hist hist               # echo: RTT; fanout: publish -> last subscriber; connect: cycle
    cdef Hist hs_hist            # handshake latency (connect() -> 101)
    # resource samples
    cdef double cpu0
    cdef double cpu1
    cdef double ucpu0
    cdef double ucpu1
    cdef object srv_cpu0
    cdef object srv_cpu1
    cdef object srv_io0
    cdef object srv_io1
    cdef object rss_before
    cdef object rss_after
    cdef int64_t t_all_open
    cdef int64_t t_settled
    cdef int64_t t_closed

    def __cinit__(self):
        self.epfd = -1
        memset(self.errors, 0, sizeof(self.errors))

    def __init__(self, str mode, ports, bytes path, int conns, int pipeline=1, size_t size=32,
                 bint binary=False, double warmup=1.0, double duration=5.0, double timeout=2.0,
                 double settle=1.0, double setup_timeout=15.0, int max_pending=64, str parser="codec", server_pids=(),
                 rss_reader=None, cpu_reader=None, io_reader=None, payloads=None, int seq_offset=0,
                 str deflate_offer=None, int inflate_every=1, bint exchange=False):
        modes = {"echo": MODE_ECHO, "fanout": MODE_FANOUT, "connect": MODE_CONNECT, "idle": MODE_IDLE}
        if mode not in modes:
            raise ValueError(f"unknown mode {mode!r}")
        if parser not in ("codec", "raw"):
            raise ValueError("parser must be 'codec' or 'raw'")
        if conns < 1 or pipeline < 1 or max_pending < 1:
            raise ValueError("conns, pipeline and max_pending must be >= 1")
        if mode == "fanout" and size < 4:
            raise ValueError("fanout needs a payload of at least 4 bytes (it carries the round id)")
        if payloads is not None:
            payloads = [bytes(x) for x in payloads]
            if not payloads or any(<size_t>len(x) != size for x in payloads):
                raise ValueError("payloads must be a non-empty list of `size`-byte payloads")
        if seq_offset < 0 or seq_offset > HEAD_MAX - SEQ_DIGITS or (size and <size_t>seq_offset >= size):
            raise ValueError(f"seq_offset must be 0..{HEAD_MAX - SEQ_DIGITS} and inside the payload")
        if deflate_offer is not None and parser == "raw":
            raise ValueError("the raw parser cannot inflate: use the codec parser with deflate")
        if inflate_every < 1:
            raise ValueError("inflate_every must be >= 1")
        if exchange and mode != "idle":
            raise ValueError("exchange is for idle mode")
        self.ports = tuple(ports) if isinstance(ports, (tuple, list)) else (ports,)
        if not self.ports or not all(isinstance(p, int) and 0 < p < 65536 for p in self.ports):
            raise ValueError(f"ports must be one or more of 1..65535, got {ports!r}")
        self.mode = modes[mode]
        self.nconns = conns
        self.pipeline = pipeline
        self.size = size
        self.opcode = OPC_BINARY if binary else OPC_TEXT
        self.seq_off = <size_t>seq_offset if size else 0
        self.k = min(<size_t>SEQ_DIGITS, size - self.seq_off)
        docs = payloads if payloads is not None else [b"x" * size]
        self.vary = len(docs) > 1
        self.pool_n = len(docs) if self.vary else 1 << (4 * min(<size_t>2, self.k))   # 256 with >= 2 digits
        if not self.vary and size > 65536:
            self.pool_n = min(self.pool_n, 16)      # compressing 256 big payloads would take seconds
        if self.k < 16 and <uint64_t>self.pool_n > (<uint64_t>1 << (4 * self.k)):
            raise ValueError(f"{self.pool_n} payloads need more than the {self.k} sequence digits the size leaves")
        tmpl = bytearray(docs[0])
        tmpl[self.seq_off:self.seq_off + self.k] = b"0" * self.k
        self.filler = bytes(tmpl)
        # One payload for each value the digits carry; built here only when they
        # differ (else only pool_for needs them, and only with deflate).
        self.plain = [self.numbered(docs[j], j) for j in range(self.pool_n)] if self.vary else None
        if not binary:
            for doc in (self.plain or [self.filler]):
                doc.decode("utf-8")     # a text payload must be UTF-8 (raises ValueError)
        self.ext_offer = deflate_offer.encode("latin-1") if deflate_offer is not None else None
        self.inflate_every = inflate_every
        self.exchange = exchange
        self.pools = {}
        self.warmup_ns = <int64_t>(warmup * 1e9)
        self.duration_ns = <int64_t>(duration * 1e9)
        self.timeout_ns = <int64_t>(timeout * 1e9)
        self.settle_ns = <int64_t>(settle * 1e9)
        self.setup_deadline = <int64_t>(setup_timeout * 1e9)   # relative until run() starts
        self.max_pending = max_pending
        self.use_codec = parser == "codec"
        self.server_pids = tuple(server_pids)
        self.rss_reader = rss_reader
        self.cpu_reader = cpu_reader
        self.io_reader = io_reader
        self.hist = Hist()
        self.hs_hist = Hist()
        self.out = []
        self.rng = int.from_bytes(os.urandom(8), "little") | 1
        # A pool of random keys, each with its expected accept value (RFC 6455 §4.2.2).
        self.requests = []
        self.accepts = []
        host = f"127.0.0.1:{self.ports[0]}".encode()
        for _ in range(N_KEYS):
            key = base64.b64encode(os.urandom(16))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.requests.append(
                b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
                + (b"Sec-WebSocket-Extensions: " + self.ext_offer + b"\r\n" if self.ext_offer is not None else b"")
                + b"\r\n"
            )
            self.accepts.append(accept)
        n = conns + 1 if self.mode == MODE_FANOUT else conns
        self.conns = []
        for i in range(n):
            c = Conn()
            c.idx = i
            c.is_pub = self.mode == MODE_FANOUT and i == conns
            c.port = <uint16_t>self.ports[i % len(self.ports)]
            self.conns.append(c)
        if self.mode == MODE_FANOUT:
            self.pub = <Conn>self.conns[conns]

    def __dealloc__(self):
        if self.epfd >= 0:
            c_close(self.epfd)
        free(self.events)
        free(self.rbuf)

    cdef inline uint64_t rand64(self):
        cdef uint64_t x = self.rng
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        self.rng = x
        return x

    # -- connection lifecycle -------------------------------------------------

    cdef int start_conn(self, Conn c, int64_t now) except -1:
        cdef sockaddr_in sa
        cdef int one = 1
        cdef int fd, r
        cdef epoll_event ev
        cdef uint64_t m
        c.state = CS_CONNECTING
        c.close_sent = c.got_close = c.server_initiated = False
        c.close_code = -1
        c.olen = c.ooff = c.ilen = 0
        c.in_payload = False
        c.rem = c.msg_len = 0
        c.cur_op = 0
        c.head_n = 0
        c.msg_rsv = 0
        c.parse_stopped = False
        c.ring_head = c.ring_count = 0
        c.deflate = c.srv_nct = c.exchanging = False
        c.client_bits = 15
        c.t0 = now
        c.t_cycle = now
        c.deadline = now + self.timeout_ns
        c.retry_at = 0
        self.pending += 1
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:
            self.pending -= 1
            self.conn_failed(c, E_CONNECT, now)
            return 0
        c.fd = fd
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        memset(&sa, 0, sizeof(sa))
        sa.sin_family = AF_INET
        sa.sin_port = htons(c.port)
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK)   # never anything but 127.0.0.1
        r = connect(fd, <sockaddr *>&sa, sizeof(sa))
        if r < 0 and errno != EINPROGRESS:
            self.pending -= 1
            self.conn_failed(c, E_CONNECT, now)
            return 0
        ev.events = EPOLLIN | EPOLLOUT
        ev.data.u64 = <uint64_t>c.idx
        c.epollout = True
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl(ADD) failed")
        m = self.rand64()
        c.mask[0] = <uint8_t>(m | 1)       # non-zero first byte: a key that is never all zeros
        c.mask[1] = <uint8_t>(m >> 8)
        c.mask[2] = <uint8_t>(m >> 16)
        c.mask[3] = <uint8_t>(m >> 24)
        c.key_idx = <int>(self.key_counter % N_KEYS)
        self.key_counter += 1
        # With deflate, inflating every delivery of a big fan-out can cost the
        # generator more than the server's writes: --inflate-every N leaves the
        # others on the raw parser, which counts compressed messages unread.
        c.use_codec = self.use_codec and (self.ext_offer is None or c.is_pub
                                          or c.idx % self.inflate_every == 0)
        if c.use_codec:
            c.parser = FrameParser(None, client=True)
        return 0

    cdef int close_fd(self, Conn c) except -1:
        if c.fd >= 0:
            c_close(c.fd)      # also removes it from the epoll set
            c.fd = -1
        c.epollout = False
        c.parser = None
        return 0

    cdef int conn_failed(self, Conn c, int err, int64_t now) except -1:
        """Count `err` (unless the run is shutting down) and drop the connection."""
        cdef int prev = c.state
        if prev == CS_DEAD:
            return 0
        if prev == CS_CONNECTING or prev == CS_HANDSHAKE or c.exchanging:
            self.pending -= 1
            c.exchanging = False
            if self.mode != MODE_CONNECT:
                self.n_failed_open += 1
        # Errors count while setting up and running (connect mode: also the
        # cycles finishing in the drain); the final close is reported apart.
        if self.phase <= P_RUN or (self.mode == MODE_CONNECT and self.phase == P_DRAIN):
            self.errors[err] += 1
        elif err == E_CLOSE_TIMEOUT or err == E_TIMEOUT:
            self.close_timeouts_final += 1
        else:
            self.eof_final += 1
        self.lose_open(c, prev)
        self.close_fd(c)
        c.state = CS_DEAD
        if self.mode == MODE_CONNECT and self.phase == P_RUN:
            c.retry_at = now + 10 * MS
        if self.mode == MODE_FANOUT:
            self.check_round(now)
        return 0

    cdef int lose_open(self, Conn c, int prev) except -1:
        if prev == CS_OPEN or prev == CS_CLOSE_SENT or prev == CS_CLOSE_RCVD:
            self.n_open -= 1
            if self.mode == MODE_FANOUT and not c.is_pub and prev == CS_OPEN:
                self.n_subs_open -= 1
        return 0

    cdef int on_open(self, Conn c, int64_t now) except -1:
        cdef size_t i
        cdef int ring
        self.n_open += 1
        self.handshakes_total += 1
        c.state = CS_OPEN
        c.deadline = 0
        if self.mode == MODE_IDLE and self.exchange:
            # Still pending until its message comes back (bounded by -T).
            c.exchanging = True
            c.deadline = now + self.timeout_ns
        else:
            self.pending -= 1
        if self.measuring:
            self.handshakes += 1
            self.hs_hist.add(now - c.t0)
        if c.deflate:
            self.n_deflate += 1
            if c.use_codec:
                c.parser = FrameParser(None, client=True,
                                       inflater=Inflater(15, no_context_takeover=c.srv_nct))
            self.pool_for(c.client_bits)
        if self.mode == MODE_CONNECT:
            self.send_close(c, now)
            return 0
        if self.mode == MODE_IDLE and not self.exchange:
            return 0
        # Template frame: the payload with its sequence digits '0'; built (and
        # masked) by the codec. The digits are written per message.
        c.frame = build_frame_c(self.opcode, <const uint8_t *>PyBytes_AS_STRING(self.filler), self.size,
                                True, 0, c.mask)
        c.hlen = <size_t>PyBytes_GET_SIZE(c.frame) - self.size
        if self.mode == MODE_ECHO or self.mode == MODE_IDLE:
            ring = self.pipeline if self.mode == MODE_ECHO else 1
            if c.ring_ts == NULL:
                c.ring_cap = ring
                c.ring_ts = <int64_t *>malloc(sizeof(int64_t) * ring)
                c.ring_seq = <uint64_t *>malloc(sizeof(uint64_t) * ring)
                if c.ring_ts == NULL or c.ring_seq == NULL:
                    raise MemoryError()
            if self.phase == P_RUN or self.phase == P_SETUP:
                for i in range(<size_t>ring):
                    self.queue_message(c, now)
                self.flush(c, now)
        elif self.mode == MODE_FANOUT and not c.is_pub:
            self.n_subs_open += 1
        return 0

    cdef bytes numbered(self, bytes doc, size_t j):
        """`doc` with j in its sequence digits."""
        cdef bytearray b = bytearray(doc)
        if self.k:
            b[self.seq_off:self.seq_off + self.k] = f"{j:0{self.k}x}".encode()[-self.k:]
        return bytes(b)

    cdef list pool_for(self, int bits):
        """The pool of compressed payloads for a client window of `bits`:
        payload j carries j in its sequence digits. Compressed once per run
        with zlib's default level and memLevel, as browsers do."""
        cdef list pool = self.pools.get(bits)
        if pool is not None:
            return pool
        deflater = Deflater(max(9, bits), mem_level=8, level=6, no_context_takeover=True)
        pool = [deflater.compress(self.plain[j] if self.vary else self.numbered(self.filler, j))
                for j in range(self.pool_n)]
        self.pools[bits] = pool
        return pool

    # -- output -------------------------------------------------------------------

    cdef int queue_bytes(self, Conn c, const uint8_t *p, size_t n) except -1:
        reserve(&c.obuf, &c.ocap, c.olen, n)
        memcpy(c.obuf + c.olen, p, n)
        c.olen += n
        return 0

    cdef int queue_message(self, Conn c, int64_t now) except -1:
        """Append one data message carrying the next sequence number (echo) or
        the current round id (fanout) to the output buffer."""
        cdef size_t flen = <size_t>PyBytes_GET_SIZE(c.frame)
        cdef size_t k = self.k
        cdef size_t i
        cdef uint64_t seq
        cdef uint8_t *dst
        cdef int slot
        cdef bytes comp, frame
        if self.mode == MODE_ECHO or self.mode == MODE_IDLE:
            if c.ring_count == c.ring_cap:
                return 0
            seq = c.next_seq
            c.next_seq += 1
            slot = (c.ring_head + c.ring_count) % c.ring_cap
            c.ring_ts[slot] = now
            c.ring_seq[slot] = seq
            c.ring_count += 1
        else:
            seq = self.cur_round
        if c.deflate or self.vary:
            if c.deflate:
                comp = <bytes>(<list>self.pools[c.client_bits])[seq % <uint64_t>self.pool_n]
            else:
                comp = <bytes>self.plain[seq % <uint64_t>self.pool_n]
            frame = build_frame_c(self.opcode, <const uint8_t *>PyBytes_AS_STRING(comp),
                                  <size_t>PyBytes_GET_SIZE(comp), True, RSV1 if c.deflate else 0, c.mask)
            self.queue_bytes(c, <const uint8_t *>PyBytes_AS_STRING(frame), <size_t>PyBytes_GET_SIZE(frame))
            self.sent_msgs += 1
            return 0
        reserve(&c.obuf, &c.ocap, c.olen, flen)
        dst = c.obuf + c.olen
        memcpy(dst, PyBytes_AS_STRING(c.frame), flen)
        dst += c.hlen + self.seq_off
        for i in range(k):
            # digit i of the k-digit hex number, masked at its payload offset
            dst[i] = (<uint8_t>HEX[(seq >> (4 * (k - 1 - i))) & 15]) ^ c.mask[(self.seq_off + i) & 3]
        c.olen += flen
        self.sent_msgs += 1
        return 0

    cdef inline uint64_t carried(self, Conn sender, uint64_t seq):
        """What a message numbered `seq` from `sender` carries in its digits."""
        if sender.deflate or self.vary:
            return seq % <uint64_t>self.pool_n
        return low_digits(seq, self.k)

    cdef int set_epollout(self, Conn c, bint on) except -1:
        cdef epoll_event ev
        if c.epollout == on or c.fd < 0:
            return 0
        ev.events = EPOLLIN | (EPOLLOUT if on else 0)
        ev.data.u64 = <uint64_t>c.idx
        epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)
        c.epollout = on
        return 0

    cdef int flush(self, Conn c, int64_t now) except -1:
        cdef ssize_t n
        while c.ooff < c.olen and c.fd >= 0:
            n = send(c.fd, c.obuf + c.ooff, c.olen - c.ooff, MSG_NOSIGNAL)
            self.sends += 1
            if n > 0:
                c.ooff += <size_t>n
                if self.measuring:
                    self.wire_tx += <uint64_t>n
            elif n < 0 and errno == EAGAIN:
                self.set_epollout(c, True)
                return 0
            elif n < 0 and errno == EINTR:
                continue
            else:
                self.conn_failed(c, E_EOF, now)
                return 0
        c.ooff = c.olen = 0
        if c.state != CS_CONNECTING:
            self.set_epollout(c, False)
        return 0

    cdef int send_close(self, Conn c, int64_t now) except -1:
        """Send Close(1000) (masked, built by the codec) and wait for the server."""
        cdef uint8_t body[2]
        cdef bytes frame
        if c.close_sent or c.fd < 0:
            return 0
        body[0] = 0x03
        body[1] = 0xE8
        frame = build_frame_c(OPC_CLOSE, body, 2, True, 0, c.mask)
        self.queue_bytes(c, <const uint8_t *>PyBytes_AS_STRING(frame), <size_t>PyBytes_GET_SIZE(frame))
        c.close_sent = True
        if c.state == CS_OPEN:
            c.state = CS_CLOSE_SENT
            c.t0 = now
            c.deadline = now + self.timeout_ns
        self.flush(c, now)
        return 0

    # -- input ----------------------------------------------------------------------

    cdef int on_event(self, Conn c, uint32_t events, int64_t now) except -1:
        cdef int err = 0
        cdef socklen_t elen = sizeof(err)
        cdef bytes req
        if c.fd < 0:
            return 0
        if c.state == CS_CONNECTING:
            if events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &elen)
                if err != 0 or (events & (EPOLLERR | EPOLLHUP)):
                    self.conn_failed(c, E_CONNECT, now)
                    return 0
                req = <bytes>self.requests[c.key_idx]
                c.state = CS_HANDSHAKE
                self.queue_bytes(c, <const uint8_t *>PyBytes_AS_STRING(req), <size_t>PyBytes_GET_SIZE(req))
                self.flush(c, now)
            return 0
        if events & (EPOLLIN | EPOLLERR | EPOLLHUP):
            self.on_readable(c, now)
        if c.fd >= 0 and (events & EPOLLOUT) and c.olen > c.ooff:
            self.flush(c, now)
        return 0

    cdef int on_readable(self, Conn c, int64_t now) except -1:
        cdef ssize_t n
        while c.fd >= 0:
            n = recv(c.fd, self.rbuf, RECV_SIZE, 0)
            self.recvs += 1
            if n > 0:
                if self.measuring:
                    self.wire_rx += <uint64_t>n
                if c.state == CS_HANDSHAKE:
                    self.on_handshake_bytes(c, self.rbuf, <size_t>n, now)
                elif not c.parse_stopped:
                    self.feed(c, self.rbuf, <size_t>n, now)
                if c.fd >= 0 and c.olen > c.ooff:
                    self.flush(c, now)
                if n < RECV_SIZE:
                    break
            elif n == 0:
                self.on_eof(c, now)
                break
            elif errno == EAGAIN:   # == EWOULDBLOCK on Linux
                break
            elif errno == EINTR:
                continue
            else:
                self.on_eof(c, now)
                break
        return 0

    cdef int on_eof(self, Conn c, int64_t now) except -1:
        cdef int prev = c.state
        if prev == CS_CLOSE_RCVD or (prev == CS_CLOSE_SENT and c.got_close):
            # The clean end (RFC 6455 §7.1.1: the server closes TCP first).
            self.lose_open(c, prev)
            self.close_fd(c)
            c.state = CS_DEAD
            self.closed_clean += 1
            if self.mode == MODE_CONNECT:
                if self.measuring:
                    self.cycles += 1
                    self.hist.add(now - c.t_cycle)
                if self.phase == P_RUN:
                    self.start_conn(c, now)
            return 0
        if prev == CS_CLOSE_SENT:
            self.conn_failed(c, E_CLOSE_WITHOUT_FRAME, now)
        elif prev == CS_HANDSHAKE:
            self.conn_failed(c, E_HANDSHAKE, now)
        else:
            self.conn_failed(c, E_EOF, now)
        return 0

    cdef int on_handshake_bytes(self, Conn c, const uint8_t *data, size_t n, int64_t now) except -1:
        cdef size_t i, end = 0, line_end, vstart, vend
        cdef const uint8_t *p
        cdef bytes accept
        cdef object ext = None
        cdef bint upgrade_ok = False, accept_ok = False
        if c.ilen + n > HS_MAX:
            self.conn_failed(c, E_HANDSHAKE, now)
            return 0
        reserve(&c.ibuf, &c.icap, c.ilen, n)
        memcpy(c.ibuf + c.ilen, data, n)
        c.ilen += n
        p = c.ibuf
        for i in range(3, c.ilen):
            if p[i] == 10 and p[i - 1] == 13 and p[i - 2] == 10 and p[i - 3] == 13:
                end = i + 1
                break
        if end == 0:
            return 0
        if not ieq_prefix(p, end, "http/1.1 101", 12):
            if self.errors[E_HANDSHAKE] == 0:
                line_end = 0
                while line_end < end and p[line_end] != 13:
                    line_end += 1
                self.first_bad_status = (<bytes>p[:line_end]).decode("latin-1")
            self.conn_failed(c, E_HANDSHAKE, now)
            return 0
        accept = <bytes>self.accepts[c.key_idx]
        i = 0
        while i < end:
            # i is at the start of a line
            line_end = i
            while line_end < end and p[line_end] != 13:
                line_end += 1
            if ieq_prefix(p + i, line_end - i, "upgrade:", 8):
                vstart = i + 8
                while vstart < line_end and (p[vstart] == 32 or p[vstart] == 9):
                    vstart += 1
                upgrade_ok = ieq_prefix(p + vstart, line_end - vstart, "websocket", 9)
            elif ieq_prefix(p + i, line_end - i, "sec-websocket-accept:", 21):
                vstart = i + 21
                while vstart < line_end and (p[vstart] == 32 or p[vstart] == 9):
                    vstart += 1
                vend = line_end
                while vend > vstart and (p[vend - 1] == 32 or p[vend - 1] == 9):
                    vend -= 1
                accept_ok = (vend - vstart == <size_t>PyBytes_GET_SIZE(accept)
                             and (<bytes>p[vstart:vend]) == accept)
            elif ieq_prefix(p + i, line_end - i, "sec-websocket-extensions:", 25):
                value = (<bytes>p[i + 25:line_end]).decode("latin-1").strip()
                ext = value if ext is None else ext + ", " + value
            i = line_end + 2
        if not (upgrade_ok and accept_ok):
            self.conn_failed(c, E_HANDSHAKE, now)
            return 0
        if ext is not None and not self.agree(c, ext):
            if self.first_bad_status is None:
                self.first_bad_status = "Sec-WebSocket-Extensions: " + ext
            self.conn_failed(c, E_HANDSHAKE, now)
            return 0
        self.on_open(c, now)
        if end < c.ilen and c.fd >= 0:
            self.feed(c, c.ibuf + end, c.ilen - end, now)
        c.ilen = 0
        if self.mode != MODE_CONNECT:
            free(c.ibuf)          # idle connections keep no buffers
            c.ibuf = NULL
            c.icap = 0
        return 0

    cdef bint agree(self, Conn c, str ext) except -1:
        """Read the server's Sec-WebSocket-Extensions answer (RFC 7692 §7.1)
        into `c`; False when it is not a valid answer to what was offered."""
        if self.first_ext is None:
            self.first_ext = ext
        if self.ext_offer is None:
            return False                 # nothing was offered
        elements = [e for e in ext.split(",") if e.strip()]
        if len(elements) != 1:
            return False
        parts = [x.strip() for x in elements[0].split(";")]
        if parts[0].lower() != "permessage-deflate":
            return False
        seen = set()
        for param in parts[1:]:
            name, _, value = param.partition("=")
            name = name.strip().lower()
            value = value.strip().strip('"')
            if name in seen:
                return False
            seen.add(name)
            if name == "server_no_context_takeover" and not value:
                c.srv_nct = True
            elif name == "client_no_context_takeover" and not value:
                pass                     # we never take context over anyway
            elif name == "server_max_window_bits" and value.isdigit() and 8 <= int(value) <= 15:
                pass                     # an Inflater of window 15 reads any smaller window
            elif name == "client_max_window_bits" and value.isdigit() and 9 <= int(value) <= 15:
                # (8 is valid but zlib cannot compress in a 256-byte window: refused here)
                if b"client_max_window_bits" not in self.ext_offer:
                    return False         # only allowed when offered
                c.client_bits = int(value)
            else:
                return False
        c.deflate = True
        return True

    # -- frames -----------------------------------------------------------------------

    cdef int feed(self, Conn c, const uint8_t *data, size_t n, int64_t now) except -1:
        if c.use_codec:
            return self.feed_codec(c, data, n, now)
        return self.feed_raw(c, data, n, now)

    cdef int feed_codec(self, Conn c, const uint8_t *data, size_t n, int64_t now) except -1:
        cdef list out = self.out
        cdef Message m
        cdef object d
        cdef const char *p
        cdef Py_ssize_t dn
        cdef bint failed = False
        cdef FrameParser parser = c.parser
        parser.append_input(data, n)
        try:
            parser.parse(out)
        except Exception:
            failed = True
        for m in out:
            if c.fd < 0:
                break
            d = m.data
            if type(d) is str:
                p = PyUnicode_AsUTF8AndSize(d, &dn)
            else:
                p = PyBytes_AS_STRING(d)
                dn = PyBytes_GET_SIZE(d)
            if m.opcode == OPC_CLOSE:
                self.on_close_frame(c, -1 if m.close_code is None else <int>m.close_code, now)
            else:
                self.on_frame(c, m.opcode, m.rsv, <const uint8_t *>p, <size_t>dn, <uint64_t>dn, False, now)
        del out[:]
        if parser.closed:
            c.parse_stopped = True
        if failed and c.fd >= 0:
            self.conn_failed(c, E_PROTOCOL, now)
        return 0

    cdef int feed_raw(self, Conn c, const uint8_t *data, size_t n, int64_t now) except -1:
        """Minimal RFC 6455 client-side parser: no Python object per message."""
        cdef const uint8_t *p
        cdef size_t avail, pos = 0, take, hlen, h, i
        cdef uint64_t length
        cdef int b0, b1, op, code
        cdef bint fin
        if c.ilen:
            reserve(&c.ibuf, &c.icap, c.ilen, n)
            memcpy(c.ibuf + c.ilen, data, n)
            c.ilen += n
            p = c.ibuf
            avail = c.ilen
        else:
            p = data
            avail = n
        while c.fd >= 0 and not c.parse_stopped:
            if c.in_payload:
                take = avail - pos
                if take > c.rem:
                    take = <size_t>c.rem
                if c.head_n < HEAD_MAX and take:
                    h = HEAD_MAX - c.head_n
                    if h > take:
                        h = take
                    memcpy(c.head + c.head_n, p + pos, h)
                    c.head_n += <int>h
                c.rem -= take
                c.msg_len += take
                pos += take
                if c.rem:
                    break
                c.in_payload = False
                if c.fin:
                    op = c.cur_op
                    c.cur_op = 0
                    # A compressed message is counted, not read (opaque).
                    self.on_frame(c, op, c.msg_rsv, c.head, <size_t>c.head_n, c.msg_len,
                                  (c.msg_rsv & RSV1) != 0, now)
                continue
            if avail - pos < 2:
                break
            b0 = p[pos]
            b1 = p[pos + 1]
            fin = (b0 & 0x80) != 0
            op = b0 & 0x0F
            if (b1 & 0x80) or (b0 & (0x70 & ~RSV1)) or (2 < op < 8) or op > 10:
                self.conn_failed(c, E_PROTOCOL, now)     # masked frame, RSV bits, reserved opcode
                return 0
            if (b0 & RSV1) and (not c.deflate or op == OPC_CONT or op >= 8):
                self.conn_failed(c, E_PROTOCOL, now)     # RSV1 only on a first data frame, once agreed
                return 0
            hlen = 2
            if (b1 & 0x7F) == 126:
                hlen = 4
            elif (b1 & 0x7F) == 127:
                hlen = 10
            if avail - pos < hlen:
                break
            if hlen == 2:
                length = b1 & 0x7F
            elif hlen == 4:
                length = (<uint64_t>p[pos + 2] << 8) | p[pos + 3]
            else:
                length = 0
                for i in range(8):
                    length = (length << 8) | p[pos + 2 + i]
            if op >= 8:
                if not fin or length > 125:
                    self.conn_failed(c, E_PROTOCOL, now)
                    return 0
                if avail - pos - hlen < length:
                    break
                pos += hlen
                if op == OPC_CLOSE:
                    if length == 1:
                        self.conn_failed(c, E_PROTOCOL, now)
                        return 0
                    code = ((p[pos] << 8) | p[pos + 1]) if length >= 2 else -1
                    pos += <size_t>length
                    c.parse_stopped = True
                    self.on_close_frame(c, code, now)
                    break
                self.on_frame(c, op, 0, p + pos, <size_t>length, length, False, now)
                pos += <size_t>length
                continue
            if op == OPC_CONT:
                if c.cur_op == 0:
                    self.conn_failed(c, E_PROTOCOL, now)
                    return 0
            else:
                if c.cur_op != 0:
                    self.conn_failed(c, E_PROTOCOL, now)
                    return 0
                c.cur_op = op
                c.msg_rsv = b0 & 0x70
                c.msg_len = 0
                c.head_n = 0
            pos += hlen
            c.in_payload = True
            c.rem = length
            c.fin = fin
        if c.fd < 0 or c.parse_stopped:
            c.ilen = 0
            return 0
        # keep the unparsed tail
        if pos < avail:
            if p == c.ibuf:
                memmove(c.ibuf, c.ibuf + pos, avail - pos)
                c.ilen = avail - pos
            else:
                reserve(&c.ibuf, &c.icap, 0, avail - pos)
                memcpy(c.ibuf, p + pos, avail - pos)
                c.ilen = avail - pos
        else:
            c.ilen = 0
        return 0

    cdef int on_close_frame(self, Conn c, int code, int64_t now) except -1:
        cdef uint8_t body[2]
        cdef bytes frame
        body[0] = body[1] = 0
        c.got_close = True
        c.close_code = code
        if not c.close_sent:
            # The server started the close: answer with the same code (§5.5.1).
            c.server_initiated = True
            if self.phase < P_DRAIN:
                self.errors[E_SERVER_CLOSE] += 1
            if code > 0:
                body[0] = <uint8_t>(code >> 8)
                body[1] = <uint8_t>code
                frame = build_frame_c(OPC_CLOSE, body, 2, True, 0, c.mask)
            else:
                frame = build_frame_c(OPC_CLOSE, body, 0, True, 0, c.mask)
            self.queue_bytes(c, <const uint8_t *>PyBytes_AS_STRING(frame), <size_t>PyBytes_GET_SIZE(frame))
            c.close_sent = True
            if self.mode == MODE_FANOUT and not c.is_pub and c.state == CS_OPEN:
                self.n_subs_open -= 1
                self.check_round(now)
        elif self.mode == MODE_CONNECT and code != 1000:
            self.errors[E_CLOSE_CODE] += 1
        if c.state == CS_OPEN or c.state == CS_CLOSE_SENT:
            if c.state == CS_OPEN:
                c.t0 = now
                c.deadline = now + self.timeout_ns
            c.state = CS_CLOSE_RCVD
        return 0

    cdef inline bint payload_ok(self, const uint8_t *p, size_t n, uint64_t total, size_t k, uint64_t carried):
        """The bytes around the k sequence digits (which carried `carried`),
        when the whole payload is at hand (codec parser): they must be what
        was sent."""
        cdef const char *f = PyBytes_AS_STRING(
            <bytes>self.plain[carried % <uint64_t>self.pool_n] if self.vary else self.filler)
        cdef size_t end = self.seq_off + k
        if n != total or n <= k:
            return True
        return (memcmp(p, f, self.seq_off) == 0
                and (n <= end or memcmp(p + end, f + end, n - end) == 0))

    cdef int on_frame(self, Conn c, int op, int rsv, const uint8_t *p, size_t n, uint64_t total, bint opaque,
                      int64_t now) except -1:
        """A control frame (whole payload in p[0:n]) or a data message (its
        first n bytes in p, `total` bytes long). `opaque`: a compressed message
        the raw parser did not inflate: counted, its contents unchecked."""
        cdef bytes frame
        cdef size_t k = self.k
        cdef uint64_t seq
        cdef bint ok
        cdef int slot
        if op == OPC_PING:
            self.pings += 1
            if not c.close_sent:
                frame = build_frame_c(OPC_PONG, p, n, True, 0, c.mask)
                self.queue_bytes(c, <const uint8_t *>PyBytes_AS_STRING(frame), <size_t>PyBytes_GET_SIZE(frame))
            return 0
        if op == OPC_PONG:
            return 0
        # a data message
        if self.mode == MODE_ECHO or (self.mode == MODE_IDLE and c.exchanging):
            if c.ring_count == 0:
                self.errors[E_UNSOLICITED] += 1
                return 0
            slot = c.ring_head
            c.ring_head = (c.ring_head + 1) % c.ring_cap
            c.ring_count -= 1
            if opaque:
                pass
            elif total != self.size:
                self.errors[E_SIZE] += 1
            elif op != self.opcode:
                self.errors[E_OPCODE] += 1
            else:
                seq = parse_seq(p + self.seq_off, k, &ok)
                if (k and (not ok or seq != self.carried(c, c.ring_seq[slot]))) \
                        or not self.payload_ok(p, n, total, k, seq):
                    self.errors[E_PAYLOAD] += 1
            if self.mode == MODE_IDLE:
                c.exchanging = False
                c.deadline = 0
                self.pending -= 1
                self.exchanged += 1
                self.rx_compressed += (rsv & RSV1) != 0
                return 0
            if self.measuring:
                self.msgs += 1
                self.rx_bytes += total if not opaque else self.size
                self.rx_compressed += (rsv & RSV1) != 0
                self.hist.add(now - c.ring_ts[slot])
            if self.phase <= P_RUN and c.state == CS_OPEN:    # set-up counts as warm-up
                self.queue_message(c, now)
            return 0
        if self.mode == MODE_FANOUT:
            if c.is_pub:
                self.publisher_echoes += 1
                return 0
            if opaque:
                seq = self.carried(self.pub, self.cur_round)
            else:
                if total != self.size:
                    self.errors[E_SIZE] += 1
                    return 0
                seq = parse_seq(p + self.seq_off, k, &ok)
                if not ok or not self.payload_ok(p, n, total, k, seq):
                    self.errors[E_PAYLOAD] += 1
                    return 0
            if self.measuring:
                self.msgs += 1
                self.rx_bytes += total if not opaque else self.size
                self.rx_compressed += (rsv & RSV1) != 0
            if self.round_active and seq == self.carried(self.pub, self.cur_round) and c.last_round != self.cur_round:
                c.last_round = self.cur_round
                self.round_got += 1
                self.check_round(now)
            else:
                self.late += 1
            return 0
        self.errors[E_UNSOLICITED] += 1
        return 0

    # -- fanout rounds --------------------------------------------------------------------

    cdef int publish(self, int64_t now) except -1:
        if self.pub.state != CS_OPEN:
            return 0
        self.cur_round += 1
        self.round_got = 0
        self.round_active = True
        self.t_pub = now
        self.queue_message(self.pub, now)
        self.flush(self.pub, now)
        if self.measuring:
            self.rounds_published += 1
        return 0

    cdef int check_round(self, int64_t now) except -1:
        if not self.round_active or self.round_got < self.n_subs_open:
            return 0
        self.round_active = False
        if self.measuring:
            self.rounds += 1
            self.hist.add(now - self.t_pub)
        if self.phase == P_RUN:
            self.publish(now)
        return 0

    # -- timers and phases -----------------------------------------------------------------

    cdef int open_more(self, int64_t now) except -1:
        cdef Conn c
        while self.next_to_open < len(self.conns) and self.pending < self.max_pending:
            c = <Conn>self.conns[self.next_to_open]
            self.next_to_open += 1
            self.start_conn(c, now)
        return 0

    cdef int give_up_setup(self, int64_t now) except -1:
        """The set-up took too long: stop opening, fail what is in progress."""
        cdef Conn c
        self.not_attempted += len(self.conns) - self.next_to_open
        self.next_to_open = len(self.conns)
        for c in self.conns:
            if c.state == CS_CONNECTING or c.state == CS_HANDSHAKE:
                self.conn_failed(c, E_TIMEOUT, now)
        return 0

    cdef int scan_timeouts(self, int64_t now) except -1:
        cdef Conn c
        for c in self.conns:
            if c.deadline and now >= c.deadline and c.fd >= 0:
                if c.state == CS_CONNECTING or c.state == CS_HANDSHAKE or c.exchanging:
                    self.conn_failed(c, E_TIMEOUT, now)
                elif c.state == CS_CLOSE_SENT or c.state == CS_CLOSE_RCVD:
                    self.conn_failed(c, E_CLOSE_TIMEOUT, now)
                    if self.mode == MODE_CONNECT and self.phase == P_RUN:
                        c.retry_at = now + 10 * MS
            elif self.mode == MODE_CONNECT and c.state == CS_DEAD and c.retry_at \
                    and now >= c.retry_at and self.phase == P_RUN:
                self.start_conn(c, now)
        return 0

    cdef int begin_window(self, int64_t now) except -1:
        self.measuring = True
        self.cpu0 = cpu_seconds()
        self.ucpu0 = user_seconds()
        if self.cpu_reader is not None and self.server_pids:
            self.srv_cpu0 = self.cpu_reader(self.server_pids)
        if self.io_reader is not None and self.server_pids:
            self.srv_io0 = self.io_reader(self.server_pids)
        return 0

    cdef int end_window(self, int64_t now) except -1:
        self.measuring = False
        self.cpu1 = cpu_seconds()
        self.ucpu1 = user_seconds()
        if self.cpu_reader is not None and self.server_pids:
            self.srv_cpu1 = self.cpu_reader(self.server_pids)
        if self.io_reader is not None and self.server_pids:
            self.srv_io1 = self.io_reader(self.server_pids)
        return 0

    cdef int start_closing(self, int64_t now) except -1:
        cdef Conn c
        self.phase = P_CLOSING
        self.phase_deadline = now + (self.timeout_ns if self.mode == MODE_IDLE else 300 * MS)
        for c in self.conns:
            if c.state == CS_OPEN:
                self.send_close(c, now)
                c.deadline = self.phase_deadline
            elif c.state == CS_CONNECTING or c.state == CS_HANDSHAKE:
                self.conn_failed(c, E_TIMEOUT, now)
        return 0

    cdef bint all_quiet(self):
        cdef Conn c
        for c in self.conns:
            if self.mode == MODE_ECHO and c.state == CS_OPEN and c.ring_count:
                return False
            if self.mode == MODE_CONNECT and c.state != CS_DEAD and c.state != CS_FREE:
                return False
        if self.mode == MODE_FANOUT and self.round_active:
            return False
        return True

    cdef bint all_closed(self):
        cdef Conn c
        for c in self.conns:
            if c.fd >= 0:
                return False
        return True

    cdef int tick(self, int64_t now) except -1:
        if now - self.last_scan >= 5 * MS:
            self.last_scan = now
            self.scan_timeouts(now)
        if self.phase == P_SETUP:
            if now >= self.setup_deadline:
                self.give_up_setup(now)
            self.open_more(now)
            if self.pending == 0 and self.next_to_open >= len(self.conns):
                self.t_all_open = now
                if self.n_open == 0:
                    self.phase = P_DONE
                    return 0
                if self.mode == MODE_IDLE:
                    self.phase = P_RUN
                    self.phase_deadline = now + self.settle_ns
                    return 0
                self.phase = P_RUN
                self.t_start = now + self.warmup_ns
                self.t_end = self.t_start + self.duration_ns
                if self.mode == MODE_FANOUT:
                    self.pub_start_at = now + 50 * MS
            return 0
        if self.phase == P_RUN:
            if self.mode == MODE_IDLE:
                if now >= self.phase_deadline:
                    self.t_settled = now
                    if self.rss_reader is not None and self.server_pids:
                        self.rss_after = self.rss_reader(self.server_pids)
                    self.srv_cpu1 = self.cpu_reader(self.server_pids) if (
                        self.cpu_reader is not None and self.server_pids) else None
                    self.start_closing(now)
                return 0
            if self.mode == MODE_FANOUT and self.pub_start_at and now >= self.pub_start_at:
                self.pub_start_at = 0
                self.publish(now)
            if self.mode == MODE_FANOUT and self.round_active and now - self.t_pub > self.timeout_ns:
                if self.measuring:
                    self.errors[E_ROUND_INCOMPLETE] += 1
                self.round_active = False
                self.publish(now)
            if not self.measuring and self.t_start <= now < self.t_end:
                self.begin_window(now)
            if now >= self.t_end:
                if self.measuring:
                    self.end_window(now)
                self.phase = P_DRAIN
                self.phase_deadline = now + (500 * MS if self.mode == MODE_CONNECT else 200 * MS)
            return 0
        if self.phase == P_DRAIN:
            if now >= self.phase_deadline or self.all_quiet():
                self.start_closing(now)
            return 0
        if self.phase == P_CLOSING:
            if now >= self.phase_deadline or self.all_closed():
                self.t_closed = now
                self.phase = P_DONE
            return 0
        return 0

    cdef int next_timeout_ms(self, int64_t now):
        cdef int64_t d = 5 * MS
        cdef int64_t t
        if self.phase == P_RUN and self.mode != MODE_IDLE:
            t = (self.t_start if not self.measuring and now < self.t_start else self.t_end) - now
            if t < d:
                d = t
        if d <= 0:
            return 0
        return <int>((d + MS - 1) // MS)

    # -- main loop ---------------------------------------------------------------------------

    def run(self):
        """Run to completion (bounded by deadlines); returns a dict of results."""
        cdef int64_t now
        cdef int n, i
        cdef Conn c
        cdef uint32_t evs
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.events = <epoll_event *>malloc(sizeof(epoll_event) * MAX_EVENTS)
        self.rbuf = <uint8_t *>malloc(RECV_SIZE)
        if self.events == NULL or self.rbuf == NULL:
            raise MemoryError()
        now = now_ns()
        self.t_begin = now
        self.setup_deadline += now
        self.phase = P_SETUP
        # Connection set-up is bounded too: every connection has its own
        # timeout, and at most max_pending are in progress at once.
        if self.mode == MODE_IDLE and self.rss_reader is not None and self.server_pids:
            self.rss_before = self.rss_reader(self.server_pids)
            if self.cpu_reader is not None:
                self.srv_cpu0 = self.cpu_reader(self.server_pids)
        if self.mode == MODE_CONNECT:
            self.phase = P_RUN
            self.t_start = now + self.warmup_ns
            self.t_end = self.t_start + self.duration_ns
            self.max_pending = len(self.conns)
            self.open_more(now)
        else:
            self.open_more(now)
        while self.phase != P_DONE:
            now = now_ns()
            self.tick(now)
            if self.phase == P_DONE:
                break
            n = epoll_wait(self.epfd, self.events, MAX_EVENTS, self.next_timeout_ms(now))
            self.epoll_waits += 1
            if n < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, "epoll_wait failed")
            now = now_ns()
            for i in range(n):
                evs = self.events[i].events
                c = <Conn>self.conns[<Py_ssize_t>self.events[i].data.u64]
                self.on_event(c, evs, now)
        for c in self.conns:
            if self.mode == MODE_CONNECT and c.state != CS_DEAD and c.state != CS_FREE:
                # A cycle that never finished: for a server that does not
                # complete the closing handshake this is the only trace.
                self.errors[E_CLOSE_TIMEOUT if c.state >= CS_CLOSE_SENT else E_TIMEOUT] += 1
            self.close_fd(c)
        return self.results()

    def conn_states(self):
        """(state, in flight, messages sent) of every connection: for debugging."""
        cdef Conn c
        return [(c.state, c.ring_count, c.next_seq) for c in self.conns]

    cdef object results(self):
        cdef double window = self.duration_ns / 1e9
        cdef dict r = {}
        errs = {ERROR_NAMES[i]: self.errors[i] for i in range(N_ERRORS) if self.errors[i]}
        cpu = (self.cpu1 - self.cpu0) if self.cpu1 else None
        r["parser"] = "codec" if self.use_codec else "raw"
        if self.ext_offer is not None:
            r["deflate_offer"] = self.ext_offer.decode("latin-1")
            r["deflate_response"] = self.first_ext
            r["deflate_conns"] = <long long>self.n_deflate
            if self.inflate_every > 1:
                r["inflate_every"] = self.inflate_every
        if self.first_bad_status is not None:
            r["first_bad_status"] = self.first_bad_status
        if self.not_attempted:
            r["not_attempted"] = <long long>self.not_attempted
        if self.mode == MODE_IDLE:
            r["opened"] = <long long>self.handshakes_total
            setup_s = (self.t_all_open - self.t_begin) / 1e9 if self.t_all_open else None
            r["setup_s"] = round(setup_s, 3) if setup_s is not None else None
            r["handshakes_per_s"] = round(self.handshakes_total / setup_s, 1) if setup_s else None
            r["rss_before_kb"] = self.rss_before
            r["rss_after_kb"] = self.rss_after
            if self.rss_before is not None and self.rss_after is not None and self.handshakes_total:
                r["rss_per_conn_bytes"] = round((self.rss_after - self.rss_before) * 1024.0
                                                / self.handshakes_total, 1)
            else:
                r["rss_per_conn_bytes"] = None
            if self.exchange:
                r["exchanged"] = <long long>self.exchanged
                r["exchanged_compressed"] = <long long>self.rx_compressed
            r["closed_clean"] = <long long>self.closed_clean
            r["close_timeouts"] = <long long>self.close_timeouts_final
            r["closed_other"] = <long long>self.eof_final
            if self.srv_cpu0 is not None and self.srv_cpu1 is not None and self.t_settled:
                r["server_cpu_pct"] = round(100.0 * (self.srv_cpu1 - self.srv_cpu0)
                                            / ((self.t_settled - self.t_begin) / 1e9), 1)
            r["errors"] = sum(errs.values())
            r["error_detail"] = errs
            r["sends"] = <long long>self.sends
            r["recvs"] = <long long>self.recvs
            return r
        r["opened"] = <long long>self.handshakes_total
        r["msgs"] = <long long>self.msgs
        r["msgs_per_s"] = round(self.msgs / window, 1)
        r["mb_per_s"] = round(self.rx_bytes / window / 1e6, 3)
        if self.mode == MODE_FANOUT:
            r["subscribers"] = self.nconns
            r["rounds"] = <long long>self.rounds
            r["rounds_per_s"] = round(self.rounds / window, 1)
            r["rounds_published"] = <long long>self.rounds_published
            r["late"] = <long long>self.late
            r["publisher_echoes"] = <long long>self.publisher_echoes
        if self.mode == MODE_CONNECT:
            r["handshakes"] = <long long>self.handshakes
            r["handshakes_per_s"] = round(self.handshakes / window, 1)
            r["cycles"] = <long long>self.cycles
            r["cycles_per_s"] = round(self.cycles / window, 1)
            r.update(self.hs_hist.summary("handshake_"))
            r.update(self.hist.summary("cycle_"))
        else:
            r.update(self.hist.summary())
        r["errors"] = sum(errs.values())
        r["error_detail"] = errs
        r["close_timeouts_final"] = <long long>self.close_timeouts_final
        total = self.msgs if self.mode != MODE_CONNECT else self.cycles
        r["syscalls_per_msg"] = (round((self.sends + self.recvs + self.epoll_waits) / total, 2)
                                 if total else None)
        r["sends"] = <long long>self.sends
        r["recvs"] = <long long>self.recvs
        r["epoll_waits"] = <long long>self.epoll_waits
        r["pings"] = <long long>self.pings
        if cpu is not None:
            r["loadgen_cpu_pct"] = round(100.0 * cpu / window, 1)
            r["loadgen_user_pct"] = round(100.0 * (self.ucpu1 - self.ucpu0) / window, 1)
        if self.srv_cpu0 is not None and self.srv_cpu1 is not None:
            r["server_cpu_pct"] = round(100.0 * (self.srv_cpu1 - self.srv_cpu0) / window, 1)
            if total:
                r["server_cpu_us_per_msg"] = round(1e6 * (self.srv_cpu1 - self.srv_cpu0) / total, 3)
        if self.mode != MODE_CONNECT and self.msgs:
            # Bytes on the wire (WebSocket frames, headers included; not TCP/IP) per
            # counted message: received per message or delivery, sent per message
            # (echo) or per delivery (fan-out: the publisher's messages over all deliveries).
            r["wire_rx_bytes"] = <long long>self.wire_rx
            r["wire_tx_bytes"] = <long long>self.wire_tx
            r["wire_rx_per_msg"] = round(self.wire_rx / <double>self.msgs, 1)
            r["wire_tx_per_msg"] = round(self.wire_tx / <double>self.msgs, 2)
            r["payload_per_msg"] = round(self.rx_bytes / <double>self.msgs, 1)
            r["rx_compressed_msgs"] = <long long>self.rx_compressed
        if self.srv_io0 is not None and self.srv_io1 is not None and total:
            # The server's own syscalls over the measured window, per message
            # (echo: per reply; fan-out: per delivery; connect: per cycle).
            r["server_reads_per_msg"] = round((self.srv_io1[0] - self.srv_io0[0]) / total, 3)
            r["server_writes_per_msg"] = round((self.srv_io1[1] - self.srv_io0[1]) / total, 3)
        return r
