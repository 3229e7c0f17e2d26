"""HYPERVISOR_sched_op(cmd, arg): sched.h.

(HYPERVISOR_sched_op_compat(cmd, unsigned long arg) is the pre-3.0.2 form:
only yield, block and shutdown, with the SHUTDOWN_* reason passed directly.)
"""

import ctypes

from .xen import domid_t, guest_handle


SCHEDOP_yield = 0            # give up the CPU; arg NULL
SCHEDOP_block = 1            # sleep until an event arrives; unmasks upcalls atomically
                             # and checks for pending events first; arg NULL
SCHEDOP_shutdown = 2         # stop the whole domain; arg -> sched_shutdown.  For
                             # SHUTDOWN_suspend, %rdx holds the start_info MFN and the call
                             # returns 1 if the suspend was cancelled, 0 in the new domain
SCHEDOP_poll = 3             # block until one of some ports is pending; arg -> sched_poll
SCHEDOP_remote_shutdown = 4  # shut down another domain; arg -> sched_remote_shutdown
SCHEDOP_shutdown_code = 5    # record the reason a later shutdown will report;
                             # arg -> sched_shutdown
SCHEDOP_watchdog = 6         # create / poke / destroy a watchdog; arg -> sched_watchdog
SCHEDOP_pin_override = 7     # hardware domain: pin this vCPU to a pCPU;
                             # arg -> sched_pin_override


class sched_shutdown(ctypes.LittleEndianStructure):
    _fields_ = [
        ("reason", ctypes.c_uint32),  # SHUTDOWN_* reason
    ]


class sched_poll(ctypes.LittleEndianStructure):
    _fields_ = [
        ("ports", guest_handle),        # guest pointer to an array of evtchn_port_t (uint32)
        ("nr_ports", ctypes.c_uint32),  # entries in that array
        ("timeout", ctypes.c_uint64),   # absolute system time (ns) to give up at; 0 = never
    ]


class sched_remote_shutdown(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domain_id", domid_t),       # domain to shut down
        ("reason", ctypes.c_uint32),  # SHUTDOWN_* reason
    ]


class sched_watchdog(ctypes.LittleEndianStructure):
    _fields_ = [
        ("id", ctypes.c_uint32),       # 0: create one (returns its id); else the watchdog to use
        ("timeout", ctypes.c_uint32),  # seconds until it fires; 0 with id != 0 destroys it
    ]


class sched_pin_override(ctypes.LittleEndianStructure):
    _fields_ = [
        ("pcpu", ctypes.c_int32),  # physical CPU to pin to; negative undoes the pin
    ]


# Shutdown reasons (sched_shutdown.reason).
SHUTDOWN_poweroff = 0    # exited normally: clean up and destroy
SHUTDOWN_reboot = 1      # clean up, destroy, start again
SHUTDOWN_suspend = 2     # clean up, save the state for a later resume
SHUTDOWN_crash = 3       # the guest crashed
SHUTDOWN_watchdog = 4    # a watchdog expired: restart
SHUTDOWN_soft_reset = 5  # reset the domain in place, keeping its memory, so a
                         # kexec'd kernel can take over
SHUTDOWN_MAX = 5         # highest valid reason
