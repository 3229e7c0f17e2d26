"""Generators for the memory-management family: mmu_update, mmuext_op,
update_va_mapping (and _otherdomain), set_gdt, update_descriptor,
memory_op.  Each makes one call op for (maker, dom, slot)."""
import struct

from pyxenon.hypercalls import memory_op, mmu
from pyxenon.public import memory, xen

from ..common import MASK64
from ..ops import call_op
from ..values import sub_op


def gen_mmu_update(m, dom, slot):
    reqs = []
    for _ in range(m.rng.randrange(1, 5)):
        cmd = m.rng.choice((0, 0, 0, 1, 2, 3))
        reqs.append(struct.pack("<QQ", (m.table_slot(dom) | cmd) & MASK64, m.pte(dom) & MASK64))
    count = len(reqs) if m.chance(0.85) else m.count()
    done = m.scratch(dom) if m.chance(0.5) else m.rng.choice((0, m.va(dom)))
    foreign = xen.DOMID_SELF if m.chance(0.85) else m.domid(dom)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=b"".join(reqs),
                         tail=(count, done, foreign))


def gen_set_gdt(m, dom, slot):
    frames = b"".join(struct.pack("<Q", m.mfn(dom)) for _ in range(m.rng.randrange(1, 4)))
    entries = m.rng.choice((0, 1, 8, 512, 513, 1024, 7168, 7169, m.integer()))
    return m.buffer_call(dom, slot, xen.HYPERVISOR_set_gdt, (), data=frames, tail=(entries,))


def gen_update_descriptor(m, dom, slot):
    maddr = m.mfn(dom) << 12 | (m.rng.randrange(512) * 8 if m.chance(0.9) else m.rng.randrange(4096))
    desc = m.rng.choice((0, 0x00AFFB000000FFFF, 0x00CFF3000000FFFF, 0x00AF9B000000FFFF,
                         0x0000EC0000080000, m.integer()))
    return call_op(slot, xen.HYPERVISOR_update_descriptor, [maddr, desc])


MEMORY_STRUCTS = {
    memory.XENMEM_current_reservation: memory.xen_memory_domain,
    memory.XENMEM_maximum_reservation: memory.xen_memory_domain,
    memory.XENMEM_machphys_mfn_list: memory.xen_machphys_mfn_list,
    memory.XENMEM_add_to_physmap: memory.xen_add_to_physmap,
    memory.XENMEM_memory_map: memory.xen_memory_map,
    memory.XENMEM_machphys_mapping: memory.xen_machphys_mapping,
    memory.XENMEM_increase_reservation: memory.xen_memory_reservation,
    memory.XENMEM_populate_physmap: memory.xen_memory_reservation,
}


def gen_memory_op(m, dom, slot):
    cmd = sub_op(m, memory_op.OPS)
    if m.chance(0.1):
        cmd |= m.rng.randrange(1, 1 << 10) << 6          # a continuation's start extent
    return m.buffer_call(dom, slot, xen.HYPERVISOR_memory_op, (cmd,),
                         MEMORY_STRUCTS.get(cmd & memory_op.CMD_MASK))


def uvmf(m):
    return m.rng.choice((0, 1, 2, 3, 4, 5, m.integer()))


def gen_update_va_mapping(m, dom, slot):
    va = m.va(dom) if m.chance(0.4) else m.scratch_frame(dom)[0]
    return call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, m.pte(dom), uvmf(m)])


def gen_update_va_mapping_otherdomain(m, dom, slot):
    va = m.va(dom) if m.chance(0.4) else m.scratch_frame(dom)[0]
    return call_op(slot, xen.HYPERVISOR_update_va_mapping_otherdomain,
                   [va, m.pte(dom), uvmf(m), m.domid(dom)])


def mmuext_arg(m, dom, cmd):
    if cmd in (xen.MMUEXT_INVLPG_LOCAL, xen.MMUEXT_INVLPG_ALL, xen.MMUEXT_SET_LDT):
        return m.va(dom)
    return m.mfn(dom)


def gen_mmuext_op(m, dom, slot):
    ops = []
    for _ in range(m.rng.randrange(1, 4)):
        cmd = sub_op(m, mmu.EXT_OPS, spread=6) & 0xFFFFFFFF
        arg2 = m.rng.choice((m.mfn(dom), m.scratch(dom), m.small()))
        ops.append(struct.pack("<IxxxxQQ", cmd, mmuext_arg(m, dom, cmd) & MASK64, arg2 & MASK64))
    count = len(ops) if m.chance(0.9) else m.count()
    done = m.rng.choice((0, m.scratch(dom), m.va(dom)))
    foreign = xen.DOMID_SELF if m.chance(0.85) else m.domid(dom)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=b"".join(ops),
                         tail=(count, done, foreign))
