"""VCPUOP_initialise: a down vcpu's state from the guest's x86_64 PV
vcpu_guest_context, checked as Xen 4.17's arch_set_info_guest
(arch/x86/domain.c) checks it for a 64-bit PV domain.

Order matters where Xen's does: every check of the context comes first
(canonical addresses, selectors, LDT, GDT size), then the references --
the GDT frames (pv_set_gdt) and the base pointers (get_page_type as
PGT_root_page_table) -- and only when all of them are held does the vcpu
take the context and become initialised.  A failure releases what was
taken, as Xen's error path does (pv_destroy_gdt, put_page).

What the engine cannot take: the selectors.  Every vcpu runs in the
engine's ring-3 flat 64-bit segments (FLAT_KERNEL_CS/SS, the ones Xen's
builder and Linux give a 64-bit vcpu); the context's cs and ss are fixed
up as Xen's fixup_guest_*_selector does (RPL 3 for a 64-bit guest) and
kept, but not loaded.  The FPU image is not loaded either (no guest here
hands one: Linux's cpu_initialize_context leaves it empty).
"""
from pyxenon._core import lib
from pyxenon.hypervisor import debugreg
from pyxenon.hypervisor.emulate import set_guest_cr4
from pyxenon.hypervisor.errors import Continuation, HypercallError
from pyxenon.hypervisor.mm import ERESTART
from pyxenon.public import arch_x86, callback, errno

from .descriptor import pv_set_gdt, release_gdt
from .traps import canonical, register_callback

IOPL = 3 << 12
IF = 1 << 9
CR0_TS = 0x8
GDT_FRAMES = arch_x86.FIRST_RESERVED_GDT_PAGE   # ARRAY_SIZE(v->arch.pv.gdt_frames)
GUEST_KERNEL_RPL = 3                            # a 64-bit PV guest's (GUEST_KERNEL_RPL)
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def fixup_selector(sel):
    """__fixup_guest_selector: an RPL below the guest kernel's is raised to it."""
    return sel if sel & 3 >= GUEST_KERNEL_RPL else (sel & ~3) | GUEST_KERNEL_RPL


def addr_ok(address):
    """__addr_ok: the lower half, or above Xen's reserved range."""
    return address < 1 << 47 or address >= arch_x86.HYPERVISOR_VIRT_END


def check_addresses(c):
    """The 64-bit context's addresses: canonical, the LDT's outside Xen's range."""
    regs = c.user_regs
    addresses = [regs.rip, regs.rsp, c.kernel_sp, c.fs_base, c.gs_base_kernel,
                 c.gs_base_user, c.event_callback_eip, c.syscall_callback_eip,
                 c.failsafe_callback_eip]
    if c.ldt_ents:
        addresses.append(c.ldt_base)
    if not all(canonical(a) for a in addresses):
        raise HypercallError(errno.EINVAL)
    if not all(canonical(t.address) for t in c.trap_ctxt) or not addr_ok(c.ldt_base):
        raise HypercallError(errno.EINVAL)
    if c.ldt_base & 0xFFF or c.ldt_ents > 8192:       # "LDT safety checks"
        raise HypercallError(errno.EINVAL)


def check_context(c):
    """Everything arch_set_info_guest refuses before it takes a reference."""
    check_addresses(c)
    c.user_regs.ss = fixup_selector(c.user_regs.ss)
    c.kernel_ss = fixup_selector(c.kernel_ss)
    c.user_regs.cs = fixup_selector(c.user_regs.cs)
    for t in c.trap_ctxt:
        t.cs = fixup_selector(t.cs)
    if -(-c.gdt_ents // 512) > GDT_FRAMES:
        raise HypercallError(errno.EINVAL)
    if not c.flags & arch_x86.VGCF_in_kernel and not c.ctrlreg[1]:
        raise HypercallError(errno.EINVAL)         # user mode needs a user table


def take_references(caller, target, c):
    """The GDT frames, then the kernel and the user base pointers; on any
    failure none is kept (Xen: put_page, pv_destroy_gdt)."""
    frames = target.domain.machine.frame_table
    frames.put_old_guest_table(caller)      # put_old_guest_table(current)
    pv_set_gdt(target, list(c.gdt_frames[:-(-c.gdt_ents // 512)]), c.gdt_ents)
    try:
        # get_page_from_mfn + get_page_type_preemptible(PGT_root_page_table):
        # -EINVAL for a frame not the domain's, or one that cannot be an L4
        frames.set_base(target, c.ctrlreg[3] >> 12)
    except HypercallError:
        release_gdt(target, frames)
        raise
    try:
        if c.ctrlreg[1]:
            frames.set_base(target, c.ctrlreg[1] >> 12, user=True)
    except HypercallError:
        drop_kernel_base(target)
        release_gdt(target, frames)
        raise


def drop_kernel_base(target):
    """Undo take_base's kernel table (the vcpu had none before)."""
    mfn = target.core.kernel_cr3
    target.core.kernel_cr3 = target.core.cr3 = 0
    target.domain.machine.frame_table.put_page_and_type(mfn, target)


def load_registers(target, c):
    regs = c.user_regs
    in_kernel = bool(c.flags & arch_x86.VGCF_in_kernel)
    values = {name: getattr(regs, name) for name in GPRS}
    # IOPL privileges are virtualised; real interrupts stay enabled.
    target.core.iopl = regs.rflags >> 12 & 3
    values["rflags"] = (regs.rflags & ~IOPL) | IF
    values.update(rip=regs.rip, fs_base=c.fs_base,
                  gs_base=c.gs_base_kernel if in_kernel else c.gs_base_user)
    target.set_regs(**values)
    target.gs_base_other = c.gs_base_user if in_kernel else c.gs_base_kernel
    target.core.kernel_mode = int(in_kernel)
    if not in_kernel:
        target.core.cr3 = target.core.user_cr3
    target.selectors = (regs.cs, regs.ss)    # fixed up; the engine runs its own
    m = target.domain.machine.core
    cr0 = lib.xc_get_cr0(m, target.core)      # only CR0.TS is the guest's
    lib.xc_set_cr0(m, target.core, cr0 & ~CR0_TS | c.ctrlreg[0] & CR0_TS)


def load_traps(target, c):
    """trap_ctxt is indexed by vector (Xen copies it whole); address 0: none."""
    target.trap_table = {i: (t.flags, t.cs, t.address)
                         for i, t in enumerate(c.trap_ctxt) if t.address}
    target.kernel_ss, target.kernel_sp = c.kernel_ss, c.kernel_sp
    target.ldt = (c.ldt_base, c.ldt_ents)
    target.callbacks = {}
    target.core.event_callback = 0
    syscall = callback.CALLBACKF_mask_events if c.flags & arch_x86.VGCF_syscall_disables_events else 0
    failsafe = callback.CALLBACKF_mask_events if c.flags & arch_x86.VGCF_failsafe_disables_events else 0
    for kind, address, flags in ((callback.CALLBACKTYPE_event, c.event_callback_eip, 0),
                                 (callback.CALLBACKTYPE_failsafe, c.failsafe_callback_eip, failsafe),
                                 (callback.CALLBACKTYPE_syscall, c.syscall_callback_eip, syscall)):
        if address:
            register_callback(target, kind, address, flags)


def load_debugregs(target, c):
    """Reset, then each one as set_debugreg takes it; Xen ignores its
    refusals here (arch_set_info_guest drops set_debugreg's result)."""
    target.debugreg = debugreg.reset_values()
    target.dr7_emul = 0
    for reg in (0, 1, 2, 3, 6, 7):
        try:
            debugreg.set_debugreg(target, reg, c.debugreg[reg])
        except HypercallError:
            pass


def initialise(caller, target, c, restart_args):
    """arch_set_info_guest for a vcpu not yet initialised."""
    if target.initialised:
        raise HypercallError(errno.EEXIST)
    check_context(c)
    try:
        take_references(caller, target, c)
    except HypercallError as e:
        if e.errno == ERESTART:     # a large new table: continue the validation
            raise Continuation(*restart_args) from None
        raise
    load_registers(target, c)
    load_traps(target, c)
    set_guest_cr4(target, c.ctrlreg[4])
    load_debugregs(target, c)
    target.initialised = True
    target.up = bool(c.flags & arch_x86.VGCF_online)
    return 0

