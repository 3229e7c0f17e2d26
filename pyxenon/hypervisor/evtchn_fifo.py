"""FIFO event channels: Xen 4.17's xen/common/event_fifo.c.

A domain starts on the 2-level ABI (events.py).  Its first
EVTCHNOP_init_control switches it to these port operations, as Xen's
evtchn_fifo_init_control() swaps d->evtchn_port_ops; EVTCHNOP_reset
switches it back (evtchn_reset()).  events.py asks them, when a domain
has them, to raise, clear, unmask and test a port; nothing else reaches
in here.

The guest gives one control block per vcpu (a READY bit and a HEAD per
priority) and the event array pages: one 32-bit word per port holding
PENDING, MASKED, LINKED, BUSY and the LINK to the next port of its
queue.  Each vcpu has a queue per priority; raising an unmasked port
links its word onto the tail of the queue of the vcpu it is bound to.

Guest code never runs while a handler does (one engine, one thread), so
Xen's queue locks and cmpxchg retries have their uncontended outcome;
what the guest sees is Xen's protocol: a word is linked onto the tail
only while the tail is still LINKED (not yet consumed), otherwise the
port becomes the queue's HEAD and its READY bit is set.  Every word and
control block is in a guest frame, rewritten by the guest at will: each
is read afresh, never trusted.
"""
import ctypes

from pyxenon.public import errno, event_channel as ev

from .errors import HypercallError
from .events import FREE, RESERVED
from .mm import WRITABLE

PAGE = 4096
WORDS_PER_PAGE = PAGE // ctypes.sizeof(ev.event_word_t)   # EVTCHN_FIFO_EVENT_WORDS_PER_PAGE
MAX_EVENT_ARRAY_PAGES = ev.EVTCHN_FIFO_NR_CHANNELS // WORDS_PER_PAGE
PENDING = 1 << ev.EVTCHN_FIFO_PENDING
MASKED = 1 << ev.EVTCHN_FIFO_MASKED
LINKED = 1 << ev.EVTCHN_FIFO_LINKED
BUSY = 1 << ev.EVTCHN_FIFO_BUSY
# Xen allocates struct evtchn in buckets of PAGE_SIZE / next_power_of_2(
# sizeof(struct evtchn)) (64 on x86_64): every port below the bucket of
# the highest one allocated is valid (port_is_valid()), though free.
EVTCHNS_PER_BUCKET = 64
Words = ctypes.c_uint32 * WORDS_PER_PAGE


def valid_ports(events):
    """port_is_valid()'s bound: Xen's buckets of struct evtchn."""
    allocated = max(len(events.ports), 1)
    return -(-allocated // EVTCHNS_PER_BUCKET) * EVTCHNS_PER_BUCKET


class Queue:
    """struct evtchn_fifo_queue: its head lives in the control block."""
    __slots__ = ("priority", "tail")

    def __init__(self, priority):
        self.priority = priority
        self.tail = 0


class FifoVcpu:
    """struct evtchn_fifo_vcpu (setup_control_block)."""

    def __init__(self):
        self.control_block = None      # the guest's evtchn_fifo_control_block, once mapped
        self.mfn = None
        self.queues = [Queue(q) for q in range(ev.EVTCHN_FIFO_MAX_QUEUES)]


def map_guest_page(vcpu, gfn):
    """Xen's map_guest_page(): a frame of the domain (a PV gfn is its mfn)
    that takes a writable type; Xen keeps both references until the
    domain goes back to 2-level.  Anything else is -EINVAL."""
    frames = vcpu.domain.machine.frame_table
    if not frames.owned(gfn, vcpu.domain):
        raise HypercallError(errno.EINVAL)          # get_page_from_gfn() found none
    try:
        frames.get_page_and_type(gfn, vcpu, WRITABLE)
    except HypercallError:
        raise HypercallError(errno.EINVAL) from None
    return gfn


class FifoPorts:
    """Xen's evtchn_port_ops_fifo and struct evtchn_fifo_domain for one domain."""
    nr_channels = ev.EVTCHN_FIFO_NR_CHANNELS       # max_evtchns() under FIFO

    def __init__(self, events):
        self.events = events
        self.domain = events.domain
        self.pages = []           # the event array: (mfn, Words view), in port order
        self.vcpus = {}           # vcpu id -> FifoVcpu, made when first needed
        # struct evtchn's FIFO fields, by port (kept across close, as Xen's are):
        self.priority = {}        # its priority (default EVTCHN_FIFO_PRIORITY_DEFAULT)
        self.lastq = {}           # fifo_lastq: (vcpu id, priority) of the queue it was last on
        self.saved = set()        # evtchn->pending: raised while no array page held its word

    def vcpu(self, vcpu_id):
        return self.vcpus.setdefault(vcpu_id, FifoVcpu())

    def held_frames(self):
        """(mfn, general refs, type refs) these pages hold, for the audit."""
        cbs = [f.mfn for f in self.vcpus.values() if f.mfn is not None]
        return [(mfn, 1, 1) for mfn in cbs + [mfn for mfn, _ in self.pages]]

    def release(self, vcpu):
        """evtchn_fifo_destroy(): every page's references go."""
        for mfn, _, _ in self.held_frames():
            vcpu.domain.machine.frame_table.put_page_and_type(mfn, vcpu)
        self.pages, self.vcpus = [], {}

    # -- the event words ---------------------------------------------------------

    def word_at(self, port):
        """(page view, index) of port's word (evtchn_fifo_word_from_port), or None."""
        page, index = divmod(port, WORDS_PER_PAGE)
        return (self.pages[page][1], index) if page < len(self.pages) else None

    def word(self, port):
        at = self.word_at(port)
        return at[0][at[1]] if at else None

    def test_and_set(self, at, bit):
        words, index = at
        old = words[index]
        words[index] = old | bit
        return bool(old & bit)

    # -- evtchn_port_ops ----------------------------------------------------------

    def init_port(self, port):
        """evtchn_fifo_init(): a newly bound port starts at the default priority."""
        self.priority[port] = ev.EVTCHN_FIFO_PRIORITY_DEFAULT

    def set_pending(self, port):
        """evtchn_fifo_set_pending() for the vcpu port is bound to."""
        at = self.word_at(port)
        if at is None:
            self.saved.add(port)        # re-raised when its page is added
            return
        vcpu_id = self.events.ports[port].vcpu if port < len(self.events.ports) else 0
        fifo = self.vcpu(vcpu_id)
        q = fifo.queues[self.priority.get(port, ev.EVTCHN_FIFO_PRIORITY_DEFAULT)]
        if fifo.control_block is None:
            return                      # no control block: Xen drops the event
        check_pollers = not self.test_and_set(at, PENDING)
        linked = True
        if not at[0][at[1]] & MASKED and not self.test_and_set(at, LINKED):
            linked = self.link(port, vcpu_id, q, fifo.control_block)
        if not linked and not fifo.control_block.ready & (1 << q.priority):
            fifo.control_block.ready |= 1 << q.priority
            self.mark_events_pending(vcpu_id, port)
        if check_pollers:
            self.events.wake_pollers(port)

    def link(self, port, vcpu_id, q, control_block):
        """Put port at the tail of q; whether it went behind a linked tail
        (else it is the queue's new head)."""
        last_vcpu, last_priority = self.lastq.get(port, (0, 0))
        old_q = self.vcpu(last_vcpu).queues[last_priority]
        if old_q.tail == port:
            old_q.tail = 0              # its old queue is empty now
        if old_q is not q:
            self.lastq[port] = (vcpu_id, q.priority)
        linked = bool(q.tail) and self.set_link(q.tail, port)
        if not linked:
            control_block.head[q.priority] = port
        q.tail = port
        return linked

    def set_link(self, tail, port):
        """evtchn_fifo_set_link(): LINK := port iff the tail is still
        LINKED; the guest may have consumed it (cleared LINKED) already."""
        words, index = self.word_at(tail)
        old = words[index]
        if not old & LINKED:
            return False
        words[index] = (old & ~(BUSY | ev.EVTCHN_FIFO_LINK_MASK)) | port
        return True

    def mark_events_pending(self, vcpu_id, port):
        """vcpu_mark_events_pending(): the upcall flag, and a kick."""
        vcpu = self.domain.vcpus[vcpu_id]
        vcpu.info.evtchn_upcall_pending = 1
        self.domain.kick(vcpu, port)

    def clear_pending(self, port):
        """evtchn_fifo_clear_pending(): the guest unlinks it when it sees it."""
        at = self.word_at(port)
        if at is not None:
            at[0][at[1]] &= ~PENDING

    def unmask(self, port):
        """evtchn_fifo_unmask(): clear MASKED; a pending event is linked now."""
        at = self.word_at(port)
        if at is None:
            return
        at[0][at[1]] &= ~MASKED
        if at[0][at[1]] & PENDING:
            self.set_pending(port)

    def is_pending(self, port):
        word = self.word(port)
        return word is not None and bool(word & PENDING)

    def is_busy(self, port):
        """evtchn_fifo_is_busy(): a word still on a queue keeps its port from reuse."""
        word = self.word(port)
        return word is not None and bool(word & LINKED)

    # -- the guest's pages ------------------------------------------------------------

    def map_control_block(self, vcpu, vcpu_id, gfn, offset):
        """map_control_block(): once per vcpu, -EINVAL after."""
        fifo = self.vcpu(vcpu_id)
        if fifo.control_block is not None:
            raise HypercallError(errno.EINVAL)
        fifo.mfn = map_guest_page(vcpu, gfn)
        fifo.control_block = ev.evtchn_fifo_control_block.from_buffer(
            self.domain.machine.mem, gfn * PAGE + offset)

    def add_page(self, vcpu, gfn):
        """add_page_to_event_array(): the next 1024 ports' words; ports
        raised while they had none are raised now."""
        if len(self.pages) >= MAX_EVENT_ARRAY_PAGES:
            raise HypercallError(errno.ENOSPC)
        mfn = map_guest_page(vcpu, gfn)
        first = len(self.pages) * WORDS_PER_PAGE
        self.pages.append((mfn, Words.from_buffer(self.domain.machine.mem, mfn * PAGE)))
        for port in range(first, min(first + WORDS_PER_PAGE, valid_ports(self.events))):
            if port in self.saved:
                self.set_pending(port)

    def setup_ports(self, prev_evtchns):
        """setup_ports(): the ports bound so far keep their 2-level pending
        state (raised once their array page exists), at the default priority."""
        for port in range(1, min(prev_evtchns, valid_ports(self.events))):
            if self.events.is_pending(port):
                self.saved.add(port)
            self.init_port(port)


# -- the hypercalls (event_channel.c's do_event_channel_op) ----------------------------

def init_control(vcpu, vcpu_id, gfn, offset):
    """evtchn_fifo_init_control(): map vcpu_id's control block; the
    domain's first switches it to FIFO.  A failure leaves it as it was."""
    domain = vcpu.domain
    if not 0 <= vcpu_id < len(domain.vcpus):
        raise HypercallError(errno.ENOENT)
    if offset > PAGE - ctypes.sizeof(ev.evtchn_fifo_control_block) or offset & 7:
        raise HypercallError(errno.EINVAL)      # crosses the page, or not 8-byte aligned
    events = domain.events
    if events.fifo is not None:
        events.fifo.map_control_block(vcpu, vcpu_id, gfn, offset)
        return ev.EVTCHN_FIFO_LINK_BITS
    prev_evtchns = events.max_ports             # max_evtchns(d) latched before the switch
    fifo = FifoPorts(events)
    fifo.map_control_block(vcpu, vcpu_id, gfn, offset)
    fifo.setup_ports(prev_evtchns)              # reads the 2-level bitmap: before the switch
    events.set_port_ops(fifo)
    return ev.EVTCHN_FIFO_LINK_BITS


def expand_array(vcpu, gfn):
    """evtchn_fifo_expand_array(): -EOPNOTSUPP before init_control."""
    fifo = vcpu.domain.events.fifo
    if fifo is None:
        raise HypercallError(errno.EOPNOTSUPP)
    fifo.add_page(vcpu, gfn)


def set_priority(vcpu, port, priority):
    """evtchn_set_priority() and evtchn_port_set_priority(): a valid port,
    FIFO ops (2-level has no set_priority), a port in use, a priority."""
    events = vcpu.domain.events
    fifo = events.fifo
    if port >= valid_ports(events):
        raise HypercallError(errno.EINVAL)
    if fifo is None:
        raise HypercallError(errno.ENOSYS)
    if port >= len(events.ports) or events.ports[port].state in (FREE, RESERVED):
        raise HypercallError(errno.EACCES)      # evtchn_usable(): port 0 is reserved
    if priority > ev.EVTCHN_FIFO_PRIORITY_MIN:
        raise HypercallError(errno.EINVAL)
    fifo.priority[port] = priority


def reset(vcpu):
    """evtchn_reset()'s end: back to the 2-level ABI, the pages let go."""
    events = vcpu.domain.events
    if events.fifo is not None:
        events.fifo.release(vcpu)
        events.set_port_ops(None)
