"""The isolation guests (guests/README.md): traps, paging, hostile, codewrite.

Each guest checks the hypervisor against Xen's x86_64 PV ABI from the inside
and says so on its console; these tests read the verdict.  On failure the
assertion message carries the guest's console (and the crash report), which
names the step or the frame field that went wrong.
"""
import re

# Each guest finishes in well under a second; a hung one should not hold the
# suite for the fixture's full 30 s.
TIMEOUT = 20

TRAPS = ("#PF", "#DE", "#GP", "#BP", "#UD")
HOSTILE_ATTEMPTS = 21          # the attempts guests/hostile/main.c makes
ATTEMPT_LINE = re.compile(r"^hostile: \[\s*\d+\] ", re.MULTILINE)
SUMMARY = re.compile(r"^hostile: (\d+)/(\d+) attempts refused$", re.MULTILINE)


def story(dom):
    """What to show when an assertion fails."""
    return f"{dom.dmesg_text}\n{dom.crash_report or ''}"


def test_traps_guest_handles_every_exception(guests, boot):
    dom = boot(str(guests / "traps.cfg"), timeout=TIMEOUT)
    text = dom.dmesg_text
    assert "traps: set_trap_table(#PF #DE #GP #BP #UD): 0 OK" in text, story(dom)
    for name in TRAPS:
        assert f"trap {name} handled:" in text, story(dom)
    assert "NOT handled" not in text, story(dom)
    assert f"traps: all {len(TRAPS)} handled" in text, story(dom)
    assert dom.shutdown_reason == "poweroff", story(dom)
    assert dom.crash_report is None


def test_paging_guest_runs_on_its_own_page_tables(guests, boot):
    dom = boot(str(guests / "paging.cfg"), timeout=TIMEOUT)
    text = dom.dmesg_text
    for op in ("PIN_L4_TABLE", "NEW_BASEPTR", "UNPIN_TABLE"):
        assert re.search(rf"^paging: MMUEXT_{op}\(.*\): 0 OK$", text, re.MULTILINE), story(dom)
    assert "paging: running on my own page tables" in text, story(dom)
    assert "paging: mmu_update batch of 4 PTEs: 0 OK, done 4" in text, story(dom)
    assert "paging: all steps passed" in text, story(dom)
    assert dom.shutdown_reason == "poweroff", story(dom)
    assert dom.crash_report is None


def test_hostile_guest_is_refused_every_time(guests, boot):
    dom = boot(str(guests / "hostile.cfg"), timeout=TIMEOUT)
    text = dom.dmesg_text
    assert len(ATTEMPT_LINE.findall(text)) == HOSTILE_ATTEMPTS, story(dom)
    assert "NOT REFUSED" not in text, story(dom)
    summary = SUMMARY.search(text)
    assert summary, story(dom)
    assert summary.groups() == (str(HOSTILE_ATTEMPTS), str(HOSTILE_ATTEMPTS)), story(dom)
    assert dom.shutdown_reason == "poweroff", story(dom)
    assert dom.crash_report is None


def test_code_the_hypervisor_writes_runs_as_written(guests, boot):
    """guests/codewrite: translations of a frame go when the hypervisor
    writes it (MMUEXT_COPY_PAGE, GNTTABOP_copy), not only when the guest does."""
    dom = boot(str(guests / "codewrite.cfg"), timeout=TIMEOUT)
    assert dom.shutdown_reason == "poweroff", story(dom)
    for step, value in (("after MMUEXT_COPY_PAGE", 2), ("after GNTTABOP_copy", 4)):
        assert f"codewrite: {step}: page A returns {value}" in dom.dmesg_text, story(dom)
    assert "codewrite: all steps passed" in dom.dmesg_text, story(dom)
