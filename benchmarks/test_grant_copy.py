"""Grant copy throughput between two domains (GNTTABOP_copy of a full page
through the hypercall handler), beside a host copy of the same bytes."""
import struct
import time

from pyxenon.hypervisor.guestmem import copy_to_guest
from pyxenon.public import grant_table as gt, xen
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

POLICY = """
version = 1
[labels]
a = "granter"
b = "copier"
[[allow]]
from = "b"
to = "a"
paths = ["grant_copy"]
access = "read"
"""
COPIES = 2000
PAGE = 4096


def copies(guests):
    with Host(memory_mib=256, policy=parse_policy(POLICY, "bench.toml"), audit=lambda r: None) as host:
        a = host.create(str(guests / "hello.cfg"), overrides=['name="a"', 'seclabel="a"'])
        b = host.create(str(guests / "hello.cfg"), overrides=['name="b"', 'seclabel="b"'])
        pfn = a.layout.pfn(a.layout.virt_end) + 4
        struct.pack_into("<HHI", a.machine.mem, a.grant_table.first_mfn * PAGE,
                         gt.GTF_permit_access | gt.GTF_readonly, b.domid, a.pfn_to_mfn(pfn))
        dest = b.pfn_to_mfn(b.layout.pfn(b.layout.virt_end) + 4)
        op = struct.pack("<QHHxxxxQHHxxxxHHh", 0, a.domid, 0, dest, 0x7FF0, 0, PAGE,
                         gt.GNTCOPY_source_gref, 0)
        va = b.layout.stack + PAGE
        copy_to_guest(b.vcpus[0], va, op)
        vcpu = b.vcpus[0]
        start = time.perf_counter()
        for _ in range(COPIES):
            b.dispatch(vcpu, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_copy, va, 1, 0, 0)
        return (time.perf_counter() - start) / COPIES


def host_copies():
    src, dst = bytearray(PAGE), bytearray(PAGE)
    start = time.perf_counter()
    for _ in range(COPIES):
        dst[:] = memoryview(src)
    return (time.perf_counter() - start) / COPIES


def test_grant_copy_page(benchmark, best, guests, results):
    per = results["grant_copy_4k"] = best(copies, guests, rounds=3)
    benchmark.extra_info["mib_per_s"] = PAGE / per / 2 ** 20


def test_host_copy_page(best, results):
    results["host_copy_4k"] = best(host_copies, rounds=3)
