"""The hostile-input campaigns (pyxenon.fuzz): a bounded CI
campaign, a replay of every saved finding, and proof that the fuzzer finds
bugs planted on purpose.

A saved finding (tests/fuzz_regressions/*.json) that is still open is
replayed under xfail(strict=True): the test passes while the bug is there
and fails loudly once it is fixed, so the fix also closes the record (set
"open": false and keep the file as a regression test)."""
import json
import pathlib
import struct
import subprocess
import sys

import pytest

from pyxenon.hypercalls import xen_version
from pyxenon.hypervisor import grants
from pyxenon.public import grant_table as gt, version
from pyxenon.fuzz import campaign, cli, common, families, oracle, ops, records, session
from pyxenon.fuzz.parsers import campaign as parser_campaign, feeders

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGRESSIONS = pathlib.Path(__file__).resolve().parent / "fuzz_regressions"
CI_SEED = 2024
CI_CALLS = 3000
CI_INPUTS = 2000


def saved_findings():
    params = []
    for path in sorted(REGRESSIONS.glob("*.json")):
        record = records.load_record(path)
        marks = [pytest.mark.xfail(strict=True, reason=record["reason"])] \
            if record.get("open", True) else []
        params.append(pytest.param(path, marks=marks, id=path.stem))
    return params


# -- the CI campaign -----------------------------------------------------------------------

def test_bounded_campaign_finds_nothing_new(guests):
    """3000 hypercalls and 2000 parser inputs; findings already on record
    (open ones in tests/fuzz_regressions) are not news."""
    stats = common.Stats()
    found = campaign.Campaign(CI_SEED, guests, known=REGRESSIONS, stats=stats, shrink_budget=30).run(CI_CALLS)
    found += parser_campaign.ParserCampaign(CI_SEED, guests, stats, known=REGRESSIONS).run(CI_INPUTS)
    assert not found, cli.summary(CI_SEED, stats, found)
    assert stats.calls == CI_CALLS
    assert sum(stats.parser_inputs.values()) == CI_INPUTS
    assert set(stats.parser_inputs) == set(feeders.FEEDERS)
    assert stats.runs > 0, "the guests never ran"
    made = set(stats.per_hypercall)
    assert {common.hypercall_name(nr) for nr in families.GENERATORS} <= made


def test_campaign_is_deterministic(guests):
    counts = []
    for _ in range(2):
        run = campaign.Campaign(5, guests, known=REGRESSIONS, shrink_budget=0)
        run.run(400)
        counts.append((run.stats.per_hypercall, run.stats.errors))
    assert counts[0] == counts[1]


# -- saved findings ------------------------------------------------------------------------

@pytest.mark.parametrize("path", saved_findings())
def test_saved_finding_does_not_reproduce(path, guests):
    record = records.load_record(path)
    found = records.replay_record(record, guests)
    assert not found, found[0].detail


def test_saved_findings_are_well_formed():
    for path in REGRESSIONS.glob("*.json"):
        record = records.load_record(path)
        assert record["reason"].startswith("finding: "), path
        assert {"kind", "signature", "detail"} <= set(record["finding"]), path
        assert record["seed"] is not None and record["call"], path
        assert record.get("ops") or "parser" in record["call"], path


# -- planted bugs ----------------------------------------------------------------------------

def planted(found, kind, text):
    return [f for f in found if f.kind == kind and text in f.signature]


def plant(monkeypatch, handler):
    """Every xen_version sub-operation becomes handler."""
    for cmd in range(version.XENVER_version, version.XENVER_build_id + 1):
        monkeypatch.setitem(xen_version.OPS, cmd, handler)


def test_finds_a_handler_that_raises(guests, monkeypatch):
    def broken(vcpu, arg):
        raise KeyError("planted")
    plant(monkeypatch, broken)
    found = campaign.Campaign(1, guests, shrink_budget=20).run(800)
    hits = planted(found, "hypervisor-error", "KeyError")
    assert hits, [f.signature for f in found]
    assert any(f.signature == hits[0].signature for f in session.replay(hits[0].ops, guests))


def test_finds_a_result_that_is_not_an_errno(guests, monkeypatch):
    plant(monkeypatch, lambda vcpu, arg: -4242)
    found = campaign.Campaign(1, guests, shrink_budget=0).run(600)
    assert planted(found, "bad-result", "xen_version:negative but not -errno"), \
        [f.signature for f in found]


def test_finds_a_result_that_is_not_an_int(guests, monkeypatch):
    # extraversion: a command the C fast path leaves to Python
    monkeypatch.setitem(xen_version.OPS, version.XENVER_extraversion, lambda vcpu, arg: 4.17)
    found = campaign.Campaign(1, guests, shrink_budget=0).run(1500)
    assert planted(found, "bad-result", "xen_version:not an int"), [f.signature for f in found]


def test_finds_a_broken_invariant(guests, monkeypatch):
    """Releasing a grant mapping forgets the general reference it held on
    the granter's frame: the counts drift."""
    real = grants.release_parts

    def release_parts(machine, table, handle, done):
        mfn = table.maptrack[handle].mfn
        real(machine, table, handle, done)
        machine.frame_table.frames[mfn].count += 1
    monkeypatch.setattr(grants, "release_parts", release_parts)
    found = campaign.Campaign(1, guests, shrink_budget=0).run(2000)
    # the C checker (audit) counts the references; the fuzzer keeps no count of its own
    assert planted(found, "invariant", "audit"), \
        [f.signature for f in found]


def test_finds_in_use_bits_cleared_too_soon(guests, monkeypatch):
    """Unmapping a grant clears GTF_reading/GTF_writing even while other
    mappings of the same reference remain."""
    monkeypatch.setattr(grants.GrantTable, "reduce_status", lambda table, ref, readonly: table.set_flags(
        ref, clear_bits=gt.GTF_reading | gt.GTF_writing))
    found = campaign.Campaign(1, guests, known=REGRESSIONS, shrink_budget=0).run(4000)
    assert planted(found, "invariant", "grant-in-use-bits"), [f.signature for f in found]


def test_finds_a_parser_that_raises(guests, monkeypatch):
    from pyxenon.toolstack import xlcfg

    real = xlcfg.parse_cfg

    def parse_cfg(text, path, overrides=()):
        if "#" in text:
            raise IndexError("planted")
        return real(text, path, overrides)
    monkeypatch.setattr(xlcfg, "parse_cfg", parse_cfg)
    found = parser_campaign.ParserCampaign(1, guests).run(300)
    hits = planted(found, "parser", "parser:xlcfg:")
    assert hits and "IndexError" in hits[0].signature, [f.signature for f in found]
    record = {"finding": {"signature": hits[0].signature}, "call": hits[0].op}
    assert records.replay_record(record, guests)


def test_a_hang_is_a_finding(guests, monkeypatch):
    import time

    def slow(vcpu, arg):
        time.sleep(5)
        return 0
    monkeypatch.setattr(session, "CALL_LIMIT", 0.2)
    monkeypatch.setitem(xen_version.OPS, version.XENVER_changeset, slow)
    op = ops.call_op(0, 17, [version.XENVER_changeset, 0])
    world = session.Session(guests)
    try:
        _, problems = world.perform(op, limit=0.2)
    finally:
        world.close()
    assert problems and problems[0][0] == "hang"


# -- saving and the command line -------------------------------------------------------------

def test_findings_are_saved_and_replayed(guests, monkeypatch, tmp_path):
    plant(monkeypatch, lambda vcpu, arg: [][1])
    found = campaign.Campaign(1, guests, save=tmp_path, shrink_budget=20).run(800)
    saved = [f for f in found if "IndexError" in f.signature]
    assert saved and saved[0].saved
    record = json.loads(pathlib.Path(saved[0].saved).read_text())
    assert record["seed"] == 1 and record["index"] == saved[0].index
    assert record["call"] == saved[0].op and record["ops"][-1] == record["call"]
    assert records.replay_record(record, guests)
    assert cli.main(["--replay", saved[0].saved, "--guests", str(guests)]) == 1


def test_command_line_exit_status(guests, monkeypatch, capsys):
    assert cli.main(["--parsers", "5", "--seed", "3", "--guests", str(guests),
                      "--known", str(REGRESSIONS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pyxenon fuzz: seed 3") and "findings: 0" in out
    plant(monkeypatch, lambda vcpu, arg: {}["x"])
    assert cli.main(["--hypercalls", "800", "--seed", "1", "--guests", str(guests)]) == 1
    assert "hypervisor-error" in capsys.readouterr().out


def test_runs_as_a_module(guests, tmp_path):
    out = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, "-m", "pyxenon.fuzz", "--hypercalls", "50",
                           "--parsers", "20", "--seed", "4", "--guests", str(guests),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    assert "hypercalls: 50 in" in done.stdout
    summary = json.loads(out.read_text())
    assert summary["calls"] == 50 and sum(summary["parser_inputs"].values()) == 20


# -- what the campaigns found --------------------------------------------------------------

def resident_bytes():
    return int(pathlib.Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_closing_a_machine_frees_the_checkers_tlb_shadow():
    """Found by the engine's rss growth (~0.3 MiB a world): xc_machine_free
    left the TLB shadow (384 KiB, once filled) behind, so every world a
    campaign made, and every checked Host, leaked it."""
    from pyxenon._core import lib
    from pyxenon.hypervisor import audit
    from pyxenon.toolstack.host import Host

    def one():
        host = Host(memory_mib=16, deterministic=True)
        audit.shadow_tlb(host.machine)
        for i in range(16384):
            lib.xc_shadow_record(host.machine.core, i << 12, i << 12, 1)
        host.close()
    one()
    before = resident_bytes()
    for _ in range(60):
        one()
    assert resident_bytes() - before < 8 << 20


def test_a_parser_hang_is_cpu_time_not_a_starved_process(monkeypatch):
    """Two parser "hangs" from a loaded machine did not reproduce: a
    parser's limit counts CPU time, so a stall is not a finding and a
    loop is."""
    import time

    from pyxenon.toolstack import xlcfg

    monkeypatch.setattr(feeders, "PARSE_LIMIT", 0.2)
    given = {"data": b"memory = 8\n".hex(), "overrides": [], "via": "text"}
    monkeypatch.setattr(xlcfg, "parse_cfg", lambda *args: time.sleep(0.5))
    assert feeders.check_input("xlcfg", given, "/nonexistent")[1] is None

    def spin(*args):
        end = time.process_time() + 2
        while time.process_time() < end:
            pass
    monkeypatch.setattr(xlcfg, "parse_cfg", spin)
    outcome, problem = feeders.check_input("xlcfg", given, "/nonexistent")
    assert outcome == "finding" and problem[0] == "hang" and "CPU time" in problem[1]


def test_an_op_hang_is_cpu_time_or_a_long_stall(guests, monkeypatch):
    """A 1M-call campaign on a loaded machine reported a guest run of 0.8
    CPU-s as a hang (10 s of wall-clock time): an op's limit counts CPU
    time, and wall-clock time only at STALL_FACTOR times it."""
    import time

    naps = {"s": 0.5}

    def slow(vcpu, arg):
        end = time.process_time() + naps.get("spin", 0)
        while time.process_time() < end:
            pass
        time.sleep(naps["s"])
        return 0
    monkeypatch.setitem(xen_version.OPS, version.XENVER_changeset, slow)
    op = ops.call_op(0, 17, [version.XENVER_changeset, 0])
    world = session.Session(guests)
    try:
        assert world.perform(op, limit=0.2)[1] == []                  # a stall of 0.5 s: no hang
        naps.update(s=0, spin=1.0)
        _, problems = world.perform(op, limit=0.2)                       # 1 CPU-s: a hang
        assert problems and problems[0][0] == "hang" and "CPU time" in problems[0][2], problems
    finally:
        world.close()


def test_oracle_accepts_xens_continuation_echo(hypercall, guests):
    """A finding of the random campaign (seed 1402, epoch 163): mmuext_op
    with a NULL handle and a count of exactly MMU_UPDATE_PREEMPTED returns
    (int)foreigndom, as Xen's do_mmuext_op does for the old_guest_table
    continuation; the oracle took it for a bad result.  pyxenon answers as
    Xen (mmu_update too), and the oracle accepts exactly that value."""
    from pyxenon.fuzz.common import result_problem
    from pyxenon.public import xen
    from pyxenon.toolstack.host import Host

    args = (0, 0x80000000, 0x10, 0xFFFFFFFF80026E10)
    assert result_problem(xen.HYPERVISOR_mmuext_op, -2147324400, args) is None
    assert result_problem(xen.HYPERVISOR_mmuext_op, -2147324401, args) is not None
    assert result_problem(xen.HYPERVISOR_mmuext_op, -2147324400, (0, 1, 0x10, args[3])) is not None
    with Host(memory_mib=64) as host:
        dom = host.create(str(guests / "hello.cfg"), paused=True)
        for nr in (xen.HYPERVISOR_mmuext_op, xen.HYPERVISOR_mmu_update):
            assert hypercall(dom, nr, *args) == -2147324400


def test_the_oracle_reports_a_frame_another_owner_holds(guests):
    """check_ownership: a frame of a domain's range handed to another
    owner is reported; a v2 status frame the table has not populated is
    Xen's and is not (DomainView.strangers)."""
    world = session.Session(guests)
    try:
        dom = world.world.live()[0]
        frames = world.world.machine.frame_table.frames
        table = dom.grant_table
        spare = [table.status_mfn(i) for i in range(table.nr_status_frames, table.max_status_frames)]
        assert spare and all(frames[m].owner != dom.domid for m in spare)
        in_range = range(dom.first_mfn, dom.first_mfn + dom.nr_pages + oracle.EXTRA_FRAMES)
        assert any(m in in_range for m in spare)       # the view's range holds Xen's frames
        assert not [p for p in world.invariants.check() if p[0] == "mm-owner"]
        mfn = dom.first_mfn + 3
        real = frames[mfn].owner
        frames[mfn].owner = dom.domid + 1
        try:
            found = [text for rule, text in world.invariants.check() if rule == "mm-owner"]
        finally:
            frames[mfn].owner = real
        assert found and f"frame {mfn:#x}" in found[0]
    finally:
        world.close()


@pytest.mark.parametrize("edge", [-1, 1 << 63, 0xFFFFFFFF])
def test_the_fifo_recipe_takes_any_port_value(edge):
    """Value makers hand out 64-bit and negative edge values; the FIFO
    recipe packs a port as the u32 the guest would pass (seed 19's random
    campaign stopped on a struct.error)."""
    import random
    from pyxenon.fuzz import recipes

    class Maker:
        rng = random.Random(0)

        def port(self, dom):
            return edge
    ops = recipes.fifo_port_ops(Maker(), None, 0x1000)
    ports = {struct.unpack_from("<I", data)[0] for cmd, data in ops[1:]}
    assert ports == {edge & 0xFFFFFFFF}
