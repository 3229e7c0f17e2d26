"""pytest fixtures for pyxenon (registered as a pytest plugin on install).

    def test_my_guest(boot):
        dom = boot("my_guest.cfg")               # or boot(kernel="k.elf", memory=16)
        assert_powered_off(dom)                  # else: outcome, crash report, console tail
        assert "hello" in dom.console_text       # its console ring (dmesg_text: console_io)

    def test_my_handler(host, hypercall):
        dom = host.create(kernel="k.elf")        # built, not yet run
        assert hypercall(dom, 17, 0, 0) == 4 << 16 | 17
        assert hypercall(dom, 17, 0, 0, vcpu=0) == 4 << 16 | 17

    def test_what_it_calls(host, trace):
        dom = host.create("my_guest.cfg")
        calls = trace(dom)                       # record dom's hypercalls from now on
        host.run(timeout=30)
        assert calls.names()[-1] == "sched_op"

``host`` is a fresh Host per test.  ``boot`` creates a domain and runs the
host until nothing can run (30 s at most), then sets ``domain.run_outcome``
to what ``Host.run`` returned: "idle" (every domain has gone: powered off,
crashed or destroyed), "blocked" (live domains wait for something that
cannot come: no timer, no event) or "timeout" (still running when the time
was up).  ``hypercall`` calls a handler the way the C trap path would, on
the domain's vcpu 0 or the ``vcpu=`` given, for unit tests of VMM logic.
``trace(dom, ...)`` records the hypercalls the given domains make (traps
and ``hypercall`` calls alike) through the machine's trace buffer, C fast
paths on; its ``records`` are ``Hypercall`` tuples.  A domain's repr names
it, its id, its state and why it shut down, so pytest's failure report
says which domain and how; ``assert_powered_off`` (or ``assert_shutdown``
for another reason) fails with the run outcome, the crash report and the
last lines of the consoles.
"""
import collections

import pytest

BOOT_TIMEOUT = 30
TAIL_LINES = 20

Hypercall = collections.namedtuple("Hypercall", "domid vcpu name nr args rc ns path")


@pytest.fixture
def host():
    from pyxenon.toolstack.host import Host

    with Host(memory_mib=1024) as h:
        yield h


@pytest.fixture
def boot(host):
    def _boot(cfg=None, timeout=BOOT_TIMEOUT, **options):
        domain = host.create(cfg, **options)
        domain.run_outcome = host.run(timeout=timeout)
        return domain
    return _boot


@pytest.fixture
def hypercall():
    def _hypercall(domain, nr, *args, vcpu=0):
        if not 0 <= vcpu < len(domain.vcpus):
            raise ValueError(f"{domain!r} has no vcpu {vcpu} "
                             f"(it has {len(domain.vcpus)})")
        return domain.vcpus[vcpu].hypercall(nr, *args)
    return _hypercall


@pytest.fixture
def trace(host):
    recorder = TraceRecorder(host.machine)
    yield recorder
    recorder.close()


class TraceRecorder:
    """The hypercalls of the domains asked for, drained from the machine's
    trace buffer after each slice (so a long run loses none to a full one)."""

    def __init__(self, machine):
        self.machine = machine
        self.buffer = None
        self.domids = set()
        self._records = []

    def __call__(self, *domains):
        if self.buffer is None:
            from pyxenon.toolstack.xenperf import TraceBuffer
            from pyxenon.toolstack.observe import after_each_slice

            self.buffer = TraceBuffer(self.machine)
            after_each_slice(self.machine, self.drain)
        self.domids.update(d.domid for d in domains)
        return self

    def drain(self):
        from pyxenon.toolstack.xenperf import hypercall_name

        if self.buffer is None:
            return
        ns = self.buffer.ns
        self._records.extend(
            Hypercall(domid, vcpu, hypercall_name(nr), nr, (a1, a2, a3), rc, ns(cycles),
                      "python" if python else "c")
            for _t, nr, a1, a2, a3, rc, cycles, domid, vcpu, python, _ in self.buffer.drain()
            if domid in self.domids)

    @property
    def records(self):
        self.drain()
        return list(self._records)

    @property
    def lost(self):
        """Records the buffer had no room for (of any domain)."""
        return self.buffer.lost if self.buffer is not None else 0

    def names(self):
        return [r.name for r in self.records]

    def close(self):
        if self.buffer is not None:
            self.buffer.close()


# -- assertions with the story of the boot ----------------------------------------

def assert_powered_off(domain):
    assert_shutdown(domain, "poweroff")


def assert_shutdown(domain, reason):
    """Fail, with what the run left behind, unless domain shut down for reason."""
    if domain.shutdown_reason != reason:
        raise AssertionError(f"{domain!r} did not {reason}\n" + boot_story(domain))


def boot_story(domain):
    """The run outcome, the crash report and the consoles' last lines."""
    parts = [f"run outcome: {getattr(domain, 'run_outcome', None) or 'not run by boot()'}"]
    if domain.crash_report:
        parts.append("crash report:\n" + domain.crash_report.rstrip())
    for title, text in (("console", domain.console_text), ("console_io", domain.dmesg_text)):
        lines = text.rstrip("\n").splitlines()[-TAIL_LINES:]
        parts.append(f"{title} (last {len(lines)} lines):" +
                     "".join(f"\n    {line}" for line in lines) if lines else f"{title}: empty")
    return "\n".join(parts)
