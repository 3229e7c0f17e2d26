"""The self-checking isolation attacks (guests/linearpt, staletlb, hvwrite,
baseptr, deputy, heldpt).

Each guest (booted with pyxenon's `boot` fixture) makes its attempts from
the inside and prints one line per attempt -- what it tried, what came
back, and whether that is Xen 4.17's refusal -- then "NAME: N/M attempts
refused".  Here every attempt is one
test (so a run names the attempts that break isolation), and each guest
must end with M/M and power off.  Beside each attack a well-behaved domain
(guests/hello) must print exactly what it prints alone.

    linearpt  page tables that name themselves (or their parent) writable,
              read-only linear entries, linear chains (bug: validation of
              a table asks for it as the next level down while its type
              count is still 0, so a table can map itself writable), and
              Xen's writable page-table assist
    staletlb  a writable translation dropped without a flush, then the frame
              retyped (bug: no flush on the type change)
    hvwrite   code written by mmu_update / update_descriptor (bug: the old
              translation keeps running)
    baseptr   kernel and user base pointer switches, refused and allowed, in
              batches C takes and ones it leaves to Python: the L4 stays a
              page table throughout (its type counts are not fooled)
    deputy    hypercall outputs aimed at read-only views of its L1, L4 and
              GDT, Xen's m2p, a leaf under a read-only L2 entry; frames
              written by number (vcpu_info, clear/copy page, grant copy):
              Xen writes with the guest's permissions and type rules
    heldpt    the frames dom0's daemons and Xen keep writing (console and
              store rings, grant-table frame, shared_info, vcpu_info) made
              page tables or a GDT, with the guest's own mapping dropped
              (bug: the rings held no writable type, so the store page
              pinned as an L1 took xenstored's reply as a PTE mapping the
              guest's L4 writable)
"""
import re

import pytest

from pyxenon.toolstack.host import Host

TIMEOUT = 30
ATTEMPTS = {"linearpt": 17, "staletlb": 12, "hvwrite": 7, "baseptr": 10, "deputy": 24,
            "heldpt": 25}
# What a line ends with when pyxenon answers as Xen 4.17 does: the attack
# refused, or (for the few things Xen allows, such as its writable page-table
# assist) the operation done as Xen does it.
AS_XEN = (": refused as Xen does", ": allowed as Xen does")


def story(dom):
    return f"{dom.dmesg_text}\n{dom.crash_report or ''}"


def attempt_line(dom, name, n):
    for line in dom.dmesg_text.splitlines():
        m = re.match(rf"^{name}: \[\s*(\d+)\] ", line)
        if m and int(m.group(1)) == n:
            return line
    return None


@pytest.mark.parametrize("name,n", [(name, n) for name, count in ATTEMPTS.items()
                                    for n in range(1, count + 1)],
                         ids=lambda v: str(v))
def test_attempt_is_refused_as_xen_does(guests, boot, name, n):
    dom = boot(str(guests / f"{name}.cfg"), timeout=TIMEOUT)
    line = attempt_line(dom, name, n)
    assert line is not None, f"no attempt {n}:\n{story(dom)}"
    assert line.endswith(AS_XEN), line


@pytest.mark.parametrize("name", ATTEMPTS)
def test_every_attempt_refused_and_the_guest_powers_off(guests, boot, name):
    dom = boot(str(guests / f"{name}.cfg"), timeout=TIMEOUT)
    lines = re.findall(rf"^{name}: \[\s*\d+\] .*$", dom.dmesg_text, re.MULTILINE)
    assert len(lines) == ATTEMPTS[name], story(dom)
    summary = re.search(rf"^{name}: (\d+)/(\d+) attempts refused$", dom.dmesg_text,
                        re.MULTILINE)
    assert summary, story(dom)
    assert summary.groups() == (str(ATTEMPTS[name]),) * 2, story(dom)
    assert dom.shutdown_reason == "poweroff", story(dom)
    assert dom.crash_report is None, story(dom)


@pytest.fixture(scope="module")
def hello_alone(guests):
    with Host(memory_mib=1024) as host:
        dom = host.create(str(guests / "hello.cfg"))
        host.run(timeout=TIMEOUT)
        assert dom.shutdown_reason == "poweroff", story(dom)
        return dom.dmesg_text


@pytest.mark.parametrize("name", ATTEMPTS)
def test_a_well_behaved_domain_beside_the_attack_is_unaffected(guests, host, hello_alone,
                                                              name):
    attack = host.create(str(guests / f"{name}.cfg"))
    hello = host.create(str(guests / "hello.cfg"))
    host.run(timeout=TIMEOUT)
    assert hello.shutdown_reason == "poweroff", story(hello)
    assert hello.crash_report is None, story(hello)
    assert hello.dmesg_text == hello_alone
    assert attack.shutdown_reason == "poweroff", story(attack)
