"""guests/gntpt: grants against page types across two domains, from the
inside.  A frame another domain maps writable cannot become a page table
(the writable reference counts in its type), a page table cannot be mapped
writable or copied into by another domain, GNTMAP_contains_pte writes only
into the mapper's own L1s, and an unmapped grant's address faults.  Each
side prints one line per attempt with Xen 4.17's answer; here each must be
Xen's, and both sides power off."""
import re

import pytest
from grant_policy import mutual_grants

from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

ROLES = ("granter", "mapper")
ATTEMPTS = {"granter": 4, "mapper": 16}
POLICY = mutual_grants({"gntpt-granter": "grants its frames and tables",
                        "gntpt-mapper": "maps and copies them"})
AS_XEN = (": refused as Xen does", ": allowed as Xen does")


@pytest.fixture(scope="module")
def pair(guests):
    with Host(memory_mib=256, policy=parse_policy(POLICY, "gntpt.toml")) as host:
        doms = {role: host.create(str(guests / f"gntpt-{role}.cfg")) for role in ROLES}
        host.run(timeout=60)
        yield doms


def story(doms):
    return "\n".join(d.dmesg_text + (d.crash_report or "") for d in doms.values())


def lines(dom, role):
    return re.findall(rf"^gntpt-{role}: \[\s*\d+\] .*$", dom.dmesg_text, re.MULTILINE)


@pytest.mark.parametrize("role,n", [(r, n) for r in ROLES for n in range(ATTEMPTS[r])])
def test_attempt_answered_as_xen(pair, role, n):
    found = lines(pair[role], role)
    assert len(found) > n, story(pair)
    assert found[n].endswith(AS_XEN), found[n]


@pytest.mark.parametrize("role", ROLES)
def test_both_sides_finish_and_power_off(pair, role):
    dom = pair[role]
    assert len(lines(dom, role)) == ATTEMPTS[role], story(pair)
    n = ATTEMPTS[role]
    assert f"gntpt-{role}: {n}/{n} attempts refused" in dom.dmesg_text, story(pair)
    assert dom.shutdown_reason == "poweroff" and dom.crash_report is None, story(pair)
