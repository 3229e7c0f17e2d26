"""VCPUOP_send_nmi and VCPUOP_get_physid as Xen 4.17's do_vcpu_op
(arch/x86/domain.c) answers a PV domU, and the NMI's delivery as entry.S's
process_nmi makes it: through trap_ctxt[TRAP_nmi] (the NMI callback),
masked until the guest's iret, dropped with no handler."""
import re
import struct

import pytest

from pyxenon.hypervisor import traps
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import arch_x86, callback, errno, vcpu as vc, xen

PAGE = 4096
UNMAPPED = 0x10
HLT = b"\xf4"         # #GP for a PV kernel with no trap table: a crash report of the registers


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def send_nmi(dom, target=0, arg=0, vcpu=0):
    return dom.vcpus[vcpu].hypercall(xen.HYPERVISOR_vcpu_op, vc.VCPUOP_send_nmi, target, arg)


def register_nmi(dom, address, vcpu=0):
    v = dom.vcpus[vcpu]
    copy_to_guest(v, scratch(dom, 2), struct.pack("<QQ", address, 0))
    assert v.hypercall(xen.HYPERVISOR_nmi_op, callback.XENNMI_register_callback, scratch(dom, 2)) == 0


def run_to_hlt(host, dom):
    """Run vcpu 0 from a hlt at scratch(dom, 1) with its stack at
    scratch(dom, 3): the registers of the crash report."""
    vcpu = dom.vcpus[0]
    copy_to_guest(vcpu, scratch(dom), HLT)
    vcpu.set_regs(rip=scratch(dom), rsp=scratch(dom, 3))
    host.run(timeout=10)
    assert dom.crash_report, "the run should end at a hlt"
    return {k: int(v, 16) for k, v in re.findall(r"(\w+)=([0-9a-f]{8,16})", dom.crash_report)}


def test_send_nmi_wants_a_null_argument_and_a_vcpu(dom):
    assert send_nmi(dom, arg=UNMAPPED) == -errno.EINVAL
    assert send_nmi(dom, target=1) == -errno.ENOENT
    assert not dom.vcpus[0].nmi_pending
    assert send_nmi(dom) == 0
    assert dom.vcpus[0].nmi_pending


def test_get_physid_is_the_hardware_domains(dom):
    v = dom.vcpus[0]
    assert v.hypercall(xen.HYPERVISOR_vcpu_op, vc.VCPUOP_get_physid, 0, UNMAPPED) == -errno.EINVAL
    assert v.hypercall(xen.HYPERVISOR_vcpu_op, vc.VCPUOP_get_physid, 1, UNMAPPED) == -errno.ENOENT


def test_the_nmi_enters_the_callback_on_the_way_back(host, dom):
    handler = scratch(dom) + 0x100
    copy_to_guest(dom.vcpus[0], handler, HLT)
    register_nmi(dom, handler)
    assert send_nmi(dom) == 0
    regs = run_to_hlt(host, dom)
    assert regs["rip"] == handler                  # the handler's hlt, not the code's
    assert regs["rsp"] == scratch(dom, 3) - 7 * 8  # a bounce frame: rcx, r11, rip, cs, rflags, rsp, ss


def test_the_nmi_bounce_frame(dom):
    v = dom.vcpus[0]
    handler = scratch(dom) + 0x100
    register_nmi(dom, handler)
    v.set_regs(rip=scratch(dom), rsp=scratch(dom, 3))
    dom.vcpu_info(0).evtchn_upcall_mask = 0
    send_nmi(dom)
    traps.test_all_events(v)
    regs = v.regs()
    assert regs["rip"] == handler
    _rcx, _r11, rip, cs, rflags, rsp, _ss = struct.unpack("<7Q", copy_from_guest(v, regs["rsp"], 56))
    assert (rip, rsp) == (scratch(dom), scratch(dom, 3))
    assert cs >> 32 == 0 and rflags & 0x200        # the saved event mask: unmasked then
    assert dom.vcpu_info(0).evtchn_upcall_mask == 1   # TI_SET_IF: events masked in the handler
    assert not v.nmi_pending and v.nmi_masked


def test_no_handler_drops_the_nmi(host, dom):
    assert send_nmi(dom) == 0
    regs = run_to_hlt(host, dom)
    assert regs["rip"] == scratch(dom)
    assert not dom.vcpus[0].nmi_pending and not dom.vcpus[0].nmi_masked


def iret(dom, rip):
    """HYPERVISOR_iret back to rip in guest kernel mode (RPL 0 in the frame's cs)."""
    v = dom.vcpus[0]
    ctx = arch_x86.iret_context(rax=7, rip=rip, cs=0xE030, rflags=0x200, rsp=scratch(dom, 3), ss=0xE02B)
    copy_to_guest(v, scratch(dom, 3) - 128, bytes(ctx))
    v.set_regs(rsp=scratch(dom, 3) - 128)
    return v.hypercall(xen.HYPERVISOR_iret)


def test_nmis_are_masked_until_iret(dom):
    v = dom.vcpus[0]
    handler = scratch(dom) + 0x100
    register_nmi(dom, handler)
    v.set_regs(rip=scratch(dom), rsp=scratch(dom, 3))
    send_nmi(dom)
    send_nmi(dom)                                  # lost: one is already pending
    traps.test_all_events(v)
    assert v.regs()["rip"] == handler and not v.nmi_pending
    traps.test_all_events(v)
    assert v.regs()["rip"] == handler              # nothing more to deliver
    send_nmi(dom)
    v.set_regs(rip=scratch(dom))
    traps.test_all_events(v)
    assert v.regs()["rip"] == scratch(dom) and v.nmi_pending    # masked: it waits
    assert iret(dom, scratch(dom)) == 7
    assert not v.nmi_masked
    traps.test_all_events(v)
    assert v.regs()["rip"] == handler and v.nmi_masked and not v.nmi_pending


def test_the_trap_tables_vector_2_is_the_nmi_callback(dom):
    """register_guest_nmi_callback writes trap_ctxt[TRAP_nmi]: set_trap_table's
    vector 2 is the same slot, and callback_op's unregister clears it."""
    v = dom.vcpus[0]
    handler = scratch(dom) + 0x200
    ti = arch_x86.trap_info(vector=2, flags=0, cs=0xE033, address=handler)
    copy_to_guest(v, scratch(dom, 2), bytes(ti) + bytes(arch_x86.trap_info()))
    assert v.hypercall(xen.HYPERVISOR_set_trap_table, scratch(dom, 2)) == 0
    v.set_regs(rip=scratch(dom), rsp=scratch(dom, 3))
    dom.vcpu_info(0).evtchn_upcall_mask = 0
    send_nmi(dom)
    traps.test_all_events(v)
    assert v.regs()["rip"] == handler
    assert dom.vcpu_info(0).evtchn_upcall_mask == 0    # this entry does not mask events
    reg = callback.callback_unregister(type=callback.CALLBACKTYPE_nmi)
    copy_to_guest(v, scratch(dom, 2), bytes(reg))
    assert v.hypercall(xen.HYPERVISOR_callback_op, callback.CALLBACKOP_unregister, scratch(dom, 2)) == 0
    assert 2 not in v.trap_table


def test_an_nmi_ends_a_block(guests, host):
    dom = host.create(str(guests / "smp.cfg"))
    target = dom.vcpus[1]
    target.runnable = False
    assert send_nmi(dom, target=1) == 0
    assert target.runnable and target.nmi_pending
