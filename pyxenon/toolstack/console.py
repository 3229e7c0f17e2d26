"""The console backend (xenconsoled's part): drains a domain's console ring.

The guest writes into out[] and advances out_prod, then signals the console
port; the backend copies out what lies between out_cons and out_prod, moves
out_cons on, and signals back so a guest waiting for room can continue --
only then: a signal with nothing to take gets no answer (xenconsoled's
buffer_append, tools/console/daemon/io.c).
Host input goes the other way through in[].  Every index in the ring page
is guest-written and so untrusted: a producer more than a ring ahead is
clamped to the last ring's worth of bytes.
"""
from pyxenon.public import io

RING = io.xencons_interface
OUT, OUT_SIZE = RING.out.offset, RING.out.size
IN, IN_SIZE = getattr(RING, "in").offset, getattr(RING, "in").size
MASK32 = 0xFFFFFFFF


def ring_read(page, base, size, cons, n):
    """n bytes of a ring of size bytes at page[base:], from index cons."""
    start = cons % size
    first = min(n, size - start)
    return bytes(page[base + start:base + start + first]) + bytes(page[base:base + n - first])


def ring_write(page, base, size, prod, data):
    start = prod % size
    first = min(len(data), size - start)
    page[base + start:base + start + first] = data[:first]
    page[base:base + len(data) - first] = data[first:]


class ConsoleBackend:
    def __init__(self, domain, pfn):
        self.domain = domain
        self.page = domain.page(pfn)
        self.ring = RING.from_buffer(self.page)
        self.port = domain.events.alloc_host(self.drain)

    def drain(self):
        """The guest signalled: take what it wrote.  As xenconsoled's
        buffer_append, signal back only when out_cons moved: a frontend
        whose event handler kicks the backend in turn would otherwise be
        woken by every kick of its own, for ever."""
        ring = self.ring
        cons, prod = ring.out_cons, ring.out_prod
        n = (prod - cons) & MASK32
        if not n:
            return
        if n > OUT_SIZE:
            cons, n = (prod - OUT_SIZE) & MASK32, OUT_SIZE
        self.domain.emit(ring_read(self.page, OUT, OUT_SIZE, cons, n), source="ring")
        ring.out_cons = prod
        self.domain.events.set_pending(self.port)

    def feed(self, data):
        """Host input for the guest: as much as fits in in[]; returns the count."""
        ring = self.ring
        used = (ring.in_prod - ring.in_cons) & MASK32
        n = max(0, min(IN_SIZE - used, len(data)))
        if n:
            ring_write(self.page, IN, IN_SIZE, ring.in_prod, bytes(data[:n]))
            ring.in_prod = (ring.in_prod + n) & MASK32
            self.domain.events.set_pending(self.port)
        return n
