"""What the conformance guests report: one line per check, "NAME: [ n] ...",
then "NAME: N/M as on Xen"; every check must be as on Xen."""
import re


def assert_as_on_xen(dom, name, checks, suffix=""):
    text = dom.dmesg_text
    assert dom.shutdown_reason == "poweroff", dom.crash_report
    lines = [line for line in text.splitlines() if re.match(rf"{name}: \[", line)]
    summary = re.search(rf"{name}: (\d+)/(\d+) as on Xen{suffix}", text)
    assert summary and int(summary[2]) == len(lines) == checks
    assert int(summary[1]) == len(lines), "\n".join(line for line in lines if "NOT" in line)


def run_conformance_guest(guests, host, name, checks):
    """Run guests/NAME.cfg alone to its end and check its report."""
    dom = host.create(str(guests / f"{name}.cfg"))
    host.run(timeout=60)
    assert_as_on_xen(dom, name, checks)
