"""The control hypercalls of the toolstack and dom0 (sysctl, domctl,
platform_op, kexec_op, hypfs_op, mca, paging_domctl_cont, dm_op), as Xen
4.17 with its default XSM policy (xsm/dummy.h, no FLASK) answers a domU.

No domain here is privileged (the toolstack is domain 0 and never issues a
hypercall), so every one ends in a refusal; but each refuses in Xen's order
-- the copy of the request (-EFAULT), the interface version (-EACCES), the
domain named (-ESRCH) -- before XSM's -EPERM, and tools probing a domU
depend on that order.
"""
import ctypes

from pyxenon.hypervisor.states import DEAD
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.guestmem import copy_from_guest
from pyxenon.public import ctl, errno, xen

# struct dmop_args' buf[2] (xen/include/xen/dm.h)
DM_OP_MAX_BUFS = 2
# __HYPERVISOR_mca / __HYPERVISOR_paging_domctl_cont (arch-x86/xen.h, xen-mca.h)
HYPERVISOR_mca = xen.HYPERVISOR_arch_0
HYPERVISOR_paging_domctl_cont = xen.HYPERVISOR_arch_1
# what each copy_from_guest reads
SYSCTL_SIZE = ctypes.sizeof(ctl.xen_sysctl)
DOMCTL_SIZE = ctypes.sizeof(ctl.xen_domctl)
PLATFORM_OP_SIZE = ctypes.sizeof(ctl.xen_platform_op)
DM_OP_BUF_SIZE = ctypes.sizeof(ctl.xen_dm_op_buf)


def header(vcpu, arg, size):
    """(cmd, interface_version, the domain field's 16 bits) of a request
    Xen copies in whole first: copy_from_guest, else -EFAULT."""
    raw = copy_from_guest(vcpu, arg, size)
    return (int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[4:8], "little"),
            int.from_bytes(raw[8:10], "little"))


def version_check(found, wanted):
    if found != wanted:
        raise HypercallError(errno.EACCES)


def rcu_lock_domain_by_id(vcpu, domid):
    """Whether domid names a live domain: Xen's rcu_lock_domain_by_id,
    which knows no DOMID_SELF.  Domain 0 is the toolstack here, and exists."""
    if domid == 0:
        return True
    domain = vcpu.domain.machine.domains.get(domid)
    return domain is not None and domain.state != DEAD


def xsm_priv():
    """xsm_default_action(XSM_PRIV, ...): only the control domain passes."""
    raise HypercallError(errno.EPERM)


def do_sysctl(vcpu, u_sysctl, *_):
    """Refused: EPERM privileged: toolstack (after -EFAULT, -EACCES; do_sysctl)"""
    _cmd, version, _ = header(vcpu, u_sysctl, SYSCTL_SIZE)
    version_check(version, ctl.XEN_SYSCTL_INTERFACE_VERSION)
    xsm_priv()                                   # xsm_sysctl(XSM_PRIV, cmd)


def domctl_has_domain(vcpu, cmd, domid):
    """do_domctl's lookup of op->domain before XSM: -ESRCH if it names no
    domain, except for the commands that take none."""
    if cmd in (ctl.XEN_DOMCTL_assign_device, ctl.XEN_DOMCTL_deassign_device):
        if domid == xen.DOMID_IO:
            return
        if domid == xen.DOMID_INVALID:
            raise HypercallError(errno.ESRCH)
    no_domain_ok = (ctl.XEN_DOMCTL_assign_device, ctl.XEN_DOMCTL_deassign_device,
                    ctl.XEN_DOMCTL_test_assign_device, ctl.XEN_DOMCTL_vm_event_op)
    if cmd == ctl.XEN_DOMCTL_createdomain or (cmd in no_domain_ok and domid == xen.DOMID_INVALID):
        return
    if not rcu_lock_domain_by_id(vcpu, domid) and cmd != ctl.XEN_DOMCTL_getdomaininfo:
        raise HypercallError(errno.ESRCH)


def do_domctl(vcpu, u_domctl, *_):
    """Refused: EPERM privileged: toolstack (after -EFAULT, -EACCES, -ESRCH; do_domctl)"""
    cmd, version, domid = header(vcpu, u_domctl, DOMCTL_SIZE)
    version_check(version, ctl.XEN_DOMCTL_INTERFACE_VERSION)
    domctl_has_domain(vcpu, cmd, domid)
    xsm_priv()          # xsm_domctl: XSM_PRIV, XSM_XS_PRIV or XSM_DM_PRIV, all -EPERM here


def do_paging_domctl_cont(vcpu, u_domctl, *_):
    """Refused: EPERM privileged: toolstack (after -EFAULT, -EOPNOTSUPP, -ESRCH; do_paging_domctl_cont)"""
    cmd, version, domid = header(vcpu, u_domctl, DOMCTL_SIZE)
    if version != ctl.XEN_DOMCTL_INTERFACE_VERSION or cmd != ctl.XEN_DOMCTL_shadow_op:
        raise HypercallError(errno.EOPNOTSUPP)
    if not rcu_lock_domain_by_id(vcpu, domid):
        raise HypercallError(errno.ESRCH)
    xsm_priv()


def do_platform_op(vcpu, u_xenpf_op, *_):
    """Refused: EPERM privileged: dom0 only (after -EFAULT, -EACCES; do_platform_op)"""
    _cmd, version, _ = header(vcpu, u_xenpf_op, PLATFORM_OP_SIZE)
    version_check(version, ctl.XENPF_INTERFACE_VERSION)
    xsm_priv()                                   # xsm_platform_op(XSM_PRIV, cmd)


def do_kexec_op(vcpu, *_):
    """Refused: EPERM privileged: dom0 only (XSM first: do_kexec_op_internal)"""
    xsm_priv()


def do_hypfs_op(vcpu, *_):
    """Refused: EPERM privileged: dom0 only (XSM first: do_hypfs_op)"""
    xsm_priv()


def do_mca(vcpu, *_):
    """Refused: EPERM privileged: dom0 only (XSM first: do_mca)"""
    xsm_priv()


def do_dm_op(vcpu, domid, nr_bufs, bufs, *_):
    """Refused: EINVAL device models: HVM only (after -E2BIG, -EFAULT, -ESRCH, -EPERM; do_dm_op, dm_op)"""
    nr_bufs &= 0xFFFFFFFF
    if nr_bufs > DM_OP_MAX_BUFS:
        raise HypercallError(errno.E2BIG)
    copy_from_guest(vcpu, bufs, nr_bufs * DM_OP_BUF_SIZE)
    domid &= 0xFFFF
    if not rcu_lock_domain_by_id(vcpu, domid):           # rcu_lock_remote_domain_by_id
        raise HypercallError(errno.ESRCH)
    if domid == vcpu.domain.domid:
        raise HypercallError(errno.EPERM)
    raise HypercallError(errno.EINVAL)                    # !is_hvm_domain(d): all PV here


HYPERCALLS = {
    xen.HYPERVISOR_sysctl: do_sysctl,
    xen.HYPERVISOR_domctl: do_domctl,
    xen.HYPERVISOR_platform_op: do_platform_op,
    xen.HYPERVISOR_kexec_op: do_kexec_op,
    xen.HYPERVISOR_hypfs_op: do_hypfs_op,
    HYPERVISOR_mca: do_mca,
    HYPERVISOR_paging_domctl_cont: do_paging_domctl_cont,
    xen.HYPERVISOR_dm_op: do_dm_op,
}
