"""The policy oracle: every grant mapping and interdomain event channel
is allowed by the policy, between live domains, and Xen keeps the in-use
bits it owes the granter's entry; the virq table and virq ports agree."""
from pyxenon.hypervisor import events as evtchn
from pyxenon.hypervisor.domain import DEAD
from pyxenon.public import grant_table as gt


def grant_problems(world, grantee, handle, m, owed):
    where = f"d{grantee.domid} handle {handle} (d{m.granter.domid} ref {m.ref} frame {m.mfn:#x})"
    if m.granter.state == DEAD or m.granter.domid not in world.machine.domains:
        return [("grant-dead-granter", f"{where}: the granter is gone")]
    if world.owner(m.mfn) != m.granter.domid:
        return [("grant-not-granters-frame", f"{where}: frame owned by {world.owner(m.mfn)}")]
    problems = grant_policy_problems(world, grantee, m, where)
    if owed and not in_use_shown(grantee, m, owed):
        problems.append(("grant-in-use-bits", f"{where}: entry flags lack {owed:#x} "
                         "after Xen mapped or unmapped this reference"))
    return problems


def wanted_bits(m):
    return gt.GTF_reading | (0 if m.readonly else gt.GTF_writing)


def in_use_shown(grantee, m, owed):
    """Does the granter's entry show the owed bits (if it still grants that
    frame to that domain, and no vcpu_info of the granter sits on it)?"""
    flags, domid, frame = m.granter.grant_table.read_entry(m.ref)
    if (flags & gt.GTF_type_mask != gt.GTF_permit_access or domid != grantee.domid
            or frame != m.mfn or under_vcpu_info(m.granter, m.ref)):
        return True
    return flags & owed == owed


def under_vcpu_info(granter, ref):
    """Did the granter put a vcpu_info over this grant entry?  (Then Xen's
    event bits land in the entry: the granter's own doing.)"""
    table = granter.grant_table
    places = (table.entry_offset(ref), table.status_offset(ref))
    return any(v.core.vcpu_info_ma - 16 < at < v.core.vcpu_info_ma + 64
               for v in granter.vcpus for at in places)


def grant_policy_problems(world, grantee, m, where):
    if grantee is m.granter:
        return []
    rule_of = world.policy.rule_of
    needs = ("r",) if m.readonly else ("r", "w")
    if all((grantee.label, m.granter.label, "grant_map", a) in rule_of for a in needs):
        return []
    return [("grant-policy", f"{where}: mapped from {grantee.label} to "
             f"{m.granter.label} without a rule")]


def event_problems(world, dom):
    problems = []
    ports = dom.events.ports
    for port, p in enumerate(ports):
        if p.state == evtchn.INTERDOMAIN:
            problems += interdomain_problems(world, dom, port, p)
        elif p.state == evtchn.VIRQ and dom.events.virqs.get((p.virq, p.vcpu)) != port:
            problems.append(("evtchn-virq-map", f"d{dom.domid} port {port}: virq {p.virq} "
                             "not in the virq table"))
    for (virq, vcpu), port in dom.events.virqs.items():
        if not (port < len(ports) and ports[port].state == evtchn.VIRQ):
            problems.append(("evtchn-virq-map", f"d{dom.domid} virq {virq} names port {port}, "
                             "not a virq port"))
    return problems


def interdomain_problems(world, dom, port, p):
    where = f"d{dom.domid} port {port} -> d{p.remote_dom} port {p.remote_port}"
    peer = world.machine.domains.get(p.remote_dom)
    theirs = peer.events.ports[p.remote_port] \
        if peer is not None and p.remote_port < len(peer.events.ports) else None
    if theirs is None or theirs.state != evtchn.INTERDOMAIN or \
            (theirs.remote_dom, theirs.remote_port) != (dom.domid, port):
        return [("evtchn-asymmetric", f"{where}: the other end does not point back")]
    if peer is dom:
        return []
    rule_of = world.policy.rule_of
    pairs = ((dom.label, peer.label), (peer.label, dom.label))
    if all((a, b, "event_channel", "w") in rule_of for a, b in pairs):
        return []
    return [("evtchn-policy", f"{where}: joins {dom.label} and {peer.label} without rules")]
