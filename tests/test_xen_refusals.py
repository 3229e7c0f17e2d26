"""What Xen 4.17 answers a domU for the hypercalls it may not use, in Xen's
order of checks: the control hypercalls (xsm/dummy.h's default policy),
dm_op on PV domains, and the mmuext_op commands Xen refuses."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import ctl, errno, event_channel as ev, physdev as ph, sched, xen

PAGE = 4096
UNMAPPED = 0x10            # no guest maps page 0
MCA, PAGING_DOMCTL_CONT = xen.HYPERVISOR_arch_0, xen.HYPERVISOR_arch_1


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def request(dom, cmd, version, domid=0):
    """A sysctl/domctl/platform_op request in guest memory: its address."""
    va = dom.layout.stack + PAGE
    copy_to_guest(dom.vcpus[0], va, struct.pack("<IIH", cmd, version, domid).ljust(144, b"\0"))
    return va


@pytest.mark.parametrize("nr,version", [
    (xen.HYPERVISOR_sysctl, ctl.XEN_SYSCTL_INTERFACE_VERSION),
    (xen.HYPERVISOR_platform_op, ctl.XENPF_INTERFACE_VERSION),
])
def test_sysctl_and_platform_op_check_the_version_then_refuse(dom, hypercall, nr, version):
    assert hypercall(dom, nr, UNMAPPED) == -errno.EFAULT
    assert hypercall(dom, nr, request(dom, 1, version - 1)) == -errno.EACCES
    assert hypercall(dom, nr, request(dom, 1, version)) == -errno.EPERM


def test_domctl_checks_version_then_domain_then_refuses(dom, hypercall):
    v = ctl.XEN_DOMCTL_INTERFACE_VERSION
    getinfo = ctl.XEN_DOMCTL_getdomaininfo
    assert hypercall(dom, xen.HYPERVISOR_domctl, UNMAPPED) == -errno.EFAULT
    assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, getinfo, v + 1)) == -errno.EACCES
    # the domain named is looked up first: -ESRCH for none (DOMID_SELF is none)
    assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, 2, v, 999)) == -errno.ESRCH
    assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, 2, v, xen.DOMID_SELF)) == -errno.ESRCH
    for domid in (0, dom.domid):            # domain 0 exists: the toolstack
        assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, 2, v, domid)) == -errno.EPERM
    # getdomaininfo and createdomain go on to XSM without a domain
    assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, getinfo, v, 999)) == -errno.EPERM
    create = ctl.XEN_DOMCTL_createdomain
    assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, create, v, 999)) == -errno.EPERM


def test_domctl_device_commands_name_dom_io_or_none(dom, hypercall):
    v = ctl.XEN_DOMCTL_INTERFACE_VERSION
    assign, test = ctl.XEN_DOMCTL_assign_device, ctl.XEN_DOMCTL_test_assign_device
    assert hypercall(dom, xen.HYPERVISOR_domctl, request(dom, assign, v, xen.DOMID_IO)) == -errno.EPERM
    assert hypercall(dom, xen.HYPERVISOR_domctl,
                     request(dom, assign, v, xen.DOMID_INVALID)) == -errno.ESRCH
    assert hypercall(dom, xen.HYPERVISOR_domctl,
                     request(dom, test, v, xen.DOMID_INVALID)) == -errno.EPERM


def test_paging_domctl_cont_wants_a_shadow_op(dom, hypercall):
    v, shadow = ctl.XEN_DOMCTL_INTERFACE_VERSION, ctl.XEN_DOMCTL_shadow_op
    assert hypercall(dom, PAGING_DOMCTL_CONT, UNMAPPED) == -errno.EFAULT
    assert hypercall(dom, PAGING_DOMCTL_CONT, request(dom, 2, v)) == -errno.EOPNOTSUPP
    assert hypercall(dom, PAGING_DOMCTL_CONT, request(dom, shadow, v - 1)) == -errno.EOPNOTSUPP
    assert hypercall(dom, PAGING_DOMCTL_CONT, request(dom, shadow, v, 999)) == -errno.ESRCH
    assert hypercall(dom, PAGING_DOMCTL_CONT, request(dom, shadow, v, 0)) == -errno.EPERM


@pytest.mark.parametrize("nr", [xen.HYPERVISOR_kexec_op, xen.HYPERVISOR_hypfs_op, MCA])
def test_xsm_refuses_before_reading_anything(dom, hypercall, nr):
    assert hypercall(dom, nr, UNMAPPED, UNMAPPED) == -errno.EPERM


def test_dm_op_on_a_pv_domain(dom, hypercall):
    bufs = request(dom, 0, 0)
    assert hypercall(dom, xen.HYPERVISOR_dm_op, 0, 3, bufs) == -errno.E2BIG
    assert hypercall(dom, xen.HYPERVISOR_dm_op, 0, 1, UNMAPPED) == -errno.EFAULT
    assert hypercall(dom, xen.HYPERVISOR_dm_op, 999, 1, bufs) == -errno.ESRCH
    assert hypercall(dom, xen.HYPERVISOR_dm_op, dom.domid, 1, bufs) == -errno.EPERM
    assert hypercall(dom, xen.HYPERVISOR_dm_op, 0, 0, UNMAPPED) == -errno.EINVAL


@pytest.mark.parametrize("cmd,error", [
    (xen.MMUEXT_MARK_SUPER, errno.EOPNOTSUPP), (xen.MMUEXT_UNMARK_SUPER, errno.EOPNOTSUPP),
    (xen.MMUEXT_FLUSH_CACHE, errno.EACCES), (xen.MMUEXT_FLUSH_CACHE_GLOBAL, errno.EINVAL),
])
def test_mmuext_commands_xen_refuses(dom, hypercall, cmd, error):
    va = dom.layout.stack + PAGE
    copy_to_guest(dom.vcpus[0], va, struct.pack("<IIQQ", cmd, 0, 0, 0) + struct.pack("<I", 7))
    done = va + 24
    assert hypercall(dom, xen.HYPERVISOR_mmuext_op, va, 1, done, xen.DOMID_SELF) == -error
    assert struct.unpack("<I", copy_from_guest(dom.vcpus[0], done, 4)) == (0,)


# -- the legacy hypercalls (xen/arch/x86/compat.c) ------------------------------------------

def test_sched_op_compat_takes_the_shutdown_reason_itself(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_sched_op_compat, sched.SCHEDOP_yield, 0) == 0
    assert hypercall(dom, xen.HYPERVISOR_sched_op_compat, sched.SCHEDOP_poll, 0) == -errno.ENOSYS
    assert hypercall(dom, xen.HYPERVISOR_sched_op_compat, sched.SCHEDOP_shutdown,
                     0x100 | sched.SHUTDOWN_reboot) == 0
    assert dom.shutdown_code == sched.SHUTDOWN_reboot            # (u8)arg


def test_event_channel_op_compat_calls_through_for_the_old_commands(dom, hypercall):
    va = dom.layout.stack + PAGE
    op = struct.pack("<IHHI", ev.EVTCHNOP_alloc_unbound, xen.DOMID_SELF, xen.DOMID_SELF, 0).ljust(28, b"\0")
    copy_to_guest(dom.vcpus[0], va, op)
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op_compat, va) == 0
    (port,) = struct.unpack("<I", copy_from_guest(dom.vcpus[0], va + 8, 4))
    assert dom.events.lookup(port).state == "unbound"
    copy_to_guest(dom.vcpus[0], va, struct.pack("<I", ev.EVTCHNOP_reset))
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op_compat, va) == -errno.ENOSYS
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op_compat, UNMAPPED) == -errno.EFAULT


def test_physdev_op_compat_reads_the_argument_at_u(dom, hypercall):
    va = dom.layout.stack + PAGE
    copy_to_guest(dom.vcpus[0], va, struct.pack("<IIIIQ", ph.PHYSDEVOP_set_iopl, 0, 3, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op_compat, va) == 0
    assert dom.vcpus[0].core.iopl == 3
    copy_to_guest(dom.vcpus[0], va, struct.pack("<I", ph.PHYSDEVOP_manage_pci_add))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op_compat, va) == -errno.EPERM   # pci_add_device's XSM
    copy_to_guest(dom.vcpus[0], va, struct.pack("<I", ph.PHYSDEVOP_free_irq_vector))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op_compat, va) == -errno.ENOSYS
    assert hypercall(dom, xen.HYPERVISOR_physdev_op_compat, UNMAPPED) == -errno.EFAULT


def test_machine_memory_map_is_dom0s(dom, hypercall):
    """arch_memory_op: xsm_machine_memory_map(XSM_PRIV) before the argument is read."""
    assert hypercall(dom, xen.HYPERVISOR_memory_op, 10, UNMAPPED) == -errno.EPERM


@pytest.mark.parametrize("cmd", [16, 17])        # XENMEM_set_pod_target, get_pod_target
def test_pod_target_on_a_pv_domain(dom, hypercall, cmd):
    va = dom.layout.stack + PAGE
    assert hypercall(dom, xen.HYPERVISOR_memory_op, cmd, UNMAPPED) == -errno.EFAULT
    for domid, rc in ((999, -errno.ESRCH), (xen.DOMID_SELF, -errno.EINVAL), (0, -errno.EINVAL)):
        copy_to_guest(dom.vcpus[0], va, struct.pack("<4QH6x", 0, 0, 0, 0, domid))
        assert hypercall(dom, xen.HYPERVISOR_memory_op, cmd, va) == rc


def test_claim_pages_is_the_toolstacks(dom, hypercall):
    """do_memory_op's XENMEM_claim_pages: the request's shape, the domain
    (by id: DOMID_SELF is none), then xsm_claim_pages."""
    va = dom.layout.stack + PAGE

    def claim(extent_start=0, order=0, flags=0, domid=0):
        copy_to_guest(dom.vcpus[0], va, struct.pack("<QQIIH6x", extent_start, 16, order, flags, domid))
        return hypercall(dom, xen.HYPERVISOR_memory_op, 24, va)

    assert hypercall(dom, xen.HYPERVISOR_memory_op, 24, UNMAPPED) == -errno.EFAULT
    assert claim(extent_start=va) == claim(order=1) == claim(flags=1) == -errno.EINVAL
    assert claim(domid=xen.DOMID_SELF) == claim(domid=999) == -errno.EINVAL
    assert claim(domid=dom.domid) == claim(domid=0) == -errno.EPERM
