"""Generators for the trap, callback, version and console calls, and
the calls whose arguments are drawn by kind alone."""
from pyxenon.hypercalls import traps as traps_op, xen_version
from pyxenon.public import arch_x86, callback, version, xen

from ..ops import call_op
from ..values import sub_op


def gen_set_trap_table(m, dom, slot):
    if m.chance(0.1):
        return call_op(slot, xen.HYPERVISOR_set_trap_table, [m.rng.choice((0, m.va(dom)))])
    entries = b"".join(m.struct(dom, arch_x86.trap_info, vector=m.rng.randrange(256),
                                address=m.va(dom)) for _ in range(m.rng.randrange(1, 6)))
    end = bytes(16) if m.chance(0.7) else b""
    return m.buffer_call(dom, slot, xen.HYPERVISOR_set_trap_table, (), data=entries + end)


def gen_xen_version(m, dom, slot):
    cmd = sub_op(m, xen_version.OPS)
    ctype = version.xen_feature_info if cmd == version.XENVER_get_features else None
    if ctype is None and m.chance(0.5):
        return call_op(slot, xen.HYPERVISOR_xen_version, [cmd, m.va(dom)])
    return m.buffer_call(dom, slot, xen.HYPERVISOR_xen_version, (cmd,), ctype)


def gen_console_io(m, dom, slot):
    cmd = sub_op(m, {xen.CONSOLEIO_write, xen.CONSOLEIO_read})
    count = m.rng.randrange(200) if m.chance(0.95) else m.count()
    return m.buffer_call(dom, slot, xen.HYPERVISOR_console_io, (cmd, count),
                         data=m.random_bytes(m.rng.randrange(1, 200)))


def gen_vm_assist(m, dom, slot):
    return call_op(slot, xen.HYPERVISOR_vm_assist, [m.rng.choice((0, 1, 2, m.integer())),
                                                    m.small()])


def gen_iret(m, dom, slot):
    """iret reads its frame at the vcpu's rsp: write a random one there."""
    rsp = dom.vcpus[0].regs()["rsp"]
    frame = m.struct(dom, arch_x86.iret_context, cs=m.rng.choice((0xE033, 0xE02B, 3, 0)),
                     rflags=m.rng.choice((0x202, 0x2, m.integer())))
    return call_op(slot, xen.HYPERVISOR_iret, [], [(rsp, frame)])


def gen_set_segment_base(m, dom, slot):
    which = m.rng.randrange(4) if m.chance(0.9) else m.integer()
    return call_op(slot, xen.HYPERVISOR_set_segment_base, [which, m.va(dom)])


def gen_callback_op(m, dom, slot):
    cmd = sub_op(m, traps_op.CALLBACK_OPS)
    ctype = callback.callback_unregister if cmd == callback.CALLBACKOP_unregister \
        else callback.callback_register
    return m.buffer_call(dom, slot, xen.HYPERVISOR_callback_op, (cmd,), ctype)


def gen_simple(nr, *draws):
    """A generator for a call whose arguments are drawn by name."""
    def gen(m, dom, slot):
        return call_op(slot, nr, [m.of_kind(kind, dom) for kind in draws])
    return gen
