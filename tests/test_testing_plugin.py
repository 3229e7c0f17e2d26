"""The pytest plugin's own behaviour: a domain's repr, the assertion
helpers' report, run_outcome, the trace fixture and hypercall's vcpu."""
import pytest

from pyxenon.testing import assert_powered_off, assert_shutdown

XEN_VERSION = 17


def test_repr_names_the_domain_its_state_and_reason(boot, guests):
    dom = boot(str(guests / "hello.cfg"))
    assert repr(dom) == f"<Domain 'hello' d{dom.domid} dead (poweroff)>"
    assert dom.run_outcome == "idle"


def test_repr_of_a_running_domain(host, guests):
    dom = host.create(str(guests / "hello.cfg"))
    assert repr(dom) == f"<Domain 'hello' d{dom.domid} running>"


def test_a_crash_is_reported_with_its_story(boot, guests):
    dom = boot(str(guests / "crash.cfg"))
    with pytest.raises(AssertionError) as failure:
        assert_powered_off(dom)
    text = str(failure.value)
    assert text.startswith(f"<Domain 'crash' d{dom.domid} ") and "did not poweroff" in text
    assert f"run outcome: {dom.run_outcome}" in text
    assert "crash report:\n" + dom.crash_report.rstrip() in text
    last = dom.console_text.rstrip("\n").splitlines()[-1] if dom.console_text else None
    assert (f"\n    {last}" in text) if last else "console: empty" in text


def test_a_timeout_says_so(boot, host, guests):
    dom = boot(str(guests / "nullcall.cfg"), overrides=['cmdline="loops=4000000000"'],
               timeout=0.2)
    assert dom.run_outcome == "timeout"
    with pytest.raises(AssertionError, match="did not poweroff\nrun outcome: timeout"):
        assert_powered_off(dom)
    host.machine.destroy_domain(dom)
    assert_shutdown(boot(str(guests / "hello.cfg")), "poweroff")   # passes: no raise


def test_trace_records_only_the_domains_given(host, trace, guests):
    one = host.create(str(guests / "nullcall.cfg"), overrides=['cmdline="loops=300"'])
    other = host.create(str(guests / "hello.cfg"))
    calls = trace(one)
    host.run(timeout=30)
    records = calls.records
    assert {r.domid for r in records} == {one.domid} and other.domid != one.domid
    assert calls.names() == ["xen_version"] * 300 + ["sched_op"]
    assert records[0].path == "c" and records[-1].path == "python"
    assert calls.lost == 0


def test_hypercall_takes_a_vcpu(host, hypercall, trace, guests):
    dom = host.create(str(guests / "hello.cfg"))
    calls = trace(dom)
    assert hypercall(dom, XEN_VERSION, 0, 0, vcpu=0) == 4 << 16 | 17
    assert calls.records[0][:4] == (dom.domid, 0, "xen_version", XEN_VERSION)
    with pytest.raises(ValueError, match=r"<Domain 'hello' d\d+ running> has no vcpu 1"):
        hypercall(dom, XEN_VERSION, 0, 0, vcpu=1)
