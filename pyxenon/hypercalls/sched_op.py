"""sched_op: yield, block, poll, shutdown and the domain watchdog."""
from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import read_struct, read_u32s
from pyxenon.public import errno, sched, xen

MAX_POLL_PORTS = 128      # Xen refuses larger poll sets
NR_WATCHDOGS = 2          # Xen's NR_DOMAIN_WATCHDOG_TIMERS
SECOND = 1_000_000_000


def sched_yield(vcpu, arg):
    vcpu.stop()
    return 0


def sched_block(vcpu, arg):
    """Enable event delivery, then sleep unless an upcall is already pending."""
    info = vcpu.domain.vcpu_info(vcpu.vcpu_id)
    info.evtchn_upcall_mask = 0
    if not info.evtchn_upcall_pending:
        vcpu.block()
    return 0


def sched_shutdown(vcpu, arg):
    reason = read_struct(vcpu, arg, sched.sched_shutdown).reason & 0xFF
    vcpu.domain.shutdown(reason)
    return 0


def sched_shutdown_code(vcpu, arg):
    """Remember the reason a later shutdown (e.g. by the host) reports."""
    vcpu.domain.pending_shutdown_code = read_struct(vcpu, arg, sched.sched_shutdown).reason & 0xFF
    return 0


def sched_poll(vcpu, arg):
    """Sleep until one of the ports is pending or the (absolute) timeout."""
    poll = read_struct(vcpu, arg, sched.sched_poll)
    if poll.nr_ports > MAX_POLL_PORTS:
        raise HypercallError(errno.EINVAL)
    ports = read_u32s(vcpu, poll.ports, poll.nr_ports)
    events = vcpu.domain.events
    if any(p >= events.max_ports for p in ports):
        raise HypercallError(errno.EINVAL)
    if any(events.is_pending(p) for p in ports):
        return 0
    vcpu.block(wake_at=poll.timeout or None, ports=set(ports))
    return 0


def sched_remote_shutdown(vcpu, arg):
    """Only a privileged domain may shut others down; no guest is one here."""
    op = read_struct(vcpu, arg, sched.sched_remote_shutdown)
    if op.domain_id not in vcpu.domain.machine.domains:
        raise HypercallError(errno.ESRCH)
    raise HypercallError(errno.EPERM)


def sched_watchdog(vcpu, arg):
    """id 0 creates a watchdog (returns its id); else re-arm, or timeout 0
    destroys it.  An expired watchdog shuts the domain down (watchdog)."""
    op = read_struct(vcpu, arg, sched.sched_watchdog)
    dogs = vcpu.domain.watchdogs
    deadline = vcpu.domain.machine.now() + op.timeout * SECOND
    if op.id == 0:
        free = [i for i in range(1, NR_WATCHDOGS + 1) if i not in dogs]
        if not free:
            raise HypercallError(errno.ENOSPC)
        dogs[free[0]] = deadline
        return free[0]
    if op.id not in dogs:
        raise HypercallError(errno.EINVAL)
    if op.timeout == 0:
        del dogs[op.id]
    else:
        dogs[op.id] = deadline
    return 0


def sched_pin_override(vcpu, arg):
    raise HypercallError(errno.EPERM)  # hardware domain only


OPS = {
    sched.SCHEDOP_yield: sched_yield,
    sched.SCHEDOP_block: sched_block,
    sched.SCHEDOP_shutdown: sched_shutdown,
    sched.SCHEDOP_poll: sched_poll,
    sched.SCHEDOP_remote_shutdown: sched_remote_shutdown,
    sched.SCHEDOP_shutdown_code: sched_shutdown_code,
    sched.SCHEDOP_watchdog: sched_watchdog,
    sched.SCHEDOP_pin_override: sched_pin_override,
}


def do_sched_op(vcpu, cmd, arg, *_):
    return sub_op(OPS, cmd)(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_sched_op: do_sched_op}
