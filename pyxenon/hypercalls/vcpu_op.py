"""vcpu_op and set_timer_op: a vcpu's timers, runstate and vcpu_info.

One vcpu per domain for now (vcpu 0, always up); other vcpu ids are
-ENOENT as for a domain created with one vcpu.  A timer that expires raises
VIRQ_TIMER on the vcpu (the scheduler fires it).
"""
import ctypes
import struct

from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import read_struct, read_u64s
from pyxenon.hypervisor.mm import WRITABLE
from pyxenon.public import errno, event_channel as ev, sched, vcpu as vc, xen

INFO_SIZE = ctypes.sizeof(xen.vcpu_info)
PAGE = 4096


def do_set_timer_op(vcpu, timeout, *_):
    """timeout: absolute system time (ns); 0 cancels.  A past time fires at once."""
    vcpu.timer_at = timeout or None
    return 0


def op_is_up(vcpu, arg):
    return 1


def op_up(vcpu, arg):
    return 0          # vcpu 0 is already up


def op_initialise(vcpu, arg):
    raise HypercallError(errno.EEXIST)   # only for a vcpu not yet initialised


def op_down(vcpu, arg):
    """Xen's VCPUOP_down (common/domain.c): the last vcpu going down powers
    the domain off -- with one vcpu, always (Linux's halt path)."""
    vcpu.domain.shutdown(sched.SHUTDOWN_poweroff)
    return 0


def op_set_singleshot_timer(vcpu, arg):
    """As Xen 4.17's VCPUOP_set_singleshot_timer (common/domain.c): a
    deadline already past stops the timer and sends the timer event now,
    flags or not (VCPU_SSHOTTMR_future is no longer honoured)."""
    timer = read_struct(vcpu, arg, vc.vcpu_set_singleshot_timer)
    if timer.timeout_abs_ns < vcpu.domain.machine.now():
        vcpu.timer_at = None
        vcpu.domain.events.raise_virq(ev.VIRQ_TIMER, vcpu.vcpu_id)   # send_timer_event
        return 0
    vcpu.timer_at = timer.timeout_abs_ns
    return 0


def op_stop_singleshot_timer(vcpu, arg):
    vcpu.timer_at = None
    return 0


def op_set_periodic_timer(vcpu, arg):
    period = read_u64s(vcpu, arg, 1)[0]
    if period < 1_000_000:          # Xen's lower bound: 1 ms
        raise HypercallError(errno.EINVAL)
    vcpu.timer_period = period
    vcpu.timer_at = vcpu.domain.machine.now() + period
    return 0


def op_stop_periodic_timer(vcpu, arg):
    vcpu.timer_period = 0
    return 0


def runstate_bytes(vcpu):
    mask = (1 << 64) - 1
    now = vcpu.domain.machine.now()
    return struct.pack("<iIQ4Q", 0, 0, now & mask, *(t & mask for t in vcpu.runstate))


def op_get_runstate_info(vcpu, arg):
    from pyxenon.hypervisor.guestmem import copy_to_guest

    copy_to_guest(vcpu, arg, runstate_bytes(vcpu))
    return 0


def op_register_runstate_memory_area(vcpu, arg):
    vcpu.core.runstate_va = read_u64s(vcpu, arg, 1)[0]   # written at each slice's start
    return 0


def op_register_vcpu_time_memory_area(vcpu, arg):
    vcpu.core.time_va = read_u64s(vcpu, arg, 1)[0]       # written at each slice's start
    return 0


def op_register_vcpu_info(vcpu, arg):
    """Move vcpu_info into a frame of the guest's (once, as in Xen)."""
    reg = read_struct(vcpu, arg, vc.vcpu_register_vcpu_info)
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


OPS = {
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
    if vcpu_id >= len(vcpu.domain.vcpus):
        raise HypercallError(errno.ENOENT)
    return sub_op(OPS, cmd)(vcpu.domain.vcpus[vcpu_id], arg)


HYPERCALLS = {xen.HYPERVISOR_vcpu_op: do_vcpu_op, xen.HYPERVISOR_set_timer_op: do_set_timer_op}
