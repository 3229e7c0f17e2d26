"""xen_version: what hypervisor this is, as a guest asks it.

pyxenon presents itself as Xen 4.17 (the ABI its public headers describe),
with "-pyxenon" as the extra version so a guest or a person can tell.
"""
import ctypes

from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import copy_to_guest, read_struct, write_struct
from pyxenon.hypervisor.traps import XEN_VERSION
from pyxenon.public import arch_x86, errno, version, xen

MAJOR, MINOR = XEN_VERSION          # one place: hypervisor/traps.py
EXTRAVERSION = b"-pyxenon"
CAPABILITIES = b"xen-3.0-x86_64"
CHANGESET = b"pyxenon 0.1.0"
PAGE_SIZE = 4096
# Feature bits Xen's do_xen_version gives a (not translated) PV domU, submap 0;
# writable_page_tables is only for translated guests.
FEATURES = (1 << version.XENFEAT_memory_op_vnode_supported
            | 1 << version.XENFEAT_mmu_pt_update_preserve_ad
            | 1 << version.XENFEAT_highmem_assist | 1 << version.XENFEAT_gnttab_map_avail_bits
            | 1 << version.XENFEAT_direct_mapped)


def fixed_string(value, size):
    """A NUL-terminated field of size bytes, as Xen fills it."""
    return value[:size - 1].ljust(size, b"\0")


def ver_version(vcpu, arg):
    return MAJOR << 16 | MINOR


def ver_extraversion(vcpu, arg):
    copy_to_guest(vcpu, arg, fixed_string(EXTRAVERSION, ctypes.sizeof(version.xen_extraversion_t)))
    return 0


def ver_compile_info(vcpu, arg):
    info = version.xen_compile_info(compiler=b"gcc", compile_by=b"pyxenon",
                                    compile_domain=b"", compile_date=b"")
    write_struct(vcpu, arg, info)
    return 0


def ver_capabilities(vcpu, arg):
    copy_to_guest(vcpu, arg, fixed_string(CAPABILITIES, ctypes.sizeof(version.xen_capabilities_info_t)))
    return 0


def ver_changeset(vcpu, arg):
    copy_to_guest(vcpu, arg, fixed_string(CHANGESET, ctypes.sizeof(version.xen_changeset_info_t)))
    return 0


def ver_platform_parameters(vcpu, arg):
    write_struct(vcpu, arg, version.xen_platform_parameters(virt_start=arch_x86.HYPERVISOR_VIRT_START))
    return 0


def ver_get_features(vcpu, arg):
    """Xen's XENVER_get_features: one submap; pae_pgdir_above_4gb follows
    the pae_extended_cr3 assist."""
    info = read_struct(vcpu, arg, version.xen_feature_info)
    if info.submap_idx != 0:
        raise HypercallError(errno.EINVAL)
    pae = vcpu.domain.vm_assist >> xen.VMASST_TYPE_pae_extended_cr3 & 1
    info.submap = FEATURES | pae << version.XENFEAT_pae_pgdir_above_4gb
    write_struct(vcpu, arg, info)
    return 0


def ver_pagesize(vcpu, arg):
    return PAGE_SIZE


def ver_guest_handle(vcpu, arg):
    copy_to_guest(vcpu, arg, vcpu.domain.handle)
    return 0


def ver_privileged(vcpu, arg):
    """Xen's command line and build id are for privileged domains only."""
    raise HypercallError(errno.EPERM)


OPS = {
    version.XENVER_version: ver_version,
    version.XENVER_extraversion: ver_extraversion,
    version.XENVER_compile_info: ver_compile_info,
    version.XENVER_capabilities: ver_capabilities,
    version.XENVER_changeset: ver_changeset,
    version.XENVER_platform_parameters: ver_platform_parameters,
    version.XENVER_get_features: ver_get_features,
    version.XENVER_pagesize: ver_pagesize,
    version.XENVER_guest_handle: ver_guest_handle,
    version.XENVER_commandline: ver_privileged,
    version.XENVER_build_id: ver_privileged,
}


def do_xen_version(vcpu, cmd, arg, *_):
    return sub_op(OPS, cmd)(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_xen_version: do_xen_version}
