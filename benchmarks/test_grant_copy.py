"""Grant copy between two domains, beside a host copy of the same bytes.

Domain b (the nullcall guest, gntcopy=N) makes N GNTTABOP_copy hypercalls
from its own code, each copying a full page from a grant of domain a into
a page of its own: the whole trap path (hypercall page, syscall, C hook,
Python handler), the grant, policy and bounds checks, the copy, and the
audit record of the policy's decision written by the sink a user gets with
`pyxenon run --audit FILE` or the daemon (policy.JsonLinesAudit, one JSON
line per decision, flushed).  Domain a stays paused: it only owns the grant.
Per copy = (time with N copies - time with 0) / N, so boot cancels out.
The throughput case makes the same copies from 1, 10 and 100 domains.
"""
import struct
import time

import pytest

from pyxenon.public import grant_table as gt
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import JsonLinesAudit, parse_policy

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


def grant_page_to(a, ref, b):
    """Grant entry ref of a: a page of a's padding, read-only to b."""
    pfn = a.layout.pfn(a.layout.virt_end) + 4
    struct.pack_into("<HHI", a.machine.mem, a.grant_table.first_mfn * PAGE + 8 * ref,
                     gt.GTF_permit_access | gt.GTF_readonly, b.domid, a.pfn_to_mfn(pfn))


def copies(guests, audit_path, n, copiers=1):
    """Time for copiers domains to make n copies between them."""
    memory = 64 + 20 * (copiers + 1)
    with JsonLinesAudit(audit_path) as audit, \
            Host(memory_mib=memory, policy=parse_policy(POLICY, "bench.toml"), audit=audit) as host:
        a = host.create(str(guests / "nullcall.cfg"), overrides=['name="a"', 'seclabel="a"'],
                        paused=True)
        first = gt.GNTTAB_NR_RESERVED_ENTRIES      # 0 and 1: the daemons' console and store rings
        each = [host.create(str(guests / "nullcall.cfg"),
                            overrides=[f'name="b{i}"', 'seclabel="b"',
                                       f'cmdline="gntcopy={n // copiers} gntdom={a.domid} '
                                       f'gntref={first + i}"'])
                for i in range(copiers)]
        for i, b in enumerate(each):
            grant_page_to(a, first + i, b)
        start = time.perf_counter()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
        assert all(b.shutdown_reason == "poweroff" for b in each), [b.dmesg_text for b in each]
        return elapsed


def host_copies():
    src, dst = bytearray(PAGE), bytearray(PAGE)
    start = time.perf_counter()
    for _ in range(COPIES):
        dst[:] = memoryview(src)
    return (time.perf_counter() - start) / COPIES


def test_grant_copy_page(benchmark, best, guests, tmp_path, results):
    audit = tmp_path / "audit.jsonl"
    empty = min(copies(guests, audit, 0) for _ in range(2))
    per = results["grant_copy_4k"] = max(best(copies, guests, audit, COPIES) - empty,
                                         1e-9) / COPIES
    benchmark.extra_info["mib_per_s"] = PAGE / per / 2 ** 20
    assert sum(1 for _ in audit.open()) >= COPIES      # every copy was checked and logged


@pytest.mark.parametrize("copiers", [1, 10, 100])
def test_grant_copy_throughput(best, guests, tmp_path, results, copiers):
    """The same copies made by 1, 10 or 100 domains at once (each from its
    own grant of the one granter): per copy, scheduling included."""
    audit = tmp_path / "audit.jsonl"
    empty = min(copies(guests, audit, 0, copiers) for _ in range(2))
    results[f"grant_copy_4k_by_{copiers}_domains"] = max(
        best(copies, guests, audit, COPIES, copiers) - empty, 1e-9) / COPIES


def test_host_copy_page(best, results):
    results["host_copy_4k"] = best(host_copies, rounds=3)
