"""mmu_update, update_va_mapping and mmuext_op: every change to a guest's
page tables passes the frame-type checks in hypervisor/mm.py."""
import struct

from pyxenon._core import lib
from pyxenon.hypervisor.errors import (Continuation, GuestFault, HypercallError, preempt_check,
                                       spend, sub_op)
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest, read_u64s
from pyxenon.hypervisor.mm import ERESTART, L1, WRITABLE
from pyxenon.public import errno, xen

DOMID_SELF = 0x7FF0
PREEMPTED = 1 << 31          # MMU_UPDATE_PREEMPTED in a count
REQ = struct.Struct("<QQ")   # struct mmu_update: ptr, val
EXT = struct.Struct("<IxxxxQQ")  # struct mmuext_op: cmd, arg1, arg2


def frame_table(vcpu):
    return vcpu.domain.machine.frame_table


def check_foreign(vcpu, domid):
    """Only DOMID_SELF (or the domain's own id): no domain here is privileged."""
    if domid not in (DOMID_SELF, vcpu.domain.domid):
        if domid not in vcpu.domain.machine.domains:
            raise HypercallError(errno.ESRCH)
        raise HypercallError(errno.EPERM)


def report_done(vcpu, done_va, done):
    """The done count, best effort: do_mmu_update and do_mmuext_op ignore
    copy_to_guest's answer, so an unwritable pdone keeps the result."""
    if done_va:
        try:
            copy_to_guest(vcpu, done_va, struct.pack("<I", done))
        except GuestFault:
            pass


BUDGET = 512     # records per trap; the rest through a continuation


def batch(vcpu, nr, items_va, count, done_va, foreigndom, size, one):
    """Run `one` over count records; stop at the first failure, and write
    how many were done (Xen's partial-failure semantics).  A long batch
    continues as Xen's does: count | PREEMPTED, the done count carried;
    so does one whose record was preempted part-way (-ERESTART), and one
    that left a table's put unfinished (old_guest_table)."""
    ft = frame_table(vcpu)
    if vcpu.core.old_guest_table:
        finish_old_table(ft, vcpu, (items_va, count, done_va, foreigndom))
    if count == PREEMPTED and not items_va:
        return signed32(foreigndom)     # the cleanup's own continuation: the saved result
    check_foreign(vcpu, foreigndom & 0xFFFF)
    preempted = count & PREEMPTED
    count &= ~PREEMPTED
    done = read_done(vcpu, done_va) if preempted else 0
    i = run_records(vcpu, one, (items_va, count, done_va, foreigndom), size, done)
    if i < count:
        raise Continuation(items_va + i * size, (count - i) | PREEMPTED, done_va, foreigndom)
    if vcpu.core.old_guest_table:
        # do_mmu_update / do_mmuext_op: a put the last record deferred (an
        # entry's old table, an unpin, a base pointer) is finished by
        # continuing the hypercall before it returns.  Linux relies on it:
        # it makes a table it just unhooked writable with update_va_mapping,
        # which does not finish it (-EBUSY: its first fork oopsed).
        raise Continuation(0, PREEMPTED, 0, 0)
    return 0


def run_records(vcpu, one, args, size, done):
    """Records until one fails, the trap's share is done, or a table's put
    was left unfinished; how many were done (and the done count written)."""
    items_va, count, done_va, foreigndom = args
    i = 0
    try:
        for raw in records(vcpu, items_va, min(count, BUDGET), size):
            if i and (vcpu.core.old_guest_table or preempt_check(vcpu)):
                break
            run_record(vcpu, one, raw, items_va + i * size, count - i, done_va, foreigndom)
            spend(vcpu, lib.XC_ENTRY_COST)
            i += 1
    finally:
        report_done(vcpu, done_va, (done + i) & 0xFFFFFFFF)   # Xen's unsigned int
    return i


def finish_old_table(ft, vcpu, args):
    """Xen's put_old_guest_table at a batch's start: until it is done, the
    hypercall is made again as it was."""
    try:
        ft.put_old_guest_table(vcpu)
    except HypercallError as e:
        if e.errno == ERESTART:
            raise Continuation(*args) from None
        raise


def run_record(vcpu, one, raw, va, left, done_va, foreigndom):
    try:
        one(raw)
    except HypercallError as e:
        if e.errno == ERESTART:          # this record continues where it stopped
            raise Continuation(va, left | PREEMPTED, done_va, foreigndom) from None
        if vcpu.core.old_guest_table:    # undo the failed table first, then fail
            raise Continuation(0, PREEMPTED, 0, -e.errno & 0xFFFFFFFF) from None
        raise


def signed32(value):
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def read_done(vcpu, done_va):
    """A continuation's carried count; (void)copy_from_guest in Xen: an
    unreadable pdone counts from 0."""
    try:
        return struct.unpack("<I", copy_from_guest(vcpu, done_va, 4))[0] if done_va else 0
    except GuestFault:
        return 0


def records(vcpu, va, count, size):
    """The count records at va: read at once when the whole array is
    readable, else one by one (so a fault stops at the right record)."""
    try:
        data = copy_from_guest(vcpu, va, count * size) if count <= 4096 else None
    except GuestFault:
        data = None
    for i in range(count):
        yield data[i * size:(i + 1) * size] if data is not None else \
            copy_from_guest(vcpu, va + i * size, size)


# -- mmu_update -------------------------------------------------------------------

def machphys_update(vcpu, ptr, val):
    ft = frame_table(vcpu)
    mfn = ptr >> 12
    if not ft.owned(mfn, vcpu.domain):
        raise HypercallError(errno.EINVAL)
    vcpu.domain.machine.m2p[mfn] = val


NORMAL_UPDATES = (xen.MMU_NORMAL_PT_UPDATE, xen.MMU_PT_UPDATE_PRESERVE_AD,
                  xen.MMU_PT_UPDATE_NO_TRANSLATE)


def one_update(vcpu, raw):
    ptr, val = REQ.unpack(raw)
    cmd = ptr & 3
    ptr &= ~3
    if cmd in NORMAL_UPDATES:
        frame_table(vcpu).normal_update(vcpu, ptr, val, cmd == xen.MMU_PT_UPDATE_PRESERVE_AD)
    else:
        machphys_update(vcpu, ptr, val)


def do_mmu_update(vcpu, reqs, count, done, foreigndom, *_):
    return batch(vcpu, xen.HYPERVISOR_mmu_update, reqs, count, done, foreigndom, REQ.size,
                 lambda raw: one_update(vcpu, raw))


# -- update_va_mapping --------------------------------------------------------------

def names_running_vcpu(vcpu, vcpumask):
    """Xen's vcpumask_to_pcpumask, for one engine: the bitmap is read a
    word at a time while the words cover max_vcpus (one word here: at most
    32 vcpus), so an unreadable one is refused; bits past max_vcpus are
    ignored.  The engine's TLB holds only the running vcpu's translations
    (every switch of vcpu flushes it, _core/machine.c switch_to), so the
    vcpus a mask names need a flush exactly when the caller is one of
    them: a vcpu not running has nothing left to flush."""
    mask = read_u64s(vcpu, vcpumask, 1)[0]
    return bool(mask >> vcpu.vcpu_id & 1)


def flush_after(vcpu, flags, va):
    """__do_update_va_mapping's flush: UVMF_LOCAL, UVMF_ALL, or a pointer
    to a vcpu bitmap (UVMF_MULTI), whose fault is -EFAULT after the update."""
    if not flags & xen.UVMF_FLUSHTYPE_MASK:
        return
    bmap = flags & ~xen.UVMF_FLUSHTYPE_MASK
    if bmap not in (xen.UVMF_LOCAL, xen.UVMF_ALL) and not names_running_vcpu(vcpu, bmap):
        return
    lib.xc_request_flush(vcpu.domain.machine.core)


def do_update_va_mapping(vcpu, va, val, flags, *_):
    if va >= 0xFFFF800000000000 and va < 0xFFFF880000000000:
        raise HypercallError(errno.EINVAL)
    ft = frame_table(vcpu)
    table, index = ft.l1_slot(vcpu.core.cr3, va)
    if not ft.owned(table, vcpu.domain) or not ft.is_table(table, L1):
        raise HypercallError(errno.EINVAL)
    ft.mod_entry(table, index, val, vcpu)
    flush_after(vcpu, flags, va)
    return 0


def do_update_va_mapping_otherdomain(vcpu, va, val, flags, domid, *_):
    check_foreign(vcpu, domid & 0xFFFF)
    return do_update_va_mapping(vcpu, va, val, flags)


# -- mmuext_op ---------------------------------------------------------------------------

def ext_pin(level):
    def pin(vcpu, mfn, arg2):
        frame_table(vcpu).pin(mfn, vcpu, level)
    return pin


def ext_unpin(vcpu, mfn, arg2):
    frame_table(vcpu).unpin(mfn, vcpu)


def ext_new_baseptr(vcpu, mfn, arg2):
    frame_table(vcpu).set_base(vcpu, mfn)


def ext_new_user_baseptr(vcpu, mfn, arg2):
    frame_table(vcpu).set_base(vcpu, mfn, user=True)


def ext_flush(vcpu, arg1, arg2):
    lib.xc_request_flush(vcpu.domain.machine.core)


def ext_flush_multi(vcpu, arg1, vcpumask):
    """MMUEXT_TLB_FLUSH_MULTI / INVLPG_MULTI: an unreadable mask is -EINVAL."""
    try:
        named = names_running_vcpu(vcpu, vcpumask)
    except HypercallError:
        raise HypercallError(errno.EINVAL) from None
    if named:
        ext_flush(vcpu, arg1, vcpumask)


def ext_set_ldt(vcpu, linear_addr, nr_ents):
    """Note: not as Xen: the LDT is recorded but never installed, so a load of an LDT selector faults (Xen maps the LDT's frames on first use: pv_map_ldt_shadow_page)."""
    if linear_addr & 0xFFF or nr_ents > 8192 or linear_addr >= 0xFFFF800000000000 - nr_ents * 8:
        raise HypercallError(errno.EINVAL)
    vcpu.ldt = (linear_addr, nr_ents)


def write_page(vcpu, mfn, data):
    """MMUEXT_CLEAR_PAGE/COPY_PAGE's write: the destination takes the
    writable type for the copy, as Xen's get_page_and_type does."""
    ft = frame_table(vcpu)
    try:
        ft.get_page_and_type(mfn, vcpu, WRITABLE)
    except HypercallError:
        raise HypercallError(errno.EINVAL) from None
    lib.xc_frame_written(ft.machine.core, mfn)   # its old code must not run on
    ft.mem[mfn * 4096:(mfn + 1) * 4096] = data
    ft.put_page_and_type(mfn, vcpu)


def ext_clear_page(vcpu, mfn, arg2):
    write_page(vcpu, mfn, bytes(4096))


def ext_copy_page(vcpu, mfn, src):
    ft = frame_table(vcpu)
    if not ft.owned(src, vcpu.domain):
        raise HypercallError(errno.EINVAL)
    write_page(vcpu, mfn, bytes(ft.mem[src * 4096:(src + 1) * 4096]))


def ext_flush_cache(vcpu, arg1, arg2):
    """Refused: EACCES no cache-flush permission (do_mmuext_op: !cache_flush_permitted)"""
    raise HypercallError(errno.EACCES)     # a domU holds no I/O memory or ports


def ext_flush_cache_global(vcpu, arg1, arg2):
    """Refused: EINVAL no cache-flush permission (do_mmuext_op: !cache_flush_permitted)"""
    raise HypercallError(errno.EINVAL)


def ext_mark_super(vcpu, arg1, arg2):
    """Refused: EOPNOTSUPP PV superpages removed (do_mmuext_op)"""
    raise HypercallError(errno.EOPNOTSUPP)


EXT_OPS = {
    xen.MMUEXT_PIN_L1_TABLE: ext_pin(1), xen.MMUEXT_PIN_L2_TABLE: ext_pin(2),
    xen.MMUEXT_PIN_L3_TABLE: ext_pin(3), xen.MMUEXT_PIN_L4_TABLE: ext_pin(4),
    xen.MMUEXT_UNPIN_TABLE: ext_unpin,
    xen.MMUEXT_NEW_BASEPTR: ext_new_baseptr,
    xen.MMUEXT_NEW_USER_BASEPTR: ext_new_user_baseptr,
    xen.MMUEXT_TLB_FLUSH_LOCAL: ext_flush, xen.MMUEXT_TLB_FLUSH_ALL: ext_flush,
    xen.MMUEXT_INVLPG_LOCAL: ext_flush, xen.MMUEXT_INVLPG_ALL: ext_flush,
    xen.MMUEXT_TLB_FLUSH_MULTI: ext_flush_multi, xen.MMUEXT_INVLPG_MULTI: ext_flush_multi,
    xen.MMUEXT_SET_LDT: ext_set_ldt,
    xen.MMUEXT_CLEAR_PAGE: ext_clear_page,
    xen.MMUEXT_COPY_PAGE: ext_copy_page,
    xen.MMUEXT_FLUSH_CACHE: ext_flush_cache,
    xen.MMUEXT_FLUSH_CACHE_GLOBAL: ext_flush_cache_global,
    xen.MMUEXT_MARK_SUPER: ext_mark_super, xen.MMUEXT_UNMARK_SUPER: ext_mark_super,
}


def one_ext(vcpu, raw):
    cmd, arg1, arg2 = EXT.unpack(raw)
    sub_op(EXT_OPS, cmd)(vcpu, arg1, arg2)


def do_mmuext_op(vcpu, ops, count, done, foreigndom, *_):
    return batch(vcpu, xen.HYPERVISOR_mmuext_op, ops, count, done, foreigndom, EXT.size,
                 lambda raw: one_ext(vcpu, raw))


OPS = EXT_OPS  # the sub-operations on record: mmuext_op's commands

HYPERCALLS = {
    xen.HYPERVISOR_mmu_update: do_mmu_update,
    xen.HYPERVISOR_update_va_mapping: do_update_va_mapping,
    xen.HYPERVISOR_update_va_mapping_otherdomain: do_update_va_mapping_otherdomain,
    xen.HYPERVISOR_mmuext_op: do_mmuext_op,
}
