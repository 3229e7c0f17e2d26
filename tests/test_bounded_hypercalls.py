"""No one trap holds the host: a big console write, a long multicall or a
big grant batch stops at the trap's budget and continues (Xen's hypercall
continuations), so a domain beside a hostile one runs as it would alone."""
import io
import re
import struct

import pytest

from pyxenon import Host
from pyxenon._core import lib
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import grant_table as gt, xen

PAGE = 4096
BUDGET = 64 << 10          # a small trap budget, so a mapped scratch area exceeds it
ENTRY = struct.Struct("<QQ6Q")
VERSION = 4 << 16 | 17
ENTRIES_PER_TRAP = BUDGET // lib.XC_ENTRY_COST


@pytest.fixture(params=[True, False], ids=["fast", "python"])
def dom(request, guests):
    with Host(memory_mib=256, fast_paths=request.param) as host:
        host.machine.core.work_budget = BUDGET
        yield host.create(str(guests / "hello.cfg"))


def scratch(dom):
    return dom.layout.stack + PAGE      # the start-of-day padding: mapped, unused


def entries(dom, va, calls):
    copy_to_guest(dom.vcpus[0], va, b"".join(ENTRY.pack(op, 0, *(args + [0] * 6)[:6])
                                             for op, args in calls))


def result(dom, va, i):
    return struct.unpack("<q", copy_from_guest(dom.vcpus[0], va + i * ENTRY.size + 8, 8))[0]


def test_a_multicall_of_100000_entries_continues(dom):
    """Xen's do_multicall: past the budget, continuation(call_list advanced,
    nr_calls less what was done); the entries done have their results."""
    va, nr = scratch(dom), 100_000
    entries(dom, va, [(xen.HYPERVISOR_xen_version, [0])] * (ENTRIES_PER_TRAP + 2))
    vcpu = dom.vcpus[0]
    assert vcpu.hypercall(xen.HYPERVISOR_multicall, va, nr) == xen.HYPERVISOR_multicall
    regs = vcpu.regs()
    done = (regs["rdi"] - va) // ENTRY.size
    assert 1 <= done <= ENTRIES_PER_TRAP + 1
    assert regs["rsi"] == nr - done
    assert [result(dom, va, i) for i in range(done)] == [VERSION] * done
    assert result(dom, va, done) == 0       # not run yet


def test_a_big_console_write_continues(dom):
    """Xen's guest_console_write: continuation "iih" (CONSOLEIO_write, the
    count left, the buffer advanced) once the budget is spent."""
    va, count = scratch(dom), 256 << 10
    copy_to_guest(dom.vcpus[0], va, b"big\x00\x01write\t\xffdone\n")
    vcpu = dom.vcpus[0]
    assert vcpu.hypercall(xen.HYPERVISOR_console_io, xen.CONSOLEIO_write, count, va) == \
        xen.HYPERVISOR_console_io
    regs = vcpu.regs()
    assert (regs["rdi"], regs["rsi"], regs["rdx"]) == \
        (xen.CONSOLEIO_write, count - BUDGET, va + BUDGET)
    assert dom.dmesg_text == "bigwrite\tdone\n"     # printable only, as Xen's domU console


def test_a_console_write_in_a_multicall_continues_both(dom):
    """The entry's continuation arguments are written back into the entry,
    and the multicall goes on from that entry."""
    va, buf, count = scratch(dom), scratch(dom) + PAGE, 3 * BUDGET
    entries(dom, va, [(xen.HYPERVISOR_xen_version, [0]),
                      (xen.HYPERVISOR_console_io, [xen.CONSOLEIO_write, count, buf])])
    vcpu = dom.vcpus[0]
    assert vcpu.hypercall(xen.HYPERVISOR_multicall, va, 2) == xen.HYPERVISOR_multicall
    regs = vcpu.regs()
    assert (regs["rdi"], regs["rsi"]) == (va + ENTRY.size, 1)
    args = ENTRY.unpack(copy_from_guest(vcpu, va + ENTRY.size, ENTRY.size))[2:5]
    assert args == (xen.CONSOLEIO_write, count - BUDGET, buf + BUDGET)


def test_grant_copies_stop_at_the_budget(dom):
    """GNTTABOP_copy of 4 KiB copies: the budget, not only the op count, ends a trap."""
    op = gt.gnttab_copy()
    op.len = PAGE
    op.source.domid = op.dest.domid = 0x7FF0
    op.flags = 0
    raw = bytes(op)
    va, n = scratch(dom), 200
    copy_to_guest(dom.vcpus[0], va, raw * n)
    vcpu = dom.vcpus[0]
    rc = vcpu.hypercall(xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_copy, va, n)
    assert rc == xen.HYPERVISOR_grant_table_op
    regs = vcpu.regs()
    done = (regs["rsi"] - va) // len(raw)
    assert 1 <= done <= BUDGET // PAGE + 1
    assert (regs["rdi"], regs["rdx"]) == (gt.GNTTABOP_copy, n - done)


# -- a hostile guest beside a well-behaved one ------------------------------------------

def run_until_all_stop(host, limit=300):
    outcome = host.run(timeout=limit)
    assert outcome in ("idle", "blocked"), outcome


def test_bigcall_beside_hello_in_deterministic_mode(guests):
    """hello's output beside bigcall is what it prints alone, and hello is
    done before bigcall has done a hundredth of its traps: bigcall's
    thousands of 4 MiB writes were cut into bounded pieces, the other
    domain running between them."""
    with Host(memory_mib=256, deterministic=True) as host:
        alone = host.create(str(guests / "hello.cfg"))
        run_until_all_stop(host)
    with Host(memory_mib=256, deterministic=True) as host:
        big = host.create(str(guests / "bigcall.cfg"))
        hello = host.create(str(guests / "hello.cfg"))
        vcpu = big.vcpus[0]
        seen = {}
        host.machine.shutdown_listeners.insert(
            0, lambda d: seen.setdefault(d.name, vcpu.core.hypercalls))
        run_until_all_stop(host)
        assert (hello.shutdown_reason, big.shutdown_reason) == ("poweroff", "poweroff")
        assert hello.dmesg_text == alone.dmesg_text
        assert big.dmesg_text.splitlines()[-1] == "bigcall: ok", big.dmesg_text
        # 2048 writes of 256 KiB each: at least that many budgets' worth of traps
        traps = seen["bigcall"]
        assert traps >= 2048 * (256 << 10) // lib.XC_WORK_BUDGET
        assert seen["hello"] < traps // 100


def test_bigcall_beside_hello_in_real_time(guests):
    with Host(memory_mib=256) as host:
        big = host.create(str(guests / "bigcall.cfg"))
        hello = host.create(str(guests / "hello.cfg"))
        order = []
        host.machine.shutdown_listeners.insert(0, lambda d: order.append(d.name))
        run_until_all_stop(host)
        assert order == ["hello", "bigcall"]
        assert big.dmesg_text.splitlines()[-1] == "bigcall: ok", big.dmesg_text
        assert "nr_pages: 4096" in hello.dmesg_text


def test_the_daemon_answers_while_bigcall_runs(xl, guests):
    """`xl list` is served, and another domain runs to its end, while
    bigcall's batch is under way."""
    xl("create", "-q", str(guests / "bigcall.cfg"), 'extra="writes=4096"')
    assert re.search(r"^bigcall +1 ", xl("list").stdout, re.M)
    xl("create", "-q", str(guests / "hello.cfg"))
    xl.wait_gone("hello")
    xl.wait_gone("bigcall", timeout=120)
    log = xl.dmesg()
    assert "(d2) start_info magic: xen-3.0-x86_64, nr_pages: 4096" in log
    assert "(d1) bigcall: ok" in log


def test_runs_console_keeps_no_endless_line():
    """A guest that never ends its line is written out in pieces by `run`,
    not kept whole in the host."""
    from types import SimpleNamespace

    from pyxenon.toolstack.cli import MAX_PARTIAL, ConsoleWriter

    out = io.StringIO()
    writer, dom = ConsoleWriter(out, prefix=False), SimpleNamespace(name="d", domid=1)
    for _ in range(100):
        writer(dom, b"x" * 1000, "ring")
        assert len(writer.partial.get((1, "ring"), ("", ""))[1]) < MAX_PARTIAL
    writer.flush()
    assert out.getvalue().replace("\n", "") == "x" * 100_000
