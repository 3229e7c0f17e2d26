"""HYPERVISOR_event_channel_op(cmd, arg): event_channel.h.

Also the virtual IRQ numbers, which Xen defines in xen.h.
Ports are local to a domain; DOMID_SELF may be used wherever a domain id is
asked for.  Unprivileged callers may only name themselves.
"""

import ctypes

from ._compat import LittleEndianUnion
from .xen import domid_t, xen_ulong_t


EVTCHNOP_bind_interdomain = 0  # connect to a remote domain's unbound port
EVTCHNOP_bind_virq = 1         # bind a new port to a VIRQ on a vCPU
EVTCHNOP_bind_pirq = 2         # bind a new port to a physical IRQ (privileged)
EVTCHNOP_close = 3             # close a port (its interdomain peer goes back to unbound)
EVTCHNOP_send = 4              # signal the other end of a port
EVTCHNOP_status = 5            # describe a port
EVTCHNOP_alloc_unbound = 6     # allocate a port waiting for one remote domain
EVTCHNOP_bind_ipi = 7          # bind a new port for IPIs to a vCPU
EVTCHNOP_bind_vcpu = 8         # change which vCPU a port notifies
EVTCHNOP_unmask = 9            # unmask a port, notifying if it is pending
EVTCHNOP_reset = 10            # close every port of a domain (back to the 2-level ABI)
EVTCHNOP_init_control = 11     # switch to the FIFO ABI: register a vCPU control block
EVTCHNOP_expand_array = 12     # FIFO ABI: add a page to the event array
EVTCHNOP_set_priority = 13     # FIFO ABI: set a port's priority

# An event channel port number.
evtchn_port_t = ctypes.c_uint32


class evtchn_alloc_unbound(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),            # IN: domain to allocate the port in
        ("remote_dom", domid_t),     # IN: domain allowed to bind to it (may be DOMID_SELF)
        ("port", evtchn_port_t),     # OUT: the new port
    ]


class evtchn_bind_interdomain(ctypes.LittleEndianStructure):
    _fields_ = [
        ("remote_dom", domid_t),         # IN: peer domain (may be DOMID_SELF)
        ("remote_port", evtchn_port_t),  # IN: peer's unbound port, offered to us
        ("local_port", evtchn_port_t),   # OUT: the new local port (set pending on bind)
    ]


class evtchn_bind_virq(ctypes.LittleEndianStructure):
    _fields_ = [
        ("virq", ctypes.c_uint32),  # IN: VIRQ_* number
        ("vcpu", ctypes.c_uint32),  # IN: vCPU to notify (global VIRQs: must be 0)
        ("port", evtchn_port_t),    # OUT: the new port
    ]


BIND_PIRQ__WILL_SHARE = 1  # evtchn_bind_pirq.flags: the IRQ may be shared


class evtchn_bind_pirq(ctypes.LittleEndianStructure):
    _fields_ = [
        ("pirq", ctypes.c_uint32),   # IN: physical IRQ
        ("flags", ctypes.c_uint32),  # IN: BIND_PIRQ__* flags
        ("port", evtchn_port_t),     # OUT: the new port
    ]


class evtchn_bind_ipi(ctypes.LittleEndianStructure):
    _fields_ = [
        ("vcpu", ctypes.c_uint32),  # IN: vCPU to notify (fixed for the port's life)
        ("port", evtchn_port_t),    # OUT: the new port
    ]


class evtchn_close(ctypes.LittleEndianStructure):
    _fields_ = [
        ("port", evtchn_port_t),  # IN: local port to close
    ]


class evtchn_send(ctypes.LittleEndianStructure):
    _fields_ = [
        ("port", evtchn_port_t),  # IN: local port whose other end is signalled
    ]


# evtchn_status.status
EVTCHNSTAT_closed = 0       # port not in use
EVTCHNSTAT_unbound = 1      # waiting for a remote domain to bind
EVTCHNSTAT_interdomain = 2  # connected to a remote port
EVTCHNSTAT_pirq = 3         # bound to a physical IRQ
EVTCHNSTAT_virq = 4         # bound to a virtual IRQ
EVTCHNSTAT_ipi = 5          # bound for IPIs


class evtchn_status_u_unbound(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),  # domain allowed to bind
    ]


class evtchn_status_u_interdomain(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),          # peer domain
        ("port", evtchn_port_t),   # peer port
    ]


class evtchn_status_u(LittleEndianUnion):
    _fields_ = [
        ("unbound", evtchn_status_u_unbound),          # EVTCHNSTAT_unbound
        ("interdomain", evtchn_status_u_interdomain),  # EVTCHNSTAT_interdomain
        ("pirq", ctypes.c_uint32),                     # EVTCHNSTAT_pirq
        ("virq", ctypes.c_uint32),                     # EVTCHNSTAT_virq
    ]


class evtchn_status(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),             # IN: domain owning the port
        ("port", evtchn_port_t),      # IN: the port
        ("status", ctypes.c_uint32),  # OUT: EVTCHNSTAT_*
        ("vcpu", ctypes.c_uint32),    # OUT: vCPU the port notifies
        ("u", evtchn_status_u),       # OUT: details for the status
    ]


class evtchn_bind_vcpu(ctypes.LittleEndianStructure):
    _fields_ = [
        ("port", evtchn_port_t),    # IN: port to move (not IPI or per-vCPU VIRQ ports)
        ("vcpu", ctypes.c_uint32),  # IN: vCPU to notify from now on
    ]


class evtchn_unmask(ctypes.LittleEndianStructure):
    _fields_ = [
        ("port", evtchn_port_t),  # IN: port to unmask
    ]


class evtchn_reset(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),  # IN: domain whose ports are all closed
    ]


class evtchn_init_control(ctypes.LittleEndianStructure):
    _fields_ = [
        ("control_gfn", ctypes.c_uint64),  # IN: frame holding the control block
        ("offset", ctypes.c_uint32),       # IN: its offset in that frame
        ("vcpu", ctypes.c_uint32),         # IN: vCPU it belongs to
        ("link_bits", ctypes.c_uint8),     # OUT: bits in an event word's LINK field
        ("_pad", ctypes.c_uint8 * 7),     # padding
    ]


class evtchn_expand_array(ctypes.LittleEndianStructure):
    _fields_ = [
        ("array_gfn", ctypes.c_uint64),  # IN: frame to add to the event array
    ]


class evtchn_set_priority(ctypes.LittleEndianStructure):
    _fields_ = [
        ("port", evtchn_port_t),        # IN: port
        ("priority", ctypes.c_uint32),  # IN: 0 (highest) .. 15 (lowest)
    ]


class evtchn_op_u(LittleEndianUnion):
    _fields_ = [
        ("alloc_unbound", evtchn_alloc_unbound),        # EVTCHNOP_alloc_unbound
        ("bind_interdomain", evtchn_bind_interdomain),  # EVTCHNOP_bind_interdomain
        ("bind_virq", evtchn_bind_virq),                # EVTCHNOP_bind_virq
        ("bind_pirq", evtchn_bind_pirq),                # EVTCHNOP_bind_pirq
        ("bind_ipi", evtchn_bind_ipi),                  # EVTCHNOP_bind_ipi
        ("close", evtchn_close),                        # EVTCHNOP_close
        ("send", evtchn_send),                          # EVTCHNOP_send
        ("status", evtchn_status),                      # EVTCHNOP_status
        ("bind_vcpu", evtchn_bind_vcpu),                # EVTCHNOP_bind_vcpu
        ("unmask", evtchn_unmask),                      # EVTCHNOP_unmask
    ]


class evtchn_op(ctypes.LittleEndianStructure):
    # Argument of the old HYPERVISOR_event_channel_op_compat(struct evtchn_op *).
    _fields_ = [
        ("cmd", ctypes.c_uint32),  # EVTCHNOP_* command
        ("u", evtchn_op_u),        # that command's struct
    ]


# ---------------------------------------------------------------------------
# 2-level ABI: pending/mask bitmaps in shared_info, selector in vcpu_info.
# ---------------------------------------------------------------------------

# 8 * 8 * 64 = 4096 ports on x86_64.
EVTCHN_2L_NR_CHANNELS = ctypes.sizeof(xen_ulong_t) * ctypes.sizeof(xen_ulong_t) * 64


# ---------------------------------------------------------------------------
# FIFO ABI: per-port 32-bit event words in guest-provided array pages,
# per-vCPU control blocks holding queue heads, one queue per priority.
# ---------------------------------------------------------------------------

EVTCHN_FIFO_PRIORITY_MAX = 0       # highest priority
EVTCHN_FIFO_PRIORITY_DEFAULT = 7   # priority of a new port
EVTCHN_FIFO_PRIORITY_MIN = 15      # lowest priority
EVTCHN_FIFO_MAX_QUEUES = EVTCHN_FIFO_PRIORITY_MIN + 1

# An event word: one per port, in the guest's event array pages
# (EVTCHNOP_expand_array adds them in port order).  Xen sets PENDING, and
# LINKED and the tail's LINK when it queues an unmasked event; the guest
# may set or clear MASKED, clear PENDING, and clear LINKED (with LINK) as
# it consumes; BUSY is Xen's hold on a tail word while it links onto it.
event_word_t = ctypes.c_uint32

EVTCHN_FIFO_PENDING = 31  # bit: event pending
EVTCHN_FIFO_MASKED = 30   # bit: event masked
EVTCHN_FIFO_LINKED = 29   # bit: word is on a queue
EVTCHN_FIFO_BUSY = 28     # bit: Xen is updating the word
EVTCHN_FIFO_LINK_BITS = 17                               # LINK field width (next port)
EVTCHN_FIFO_LINK_MASK = (1 << EVTCHN_FIFO_LINK_BITS) - 1
EVTCHN_FIFO_NR_CHANNELS = 1 << EVTCHN_FIFO_LINK_BITS     # ports the FIFO ABI can address


class evtchn_fifo_control_block(ctypes.LittleEndianStructure):
    # One per vCPU, in a guest frame at an 8-byte aligned offset that keeps
    # it inside the page (EVTCHNOP_init_control).  Xen sets a READY bit and
    # writes HEAD only when it links an event onto an empty queue; the guest
    # follows each word's LINK from there and clears READY when it empties it.
    _fields_ = [
        ("ready", ctypes.c_uint32),                          # bit per priority: queue non-empty
        ("_rsvd", ctypes.c_uint32),                          # reserved
        ("head", evtchn_port_t * EVTCHN_FIFO_MAX_QUEUES),    # first port of each queue
    ]


# ---------------------------------------------------------------------------
# Virtual IRQs (xen.h), for EVTCHNOP_bind_virq.  "per-vCPU" ones can be bound
# once on each vCPU; "global" ones are bound on vCPU 0 and may be moved.
# ---------------------------------------------------------------------------

VIRQ_TIMER = 0        # per-vCPU: timer fired / time values updated
VIRQ_DEBUG = 1        # per-vCPU: please dump debug state
VIRQ_CONSOLE = 2      # global, dom0: input on the Xen emergency console
VIRQ_DOM_EXC = 3      # global, dom0: something exceptional happened to a domain
VIRQ_TBUF = 4         # global, dom0: trace buffer has records
VIRQ_DEBUGGER = 6     # global, dom0: a domain paused for debugging
VIRQ_XENOPROF = 7     # per-vCPU: new profiling sample
VIRQ_CON_RING = 8     # global, dom0: bytes in the Xen console ring
VIRQ_PCPU_STATE = 9   # global, dom0: a physical CPU changed state
VIRQ_MEM_EVENT = 10   # global, dom0: a memory event occurred
VIRQ_ARGO = 11        # global: Argo message notification
VIRQ_ENOMEM = 12      # global, dom0: Xen is low on heap memory
VIRQ_XENPMU = 13      # per-vCPU: performance counter interrupt
# Architecture-specific VIRQs.
VIRQ_ARCH_0 = 16
VIRQ_ARCH_1 = 17
VIRQ_ARCH_2 = 18
VIRQ_ARCH_3 = 19
VIRQ_ARCH_4 = 20
VIRQ_ARCH_5 = 21
VIRQ_ARCH_6 = 22
VIRQ_ARCH_7 = 23

NR_VIRQS = 24
