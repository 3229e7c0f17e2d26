"""The C fast paths (_core/fast.c, _core/events.c) against the Python
handlers they shortcut: the same random sequence of event-channel sends,
polls, blocks, masks and closes, made on two hosts -- one with fast paths,
one without -- must leave the same bitmaps, the same vcpu_info flags, the
same blocked and polling vcpus and the same results."""
import pathlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pyxenon._core import ffi, lib
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import event_channel as ev, sched, xen
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy
from test_events import POLICY, scratch

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = 4096
SELF = 0x7FF0


def hypercall(dom, nr, *args):
    return dom.vcpus[0].hypercall(nr, *args)     # the trap's entry: C, then Python


def with_struct(dom, nr, cmd, fmt, *fields):
    copy_to_guest(dom.vcpus[0], scratch(dom), struct.pack(fmt, *fields))
    return hypercall(dom, nr, cmd, scratch(dom))


def target_va(dom):
    """A padding page no test structure uses: update_va_mapping remaps it."""
    return dom.layout.stack + 16 * PAGE


def poll(dom, ports, timeout):
    va = scratch(dom) + 256
    copy_to_guest(dom.vcpus[0], va, struct.pack(f"<{len(ports)}I", *ports))
    return with_struct(dom, xen.HYPERVISOR_sched_op, sched.SCHEDOP_poll, "<QIIQ",
                       va, len(ports), 0, timeout)


class Pair:
    """ping and pong, built and joined by one channel, never run."""

    def __init__(self, guests, fast, pong_vcpus=1):
        self.host = Host(memory_mib=256, policy=parse_policy(POLICY, "test.toml"),
                         fast_paths=fast, audit=lambda record: None)
        self.doms = [self.host.create(str(guests / "hello.cfg"),
                                      overrides=[f'name="{n}"', f'seclabel="{n}"',
                                                 f"maxvcpus={v}"])
                     for n, v in (("ping", 1), ("pong", pong_vcpus))]
        a, b = self.doms
        assert with_struct(a, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_alloc_unbound,
                           "<HHI", SELF, b.domid, 0) == 0
        port_a = next(i for i, p in enumerate(a.events.ports) if p.state == "unbound")
        assert with_struct(b, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_bind_interdomain,
                           "<HxxII", a.domid, port_a, 0) == 0
        port_b = next(i for i, p in enumerate(b.events.ports) if p.state == "interdomain")
        self.ports = [port_a, port_b]

    def apply(self, op):
        kind, side, choice = op
        return getattr(self, "op_" + kind)(self.doms[side], side, choice)

    def port(self, side, choice):
        return (self.ports[side], 1, 0, 4095, 70)[choice % 5]   # its channel, its console, bad ones

    # -- hypercalls ------------------------------------------------------------

    def op_send(self, dom, side, choice):
        return with_struct(dom, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_send, "<I",
                           self.port(side, choice))

    def op_unmask(self, dom, side, choice):
        return with_struct(dom, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_unmask, "<I",
                           self.port(side, choice))

    def op_close(self, dom, side, choice):
        return with_struct(dom, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_close, "<I",
                           self.port(side, choice))

    def op_poll(self, dom, side, choice):
        return poll(dom, [self.port(side, choice)], 0)

    def op_poll2(self, dom, side, choice):
        return poll(dom, [self.port(side, choice), self.ports[side]], 0)

    def op_block(self, dom, side, choice):
        return hypercall(dom, xen.HYPERVISOR_sched_op, sched.SCHEDOP_block, 0)

    def op_timer(self, dom, side, choice):
        return hypercall(dom, xen.HYPERVISOR_set_timer_op, (0, 1, 10 ** 12, 1 << 63, 7)[choice % 5])

    def op_uvm(self, dom, side, choice):
        """update_va_mapping of a padding page: own frame rw/ro, unmap, a page
        table rw, the other domain's frame; and two addresses with no L1."""
        va = (target_va(dom), target_va(dom), target_va(dom), target_va(dom), target_va(dom),
              0x1000, 0xFFFF800000001000)[choice % 7]
        return hypercall(dom, xen.HYPERVISOR_update_va_mapping, va,
                         self.pte(dom, side, choice % 5), choice % 3)

    def pte(self, dom, side, choice):
        frame = dom.pfn_to_mfn(dom.layout.pfn(target_va(dom) + PAGE))
        other = self.doms[1 - side].first_mfn
        pt = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.pt_base))
        return (frame << 12 | 0x67, frame << 12 | 0x25, 0, pt << 12 | 0x67, other << 12 | 0x25)[choice]

    def op_mmu(self, dom, side, choice):
        """mmu_update batches on the target page's L1 entry: plain ones; one
        C cannot do in the middle (machphys); a refused one first or in the
        middle; a foreign domain; none; an A/D-preserving one."""
        ft = self.host.machine.frame_table
        table, index = ft.l1_slot(dom.vcpus[0].core.cr3, target_va(dom))
        ptr = table << 12 | index * 8
        own = dom.pfn_to_mfn(dom.layout.pfn(target_va(dom) + PAGE))
        rw, ro, bad = self.pte(dom, side, 0), self.pte(dom, side, 1), self.pte(dom, side, 4)
        reqs = ([(ptr, rw), (ptr, ro), (ptr, 0)], [(ptr, ro), (own << 12 | 1, 77), (ptr, rw)],
                [(ptr, bad)], [(ptr, rw), (ptr, bad), (ptr, 0)], [(ptr, ro)], [],
                [(ptr | 2, own << 12 | 0x07)])[choice % 7]     # A/D from the old entry
        copy_to_guest(dom.vcpus[0], scratch(dom) + 3072,
                      b"".join(struct.pack("<QQ", *r) for r in reqs) or b"\0")
        foreign = self.doms[1 - side].domid if choice % 7 == 4 else SELF
        return hypercall(dom, xen.HYPERVISOR_mmu_update, scratch(dom) + 3072, len(reqs),
                         scratch(dom) + 512, foreign)

    def op_ext(self, dom, side, choice):
        """mmuext_op batches: flushes only, flushes and another command,
        none, a foreign domain; done counted at scratch + 512."""
        cmds = ([6], [7, 10, 11], [6, xen.MMUEXT_SET_LDT], [], [6])[choice % 5]
        ops = b"".join(struct.pack("<IxxxxQQ", cmd, 0, 0) for cmd in cmds)
        copy_to_guest(dom.vcpus[0], scratch(dom), ops or b"\0")
        foreign = self.doms[1 - side].domid if choice % 5 == 4 else SELF
        return hypercall(dom, xen.HYPERVISOR_mmuext_op, scratch(dom), len(cmds),
                         scratch(dom) + 512, foreign)

    def op_base(self, dom, side, choice):
        """mmuext_op base pointer switches (Linux's context switch): the
        same tables again; the user one set to the kernel's and back to 0
        (its references move); a frame that is no L4; both of one kind;
        with a flush."""
        l4 = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.pt_base))
        stack = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.stack))
        kernel, user = xen.MMUEXT_NEW_BASEPTR, xen.MMUEXT_NEW_USER_BASEPTR
        cmds = ([(kernel, l4), (user, 0)], [(6, 0), (user, l4)], [(user, 0)], [(kernel, stack)],
                [(kernel, l4), (user, l4)], [(user, l4), (user, 0)], [(user, stack)])[choice % 7]
        ops = b"".join(struct.pack("<IxxxxQQ", cmd, mfn, 0) for cmd, mfn in cmds)
        copy_to_guest(dom.vcpus[0], scratch(dom), ops)
        return hypercall(dom, xen.HYPERVISOR_mmuext_op, scratch(dom), len(cmds),
                         scratch(dom) + 512, SELF)

    def op_multi(self, dom, side, choice):
        """multicalls: all fast; fast then not (yield); nested; an
        update_va_mapping and an unmask; empty.  Results read back."""
        port, va = self.ports[side], target_va(dom)
        calls = ([(xen.HYPERVISOR_xen_version, 0, 0), (xen.HYPERVISOR_set_timer_op, 5),
                  (xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_send, scratch(dom) + 1024)],
                 [(xen.HYPERVISOR_xen_version, 7, 0), (xen.HYPERVISOR_sched_op, sched.SCHEDOP_yield, 0),
                  (xen.HYPERVISOR_xen_version, 0, 0)],
                 [(xen.HYPERVISOR_multicall, 0, 0)],
                 [(xen.HYPERVISOR_update_va_mapping, va, self.pte(dom, side, 1), 2),
                  (xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_unmask, scratch(dom) + 1024)],
                 [])[choice % 5]
        copy_to_guest(dom.vcpus[0], scratch(dom) + 1024, struct.pack("<I", port))
        entries = b"".join(struct.pack("<QQ6Q", c[0], 0xDEAD, *(list(c[1:]) + [0] * 6)[:6])
                           for c in calls)
        copy_to_guest(dom.vcpus[0], scratch(dom) + 2048, entries or b"\0")
        rc = hypercall(dom, xen.HYPERVISOR_multicall, scratch(dom) + 2048, len(calls))
        back = copy_from_guest(dom.vcpus[0], scratch(dom) + 2048, max(len(entries), 1))
        return rc, [struct.unpack_from("<Q", back, 64 * i + 8)[0] for i in range(len(calls))]

    # -- what a guest does to its own bitmaps, or the scheduler to its vcpu ----------

    def bit(self, dom, side, choice):
        return divmod(self.port(side, choice), 64)

    def op_mask(self, dom, side, choice):
        word, bit = self.bit(dom, side, choice)
        dom.shared_info.evtchn_mask[word] |= 1 << bit

    def op_unmask_bit(self, dom, side, choice):
        word, bit = self.bit(dom, side, choice)
        dom.shared_info.evtchn_mask[word] &= ~(1 << bit)

    def op_clear(self, dom, side, choice):
        word, bit = self.bit(dom, side, choice)
        dom.shared_info.evtchn_pending[word] &= ~(1 << bit)
        dom.vcpu_info(0).evtchn_upcall_pending = 0

    def op_bind_vcpu(self, dom, side, choice):
        """EVTCHNOP_bind_vcpu of the channel's port to vcpu 0 or 1 (1 exists
        only in a two-vcpu pong)."""
        return with_struct(dom, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_bind_vcpu, "<II",
                           self.ports[side], choice % 2)

    def op_wake(self, dom, side, choice):
        dom.vcpus[0].wake()

    def op_pause(self, dom, side, choice):
        dom.pause()

    def op_unpause(self, dom, side, choice):
        dom.unpause()

    def state(self):
        out = []
        for dom in self.doms:
            vcpus = [(dom.vcpu_info(v.vcpu_id).evtchn_upcall_pending,
                      dom.vcpu_info(v.vcpu_id).evtchn_pending_sel, v.runnable,
                      v.poll_ports, v.wake_at, v.timer_at) for v in dom.vcpus]
            out.append((list(dom.shared_info.evtchn_pending[:2]), list(dom.shared_info.evtchn_mask[:2]),
                        vcpus, [(p.state, p.remote_port, p.vcpu) for p in dom.events.ports],
                        self.memory_state(dom)))
        core = self.host.machine.core
        return out, core.flush_pending, core.code_flush_pending

    def memory_state(self, dom):
        """The target page's L1 entry, the frames it may name, the done count."""
        ft = self.host.machine.frame_table
        table, index = ft.l1_slot(dom.vcpus[0].core.cr3, target_va(dom))
        frames = [dom.pfn_to_mfn(dom.layout.pfn(target_va(dom) + PAGE)), table,
                  dom.pfn_to_mfn(dom.layout.pfn(dom.layout.pt_base))]
        own = dom.pfn_to_mfn(dom.layout.pfn(target_va(dom) + PAGE))
        return (ft.read_entry(table, index), self.host.machine.m2p[own],
                [(ft.frames[f].count, ft.frames[f].type_count, ft.frames[f].type) for f in frames],
                copy_from_guest(dom.vcpus[0], scratch(dom) + 512, 4),
                (dom.vcpus[0].core.kernel_cr3, dom.vcpus[0].core.user_cr3))

    def close(self):
        self.host.close()


OPS = st.tuples(st.sampled_from(["send", "send", "send", "poll", "poll2", "block", "close",
                                 "mask", "unmask_bit", "unmask", "clear", "wake", "pause",
                                 "unpause", "timer", "uvm", "uvm", "ext", "multi", "mmu", "mmu",
                                 "base", "base"]),
                st.integers(0, 1), st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 6]))


@pytest.fixture(scope="module")
def built(guests):
    return guests


def same_outcome(guests, ops, pong_vcpus=1):
    fast, slow = Pair(guests, True, pong_vcpus), Pair(guests, False, pong_vcpus)
    try:
        assert fast.state() == slow.state()
        for op in ops:
            assert fast.apply(op) == slow.apply(op), op
            assert fast.state() == slow.state(), op
    finally:
        fast.close()
        slow.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=25))
def test_fast_paths_do_what_the_python_handlers_do(built, ops):
    same_outcome(built, ops)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(OPS, st.tuples(st.just("bind_vcpu"), st.integers(0, 1),
                                             st.integers(0, 1))), max_size=25))
def test_fast_paths_with_a_two_vcpu_domain_do_what_python_does(built, ops):
    """pong has two vcpus: events to it, its unmasks and its rebinding
    (bind_vcpu) give the same bitmaps and vcpu_info flags on every vcpu."""
    same_outcome(built, ops, pong_vcpus=2)


def test_the_event_fast_paths_decline_a_multi_vcpu_domain(built):
    """C may notify only a one-vcpu domain's vcpu (a poller on another vcpu
    of the domain must wake too) and may unmask only for one: a send to
    two-vcpu pong and pong's unmask go to Python, a send to one-vcpu ping
    stays in C."""
    pair = Pair(built, True, pong_vcpus=2)
    try:
        ping, pong = pair.doms
        links = ping.events.links      # none at all: no channel of ping's has a C target
        assert links is None or links[pair.ports[0]].peer == ffi.NULL
        assert pong.events.links[pair.ports[1]].peer == ping.vcpus[0].core
        assert pong.vcpus[0].core.max_ports == 0 and ping.vcpus[0].core.max_ports > 0
        before = [d.vcpus[0].core.perfc.calls[xen.HYPERVISOR_event_channel_op].python
                  for d in pair.doms]
        assert pair.apply(("send", 0, 0)) == 0 and pair.apply(("send", 1, 0)) == 0
        after = [d.vcpus[0].core.perfc.calls[xen.HYPERVISOR_event_channel_op].python
                 for d in pair.doms]
        assert [a - b for a, b in zip(after, before)] == [1, 0]
    finally:
        pair.close()


# The cases the semantics turn on, each from a quiet start (nothing pending).
QUIET = [("clear", 0, 0), ("clear", 1, 0)]


@pytest.mark.parametrize("ops", [
    [("mask", 1, 0), ("block", 1, 0), ("send", 0, 0)],        # masked: a block sleeps on
    [("mask", 1, 0), ("poll", 1, 0), ("send", 0, 0)],         # masked: a poll of it wakes
    [("block", 1, 0), ("send", 0, 0)],                        # unmasked: a block wakes
    [("poll", 1, 1), ("send", 0, 0)],                         # a poll of another port sleeps on
    [("poll2", 1, 1), ("send", 0, 0)],                        # a poll set that holds it wakes
    [("poll", 1, 0), ("pause", 1, 0), ("send", 0, 0)],        # a paused domain is not woken
    [("send", 0, 0), ("send", 0, 0), ("poll", 1, 0)],         # already pending: poll returns
    [("close", 1, 0), ("send", 0, 0), ("send", 1, 0)],        # closed: unbound, and EINVAL
    [("poll", 1, 3), ("poll", 1, 4), ("send", 0, 3)],         # ports out of range
    [("mask", 1, 0), ("send", 0, 0), ("unmask", 1, 0)],       # unmask raises the upcall
    [("mask", 1, 0), ("unmask", 1, 0), ("unmask", 1, 2), ("unmask", 1, 3)],   # and ports 0, 4095
    [("timer", 0, 2), ("timer", 0, 0), ("timer", 1, 3), ("timer", 1, 4)],     # set, cancel
    [("uvm", 0, 0), ("uvm", 0, 1), ("uvm", 0, 2), ("uvm", 0, 0)],             # rw, ro, unmap
    [("uvm", 1, 3), ("uvm", 1, 4), ("uvm", 1, 5), ("uvm", 1, 6)],             # all refused
    [("ext", 0, 0), ("ext", 0, 1), ("ext", 0, 2), ("ext", 0, 3), ("ext", 0, 4)],
    [("multi", 0, 0), ("multi", 1, 1), ("multi", 0, 2), ("multi", 1, 3), ("multi", 0, 4)],
    [("mmu", 0, 6), ("mmu", 0, 0), ("mmu", 0, 1), ("mmu", 0, 2), ("mmu", 0, 3), ("mmu", 0, 4),
     ("mmu", 0, 5)],
    [("base", 0, 0), ("base", 0, 1), ("base", 0, 1), ("base", 0, 4), ("base", 0, 2),
     ("base", 0, 2), ("base", 0, 3), ("base", 0, 5), ("base", 0, 6), ("base", 1, 1)],
], ids=["masked-block", "masked-poll", "block", "poll-other", "poll-set", "paused",
        "pending", "closed", "out-of-range", "unmask-pending", "unmask-bad", "timers",
        "uvm", "uvm-refused", "mmuext", "multicall", "mmu_update",
        "baseptr"])
def test_fast_paths_in_the_cases_that_matter(guests, ops):
    same_outcome(guests, QUIET + ops)


def test_the_plain_cases_stay_in_c(guests):
    """Send, one-port poll, unmask, set_timer_op and base pointer switches
    never reach Python; a two-port poll does."""
    pair = Pair(guests, True)
    python_calls = []
    try:
        pong = pair.doms[1]
        for dom in pair.doms:
            dom.dispatch = lambda vcpu, nr, *a, inner=dom.dispatch: (
                python_calls.append(nr) or inner(vcpu, nr, *a))
        pong.events.clear_pending(pair.ports[1])
        assert poll(pong, [pair.ports[1]], 0) == 0
        assert not pong.vcpus[0].runnable and pong.vcpus[0].poll_ports == {pair.ports[1]}
        assert pair.apply(("send", 0, 0)) == 0
        assert pong.vcpus[0].runnable and pong.events.is_pending(pair.ports[1])
        assert pair.apply(("unmask", 1, 0)) == 0
        assert pair.apply(("timer", 1, 2)) == 0 and pong.vcpus[0].timer_at == 10 ** 12
        assert pair.apply(("base", 1, 1)) == 0 and pair.apply(("base", 1, 0)) == 0
        assert python_calls == []
        assert pair.apply(("poll2", 1, 0)) == 0
        assert python_calls == [xen.HYPERVISOR_sched_op]
    finally:
        pair.close()


def enter_with_event(guests, fast, rsp, kernel_mode=True):
    """A built, never-run domain with an event callback and an event
    pending: one slice's start (xc_enter, then Python if it says so)."""
    from pyxenon.hypervisor import traps
    from pyxenon.public import callback

    host = Host(memory_mib=128, fast_paths=fast)
    dom = host.create(str(guests / "hello.cfg"))
    vcpu = dom.vcpus[0]
    reg = callback.callback_register(type=callback.CALLBACKTYPE_event, address=0xFFFFFFFF80001234)
    copy_to_guest(vcpu, scratch(dom), bytes(reg))
    assert hypercall(dom, xen.HYPERVISOR_callback_op, callback.CALLBACKOP_register, scratch(dom)) == 0
    vcpu.set_regs(rsp=rsp(dom), rcx=0x1111, r11=0x2222, rflags=0x4246 | 0x100)
    vcpu.core.kernel_mode = int(kernel_mode)
    dom.vcpu_info(0).evtchn_upcall_pending = 1
    dom.vcpu_info(0).evtchn_upcall_mask = 0
    in_python = lib.xc_enter(host.machine.core, vcpu.core, 0)
    if in_python:
        traps.deliver_upcall(vcpu)
    regs = vcpu.regs()
    frame = (copy_from_guest(vcpu, regs["rsp"], 56) if dom.crash_report is None else None)
    outcome = ({k: regs[k] for k in ("rip", "rsp", "rflags", "rcx", "r11")}, frame,
               dom.vcpu_info(0).evtchn_upcall_mask, dom.crash_report is None)
    host.close()
    return in_python, outcome


@pytest.mark.parametrize("rsp,kernel_mode,c_enters", [
    (lambda dom: scratch(dom) + 2 * PAGE, True, True),          # aligned kernel stack
    (lambda dom: scratch(dom) + 2 * PAGE - 9, True, True),      # realigned to 16
    (lambda dom: 0x1000, True, False),                           # unmapped: failsafe crash
    (lambda dom: 0xFFFF800000000100, True, False),               # Xen's range: crash
    (lambda dom: scratch(dom) + 2 * PAGE, False, False),         # guest user mode
], ids=["aligned", "unaligned", "unmapped", "xen-range", "user-mode"])
def test_event_upcall_bounce_in_c_is_pythons(guests, rsp, kernel_mode, c_enters):
    fast_python, fast = enter_with_event(guests, True, rsp, kernel_mode)
    slow_python, slow = enter_with_event(guests, False, rsp, kernel_mode)
    assert slow_python == 1 and fast_python == (0 if c_enters else 1)
    assert fast == slow


def ping_pong_transcript(guests, chain_ns):
    import re

    with Host(memory_mib=256, policy=str(ROOT / "examples/policies/ping-pong.toml"),
              audit=lambda record: None) as host:
        host.machine.core.chain_ns = chain_ns
        scheduler, python_slices = host.machine.scheduler, []
        inner = scheduler.run_slice
        scheduler.run_slice = lambda vcpu: python_slices.append(1) or inner(vcpu)
        doms = [host.create(str(guests / f"{n}.cfg"), overrides=overrides)
                for n, overrides in (("ping", ['extra="peer=pong peer-domid=2 rounds=3000"']),
                                     ("pong", []))]
        assert host.run(timeout=60) == "idle"
        slices = (host.machine.scheduler.slices, len(python_slices))
        text = "".join(d.dmesg_text + d.console_text for d in doms)
    return re.sub(r"in \d+ us, \d+ per second", "", text), slices


def test_switching_in_c_changes_nothing_the_guests_see(guests):
    """Slices chained in C (xc_run_chain) against one slice per Python
    round: the same transcript, and as many slices (one per block)."""
    chained, (slices, from_python) = ping_pong_transcript(guests, 10 ** 9)
    one_by_one, (slices_0, from_python_0) = ping_pong_transcript(guests, 0)
    assert "ping: 3000 round trips" in chained and "ping: done" in chained
    assert chained == one_by_one
    assert abs(slices - slices_0) < 100 and slices > 6000
    assert from_python_0 == slices_0 and from_python < slices // 10


@pytest.mark.parametrize("op,python_runs", [
    (("multi", 0, 0), 0),       # every entry answered in C
    (("multi", 0, 1), 1),       # the rest of the list handed to Python's multicall
    (("mmu", 0, 0), 0),         # plain L1 updates
    (("mmu", 0, 1), 1),         # the rest of the batch handed to Python
    (("send", 0, 0), 0),
    (("poll2", 0, 0), 1),
])
def test_every_hand_off_to_python_is_counted(guests, op, python_runs):
    """A chain of C slices (xc_run_chain) ends once Python has run: each
    hand-off to Python, whole call or rest of a batch, is counted."""
    pair = Pair(guests, True)
    try:
        core = pair.host.machine.core
        before = core.py_calls
        pair.apply(op)
        assert core.py_calls - before == python_runs
    finally:
        pair.close()
