"""Recipes: short op sequences toward deep states single calls rarely
reach.  Each is a generator of ops; it runs between them, so it can look at
what the previous ones did (as a guest reads its hypercall results)."""
import struct

from pyxenon.hypervisor import mm
from pyxenon.hypervisor.errors import GuestFault
from pyxenon.hypervisor.guestmem import copy_from_guest
from pyxenon.public import event_channel as ev, grant_table as gt, xen

from .common import PAGE
from .ops import call_op, store_op, touch_op
from .world import SCRATCH_PAGES, SLOTS


def recipe_grant_map(m, slot, granter_slot=None):
    """A granter writes a grant entry; the grantee unmaps a page and maps
    the grant there.  Returns that address (for an unmap to name)."""
    world = m.world
    granter_slot = m.rng.randrange(len(SLOTS)) if granter_slot is None else granter_slot
    granter, grantee = world.domain(granter_slot), world.domain(slot)
    ref = m.rng.randrange(16)
    frame = m.scratch_frame(granter)[1] if m.chance(0.7) else m.mfn(granter)
    flags = gt.GTF_permit_access | (gt.GTF_readonly if m.chance(0.3) else 0)
    yield grant_entry_store(m, granter_slot, granter, ref, flags, grantee.domid, frame)
    va = m.scratch_frame(grantee)[0]
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, xen.UVMF_INVLPG])
    grantee = world.domain(slot)
    if grantee is None:
        return
    mapflags = gt.GNTMAP_host_map | (gt.GNTMAP_readonly if m.chance(0.4) else 0)
    op = m.struct(grantee, gt.gnttab_map_grant_ref, host_addr=va, flags=mapflags, ref=ref,
                  dom=granter.domid)
    yield m.buffer_call(grantee, slot, xen.HYPERVISOR_grant_table_op,
                        (gt.GNTTABOP_map_grant_ref,), data=op, tail=(1,))
    return va


def grant_entry_store(m, slot, granter, ref, flags, domid, frame):
    """The granter's store of one entry in its table's layout: v1, or v2
    (now and then a sub-page or transitive grant, which maps refuse)."""
    table = granter.grant_table
    if table.version == 1:
        return store_op(slot, table.first_mfn, ref * 8, struct.pack("<HHI", flags, domid, frame & 0xFFFFFFFF))
    roll = m.rng.random()
    if roll < 0.15:
        mid = m.rng.choice((0, 8, 4095)) | m.rng.choice((8, 4088, 4096)) << 16
        flags |= gt.GTF_sub_page
    elif roll < 0.25:
        flags = flags & ~gt.GTF_type_mask | gt.GTF_transitive
        mid, frame = m.domid(granter), m.rng.randrange(16)
    else:
        mid = 0
    entry = struct.pack("<HHIQ", flags, domid, mid & 0xFFFFFFFF, frame)
    return store_op(slot, table.first_mfn, ref * 16, entry)


def recipe_grant_map_twice(m, slot):
    """One grant mapped twice, then one mapping ended: the in-use bits Xen
    keeps in the granter's entry must stay while the other one lives."""
    first_va = yield from recipe_grant_map(m, slot)
    dom = m.world.domain(slot)
    if dom is None or not dom.grant_table.maptrack:
        return
    handle = max(dom.grant_table.maptrack)
    first = dom.grant_table.maptrack[handle]
    va = m.scratch_frame(dom)[0]
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, xen.UVMF_INVLPG])
    dom = m.world.domain(slot)
    if dom is None:
        return
    mapflags = gt.GNTMAP_host_map | (gt.GNTMAP_readonly if first.readonly else 0)
    op = m.struct(dom, gt.gnttab_map_grant_ref, host_addr=va, flags=mapflags, ref=first.ref,
                  dom=first.granter.domid)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op, (gt.GNTTABOP_map_grant_ref,),
                        data=op, tail=(1,))
    dom = m.world.domain(slot)
    if dom is not None and handle in dom.grant_table.maptrack:
        # Xen's unmap undoes the host mapping it is given the address of
        op = m.struct(dom, gt.gnttab_unmap_grant_ref, handle=handle, host_addr=first_va or 0,
                      dev_bus_addr=0)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op,
                            (gt.GNTTABOP_unmap_grant_ref,), data=op, tail=(1,))


def recipe_grant_v2(m, slot):
    """A granter switches to v2 (or back), then grants and is mapped, or
    is copied from (a sub-page or transitive entry reaches only a copy)."""
    granter_slot = m.rng.randrange(len(SLOTS))
    granter = m.world.domain(granter_slot)
    version = struct.pack("<I", 2 if m.chance(0.85) else 1)
    yield m.buffer_call(granter, granter_slot, xen.HYPERVISOR_grant_table_op,
                        (gt.GNTTABOP_set_version,), data=version, tail=(1,))
    if m.chance(0.5):
        yield from recipe_grant_map(m, slot, granter_slot)
        return
    granter, grantee = m.world.domain(granter_slot), m.world.domain(slot)
    ref = m.rng.randrange(16)
    flags = gt.GTF_permit_access | (gt.GTF_readonly if m.chance(0.3) else 0)
    yield grant_entry_store(m, granter_slot, granter, ref, flags, grantee.domid,
                            m.scratch_frame(granter)[1])
    grantee = m.world.domain(slot)
    if grantee is None:
        return
    src = struct.pack("<QHH4x", ref, granter.domid, m.rng.choice((0, 8, 100)))
    dst = struct.pack("<QHH4x", m.scratch_frame(grantee)[1], xen.DOMID_SELF, 0)
    op = src + dst + struct.pack("<HHh2x", m.rng.choice((8, 40, 4096)), gt.GNTCOPY_source_gref, 0)
    yield m.buffer_call(grantee, slot, xen.HYPERVISOR_grant_table_op, (gt.GNTTABOP_copy,),
                        data=op, tail=(1,))


def recipe_grant_unmap(m, slot):
    dom = m.world.domain(slot)
    if not dom.grant_table.maptrack:
        return
    handle = m.rng.choice(sorted(dom.grant_table.maptrack))
    mapping = dom.grant_table.maptrack[handle]
    # Xen's unmap undoes only the parts it is given an address for
    host_addr = m.rng.choice((0, m.va(dom), mapping.pte_ma or 0))
    bus = m.rng.choice((0, mapping.mfn << 12, m.integer()))
    op = m.struct(dom, gt.gnttab_unmap_grant_ref, handle=handle, host_addr=host_addr,
                  dev_bus_addr=bus)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op,
                        (gt.GNTTABOP_unmap_grant_ref,), data=op, tail=(1,))


def recipe_evtchn_connect(m, slot):
    """alloc_unbound in one domain, bind_interdomain from another, then a send."""
    world = m.world
    other_slot = m.rng.randrange(len(SLOTS))
    a, b = world.domain(slot), world.domain(other_slot)
    alloc = m.struct(a, ev.evtchn_alloc_unbound, dom=xen.DOMID_SELF, remote_dom=b.domid)
    op = m.buffer_call(a, slot, xen.HYPERVISOR_event_channel_op, (ev.EVTCHNOP_alloc_unbound,),
                       data=alloc)
    yield op
    port = read_back_u32(world, slot, op["args"][1] + 4)
    b = world.domain(other_slot)
    if port is None or b is None or world.domain(slot) is None:
        return
    bind = m.struct(b, ev.evtchn_bind_interdomain, remote_dom=a.domid, remote_port=port)
    bound = m.buffer_call(b, other_slot, xen.HYPERVISOR_event_channel_op,
                          (ev.EVTCHNOP_bind_interdomain,), data=bind)
    yield bound
    local = read_back_u32(world, other_slot, bound["args"][1] + 8)
    b = world.domain(other_slot)
    if local is not None and b is not None:
        send = struct.pack("<I", local)
        yield m.buffer_call(b, other_slot, xen.HYPERVISOR_event_channel_op,
                            (m.rng.choice((ev.EVTCHNOP_send, ev.EVTCHNOP_close)),), data=send)


def recipe_fifo(m, slot):
    """The FIFO event ABI: a control block and an event array page in
    scratch frames (their words as the guest left them, or all MASKED, as
    Linux writes them), then a port's priority, a send and an unmask on it."""
    dom = m.world.domain(slot)
    offset = m.rng.choice((0, 8, 64, 4024)) if m.chance(0.8) else m.rng.randrange(4096)
    init = m.struct(dom, ev.evtchn_init_control, control_gfn=m.scratch_frame(dom)[1],
                    offset=offset, vcpu=0 if m.chance(0.9) else m.small())
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_event_channel_op, (ev.EVTCHNOP_init_control,),
                        data=init)
    array = m.scratch_frame(dom)[1]
    if m.chance(0.5):
        yield store_op(slot, array, 0, struct.pack("<I", 1 << ev.EVTCHN_FIFO_MASKED) * (PAGE // 4))
    for cmd, data in fifo_port_ops(m, dom, array):
        if m.world.domain(slot) is None:
            return
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_event_channel_op, (cmd,), data=data)


def fifo_port_ops(m, dom, array):
    port = m.port(dom) & 0xFFFFFFFF     # an edge value may be 64-bit or negative
    return ((ev.EVTCHNOP_expand_array, struct.pack("<Q", array)),
            (ev.EVTCHNOP_set_priority, struct.pack("<II", port, m.rng.choice((0, 2, 7, 15, 16)))),
            (ev.EVTCHNOP_send, struct.pack("<I", port)),
            (ev.EVTCHNOP_unmask, struct.pack("<I", port)))


def read_back_u32(world, slot, va):
    """A u32 the hypervisor wrote into the guest's buffer (as the guest reads it)."""
    dom = world.domain(slot)
    if dom is None:
        return None
    try:
        return struct.unpack("<I", copy_from_guest(dom.vcpus[0], va, 4))[0]
    except GuestFault:
        return None


def recipe_new_l1(m, slot):
    """Clear a free page, map it read-only, pin it as an L1, hook it into an L2."""
    dom = m.world.domain(slot)
    va, frame = m.scratch_frame(dom)
    ext = struct.pack("<IxxxxQQ", xen.MMUEXT_CLEAR_PAGE, frame, 0)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=ext,
                        tail=(1, 0, xen.DOMID_SELF))
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, frame << 12 | 0x65, 2])
    pin = struct.pack("<IxxxxQQ", xen.MMUEXT_PIN_L1_TABLE, frame, 0)
    dom = m.world.domain(slot)
    if dom is None:
        return
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=pin,
                        tail=(1, 0, xen.DOMID_SELF))
    l2s = [t for t, level in m.world.tables.get(dom.domid, ()) if level == mm.L2]
    dom = m.world.domain(slot)
    if l2s and dom is not None:
        req = struct.pack("<QQ", m.rng.choice(l2s) << 12 | m.rng.randrange(512) * 8,
                          frame << 12 | 0x67)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=req,
                            tail=(1, 0, xen.DOMID_SELF))


def recipe_self_reference(m, slot):
    """The isolation issue's first breach: a plain page naming itself
    writable, unmapped, then hooked in (or pinned) as a table of any level."""
    dom = m.world.domain(slot)
    va, frame = m.scratch_frame(dom)
    yield store_op(slot, frame, m.rng.randrange(512) * 8, struct.pack("<Q", frame << 12 | 0x67))
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, m.rng.choice((0, 2))])
    dom = m.world.domain(slot)
    if dom is None:
        return
    level = m.rng.choice((mm.L2, mm.L3, mm.L4))
    parents = [t for t, lv in m.world.tables.get(dom.domid, ()) if lv == level + 1]
    if parents and m.chance(0.6):
        req = struct.pack("<QQ", m.rng.choice(parents) << 12 | m.rng.randrange(256) * 8,
                          frame << 12 | 0x67)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=req,
                            tail=(1, 0, xen.DOMID_SELF))
    else:
        pin = struct.pack("<IxxxxQQ", xen.MMUEXT_PIN_L1_TABLE + level - 1, frame, 0)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=pin,
                            tail=(1, 0, xen.DOMID_SELF))


def recipe_stale_retype(m, slot):
    """The second breach: a write leaves the frame writable in the TLB, the
    mapping goes without a flush, the frame becomes a table."""
    dom = m.world.domain(slot)
    va, frame = m.scratch_frame(dom)
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, frame << 12 | 0x67, 0])
    yield touch_op(slot, va, True)
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, 0])
    dom = m.world.domain(slot)
    if dom is None:
        return
    cmd = m.rng.choice((xen.MMUEXT_PIN_L1_TABLE, xen.MMUEXT_PIN_L2_TABLE,
                        xen.MMUEXT_PIN_L3_TABLE, xen.MMUEXT_PIN_L4_TABLE))
    pin = struct.pack("<IxxxxQQ", cmd, frame, 0)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=pin,
                        tail=(1, 0, xen.DOMID_SELF))
    yield touch_op(slot, va, m.chance(0.5))


def recipe_linear_or_unhook(m, slot):
    """An upper entry naming a table of its own level (a linear entry,
    read-only or not), or cleared (a table unhooked without a flush)."""
    dom = m.world.domain(slot)
    tables = [t for t in m.world.tables.get(dom.domid, ()) if t[1] >= mm.L2]
    if not tables:
        return
    table, level = m.rng.choice(tables)
    same = [t for t, lv in m.world.tables.get(dom.domid, ()) if lv == level]
    val = m.rng.choice(same) << 12 | m.rng.choice((0x25, 0x27)) if m.chance(0.7) else 0
    req = struct.pack("<QQ", table << 12 | m.rng.randrange(512) * 8, val)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=req,
                        tail=(1, 0, xen.DOMID_SELF))
    yield touch_op(slot, m.va(dom), m.chance(0.5))


def recipe_long_batch(m, slot):
    """A multicall of grant-table batches, each over the megabytes of free
    padding: how long can one hypercall keep the hypervisor busy?"""
    dom = m.world.domain(slot)
    region = dom.layout.stack + PAGE * (SCRATCH_PAGES + 1)
    cmd = m.rng.choice((gt.GNTTABOP_query_size, gt.GNTTABOP_setup_table, gt.GNTTABOP_copy))
    entry = struct.pack("<QQ6Q", xen.HYPERVISOR_grant_table_op, 0, cmd, region, 0x7FFFFFFF,
                        0, 0, 0)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_multicall, (), data=entry * 16, tail=(16,))


RECIPES = (recipe_grant_map, recipe_grant_map, recipe_grant_unmap, recipe_evtchn_connect,
           recipe_new_l1) * 2 + (recipe_self_reference, recipe_stale_retype,
                                 recipe_linear_or_unhook, recipe_grant_map_twice, recipe_grant_v2,
                                 recipe_fifo)
RECIPE_CHANCE = 0.08          # a step is a recipe
LONG_BATCH_CHANCE = 0.00002   # a step is recipe_long_batch (each costs up to CALL_LIMIT)
