"""Several vcpus per domain: xl.cfg's vcpus/maxvcpus, VCPUOP_initialise/
up/down/is_up as Xen 4.17's do_vcpu_op and arch_set_info_guest, events
to the vcpu a port is bound to, and the guests/smp guest that brings its
secondary vcpus up and tries the contexts Xen refuses."""
import ctypes
import re
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import arch_x86, event_channel as ev, vcpu as vc, xen
from pyxenon.toolstack.host import Host

PAGE = 4096
EINVAL, ENOENT, EEXIST = -22, -2, -17
SMP_ATTEMPTS = 30
AS_XEN = (": refused as Xen does", ": allowed as Xen does")


def story(dom):
    return f"{dom.dmesg_text}\n{dom.crash_report or ''}"


@pytest.fixture(scope="module", params=[False, True], ids=["wallclock", "deterministic"])
def smp_run(request, guests):
    with Host(memory_mib=256, deterministic=request.param) as host:
        dom = host.create(str(guests / "smp.cfg"))
        host.run(timeout=60)
        yield dom


@pytest.mark.parametrize("n", range(1, SMP_ATTEMPTS + 1))
def test_smp_attempt_answered_as_xen_does(smp_run, n):
    lines = [line for line in smp_run.dmesg_text.splitlines()
             if re.match(rf"^smp: \[\s*{n}\] ", line)]
    assert len(lines) == 1, story(smp_run)
    assert lines[0].endswith(AS_XEN), lines[0]


def test_smp_guest_ends_with_every_attempt_as_xen_and_powers_off(smp_run):
    assert f"smp: {SMP_ATTEMPTS}/{SMP_ATTEMPTS} attempts refused" in smp_run.dmesg_text, \
        story(smp_run)
    assert re.search(r"^smp: 1000 IPI round trips in \d+ ns$", smp_run.dmesg_text, re.M)
    assert smp_run.shutdown_reason == "poweroff" and smp_run.crash_report is None


# -- host-side: the domain's vcpus and VCPUOP_initialise's checks ---------------------

@pytest.fixture
def quad(guests):
    """hello with 2 vcpus online of 4 (the guest itself brings up none)."""
    with Host(memory_mib=256) as host:
        dom = host.create(str(guests / "hello.cfg"), overrides=["vcpus=2", "maxvcpus=4"])
        yield host, dom


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def context(dom, **changes):
    """A valid context for a secondary vcpu: kernel mode on the boot L4."""
    c = arch_x86.vcpu_guest_context()
    c.flags = arch_x86.VGCF_in_kernel
    c.user_regs.rip = dom.layout.virt_base
    c.user_regs.rsp = dom.layout.stack + PAGE
    c.user_regs.cs, c.user_regs.ss, c.kernel_ss = 0xE033, 0xE02B, 0xE02B
    c.ctrlreg[3] = dom.vcpus[0].core.kernel_cr3 << 12
    for name, value in changes.items():
        setattr(c, name, value)
    return c


def initialise(hypercall, dom, c, target=1, caller=0):
    va = scratch(dom, 2)
    copy_to_guest(dom.vcpus[caller], va, bytes(c))
    return hypercall(dom, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_initialise, target, va,
                     vcpu=caller)


def vcpu_op(hypercall, dom, cmd, target, arg=0, caller=0):
    return hypercall(dom, xen.HYPERVISOR_vcpu_op, cmd, target, arg, vcpu=caller)


def test_vcpus_and_maxvcpus_make_every_vcpu_the_rest_down(quad, hypercall):
    host, dom = quad
    assert len(dom.vcpus) == 4
    assert [v.up for v in dom.vcpus] == [True, False, False, False]
    assert [vcpu_op(hypercall, dom, vc.VCPUOP_is_up, i) for i in range(5)] == [1, 0, 0, 0, ENOENT]
    home = f"/local/domain/{dom.domid}/cpu"
    assert [host.xenstore.read(f"{home}/{i}/availability") for i in range(4)] == \
        [b"online", b"online", b"offline", b"offline"]
    assert {v.vcpu_id for v in host.machine.scheduler.ready() if v.domain is dom} == {0}


def test_maxvcpus_below_vcpus_is_one_line(tmp_path, guests):
    from pyxenon.errors import UserInputError
    from pyxenon.toolstack.xlcfg import load_cfg

    cfg = tmp_path / "bad.cfg"
    cfg.write_text(f'name="x"\nkernel="{guests}/hello/hello.elf"\nvcpus=4\nmaxvcpus=2\n')
    with pytest.raises(UserInputError, match=r"maxvcpus \(2\) is less than vcpus \(4\)"):
        load_cfg(str(cfg))
    cfg.write_text(f'name="x"\nkernel="{guests}/hello/hello.elf"\nvcpus=33\n')
    with pytest.raises(UserInputError, match="more than pyxenon's 32"):
        load_cfg(str(cfg))


def test_a_down_vcpu_reports_runstate_offline(quad, hypercall):
    _, dom = quad
    va = scratch(dom)
    assert vcpu_op(hypercall, dom, vc.VCPUOP_get_runstate_info, 2, va) == 0
    state = struct.unpack("<i", copy_from_guest(dom.vcpus[0], va, 4))[0]
    assert state == vc.RUNSTATE_offline


def test_up_needs_a_context_and_initialise_takes_one_once(quad, hypercall):
    _, dom = quad
    assert vcpu_op(hypercall, dom, vc.VCPUOP_up, 1) == EINVAL
    l4 = dom.vcpus[0].core.kernel_cr3
    count = dom.machine.core.frames[l4].type_count
    assert initialise(hypercall, dom, context(dom)) == 0
    assert dom.machine.core.frames[l4].type_count == count + 1   # vcpu 1's base pointer
    assert not dom.vcpus[1].up and dom.vcpus[1].initialised
    assert initialise(hypercall, dom, context(dom)) == EEXIST
    assert vcpu_op(hypercall, dom, vc.VCPUOP_up, 1) == 0 and dom.vcpus[1].up
    regs = dom.vcpus[1].regs()
    assert regs["rip"] == dom.layout.virt_base and regs["rflags"] & 0x200


def test_initialise_with_vgcf_online_comes_up(quad, hypercall):
    _, dom = quad
    c = context(dom, flags=arch_x86.VGCF_in_kernel | arch_x86.VGCF_online)
    assert initialise(hypercall, dom, c, target=3) == 0 and dom.vcpus[3].up


def test_selectors_are_fixed_up_to_rpl_3_not_refused(quad, hypercall):
    """fixup_guest_code_selector / fixup_guest_stack_selector."""
    _, dom = quad
    c = context(dom, kernel_ss=0xE028)
    c.user_regs.cs, c.user_regs.ss = 0xE030, 0xE028
    c.trap_ctxt[14].cs, c.trap_ctxt[14].address = 0xE030, dom.layout.virt_base
    assert initialise(hypercall, dom, c) == 0
    v = dom.vcpus[1]
    assert v.selectors == (0xE033, 0xE02B) and v.kernel_ss == 0xE02B
    assert v.trap_table[14][1] == 0xE033


@pytest.mark.parametrize("what", ["rip", "gs_base_user", "callback", "trap", "ldt", "cr3",
                                  "user_cr3", "gdt", "gdt_count", "user_mode"])
def test_a_refused_context_keeps_nothing(quad, hypercall, what):
    """Each refusal is Xen's -EINVAL and leaves no reference behind: the
    frames' counts are what they were and the vcpu is still not initialised."""
    _, dom = quad
    frames = dom.machine.core.frames
    data_mfn = dom.pfn_to_mfn(dom.layout.pfn(scratch(dom, 3)))
    l4 = dom.vcpus[0].core.kernel_cr3
    gdt_ok = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 2)   # an unmapped frame
    c = context(dom, gdt_ents=16)
    c.gdt_frames[0] = gdt_ok
    bad = {"rip": lambda: setattr(c.user_regs, "rip", 1 << 47),
           "gs_base_user": lambda: setattr(c, "gs_base_user", 1 << 63),
           "callback": lambda: setattr(c, "event_callback_eip", 1 << 47),
           "trap": lambda: setattr(c.trap_ctxt[3], "address", 1 << 47),
           "ldt": lambda: (setattr(c, "ldt_base", 0x1000 + 8), setattr(c, "ldt_ents", 1)),
           "cr3": lambda: c.ctrlreg.__setitem__(3, data_mfn << 12),
           "user_cr3": lambda: c.ctrlreg.__setitem__(1, data_mfn << 12),
           "gdt": lambda: c.gdt_frames.__setitem__(0, data_mfn),
           "gdt_count": lambda: setattr(c, "gdt_ents", 15 * 512),
           "user_mode": lambda: setattr(c, "flags", 0)}
    bad[what]()
    before = [(frames[m].count, frames[m].type_count) for m in (l4, data_mfn, gdt_ok)]
    assert initialise(hypercall, dom, c) == EINVAL
    assert [(frames[m].count, frames[m].type_count) for m in (l4, data_mfn, gdt_ok)] == before
    assert not dom.vcpus[1].initialised
    assert initialise(hypercall, dom, context(dom)) == 0   # a good one still goes in


def test_a_foreign_cr3_is_refused(guests, hypercall):
    with Host(memory_mib=256) as host:
        a = host.create(str(guests / "hello.cfg"), overrides=["maxvcpus=2", 'name="a"'])
        b = host.create(str(guests / "hello.cfg"), overrides=['name="b"'])
        c = context(a)
        c.ctrlreg[3] = b.vcpus[0].core.kernel_cr3 << 12
        assert initialise(hypercall, a, c) == EINVAL
        c = context(a, gdt_ents=1)
        c.gdt_frames[0] = b.pfn_to_mfn(b.layout.pfn(b.layout.virt_end) + 2)
        assert initialise(hypercall, a, c) == EINVAL


def test_down_is_xens_the_last_vcpu_down_powers_off(quad, hypercall):
    """common/domain.c VCPUOP_down: another vcpu up -> this one goes down
    (vcpu 0 too); none -> SHUTDOWN_poweroff and the vcpu stays up."""
    _, dom = quad
    assert vcpu_op(hypercall, dom, vc.VCPUOP_down, 1) == 0   # vcpu 1 (never initialised) is down already: 0
    assert [v.up for v in dom.vcpus] == [True, False, False, False]
    assert initialise(hypercall, dom, context(dom)) == 0
    assert vcpu_op(hypercall, dom, vc.VCPUOP_up, 1) == 0
    assert vcpu_op(hypercall, dom, vc.VCPUOP_down, 0) == 0
    assert not dom.vcpus[0].up and dom.state == "running"
    assert vcpu_op(hypercall, dom, vc.VCPUOP_down, 1, caller=1) == 0
    assert dom.shutdown_reason == "poweroff" and dom.vcpus[1].up


def test_singleshot_timer_is_a_vcpus_own(quad, hypercall):
    _, dom = quad
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, struct.pack("<QI", dom.machine.now() + 10 ** 9, 0))
    assert vcpu_op(hypercall, dom, vc.VCPUOP_set_singleshot_timer, 1, va) == EINVAL
    assert vcpu_op(hypercall, dom, vc.VCPUOP_stop_singleshot_timer, 1) == EINVAL
    assert initialise(hypercall, dom, context(dom)) == 0   # its address space, for arg
    assert vcpu_op(hypercall, dom, vc.VCPUOP_set_singleshot_timer, 1, va, caller=1) == 0
    assert dom.vcpus[1].timer_at and not dom.vcpus[0].timer_at


def test_per_vcpu_timer_virq_goes_to_its_vcpu(quad, hypercall):
    _, dom = quad
    ports = [dom.events.bind_virq(ev.VIRQ_TIMER, i) for i in (0, 1)]
    for info in dom.shared_info.vcpu_info[:2]:
        info.evtchn_upcall_pending = 0
    dom.vcpus[1].timer_at = 1
    dom.machine.scheduler.fire_timers(dom.machine.now())
    assert dom.events.is_pending(ports[1]) and not dom.events.is_pending(ports[0])
    assert dom.shared_info.vcpu_info[1].evtchn_upcall_pending
    assert not dom.shared_info.vcpu_info[0].evtchn_upcall_pending


def test_a_global_virq_follows_bind_vcpu(quad, hypercall):
    _, dom = quad
    port = dom.events.bind_virq(ev.VIRQ_CON_RING, 0)
    dom.events.bind_vcpu(port, 1)
    dom.shared_info.vcpu_info[1].evtchn_upcall_pending = 0
    dom.events.raise_virq(dom.events.ports[port].virq, 0)
    assert dom.shared_info.vcpu_info[1].evtchn_upcall_pending


def test_a_poller_on_another_vcpu_wakes_on_an_unmasked_port(quad):
    """evtchn_check_pollers: a poll is ended by the port going pending,
    whichever vcpu the port notifies and masked or not."""
    _, dom = quad
    port = dom.events.bind_ipi(0)
    dom.vcpus[1].block(ports={port})
    dom.events.send(port)
    assert dom.vcpus[1].runnable


def test_vcpus_share_the_engine_fairly(guests):
    """Round robin per vcpu: Xen's credit2 with the default weight gives
    every runnable vcpu the same share, whichever domain it is in."""
    with Host(memory_mib=256, deterministic=True) as host:
        dom = host.create(str(guests / "hello.cfg"), overrides=["maxvcpus=3"])
        other = host.create(str(guests / "hello.cfg"), overrides=['name="other"'])
        ids = [(v.domain.domid, v.vcpu_id) for v in host.machine.scheduler.ready()]
        assert ids == [(dom.domid, 0), (other.domid, 0)]
        for v in dom.vcpus[1:]:
            v.initialised = True
            v.up = True
        ids = [(v.domain.domid, v.vcpu_id) for v in host.machine.scheduler.ready()]
        assert ids == [(dom.domid, 0), (dom.domid, 1), (dom.domid, 2), (other.domid, 0)]


def test_vcpu_guest_context_is_xens_size():
    assert ctypes.sizeof(arch_x86.vcpu_guest_context) == 5168


# -- TLB flushes naming vcpus (one engine TLB: only the running vcpu's) ----------------

def flushes(host, call):
    """Did call leave a flush pending (the engine's TLB emptied before the
    guest's next instruction)?"""
    core = host.machine.core
    lib_settle(host)
    rc = call()
    pending = bool(core.flush_pending)
    return rc, pending


def lib_settle(host):
    from pyxenon._core import lib

    lib.xc_settle(host.machine.core)


def mask_at(dom, value, n=4):
    va = scratch(dom, n)
    copy_to_guest(dom.vcpus[0], va, struct.pack("<Q", value))
    return va


@pytest.mark.parametrize("cmd", [xen.MMUEXT_TLB_FLUSH_MULTI, xen.MMUEXT_INVLPG_MULTI])
def test_flush_multi_flushes_exactly_when_the_running_vcpu_is_named(quad, hypercall, cmd):
    """Every switch of vcpu empties the engine's TLB, so a vcpu not running
    holds no translation: naming it needs nothing; naming the caller flushes."""
    host, dom = quad
    ops = scratch(dom, 5)

    def multi(mask):
        copy_to_guest(dom.vcpus[0], ops, struct.pack("<IIQQ", cmd, 0, dom.layout.virt_base,
                                                     mask_at(dom, mask)))
        return hypercall(dom, xen.HYPERVISOR_mmuext_op, ops, 1, 0, 0x7FF0)

    assert flushes(host, lambda: multi(0b1110)) == (0, False)
    assert flushes(host, lambda: multi(0b0001)) == (0, True)
    assert flushes(host, lambda: multi(1 << 40)) == (0, False)   # past max_vcpus: ignored
    copy_to_guest(dom.vcpus[0], ops, struct.pack("<IIQQ", cmd, 0, 0, 0x10))
    assert hypercall(dom, xen.HYPERVISOR_mmuext_op, ops, 1, 0, 0x7FF0) == EINVAL


@pytest.mark.parametrize("fast", [True, False])
def test_update_va_mapping_vcpumask(guests, hypercall, fast):
    """UVMF_MULTI: the bitmap's pointer ORed into flags; an unreadable one
    is -EFAULT after the entry changed (__do_update_va_mapping)."""
    with Host(memory_mib=256, fast_paths=fast) as host:
        dom = host.create(str(guests / "hello.cfg"), overrides=["maxvcpus=2"])
        va = scratch(dom, 3)
        ft = dom.machine.frame_table
        table, index = ft.l1_slot(dom.vcpus[0].core.cr3, va)
        pte = ft.read_entry(table, index)

        def uvm(flags):
            return hypercall(dom, xen.HYPERVISOR_update_va_mapping, va, pte, flags)

        assert flushes(host, lambda: uvm(xen.UVMF_INVLPG | mask_at(dom, 0b10))) == (0, False)
        assert flushes(host, lambda: uvm(xen.UVMF_TLB_FLUSH | mask_at(dom, 0b11))) == (0, True)
        assert flushes(host, lambda: uvm(xen.UVMF_TLB_FLUSH | xen.UVMF_ALL)) == (0, True)
        assert uvm(xen.UVMF_TLB_FLUSH | 0x1000) == -14
        assert ft.read_entry(table, index) == pte


def test_the_whole_state_checker_holds_after_every_slice_of_the_smp_guest(guests):
    """Every vcpu's base pointers, GDT frames and vcpu_info are references
    the checker (_core/audit.c, hypervisor/audit.py) accounts for: after
    every slice of the smp guest -- secondaries initialised, refused, downed
    -- counts, types and the TLB shadow agree (a Violation would end run())."""
    from pyxenon.hypervisor import audit

    with Host(memory_mib=256) as host:
        machine, checks = host.machine, []
        audit.shadow_tlb(machine)
        inner = machine.scheduler.run_slice

        def run_slice(vcpu):
            inner(vcpu)
            audit.check(machine)
            checks.append(vcpu.vcpu_id)
        machine.scheduler.run_slice = run_slice
        dom = host.create(str(guests / "smp.cfg"), overrides=['extra="rounds=50"'])
        host.run(timeout=60)
        assert f"smp: {SMP_ATTEMPTS}/{SMP_ATTEMPTS} attempts refused" in dom.dmesg_text, story(dom)
        assert {0, 1} <= set(checks)     # (vcpu 2 may run only within a chain of slices)
