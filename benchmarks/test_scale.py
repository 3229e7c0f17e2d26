"""Scale: many domains on one host, and how fast one boots.

hundred_domains: 100 nullcall domains of 16 MiB, all running at once (each
spins); the host's resident memory grows by the figure reported per domain
(guest pages they touched included, so it bounds the host's own overhead).
Creating and destroying one, and booting the hello guest to poweroff in a
fresh host, are timed beside the null hypercall of the same run.
"""
import time

from pyxenon.toolstack.host import Host

DOMAINS = 100


def rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def hundred(guests):
    with Host(memory_mib=DOMAINS * 16 + 256) as host:
        before = rss_bytes()
        start = time.perf_counter()
        doms = [host.create(str(guests / "nullcall.cfg"),
                            overrides=[f'name="n{i}"', 'cmdline="spin=1000000000000"'])
                for i in range(DOMAINS)]
        created = time.perf_counter()
        host.run(timeout=2)
        running = sum(dom.state == "running" for dom in doms)
        grown = rss_bytes() - before
        start_destroy = time.perf_counter()
        for dom in doms:
            host.machine.destroy_domain(dom)
        destroyed = time.perf_counter()
    assert running == DOMAINS
    return (created - start) / DOMAINS, grown / DOMAINS, (destroyed - start_destroy) / DOMAINS


def test_hundred_domains(benchmark, guests, results, sizes):
    create, per_domain, destroy = benchmark.pedantic(hundred, args=(guests,), rounds=1, iterations=1)
    results["domain_create"] = create
    results["domain_destroy"] = destroy
    sizes["host_memory_per_domain"] = per_domain
    benchmark.extra_info.update(create_ms=create * 1e3, destroy_ms=destroy * 1e3,
                                rss_per_domain_mib=per_domain / 2 ** 20)


def boot_hello(guests):
    """A fresh host (the machine, its engine and memory) is part of it."""
    start = time.perf_counter()
    with Host(memory_mib=256) as host:
        dom = host.create(str(guests / "hello.cfg"))
        host.run(timeout=30)
        elapsed = time.perf_counter() - start
    assert dom.shutdown_reason == "poweroff"
    return elapsed


def test_hello_boot(benchmark, guests, results):
    boot_hello(guests)                   # the first boot also calibrates the TSC
    benchmark.pedantic(boot_hello, args=(guests,), rounds=5, iterations=1)
    results["hello_boot_to_poweroff"] = min(benchmark.stats.stats.data) if benchmark.stats \
        else boot_hello(guests)
