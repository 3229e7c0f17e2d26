"""Hypercall-sequence generation, one module per hypercall family (as
pyxenon/hypercalls/): GENERATORS maps each number to its weight and
generator."""
import struct

from pyxenon.public import xen

from ..common import MASK64
from ..ops import call_op
from .evtchn import gen_event_channel_op
from .grant import gen_grant_table_op
from .mm import (gen_memory_op, gen_mmu_update, gen_mmuext_op, gen_set_gdt, gen_update_descriptor,
                 gen_update_va_mapping, gen_update_va_mapping_otherdomain)
from .sched import gen_sched_op, gen_set_timer_op, gen_vcpu_op
from .traps import (gen_callback_op, gen_console_io, gen_iret, gen_set_segment_base,
                    gen_set_trap_table, gen_simple, gen_vm_assist, gen_xen_version)


def gen_multicall(m, dom, slot):
    entries = []
    for _ in range(m.rng.randrange(1, 4)):
        op = m.rng.choice(SIMPLE_NRS) if m.chance(0.9) else m.integer()
        args = [m.rng.choice((m.integer(), m.scratch(dom), m.small())) for _ in range(6)]
        entries.append(struct.pack("<QQ6Q", op & MASK64, 0, *[a & MASK64 for a in args]))
    count = len(entries) if m.chance(0.9) else m.count()
    return m.buffer_call(dom, slot, xen.HYPERVISOR_multicall, (), data=b"".join(entries),
                         tail=(count,))


def gen_unknown(m, dom, slot):
    """A number with no handler (or any number at all)."""
    roll = m.rng.random()
    if roll < 0.5:
        nr = m.rng.choice([n for n in range(64) if n not in GENERATORS])
    elif roll < 0.8:
        nr = m.rng.randrange(64)
    else:
        nr = m.rng.choice((64, 255, 0xFFFFFFFF, MASK64, m.integer()))
    return call_op(slot, nr, [m.integer() for _ in range(5)])


GENERATORS = {      # nr: (weight, generator)
    xen.HYPERVISOR_set_trap_table: (3, gen_set_trap_table),
    xen.HYPERVISOR_mmu_update: (14, gen_mmu_update),
    xen.HYPERVISOR_set_gdt: (3, gen_set_gdt),
    xen.HYPERVISOR_stack_switch: (1, gen_simple(xen.HYPERVISOR_stack_switch, "int", "va")),
    xen.HYPERVISOR_set_callbacks: (1, gen_simple(xen.HYPERVISOR_set_callbacks, "va", "va", "va")),
    xen.HYPERVISOR_fpu_taskswitch: (1, gen_simple(xen.HYPERVISOR_fpu_taskswitch, "small")),
    xen.HYPERVISOR_set_debugreg: (2, gen_simple(xen.HYPERVISOR_set_debugreg, "small", "int")),
    xen.HYPERVISOR_get_debugreg: (2, gen_simple(xen.HYPERVISOR_get_debugreg, "small")),
    xen.HYPERVISOR_update_descriptor: (3, gen_update_descriptor),
    xen.HYPERVISOR_memory_op: (4, gen_memory_op),
    xen.HYPERVISOR_multicall: (3, gen_multicall),
    xen.HYPERVISOR_update_va_mapping: (10, gen_update_va_mapping),
    xen.HYPERVISOR_set_timer_op: (1, gen_set_timer_op),
    xen.HYPERVISOR_xen_version: (2, gen_xen_version),
    xen.HYPERVISOR_console_io: (2, gen_console_io),
    xen.HYPERVISOR_grant_table_op: (10, gen_grant_table_op),
    xen.HYPERVISOR_vm_assist: (1, gen_vm_assist),
    xen.HYPERVISOR_update_va_mapping_otherdomain: (2, gen_update_va_mapping_otherdomain),
    xen.HYPERVISOR_iret: (1, gen_iret),
    xen.HYPERVISOR_vcpu_op: (4, gen_vcpu_op),
    xen.HYPERVISOR_set_segment_base: (1, gen_set_segment_base),
    xen.HYPERVISOR_mmuext_op: (10, gen_mmuext_op),
    xen.HYPERVISOR_sched_op: (3, gen_sched_op),
    xen.HYPERVISOR_callback_op: (2, gen_callback_op),
    xen.HYPERVISOR_event_channel_op: (10, gen_event_channel_op),
}
UNKNOWN_WEIGHT = 3
SIMPLE_NRS = sorted(set(GENERATORS) - {xen.HYPERVISOR_multicall, xen.HYPERVISOR_iret})
