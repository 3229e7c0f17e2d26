"""io/ring.h's back end: a backend's view of a shared request/response ring.

The frontend owns req_prod and rsp_event, the backend rsp_prod and
req_event; all four live in the shared page, so every one read here is the
guest's to change at any moment.  Requests are copied out of the page
before they are looked at (Linux's backends memcpy RING_GET_REQUEST for
the same reason), and the backend never consumes more than RING_SIZE
requests ahead of its responses (RING_REQUEST_CONS_OVERFLOW), so no guest
can make it hold more than one ring of work.
"""
import struct

HEAD = 64               # offsetof(struct *_sring, ring): four indexes, pvt, __pad
REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT = 0, 4, 8, 12
MASK32 = 0xFFFFFFFF


class RingOverflow(Exception):
    """req_prod more than a ring ahead of the responses: a frontend's lie
    (RING_REQUEST_PROD_OVERFLOW)."""


class BackRing:
    """The back half of one ring in page (a writable memoryview of the
    granted frame); entry is the size of one ring slot."""

    def __init__(self, page, entry, page_size=4096):
        self.page = page
        self.entry = entry
        fit = (page_size - HEAD) // entry
        self.size = 1 << (fit.bit_length() - 1)      # __RING_SIZE
        self.req_cons = 0
        self.rsp_prod_pvt = 0

    def _get(self, offset):
        return struct.unpack_from("<I", self.page, offset)[0]

    def _set(self, offset, value):
        struct.pack_into("<I", self.page, offset, value & MASK32)

    def slot(self, idx):
        return HEAD + (idx & (self.size - 1)) * self.entry

    def producer(self):
        """req_prod, checked against the responses still owed."""
        rp = self._get(REQ_PROD)
        if (rp - self.rsp_prod_pvt) & MASK32 > self.size:
            raise RingOverflow(f"req_prod {rp} is {(rp - self.rsp_prod_pvt) & MASK32} "
                               f"requests past rsp_prod {self.rsp_prod_pvt}")
        return rp

    def take(self, rp):
        """The next request's bytes (a private copy), or None when none is
        due or a ring's worth is already unanswered."""
        if self.req_cons == rp or (self.req_cons - self.rsp_prod_pvt) & MASK32 >= self.size:
            return None
        start = self.slot(self.req_cons)
        self.req_cons = (self.req_cons + 1) & MASK32
        return bytes(self.page[start:start + self.entry])

    def unconsumed(self):
        """RING_HAS_UNCONSUMED_REQUESTS."""
        waiting = (self._get(REQ_PROD) - self.req_cons) & MASK32
        room = self.size - ((self.req_cons - self.rsp_prod_pvt) & MASK32)
        return min(waiting, max(room, 0))

    def final_check(self):
        """RING_FINAL_CHECK_FOR_REQUESTS: ask for an event at the next
        request, then look once more (one may have come meanwhile)."""
        if self.unconsumed():
            return True
        self._set(REQ_EVENT, self.req_cons + 1)
        return bool(self.unconsumed())

    def respond(self, data):
        """Put one response in the next response slot."""
        start = self.slot(self.rsp_prod_pvt)
        self.page[start:start + len(data)] = data
        self.rsp_prod_pvt = (self.rsp_prod_pvt + 1) & MASK32

    def push(self):
        """RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish; True if the
        frontend asked to be told (its rsp_event lies in what was pushed)."""
        old, new = self._get(RSP_PROD), self.rsp_prod_pvt
        self._set(RSP_PROD, new)
        return (new - self._get(RSP_EVENT)) & MASK32 < (new - old) & MASK32
