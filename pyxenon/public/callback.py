"""HYPERVISOR_callback_op(cmd, arg): callback.h.

Registers the guest entry points Xen bounces to.  (HYPERVISOR_set_callbacks
is the older way to set the event and failsafe ones.)
"""

import ctypes

from .arch_x86 import xen_callback_t


# callback_register.type
CALLBACKTYPE_event = 0                # event upcall (evtchn_upcall_pending set)
CALLBACKTYPE_failsafe = 1             # Xen could not restore the guest's segment state
CALLBACKTYPE_syscall = 2              # x86_64: SYSCALL from a 64-bit guest application
CALLBACKTYPE_sysenter_deprecated = 3  # x86_32 supervisor-mode kernels only; do not use
CALLBACKTYPE_nmi = 4                  # NMI delivery
CALLBACKTYPE_sysenter = 5             # SYSENTER from a 32-bit application (Intel)
CALLBACKTYPE_syscall32 = 7            # x86_64: SYSCALL from a 32-bit application (AMD)

# callback_register.flags
CALLBACKF_mask_events = 1 << 0  # mask events on entry (event and NMI callbacks
                                # always mask them)

CALLBACKOP_register = 0    # arg -> callback_register
CALLBACKOP_unregister = 1  # arg -> callback_unregister


class callback_register(ctypes.LittleEndianStructure):
    _fields_ = [
        ("type", ctypes.c_uint16),    # CALLBACKTYPE_*
        ("flags", ctypes.c_uint16),   # CALLBACKF_* flags
        ("address", xen_callback_t),  # entry point (x86_64: a 64-bit virtual address)
    ]


class callback_unregister(ctypes.LittleEndianStructure):
    _fields_ = [
        ("type", ctypes.c_uint16),     # CALLBACKTYPE_* to remove
        ("_unused", ctypes.c_uint16),  # padding
    ]


# HYPERVISOR_nmi_op(cmd, arg): nmi.h, the older way to set the NMI callback.
XENNMI_register_callback = 0    # arg -> xennmi_callback
XENNMI_unregister_callback = 1  # arg unused


class xennmi_callback(ctypes.LittleEndianStructure):
    _fields_ = [
        ("handler_address", ctypes.c_uint64),
        ("pad", ctypes.c_uint64),
    ]
