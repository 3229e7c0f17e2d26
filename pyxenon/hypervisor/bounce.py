"""Delivering an exception, a system call or an event to the guest kernel.

Xen's x86_64 PV bounce frame, built on the guest kernel stack (the
registered kernel stack when the vcpu was in guest user mode, after
switching to kernel mode; the current stack, 16-byte aligned, otherwise):

    rcx, r11, [error code,] rip, cs, rflags, rsp, ss      (lowest address first)

cs carries the saved event mask in bits 32-39 and has its RPL cleared when
the vcpu was already in kernel mode, so the guest can tell the two apart;
rflags.IF is the virtual one (the inverse of the saved event mask).  A frame
that cannot be written crashes the domain, as Xen's failsafe path does.
"""
import struct

from pyxenon._core import lib
from pyxenon.public.xen import VMASST_TYPE_architectural_iopl

from .errors import GuestFault
from .guestmem import copy_to_guest

IF, IOPL = 0x200, 0x3000
CLEARED_ON_TRAP = 0x100 | 0x4000 | 0x10000 | 0x20000 | 0x40000   # TF NT RF VM AC
HYPERVISOR_VIRT_START = 0xFFFF800000000000
HYPERVISOR_VIRT_END = 0xFFFF880000000000


def toggle_guest_mode(vcpu):
    """Switch between guest kernel and guest user mode: base pointer and
    the two GS bases change places."""
    core = vcpu.core
    regs = vcpu.regs()
    vcpu.set_regs(gs_base=vcpu.gs_base_other)
    vcpu.gs_base_other = regs["gs_base"]
    core.kernel_mode = 0 if core.kernel_mode else 1
    core.cr3 = core.kernel_cr3 if core.kernel_mode else core.user_cr3
    lib.xc_request_flush(vcpu.domain.machine.core)


def frame_words(regs, cs, saved_mask, error_code, iopl_bits=0):
    rflags = (regs["rflags"] & ~(IF | IOPL)) | (0 if saved_mask else IF) | iopl_bits
    words = [regs["rcx"], regs["r11"]]
    if error_code is not None:
        words.append(error_code & 0xFFFFFFFF)
    return words + [regs["rip"], cs | saved_mask << 32, rflags, regs["rsp"], regs["ss"]]


def virtual_iopl_bits(vcpu):
    """create_bounce_frame folds the virtual IOPL into the frame's rflags
    when the domain has VMASST_TYPE_architectural_iopl (x86_64/entry.S)."""
    if vcpu.domain.vm_assist >> VMASST_TYPE_architectural_iopl & 1:
        return (vcpu.core.iopl & 3) << 12
    return 0


def stack_ok(sp):
    return not (HYPERVISOR_VIRT_START - 64 <= sp < HYPERVISOR_VIRT_END + 64)


def bounce(vcpu, address, error_code=None, mask_events=False):
    """Enter the guest kernel at address with a bounce frame. Returns False
    (after crashing the domain) when the frame cannot be built."""
    regs = vcpu.regs()
    cs = regs["cs"]
    if not lib.xc_code64(vcpu.domain.machine.core, vcpu.core):
        # Xen's bounce loads the kernel's 64-bit CS; the host cannot load
        # one into the engine, and the handler would run truncated.
        vcpu.domain.crash(f"cannot deliver to the guest kernel from 32-bit, 16-bit or "
                          f"virtual-8086 code: cs {cs:#x}, rip {regs['rip']:#x}")
        return False
    if vcpu.core.kernel_mode:
        sp, cs = regs["rsp"], cs & ~3
    else:
        toggle_guest_mode(vcpu)
        sp = vcpu.kernel_sp
    info = vcpu.domain.vcpu_info(vcpu.vcpu_id)
    saved_mask = info.evtchn_upcall_mask & 0xFF
    words = frame_words(regs, cs, saved_mask, error_code, virtual_iopl_bits(vcpu))
    sp = (sp & ~0xF) - 8 * len(words)
    if not address or not stack_ok(sp) or not write_frame(vcpu, sp, words):
        vcpu.domain.crash(f"cannot deliver to the guest kernel: handler {address:#x}, "
                          f"stack {sp:#x} (failsafe)")
        return False
    if mask_events:
        info.evtchn_upcall_mask = 1
    vcpu.set_regs(rip=address, rsp=sp, rflags=regs["rflags"] & ~CLEARED_ON_TRAP)
    return True


def write_frame(vcpu, sp, words):
    try:
        copy_to_guest(vcpu, sp, struct.pack(f"<{len(words)}Q", *words))
    except GuestFault:
        return False
    return True
