"""vcpu_op and set_timer_op: a domain's vcpus coming up and going down,
their timers, runstate and vcpu_info.

Every vcpu of the domain (0 .. max_vcpus-1) exists from its creation;
vcpu 0 starts up, the others down and not initialised until the guest
gives them a context (VCPUOP_initialise, hypercalls/vcpu_context.py) and
brings them up.  A vcpu id past the domain's is -ENOENT (Xen's
domain_vcpu).  A timer that expires raises VIRQ_TIMER on its vcpu (the
scheduler fires it).
"""
import ctypes
import struct

from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import read_struct, read_u64s
from pyxenon.hypervisor.mm import WRITABLE
from pyxenon.public import arch_x86, errno, event_channel as ev, sched, vcpu as vc, xen

from .vcpu_context import initialise

INFO_SIZE = ctypes.sizeof(xen.vcpu_info)
PAGE = 4096
STIME_DELTA_MAX = (1 << 64) - 1 >> 2   # Xen's bound on a periodic timer's period
RUNSTATE_running, RUNSTATE_runnable, RUNSTATE_blocked, RUNSTATE_offline = range(4)


def do_set_timer_op(vcpu, timeout, *_):
    """timeout: absolute system time (ns); 0 cancels.  A past time fires at once."""
    vcpu.timer_at = timeout or None
    return 0


def op_is_up(caller, vcpu, arg):
    return int(vcpu.up)


def op_up(caller, vcpu, arg):
    """Xen's VCPUOP_up: -EINVAL until initialised; then not down any more."""
    if not vcpu.initialised:
        raise HypercallError(errno.EINVAL)
    vcpu.up = True
    return 0


def op_initialise(caller, vcpu, arg):
    """default_initialise_vcpu: the context is read whole first (-EFAULT)."""
    context = read_struct(caller, arg, arch_x86.vcpu_guest_context)
    return initialise(caller, vcpu, context, (vc.VCPUOP_initialise, vcpu.vcpu_id, arg))


def op_down(caller, vcpu, arg):
    """Xen's VCPUOP_down (common/domain.c): when no other vcpu is up, the
    domain powers off (Linux's halt path downs its last vcpu) and this one
    stays up; else the vcpu goes down, and if it is the caller it leaves
    the engine now (vcpu_sleep_nosync)."""
    domain = vcpu.domain
    if not any(v.up for v in domain.vcpus if v is not vcpu):
        domain.shutdown(sched.SHUTDOWN_poweroff)
        return 0
    vcpu.up = False
    if vcpu is caller:
        caller.stop()
    return 0


def op_set_singleshot_timer(caller, vcpu, arg):
    """As Xen 4.17's VCPUOP_set_singleshot_timer (common/domain.c): a
    deadline already past stops the timer and sends the timer event now,
    flags or not (VCPU_SSHOTTMR_future is no longer honoured)."""
    if vcpu is not caller:
        raise HypercallError(errno.EINVAL)      # a vcpu's own timer only
    timer = read_struct(vcpu, arg, vc.vcpu_set_singleshot_timer)
    if timer.timeout_abs_ns < vcpu.domain.machine.now():
        vcpu.timer_at = None
        vcpu.domain.events.raise_virq(ev.VIRQ_TIMER, vcpu.vcpu_id)   # send_timer_event
        return 0
    vcpu.timer_at = timer.timeout_abs_ns
    return 0


def op_stop_singleshot_timer(caller, vcpu, arg):
    if vcpu is not caller:
        raise HypercallError(errno.EINVAL)
    vcpu.timer_at = None
    return 0


def op_set_periodic_timer(caller, vcpu, arg):
    period = read_u64s(caller, arg, 1)[0]
    if period < 1_000_000 or period > STIME_DELTA_MAX:   # Xen's bounds: 1 ms ..
        raise HypercallError(errno.EINVAL)
    vcpu.timer_period = period
    vcpu.timer_at = vcpu.domain.machine.now() + period
    return 0


def op_stop_periodic_timer(caller, vcpu, arg):
    vcpu.timer_period = 0
    return 0


def runstate_state(caller, vcpu):
    """vcpu_runstate_get's state: offline while down, blocked while
    blocked or polling, running for the vcpu asking, else runnable."""
    if not vcpu.up:
        return RUNSTATE_offline
    if not vcpu.runnable:
        return RUNSTATE_blocked
    return RUNSTATE_running if vcpu is caller else RUNSTATE_runnable


def runstate_bytes(caller, vcpu):
    mask = (1 << 64) - 1
    now = vcpu.domain.machine.now()
    times = list(vcpu.runstate)
    times[RUNSTATE_offline] += vcpu.offline_time()
    return struct.pack("<iIQ4Q", runstate_state(caller, vcpu), 0, now & mask,
                       *(t & mask for t in times))


def op_get_runstate_info(caller, vcpu, arg):
    from pyxenon.hypervisor.guestmem import copy_to_guest

    copy_to_guest(caller, arg, runstate_bytes(caller, vcpu))
    return 0


def op_register_runstate_memory_area(caller, vcpu, arg):
    vcpu.core.runstate_va = read_u64s(caller, arg, 1)[0]   # written at each slice's start
    return 0


def op_register_vcpu_time_memory_area(caller, vcpu, arg):
    vcpu.core.time_va = read_u64s(caller, arg, 1)[0]       # written at each slice's start
    return 0


def op_register_vcpu_info(caller, vcpu, arg):
    """Move vcpu_info into a frame of the guest's (once, as in Xen)."""
    reg = read_struct(caller, arg, vc.vcpu_register_vcpu_info)
    frames = vcpu.domain.machine.frame_table
    if vcpu.info_registered or reg.offset + INFO_SIZE > PAGE or not frames.owned(reg.mfn, vcpu.domain):
        raise HypercallError(errno.EINVAL)
    # The hypervisor writes vcpu_info: the frame keeps a writable type for
    # good, so it can never become a page table or descriptor page.
    frames.get_page_and_type(reg.mfn, vcpu, WRITABLE)
    ma = reg.mfn * PAGE + reg.offset
    mem = vcpu.domain.machine.mem
    mem[ma:ma + INFO_SIZE] = bytes(vcpu.info)
    vcpu.info = xen.vcpu_info.from_buffer(mem, ma)
    vcpu.core.vcpu_info_ma = ma
    vcpu.info_registered = True
    return 0


def op_send_nmi(caller, vcpu, arg):
    """arch/x86/domain.c do_vcpu_op: the argument must be NULL; the NMI
    is pending until vcpu returns to the guest (hypervisor/traps.py
    deliver_nmi), and a second one while it is pending is lost, as
    test_and_set_bool(nmi_pending) loses it.  vcpu_kick ends a block or a
    poll; the caller leaves the engine so that an NMI to itself, or to a
    vcpu the C core would switch to, is delivered on its way back."""
    if arg:
        raise HypercallError(errno.EINVAL)
    if not vcpu.nmi_pending:
        vcpu.nmi_pending = True
        if not vcpu.runnable:
            vcpu.wake()                     # vcpu_unblock
        caller.stop()
    return 0


def op_get_physid(caller, vcpu, arg):
    """Refused: EINVAL hardware domain's pinned vcpus only (do_vcpu_op: is_hwdom_pinned_vcpu, before the copy)"""
    raise HypercallError(errno.EINVAL)


OPS = {
    vc.VCPUOP_send_nmi: op_send_nmi,
    vc.VCPUOP_get_physid: op_get_physid,
    vc.VCPUOP_initialise: op_initialise,
    vc.VCPUOP_up: op_up,
    vc.VCPUOP_down: op_down,
    vc.VCPUOP_is_up: op_is_up,
    vc.VCPUOP_get_runstate_info: op_get_runstate_info,
    vc.VCPUOP_register_runstate_memory_area: op_register_runstate_memory_area,
    vc.VCPUOP_set_periodic_timer: op_set_periodic_timer,
    vc.VCPUOP_stop_periodic_timer: op_stop_periodic_timer,
    vc.VCPUOP_set_singleshot_timer: op_set_singleshot_timer,
    vc.VCPUOP_stop_singleshot_timer: op_stop_singleshot_timer,
    vc.VCPUOP_register_vcpu_info: op_register_vcpu_info,
    vc.VCPUOP_register_vcpu_time_memory_area: op_register_vcpu_time_memory_area,
}


def do_vcpu_op(vcpu, cmd, vcpu_id, arg, *_):
    """cmd on the caller's domain's vcpu vcpu_id (an unsigned int)."""
    vcpu_id &= 0xFFFFFFFF
    if vcpu_id >= len(vcpu.domain.vcpus):
        raise HypercallError(errno.ENOENT)
    return sub_op(OPS, cmd)(vcpu, vcpu.domain.vcpus[vcpu_id], arg)


HYPERCALLS = {xen.HYPERVISOR_vcpu_op: do_vcpu_op, xen.HYPERVISOR_set_timer_op: do_set_timer_op}
