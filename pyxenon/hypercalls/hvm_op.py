"""hvm_op: what Xen 4.17's do_hvm_op (arch/x86/hvm/hvm.c) answers a PV
domain, as a default build has it (CONFIG_HVM: the hypercall is in the PV64
column of hypercall-defs.c).

Every domain here is PV, so each op that needs an HVM domain refuses after
its own checks; get_time, xentrace and guest_request_vm_event work for a
PV caller as for an HVM one; any other op is -ENOSYS (do_hvm_op's default).
"""
import struct

from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, hvm, xen

from .control import rcu_lock_domain_by_id

DOMID_SELF = xen.DOMID_SELF
# What each copy_from_guest reads: xen_hvm_param, xen_hvm_pagetable_dying,
# xen_hvm_get_mem_type, xen_hvm_xentrace (hvm/hvm_op.h).
PARAM_SIZE = DYING_SIZE = MEM_TYPE_SIZE = 16
XENTRACE_SIZE = 4 + hvm.TRACE_EXTRA_MAX * 4


def domain_by_any_id(vcpu, domid):
    """rcu_lock_domain_by_any_id: -ESRCH for no domain; whether it is the caller."""
    if domid in (DOMID_SELF, vcpu.domain.domid):
        return True
    if not rcu_lock_domain_by_id(vcpu, domid):
        raise HypercallError(errno.ESRCH)
    return False


def hvmop_param(vcpu, arg):
    """Refused: EINVAL HVM domains' parameters (after -EFAULT, -EINVAL past HVM_NR_PARAMS, -ESRCH; hvmop_set_param, hvmop_get_param)"""
    domid, index = struct.unpack_from("<HxxI", copy_from_guest(vcpu, arg, PARAM_SIZE))
    if index >= hvm.HVM_NR_PARAMS:
        raise HypercallError(errno.EINVAL)
    domain_by_any_id(vcpu, domid)
    raise HypercallError(errno.EINVAL)              # !is_hvm_domain(d)


def hvmop_not_for_pv(vcpu, arg):
    """Refused: EINVAL the caller is not HVM (before the copy: hvmop_set_evtchn_upcall_vector)"""
    raise HypercallError(errno.EINVAL)


def hvmop_flush_tlbs(vcpu, arg):
    """Refused: EINVAL the caller is not HVM (do_hvm_op: a non-NULL argument, then hvmop_flush_tlb_all)"""
    raise HypercallError(errno.EINVAL)


def hvmop_pagetable_dying(vcpu, arg):
    """Refused: EOPNOTSUPP for another domain, else EINVAL: not an HVM shadow-paging domain (after -EFAULT, -ESRCH; do_hvm_op)"""
    (domid,) = struct.unpack_from("<H", copy_from_guest(vcpu, arg, DYING_SIZE))
    own = domain_by_any_id(vcpu, domid)
    raise HypercallError(errno.EINVAL if own else errno.EOPNOTSUPP)


def hvmop_get_mem_type(vcpu, arg):
    """Refused: EINVAL no p2m types for PV (after -EFAULT, -ESRCH, -EPERM; hvmop_get_mem_type)"""
    (domid,) = struct.unpack_from("<H", copy_from_guest(vcpu, arg, MEM_TYPE_SIZE))
    if not domain_by_any_id(vcpu, domid):
        raise HypercallError(errno.EPERM)           # xsm_hvm_param(XSM_TARGET)
    raise HypercallError(errno.EINVAL)


def hvmop_get_time(vcpu, arg):
    """NOW(): the system time, in ns since boot, that vcpu_time_info extrapolates."""
    copy_to_guest(vcpu, arg, struct.pack("<Q", vcpu.domain.machine.now()))
    return 0


def hvmop_xentrace(vcpu, arg):
    """Note: accepted; the trace holds the hypercall, not a TRC_GUEST record

    Xen's checks: the record's extra data fits, its event is a guest's
    (below 1 << TRC_SUBCLS_SHIFT); trace_var then records it only while
    xentrace runs.  pyxenon's trace buffer records hypercalls (this one
    among them, with its argument), not a guest's own records."""
    event, extra_bytes = struct.unpack_from("<HH", copy_from_guest(vcpu, arg, XENTRACE_SIZE))
    if extra_bytes > XENTRACE_SIZE - 4 or event >> hvm.TRC_SUBCLS_SHIFT:
        raise HypercallError(errno.EINVAL)
    return 0


def hvmop_guest_request_vm_event(vcpu, arg):
    """monitor_guest_request: nothing monitors a domain here, so a NULL
    argument is accepted and does nothing; any other is -EINVAL."""
    if arg:
        raise HypercallError(errno.EINVAL)
    return 0


def hvmop_altp2m(vcpu, arg):
    """Refused: EOPNOTSUPP altp2m is off, as by default (before the copy: do_altp2m_op, hvm_altp2m_supported)"""
    raise HypercallError(errno.EOPNOTSUPP)


OPS = {
    hvm.HVMOP_set_param: hvmop_param,
    hvm.HVMOP_get_param: hvmop_param,
    hvm.HVMOP_flush_tlbs: hvmop_flush_tlbs,
    hvm.HVMOP_set_evtchn_upcall_vector: hvmop_not_for_pv,
    hvm.HVMOP_pagetable_dying: hvmop_pagetable_dying,
    hvm.HVMOP_get_mem_type: hvmop_get_mem_type,
    hvm.HVMOP_get_time: hvmop_get_time,
    hvm.HVMOP_xentrace: hvmop_xentrace,
    hvm.HVMOP_guest_request_vm_event: hvmop_guest_request_vm_event,
    hvm.HVMOP_altp2m: hvmop_altp2m,
}


def do_hvm_op(vcpu, op, arg, *_):
    """op is an unsigned long: no bits are masked off."""
    return sub_op(OPS, op)(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_hvm_op: do_hvm_op}
