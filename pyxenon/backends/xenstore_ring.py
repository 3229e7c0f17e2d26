"""The xenstore ring page (io/xs_wire.h, docs/misc/xenstore-ring.txt): framing only.

The guest writes requests into req[] and advances req_prod; we read them and
advance req_cons.  We write replies and watch events into rsp[] and advance
rsp_prod; the guest reads them and advances rsp_cons.  All four indices are
free-running 32-bit counters; byte i lives at ring[i % 1024].

Everything in the page is guest-writable.  The two indices we own (req_cons,
rsp_prod) are kept here and written out, never read back; the two the guest
owns are checked on every use: a ring holding more than 1024 bytes is
nonsense (XENSTORE_ERROR_RINGIDX), and the connection fails.  A message is
a header (xsd_sockmsg) and len payload bytes; it may arrive in pieces over
several events and is buffered until complete.  Replies that do not fit in
rsp[] wait in a queue; nothing the guest has not consumed is overwritten.
"""
import collections
import ctypes
import struct

from pyxenon.public import io

IFACE = io.xenstore_domain_interface
REQ, RSP = IFACE.req.offset, IFACE.rsp.offset
SIZE = io.XENSTORE_RING_SIZE
MASK32 = 0xFFFFFFFF
FEATURES = io.XENSTORE_SERVER_FEATURE_RECONNECTION | io.XENSTORE_SERVER_FEATURE_ERROR

HEADER = struct.Struct("<IIII")
assert HEADER.size == ctypes.sizeof(io.xsd_sockmsg)
_U32 = struct.Struct("<I")

Header = collections.namedtuple("Header", "type req_id tx_id len")


def pack_message(type_, req_id, tx_id, body):
    return HEADER.pack(type_, req_id, tx_id, len(body)) + body


def take_message(inbuf, pull):
    """The next request in inbuf as (Header, payload); (Header, None) if its
    len is over XENSTORE_PAYLOAD_MAX; None while it has not all arrived.
    pull(n) may add up to n more bytes to inbuf first (a ring's req[])."""
    pull(HEADER.size - len(inbuf))
    if len(inbuf) < HEADER.size:
        return None
    header = Header._make(HEADER.unpack_from(inbuf))
    if header.len > io.XENSTORE_PAYLOAD_MAX:
        return header, None
    total = HEADER.size + header.len
    pull(total - len(inbuf))
    if len(inbuf) < total:
        return None
    payload = bytes(inbuf[HEADER.size:total])
    del inbuf[:total]
    return header, payload


class RingError(Exception):
    """The guest broke the ring; code is the XENSTORE_ERROR_* to report."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


class Ring:
    def __init__(self, page, notify):
        page = memoryview(page).cast("B")
        if page.readonly or len(page) < ctypes.sizeof(IFACE):
            raise ValueError("a xenstore ring needs a writable 4 KiB page")
        self.page = page
        self.notify = notify
        self.req_cons = self._load("req_cons")
        self.rsp_prod = self._load("rsp_prod")
        self.inbuf = bytearray()
        self.out = collections.deque()
        self.head = 0           # bytes of out[0] already in rsp[]
        self.queued = 0         # bytes waiting in out
        self.failed = False
        self.active = False     # indices moved (or error set) since the last notify
        self._store("server_features", self._load("server_features") | FEATURES)

    def _load(self, field):
        return _U32.unpack_from(self.page, getattr(IFACE, field).offset)[0]

    def _store(self, field, value):
        _U32.pack_into(self.page, getattr(IFACE, field).offset, value & MASK32)

    # -- requests in ----------------------------------------------------------

    def read_message(self):
        return take_message(self.inbuf, self._pull)

    def _pull(self, wanted):
        """Move up to wanted bytes from req[] into inbuf."""
        if wanted <= 0:
            return
        available = (self._load("req_prod") - self.req_cons) & MASK32
        if available > SIZE:
            raise RingError(io.XENSTORE_ERROR_RINGIDX)
        count = min(wanted, available)
        if count:
            self.inbuf += self._copy_out(REQ, self.req_cons, count)
            self.req_cons = (self.req_cons + count) & MASK32
            self._store("req_cons", self.req_cons)
            self.active = True

    def _copy_out(self, base, index, count):
        start = index % SIZE
        first = min(count, SIZE - start)
        return bytes(self.page[base + start:base + start + first]) + \
            bytes(self.page[base:base + count - first])

    # -- replies out ----------------------------------------------------------

    def queue(self, message):
        if not self.failed:
            self.out.append(message)
            self.queued += len(message)

    def flush(self):
        """Write as much queued output as rsp[] has room for."""
        if self.failed:
            return
        used = (self.rsp_prod - self._load("rsp_cons")) & MASK32
        if used > SIZE:
            raise RingError(io.XENSTORE_ERROR_RINGIDX)
        room = SIZE - used
        while self.out and room:
            chunk = self.out[0][self.head:self.head + room]
            self._copy_in(RSP, self.rsp_prod, chunk)
            self.rsp_prod = (self.rsp_prod + len(chunk)) & MASK32
            self._store("rsp_prod", self.rsp_prod)
            self.active = True
            room -= len(chunk)
            self._consumed(len(chunk))

    def _consumed(self, count):
        self.head += count
        self.queued -= count
        if self.head == len(self.out[0]):
            self.out.popleft()
            self.head = 0

    def _copy_in(self, base, index, data):
        start = index % SIZE
        first = min(len(data), SIZE - start)
        self.page[base + start:base + start + first] = data[:first]
        self.page[base:base + len(data) - first] = data[first:]

    def backlog(self):
        return bool(self.out)

    def kick(self):
        """Signal the guest if anything moved since the last signal."""
        if self.active:
            self.active = False
            self.notify()

    # -- connection state -----------------------------------------------------

    def _drop(self):
        self.inbuf.clear()
        self.out.clear()
        self.head = self.queued = 0

    def fail(self, code):
        """Stop talking to the guest: set the page's error field and drop everything."""
        self._drop()
        self.failed = True
        self._store("error", code)
        self.active = True

    def reconnect_requested(self):
        return self._load("connection") == io.XENSTORE_RECONNECT

    def reset(self):
        """The ring reconnection protocol: empty both rings, clear the error,
        mark the ring connected."""
        self._drop()
        self.failed = False
        self.req_cons = self.rsp_prod = 0
        for field in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
            self._store(field, 0)
        self._store("error", io.XENSTORE_ERROR_NONE)
        self._store("connection", io.XENSTORE_CONNECTED)
        self.active = True
