"""HYPERVISOR_vcpu_op(cmd, vcpuid, extra_arg): vcpu.h."""

import ctypes

from ._compat import LittleEndianUnion
from .xen import guest_handle


VCPUOP_initialise = 0                    # set a down vCPU's state; arg -> vcpu_guest_context
VCPUOP_up = 1                            # make an initialised vCPU runnable
VCPUOP_down = 2                          # stop a vCPU (asynchronous unless done to itself)
VCPUOP_is_up = 3                         # returns 1 if the vCPU is up
VCPUOP_get_runstate_info = 4             # arg -> vcpu_runstate_info (OUT)
VCPUOP_register_runstate_memory_area = 5 # arg -> vcpu_register_runstate_memory_area
VCPUOP_set_periodic_timer = 6            # arg -> vcpu_set_periodic_timer
VCPUOP_stop_periodic_timer = 7           # arg NULL
VCPUOP_set_singleshot_timer = 8          # arg -> vcpu_set_singleshot_timer
VCPUOP_stop_singleshot_timer = 9         # arg NULL
VCPUOP_register_vcpu_info = 10           # move vcpu_info out of shared_info;
                                         # arg -> vcpu_register_vcpu_info (once per vCPU)
VCPUOP_send_nmi = 11                     # send an NMI to the vCPU; arg NULL
VCPUOP_get_physid = 12                   # arg -> vcpu_get_physid (OUT)
VCPUOP_register_vcpu_time_memory_area = 13  # arg -> vcpu_register_time_memory_area


# vcpu_runstate_info.state
RUNSTATE_running = 0   # running on a physical CPU
RUNSTATE_runnable = 1  # runnable, waiting for a physical CPU
RUNSTATE_blocked = 2   # blocked (idle), waiting for an event
RUNSTATE_offline = 3   # neither runnable nor blocked: down, paused, ...

# Set in state_entry_time while Xen rewrites a registered runstate area
# (when VMASST_TYPE_runstate_update_flag is on).
XEN_RUNSTATE_UPDATE = 1 << 63


class vcpu_runstate_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("state", ctypes.c_int32),              # RUNSTATE_* now
        ("state_entry_time", ctypes.c_uint64),  # system time (ns) the state was entered
        ("time", ctypes.c_uint64 * 4),          # ns spent in each RUNSTATE_*; sums to system time
    ]


class vcpu_register_runstate_memory_area_addr(LittleEndianUnion):
    _fields_ = [
        ("h", guest_handle),   # guest handle to a vcpu_runstate_info
        ("v", ctypes.c_uint64),  # the same as a plain pointer (x86: a virtual address)
        ("p", ctypes.c_uint64),  # the same as a 64-bit integer
    ]


class vcpu_register_runstate_memory_area(ctypes.LittleEndianStructure):
    # Xen then rewrites the area each time the vCPU is scheduled.
    _fields_ = [
        ("addr", vcpu_register_runstate_memory_area_addr),  # where to keep the runstate
    ]


class vcpu_set_periodic_timer(ctypes.LittleEndianStructure):
    _fields_ = [
        ("period_ns", ctypes.c_uint64),  # period; VIRQ_TIMER fires each time
    ]


# vcpu_set_singleshot_timer.flags
VCPU_SSHOTTMR_future = 1 << 0  # fail with -ETIME if the timeout is already past


class vcpu_set_singleshot_timer(ctypes.LittleEndianStructure):
    _fields_ = [
        ("timeout_abs_ns", ctypes.c_uint64),  # absolute system time to fire VIRQ_TIMER at
        ("flags", ctypes.c_uint32),           # VCPU_SSHOTTMR_* flags
    ]


class vcpu_register_vcpu_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("mfn", ctypes.c_uint64),     # frame to hold this vCPU's vcpu_info
        ("offset", ctypes.c_uint32),  # offset in it (vcpu_info may not cross the page)
        ("rsvd", ctypes.c_uint32),    # unused
    ]


class vcpu_get_physid(ctypes.LittleEndianStructure):
    _fields_ = [
        ("phys_id", ctypes.c_uint64),  # x86: APIC id in bits 31:0, ACPI id in 63:32
    ]


def xen_vcpu_physid_to_x86_apicid(physid):
    return physid & 0xFFFFFFFF


def xen_vcpu_physid_to_x86_acpiid(physid):
    return (physid >> 32) & 0xFFFFFFFF


class vcpu_register_time_memory_area_addr(LittleEndianUnion):
    _fields_ = [
        ("h", guest_handle),     # guest handle to a vcpu_time_info
        ("v", ctypes.c_uint64),  # the same as a plain pointer
        ("p", ctypes.c_uint64),  # the same as a 64-bit integer
    ]


class vcpu_register_time_memory_area(ctypes.LittleEndianStructure):
    # A second copy of vcpu_info.time, kept in step with the first.
    _fields_ = [
        ("addr", vcpu_register_time_memory_area_addr),  # where to keep the copy
    ]
