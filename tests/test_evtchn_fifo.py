"""FIFO event channels (hypervisor/evtchn_fifo.py) against Xen 4.17's
xen/common/event_fifo.c: init_control, expand_array and set_priority with
Xen's answers, the queues a guest reads (READY, HEAD, each word's LINK),
the switch from 2-level keeping pending ports, and the C fast paths
declining for a domain on FIFO."""
import struct

import pytest

from pyxenon.hypervisor import audit
from pyxenon.hypervisor.evtchn_fifo import LINKED, MASKED, PENDING
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, event_channel as ev, sched, xen
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy
from test_events import POLICY

PAGE = 4096
SELF = 0x7FF0
LINK_MASK = ev.EVTCHN_FIFO_LINK_MASK


@pytest.fixture(params=[True, False], ids=["fast", "python"])
def pair(guests, request):
    """ping and pong, joined by one channel; C fast paths on or off."""
    with Host(memory_mib=256, policy=parse_policy(POLICY, "test.toml"),
              fast_paths=request.param, audit=lambda record: None) as host:
        doms = [host.create(str(guests / "hello.cfg"),
                            overrides=[f'name="{n}"', f'seclabel="{n}"'])
                for n in ("ping", "pong")]
        ping, pong = doms
        port_ping = op(ping, ev.EVTCHNOP_alloc_unbound, "<HHI", SELF, pong.domid, 0)[1][2]
        port_pong = op(pong, ev.EVTCHNOP_bind_interdomain, "<HxxII", ping.domid, port_ping, 0)[1][2]
        yield host, ping, pong, port_ping, port_pong


def op(dom, cmd, fmt, *fields):
    """An event_channel_op through the trap (C first, then Python)."""
    va = dom.layout.stack + PAGE
    copy_to_guest(dom.vcpus[0], va, struct.pack(fmt, *fields))
    rc = dom.vcpus[0].hypercall(xen.HYPERVISOR_event_channel_op, cmd, va)
    return rc, struct.unpack(fmt, copy_from_guest(dom.vcpus[0], va, struct.calcsize(fmt)))


def free_mfn(dom, n):
    """An owned frame past the start-of-day region, used by nothing."""
    return dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 8 + n)


def init_control(dom, gfn, offset=0, vcpu=0):
    rc, out = op(dom, ev.EVTCHNOP_init_control, "<QII B7x", gfn, offset, vcpu, 0)
    return rc, out[3]


def expand(dom, gfn):
    return op(dom, ev.EVTCHNOP_expand_array, "<Q", gfn)[0]


def set_priority(dom, port, priority):
    return op(dom, ev.EVTCHNOP_set_priority, "<II", port, priority)[0]


def bind_ipi(dom):
    rc, (_, port) = op(dom, ev.EVTCHNOP_bind_ipi, "<II", 0, 0)
    assert rc == 0
    return port


def send(dom, port):
    return op(dom, ev.EVTCHNOP_send, "<I", port)[0]


def unmask(dom, port):
    return op(dom, ev.EVTCHNOP_unmask, "<I", port)[0]


class Fifo:
    """The guest's view: its control block and first event array page."""

    def __init__(self, dom, offset=64):
        self.dom, self.cb_mfn, self.array_mfn = dom, free_mfn(dom, 0), free_mfn(dom, 1)
        self.offset = offset
        assert init_control(dom, self.cb_mfn, offset) == (0, ev.EVTCHN_FIFO_LINK_BITS)
        assert expand(dom, self.array_mfn) == 0

    def word(self, port):
        return struct.unpack_from("<I", self.dom.machine.mem, self.array_mfn * PAGE + 4 * port)[0]

    def set_word(self, port, value):
        struct.pack_into("<I", self.dom.machine.mem, self.array_mfn * PAGE + 4 * port, value)

    def ready(self):
        return struct.unpack_from("<I", self.dom.machine.mem, self.cb_mfn * PAGE + self.offset)[0]

    def head(self, priority):
        return struct.unpack_from("<I", self.dom.machine.mem,
                                  self.cb_mfn * PAGE + self.offset + 8 + 4 * priority)[0]

    def queue(self, priority):
        """The ports a guest finds on a queue: HEAD, then each LINK."""
        port, seen = self.head(priority), []
        while port and len(seen) < 64:
            seen.append(port)
            port = self.word(port) & LINK_MASK
        return seen


def test_init_control_validates_as_xen(pair):
    _, ping, pong, _, _ = pair
    vcpu = ping.vcpus[0]
    pt_frame = ping.pfn_to_mfn(ping.layout.pfn(ping.layout.pt_base))
    assert init_control(ping, free_mfn(ping, 0), vcpu=1) == (-errno.ENOENT, 0)
    assert init_control(ping, free_mfn(ping, 0), 4096 - 72 + 8)[0] == -errno.EINVAL  # crosses
    assert init_control(ping, free_mfn(ping, 0), 4)[0] == -errno.EINVAL              # unaligned
    assert init_control(ping, 1 << 40)[0] == -errno.EINVAL                          # no frame
    assert init_control(ping, free_mfn(pong, 0))[0] == -errno.EINVAL                # not its own
    assert init_control(ping, pt_frame)[0] == -errno.EINVAL                         # a page table
    assert ping.events.fifo is None and vcpu.core.evtchn_fifo == 0                  # still 2-level
    assert init_control(ping, free_mfn(ping, 0), 4096 - 72) == (0, ev.EVTCHN_FIFO_LINK_BITS)
    assert vcpu.core.evtchn_fifo == 1
    assert init_control(ping, free_mfn(ping, 1))[0] == -errno.EINVAL    # map_control_block: once
    audit.check(ping.machine)            # the control block's references have their holder


def test_expand_array_and_its_limit(pair):
    _, ping, pong, _, _ = pair
    assert expand(ping, free_mfn(ping, 1)) == -errno.EOPNOTSUPP          # before init_control
    assert init_control(ping, free_mfn(ping, 0))[0] == 0
    assert expand(ping, free_mfn(pong, 1)) == -errno.EINVAL
    assert expand(ping, ping.pfn_to_mfn(ping.layout.pfn(ping.layout.pt_base))) == -errno.EINVAL
    # Xen takes a page per call, the same frame again too, up to 128 pages.
    results = [expand(ping, free_mfn(ping, 1)) for _ in range(129)]
    assert results == [0] * 128 + [-errno.ENOSPC]
    audit.check(ping.machine)
    assert op(ping, ev.EVTCHNOP_reset, "<H", SELF)[0] == 0               # back to 2-level
    assert ping.events.fifo is None and ping.machine.core.frames[free_mfn(ping, 1)].count == 0
    audit.check(ping.machine)


def test_set_priority_answers(pair):
    _, ping, _, port_ping, _ = pair
    assert set_priority(ping, port_ping, 3) == -errno.ENOSYS     # 2-level has no set_priority
    assert set_priority(ping, 1 << 20, 3) == -errno.EINVAL        # port_is_valid() first
    Fifo(ping)
    assert set_priority(ping, port_ping, 16) == -errno.EINVAL
    assert set_priority(ping, 0, 3) == -errno.EACCES               # reserved
    assert set_priority(ping, 40, 3) == -errno.EACCES              # free, in the first bucket
    assert set_priority(ping, 64, 3) == -errno.EINVAL              # past the bucket
    assert set_priority(ping, port_ping, 15) == 0


def test_events_queue_by_priority_in_order(pair):
    _, ping, _, _, _ = pair
    fifo = Fifo(ping)
    ports = [bind_ipi(ping) for _ in range(4)]
    for port in ports:
        fifo.set_word(port, 0)                        # unmasked
    assert set_priority(ping, ports[2], 2) == 0
    info = ping.vcpus[0].info
    info.evtchn_upcall_pending = 0
    for port in (ports[0], ports[2], ports[1], ports[3]):
        assert send(ping, port) == 0
    assert fifo.ready() == (1 << 2) | (1 << 7)
    assert fifo.queue(2) == [ports[2]]
    assert fifo.queue(7) == [ports[0], ports[1], ports[3]]
    assert all(fifo.word(p) & (PENDING | LINKED) == PENDING | LINKED for p in ports)
    assert info.evtchn_upcall_pending == 1
    assert ping.events.is_pending(ports[1]) and not ping.shared_info.evtchn_pending[0]


def two_fresh_ports(pair):
    """(ping, its FIFO view, two IPI ports whose event words are clear)."""
    _, ping, _, _, _ = pair
    fifo = Fifo(ping)
    a, b = bind_ipi(ping), bind_ipi(ping)
    fifo.set_word(a, 0)
    fifo.set_word(b, 0)
    return ping, fifo, a, b


def test_a_consumed_tail_makes_the_next_event_a_head(pair):
    ping, fifo, a, b = two_fresh_ports(pair)
    send(ping, a)
    fifo.set_word(a, 0)                               # the guest consumed it: not linked
    struct.pack_into("<I", ping.machine.mem, fifo.cb_mfn * PAGE + fifo.offset, 0)  # READY clear
    send(ping, b)
    assert fifo.head(7) == b and fifo.ready() == 1 << 7 and fifo.word(a) & LINK_MASK == 0
    # a consumed port, raised again, goes behind the linked tail
    send(ping, a)
    assert fifo.word(b) & LINK_MASK == a and fifo.queue(7) == [b, a]


def test_masked_pends_unlinked_until_unmask(pair):
    _, ping, _, _, _ = pair
    fifo = Fifo(ping)
    port = bind_ipi(ping)
    fifo.set_word(port, MASKED)
    send(ping, port)
    assert fifo.word(port) == MASKED | PENDING and fifo.ready() == 0
    assert unmask(ping, port) == 0
    assert fifo.word(port) == PENDING | LINKED and fifo.queue(7) == [port]


def test_switch_keeps_pending_ports(pair):
    _, ping, _, _, _ = pair
    console = ping.console.port
    ping.events.set_pending(console)                          # pending under 2-level
    assert init_control(ping, free_mfn(ping, 0))[0] == 0
    array = free_mfn(ping, 1)
    ping.machine.mem[array * PAGE:(array + 1) * PAGE] = bytes(PAGE)
    assert not ping.events.is_pending(console)               # no word for it yet
    assert expand(ping, array) == 0                          # raised when the page comes
    word = struct.unpack_from("<I", ping.machine.mem, array * PAGE + 4 * console)[0]
    assert word == PENDING | LINKED and ping.events.is_pending(console)


def test_c_fast_paths_decline_for_a_fifo_domain(pair):
    """A send from a 2-level domain into a FIFO one, an unmask and a poll on
    the FIFO domain: the FIFO words change, never a 2-level bit."""
    _, ping, pong, port_ping, port_pong = pair
    fifo = Fifo(pong)
    fifo.set_word(port_pong, MASKED)
    pong.shared_info.evtchn_pending[0] = 0
    pong.shared_info.evtchn_mask[0] = (1 << 64) - 1      # what a 2-level unmask would clear
    assert send(ping, port_ping) == 0
    assert fifo.word(port_pong) == MASKED | PENDING and pong.shared_info.evtchn_pending[0] == 0
    assert unmask(pong, port_pong) == 0
    assert fifo.word(port_pong) == PENDING | LINKED and pong.shared_info.evtchn_mask[0] == (1 << 64) - 1
    va = pong.layout.stack + 2 * PAGE
    copy_to_guest(pong.vcpus[0], va + 64, struct.pack("<I", port_pong))
    copy_to_guest(pong.vcpus[0], va, struct.pack("<QIIQ", va + 64, 1, 0, 0))
    assert pong.vcpus[0].hypercall(xen.HYPERVISOR_sched_op, sched.SCHEDOP_poll, va) == 0
    assert pong.vcpus[0].runnable                       # pending on FIFO: the poll returns


def test_ports_stop_at_the_domains_limit_on_fifo(pair):
    _, ping, _, _, _ = pair
    Fifo(ping)
    assert ping.events.max_ports == min(ping.events.limit, ev.EVTCHN_FIFO_NR_CHANNELS)
    results = [op(ping, ev.EVTCHNOP_alloc_unbound, "<HHI", SELF, 0, 0) for _ in range(1100)]
    failed = {rc for rc, _ in results if rc}
    assert failed == {-errno.ENOSPC} and len(ping.events.ports) == ping.events.limit


def test_a_new_priority_applies_to_the_next_event(pair):
    """evtchn_fifo_set_priority(): a linked event stays on its old queue;
    raised again after the guest consumed it, it goes to the new one, and
    the old queue's tail forgets it (fifo_lastq)."""
    ping, fifo, a, b = two_fresh_ports(pair)
    send(ping, a)
    assert set_priority(ping, a, 3) == 0
    assert fifo.queue(7) == [a] and fifo.queue(3) == []
    fifo.set_word(a, 0)                                     # consumed
    send(ping, a)
    assert fifo.head(3) == a and fifo.ready() & (1 << 3)
    send(ping, b)                                           # queue 7's tail was a: now empty
    assert fifo.head(7) == b and fifo.word(a) & LINK_MASK == 0
