"""The toolstack's and dom0's control hypercalls, as far as a domU sees
them: the interface versions and the structures Xen copies in whole before
it checks anything (sysctl.h, domctl.h, platform.h, arch-x86/xen-mca.h,
hvm/dm_op.h).  Each starts ``uint32_t cmd; uint32_t interface_version;``;
the union after it is opaque here (a domU's request is refused before it
is read).
"""
import ctypes

from .xen import domid_t, guest_handle

XEN_SYSCTL_INTERFACE_VERSION = 0x00000015
XEN_DOMCTL_INTERFACE_VERSION = 0x00000015
XENPF_INTERFACE_VERSION = 0x03000001
XEN_MCA_INTERFACE_VERSION = 0x01ecc003

# domctl commands do_domctl treats apart when it looks up the domain
XEN_DOMCTL_createdomain = 1
XEN_DOMCTL_getdomaininfo = 5
XEN_DOMCTL_shadow_op = 10
XEN_DOMCTL_assign_device = 37
XEN_DOMCTL_test_assign_device = 45
XEN_DOMCTL_deassign_device = 47
XEN_DOMCTL_vm_event_op = 56

_OPAQUE = ctypes.c_uint64 * 16      # the 128-byte, 8-aligned union u


class xen_sysctl(ctypes.LittleEndianStructure):
    _fields_ = [("cmd", ctypes.c_uint32), ("interface_version", ctypes.c_uint32),
                ("u", _OPAQUE)]


class xen_domctl(ctypes.LittleEndianStructure):
    _fields_ = [("cmd", ctypes.c_uint32), ("interface_version", ctypes.c_uint32),
                ("domain", domid_t), ("_pad", ctypes.c_uint16 * 3), ("u", _OPAQUE)]


class xen_platform_op(ctypes.LittleEndianStructure):
    _fields_ = [("cmd", ctypes.c_uint32), ("interface_version", ctypes.c_uint32),
                ("u", _OPAQUE)]


class xen_dm_op_buf(ctypes.LittleEndianStructure):
    _fields_ = [("h", guest_handle), ("size", ctypes.c_uint64)]
