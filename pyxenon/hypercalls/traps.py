"""Trap virtualization: the trap table, callbacks, the kernel stack, the
FPU and debug registers, segment bases, and the iret hypercall."""
import ctypes

from pyxenon._core import lib
from pyxenon.hypervisor import debugreg, debugtrap
from pyxenon.hypervisor.bounce import IF, IOPL, toggle_guest_mode
from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import copy_from_guest, read_struct
from pyxenon.public import arch_x86, callback, errno, xen

RFLAGS_VM = 0x20000

CR0_TS = 0x8
MAX_TRAPS = 256


def canonical(address):
    return address < 1 << 47 or address >= (1 << 64) - (1 << 47)


# -- set_trap_table ---------------------------------------------------------------

def do_set_trap_table(vcpu, table, *_):
    """Entries up to the first with address 0; a NULL table clears it."""
    if table == 0:
        vcpu.trap_table = {}
        return 0
    size = ctypes.sizeof(arch_x86.trap_info)
    for i in range(MAX_TRAPS):
        ti = read_struct(vcpu, table + i * size, arch_x86.trap_info)
        if ti.address == 0:
            break
        if not canonical(ti.address):
            raise HypercallError(errno.EINVAL)
        vcpu.trap_table[ti.vector] = (ti.flags, ti.cs | 3, ti.address)
    return 0


# -- callbacks ----------------------------------------------------------------------

CALLBACK_TYPES = {callback.CALLBACKTYPE_event, callback.CALLBACKTYPE_failsafe,
                  callback.CALLBACKTYPE_syscall, callback.CALLBACKTYPE_syscall32,
                  callback.CALLBACKTYPE_sysenter, callback.CALLBACKTYPE_nmi}


TRAP_nmi = 2
TI_IF = 4                       # trap_info.flags: events masked on entry (TI_SET_IF)
FLAT_KERNEL_CS = 0xE033


def register_callback(vcpu, kind, address, flags):
    if kind not in CALLBACK_TYPES or not canonical(address):
        raise HypercallError(errno.EINVAL)
    if kind == callback.CALLBACKTYPE_nmi:
        register_guest_nmi_callback(vcpu, address)
        return
    vcpu.callbacks[kind] = (address, flags)
    if kind == callback.CALLBACKTYPE_event:
        vcpu.core.event_callback = address   # C delivers events in kernel mode


def cb_register(vcpu, arg):
    reg = read_struct(vcpu, arg, callback.callback_register)
    register_callback(vcpu, reg.type, reg.address, reg.flags)
    return 0


def register_guest_nmi_callback(vcpu, address):
    """pv/callback.c: the NMI callback is trap_ctxt[TRAP_nmi], the trap
    table's vector 2, entered with events masked.  (The lost NMI edge it
    re-asserts is the hardware domain's nmi_reason: never a domU's.)"""
    vcpu.trap_table[TRAP_nmi] = (TI_IF, FLAT_KERNEL_CS, address)


def unregister_guest_nmi_callback(vcpu):
    vcpu.trap_table.pop(TRAP_nmi, None)


def cb_unregister(vcpu, arg):
    """Only the NMI callback can be withdrawn (as in Xen)."""
    unreg = read_struct(vcpu, arg, callback.callback_unregister)
    if unreg.type != callback.CALLBACKTYPE_nmi:
        raise HypercallError(errno.EINVAL)
    unregister_guest_nmi_callback(vcpu)
    return 0


def do_nmi_op(vcpu, cmd, arg, *_):
    """do_nmi_op: the NMI callback as CALLBACKTYPE_nmi's; VCPUOP_send_nmi
    delivers through it (hypervisor/traps.py deliver_nmi)."""
    cmd &= 0xFFFFFFFF
    if cmd == callback.XENNMI_register_callback:
        cb = read_struct(vcpu, arg, callback.xennmi_callback)
        register_callback(vcpu, callback.CALLBACKTYPE_nmi, cb.handler_address, 0)
    elif cmd == callback.XENNMI_unregister_callback:
        unregister_guest_nmi_callback(vcpu)
    else:
        raise HypercallError(errno.ENOSYS)
    return 0


CALLBACK_OPS = {callback.CALLBACKOP_register: cb_register,
                callback.CALLBACKOP_unregister: cb_unregister}


def do_callback_op(vcpu, cmd, arg, *_):
    return sub_op(CALLBACK_OPS, cmd)(vcpu, arg)


def do_set_callbacks(vcpu, event, failsafe, syscall, *_):
    register_callback(vcpu, callback.CALLBACKTYPE_event, event, 0)
    register_callback(vcpu, callback.CALLBACKTYPE_failsafe, failsafe, 0)
    register_callback(vcpu, callback.CALLBACKTYPE_syscall, syscall, callback.CALLBACKF_mask_events)
    return 0


def do_stack_switch(vcpu, ss, sp, *_):
    vcpu.kernel_ss = ss | 3
    vcpu.kernel_sp = sp
    return 0


# -- FPU, debug registers, segment bases ----------------------------------------------------

def do_fpu_taskswitch(vcpu, set_ts, *_):
    m = vcpu.domain.machine.core
    cr0 = lib.xc_get_cr0(m, vcpu.core)
    lib.xc_set_cr0(m, vcpu.core, cr0 | CR0_TS if set_ts else cr0 & ~CR0_TS)
    return 0


def do_set_debugreg(vcpu, reg, value, *_):
    """do_set_debugreg: Xen's set_debugreg (int reg, seen unsigned)."""
    debugreg.set_debugreg(vcpu, reg & 0xFFFFFFFF, value)
    return 0


def do_get_debugreg(vcpu, reg, *_):
    """do_get_debugreg: x86emul_read_dr, -ENODEV for what it refuses."""
    return debugreg.read_debugreg(vcpu, reg & 0xFFFFFFFF)


def set_gs_user_sel(vcpu, selector):
    """Load the user %gs selector: only the null selector is meaningful
    without an LDT; its base is 0."""
    if selector & 0xFFFF & ~3:
        raise HypercallError(errno.EINVAL)
    vcpu.gs_base_other = 0


def set_gs(vcpu, base, kernel):
    """The GS base of one mode: live if that mode runs, else the other slot."""
    if bool(vcpu.core.kernel_mode) == kernel:
        vcpu.set_regs(gs_base=base)
    else:
        vcpu.gs_base_other = base


SEGBASE_OPS = {
    arch_x86.SEGBASE_FS: lambda vcpu, base: vcpu.set_regs(fs_base=base),
    arch_x86.SEGBASE_GS_KERNEL: lambda vcpu, base: set_gs(vcpu, base, True),
    arch_x86.SEGBASE_GS_USER: lambda vcpu, base: set_gs(vcpu, base, False),
    arch_x86.SEGBASE_GS_USER_SEL: set_gs_user_sel,
}


def do_set_segment_base(vcpu, which, base, *_):
    op = SEGBASE_OPS.get(which)
    if op is None or (which != arch_x86.SEGBASE_GS_USER_SEL and not canonical(base)):
        raise HypercallError(errno.EINVAL)
    op(vcpu, base)
    return 0


# -- iret -------------------------------------------------------------------------------------

def do_iret(vcpu, *_):
    """Return from a bounce: the guest pushed an iret_context at rsp.  RPL 3
    in cs goes back to guest user mode (which needs a user base pointer);
    rflags.IF becomes the event mask; VGCF_in_syscall leaves rcx/r11 as
    sysret would.  The result is the saved rax."""
    regs = vcpu.regs()
    ctx = arch_x86.iret_context.from_buffer_copy(
        copy_from_guest(vcpu, regs["rsp"], ctypes.sizeof(arch_x86.iret_context)))
    if ctx.cs & 3 == 3 and vcpu.core.kernel_mode:
        if not vcpu.core.user_cr3:
            vcpu.domain.crash("iret to guest user mode without a user page table")
            return 0
        toggle_guest_mode(vcpu)
    # VM cleared as Xen's do_iret does: Unicorn takes RFLAGS.VM as written
    # and would translate the guest's code as virtual-8086 code
    rflags = debugtrap.resume_flag(vcpu, ctx.rip, ctx.rflags)
    new = {"rip": ctx.rip, "rsp": ctx.rsp, "rflags": (rflags & ~(IOPL | RFLAGS_VM)) | IF}
    if not ctx.flags & arch_x86.VGCF_in_syscall:
        new.update(r11=ctx.r11, rcx=ctx.rcx)
    if vcpu.domain.vm_assist >> xen.VMASST_TYPE_architectural_iopl & 1:
        vcpu.core.iopl = ctx.rflags >> 12 & 3       # the virtual IOPL travels in rflags
    vcpu.set_regs(**new)
    vcpu.domain.vcpu_info(vcpu.vcpu_id).evtchn_upcall_mask = 0 if ctx.rflags & IF else 1
    async_exception_cleanup(vcpu)
    return ctx.rax


def async_exception_cleanup(vcpu):
    """pv/iret.c: the iret ends the NMI handler's mask; an NMI that came
    meanwhile is delivered on the way back (the vcpu leaves the engine so
    the scheduler's test_all_events sees it)."""
    vcpu.nmi_masked = False
    if vcpu.nmi_pending:
        vcpu.stop()


OPS = CALLBACK_OPS   # sub-operations on record: callback_op's

HYPERCALLS = {
    xen.HYPERVISOR_set_trap_table: do_set_trap_table,
    xen.HYPERVISOR_callback_op: do_callback_op,
    xen.HYPERVISOR_nmi_op: do_nmi_op,
    xen.HYPERVISOR_set_callbacks: do_set_callbacks,
    xen.HYPERVISOR_stack_switch: do_stack_switch,
    xen.HYPERVISOR_fpu_taskswitch: do_fpu_taskswitch,
    xen.HYPERVISOR_set_debugreg: do_set_debugreg,
    xen.HYPERVISOR_get_debugreg: do_get_debugreg,
    xen.HYPERVISOR_set_segment_base: do_set_segment_base,
    xen.HYPERVISOR_iret: do_iret,
}
