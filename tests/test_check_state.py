"""PYXENON_CHECK_STATE=1: the whole-state checker (hypervisor/audit.py)
after every slice of a run, not only when a domain shuts down -- the
attack guests are run this way, so a breach between two slices is seen."""
from pyxenon.hypervisor import audit
from pyxenon.toolstack.host import Host


def checks_in_a_run(monkeypatch, guests, on):
    if on:
        monkeypatch.setenv("PYXENON_CHECK_STATE", "1")
    else:
        monkeypatch.delenv("PYXENON_CHECK_STATE", raising=False)
    calls = []
    real = audit.check
    monkeypatch.setattr(audit, "check", lambda machine: calls.append(1) or real(machine))
    with Host(memory_mib=64, slice_ms=1) as host:
        host.create(str(guests / "memwalk.cfg"), overrides=['extra="mib=2 passes=0 incs=40000000"'])
        host.run(timeout=60)
        return len(calls), host.machine.core.slices


def test_the_checker_runs_after_every_slice(monkeypatch, guests):
    checks, slices = checks_in_a_run(monkeypatch, guests, on=True)
    assert slices > 20 and checks >= slices, (checks, slices)


def test_without_it_no_check_runs(monkeypatch, guests):
    checks, _ = checks_in_a_run(monkeypatch, guests, on=False)
    assert checks == 0
