"""Property test of the grant paths: random grants, maps, unmaps, revocations
and domain destructions; after each step no domain maps a frame of another
without a live grant the policy allowed, and a destroyed domain's frames are
mapped nowhere."""
import pathlib
import struct

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pyxenon.hypervisor import mm
from pyxenon.public import grant_table as gt, xen
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

GUESTS = pathlib.Path(__file__).resolve().parent.parent / "guests"
PAGE = 4096
POLICY = """
version = 1
[labels]
a = "granter"
b = "may map a's grants"
c = "may not"
[[allow]]
from = "b"
to = "a"
paths = ["grant_map"]
access = "readwrite"
"""
ALLOWED = {("b", "a")}


class GrantMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.host = Host(memory_mib=256, policy=parse_policy(POLICY, "p.toml"), audit=lambda r: None)
        self.doms = {n: self.host.create(str(GUESTS / "hello.cfg"),
                                         overrides=[f'name="{n}"', f'seclabel="{n}"'])
                     for n in "abc"}
        self.dead = []          # (first_mfn, count) of destroyed domains

    def teardown(self):
        self.host.close()

    def live(self, name):
        dom = self.doms.get(name)
        return dom if dom is not None and dom.state != "dead" else None

    def scratch(self, dom):
        return dom.layout.stack + PAGE

    def put(self, dom, data):
        ma = dom.pfn_to_mfn(dom.layout.pfn(self.scratch(dom))) * PAGE
        self.host.machine.mem[ma:ma + len(data)] = data

    @rule(ref=st.integers(0, 3), grantee=st.sampled_from("bc"), pfn=st.integers(0, 30),
          readonly=st.booleans(), revoke=st.booleans())
    def grant(self, ref, grantee, pfn, readonly, revoke):
        a, other = self.live("a"), self.live(grantee)
        if a is None or other is None:
            return
        flags = 0 if revoke else gt.GTF_permit_access | (gt.GTF_readonly if readonly else 0)
        mfn = a.pfn_to_mfn(a.layout.pfn(a.layout.virt_end) + pfn)
        struct.pack_into("<HHI", self.host.machine.mem, a.grant_table.first_mfn * PAGE + ref * 8,
                         flags, other.domid, mfn)

    @rule(grantee=st.sampled_from("bc"), ref=st.integers(0, 4), slot=st.integers(2, 40),
          readonly=st.booleans())
    def map(self, grantee, ref, slot, readonly):
        dom, a = self.live(grantee), self.live("a")
        if dom is None:
            return
        va = dom.layout.stack + slot * PAGE
        dom.dispatch(dom.vcpus[0], xen.HYPERVISOR_update_va_mapping, va, 0, 0, 0, 0)
        op = struct.pack("<QIIHhIQ", va, gt.GNTMAP_host_map | (gt.GNTMAP_readonly if readonly else 0),
                         ref, a.domid if a else 999, 0, 0, 0)
        self.put(dom, op)
        dom.dispatch(dom.vcpus[0], xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_map_grant_ref,
                     self.scratch(dom), 1, 0, 0)

    @rule(grantee=st.sampled_from("bc"), handle=st.integers(0, 5))
    def unmap(self, grantee, handle):
        dom = self.live(grantee)
        if dom is None:
            return
        self.put(dom, struct.pack("<QQIh", 0, 0, handle, 0))
        dom.dispatch(dom.vcpus[0], xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_unmap_grant_ref,
                     self.scratch(dom), 1, 0, 0)

    @precondition(lambda self: self.live("a") is not None and self.doms["b"].grant_table.maptrack)
    @rule()
    def destroy_granter(self):
        a = self.doms["a"]
        self.dead.append((a.first_mfn, a.nr_pages))
        self.host.machine.destroy_domain(a)

    def foreign_ptes(self, dom):
        """(mfn, pte) of present L1 entries naming frames dom does not own."""
        t = self.host.machine.frame_table
        for table in range(dom.first_mfn, dom.first_mfn + dom.nr_pages):
            if t.frames[table].type != mm.L1 or not t.frames[table].type_count:
                continue
            for i in range(512):
                e = t.read_entry(table, i)
                if e & mm.PRESENT and not t.owned(mm.entry_mfn(e), dom):
                    yield mm.entry_mfn(e), e

    @invariant()
    def foreign_frames_only_through_allowed_live_grants(self):
        for name in "bc":
            dom = self.live(name)
            if dom is None:
                continue
            granted = {m.mfn for m in dom.grant_table.maptrack.values()}
            for mfn, pte in self.foreign_ptes(dom):
                assert pte & mm.GNTTAB and mfn in granted
                assert (name, "a") in ALLOWED

    @invariant()
    def destroyed_frames_mapped_nowhere(self):
        for first, count in self.dead:
            for name in "bc":
                dom = self.live(name)
                if dom is None:
                    continue
                assert not any(first <= mfn < first + count for mfn, _ in self.foreign_ptes(dom))
                assert not dom.grant_table.maptrack


GrantMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])


def test_grant_properties(guests):
    GrantMachine.TestCase("runTest").runTest()
