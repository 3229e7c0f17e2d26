"""pytest fixtures for pyxenon (registered as a pytest plugin on install).

    def test_my_guest(boot):
        dom = boot("my_guest.cfg")               # or boot(kernel="k.elf", memory=16)
        assert dom.shutdown_reason == "poweroff"
        assert "hello" in dom.console_text       # its console ring (dmesg_text: console_io)

    def test_my_handler(host, hypercall):
        dom = host.create(kernel="k.elf")        # built, not yet run
        assert hypercall(dom, 17, 0, 0) == 4 << 16 | 17

``host`` is a fresh Host per test; ``boot`` creates a domain and runs the
host until nothing can run (30 s at most); ``hypercall`` calls a handler the
way the C trap path would, on a domain's vcpu 0, for unit tests of VMM logic;
``trace`` collects hypercall trace lines.
"""
import pytest

BOOT_TIMEOUT = 30


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
    def _hypercall(domain, nr, *args):
        return domain.vcpus[0].hypercall(nr, *args)
    return _hypercall


@pytest.fixture
def trace():
    return []
