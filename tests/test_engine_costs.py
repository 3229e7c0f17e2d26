"""What the engine costs a guest, kept in check: its TLB and its watchdog.

The engine's TLB grows to hold a large working set (machine.c,
model_tlb_resize): a domain walking 8 MiB a page at a time, never flushing,
misses on a small fraction of its accesses, not on every one, and its data
is right (the guest checks that every word it touched was added to once
per pass and no other changed)."""
import pathlib

import pytest

from pyxenon._core import lib

from pyxenon.toolstack.host import Host

GUESTS = pathlib.Path(__file__).resolve().parent.parent / "guests"


def walk(stride, passes, mib=8):
    """(shutdown reason, TLB misses of the passes alone)."""
    def misses(n):
        with Host(memory_mib=128) as host:
            dom = host.create(str(GUESTS / "memwalk.cfg"),
                              overrides=[f'extra="mib={mib} stride={stride} passes={n}"'])
            host.run(timeout=60)
            return dom.shutdown_reason, host.machine.core.tlb_misses
    _, boot = misses(0)
    reason, total = misses(passes)
    return reason, total - boot


def test_page_strided_walk_stops_missing():
    reason, misses = walk(4096, 200)
    accesses = 200 * 2048
    assert reason == "poweroff"
    assert misses < accesses // 10, misses       # 256 entries at first: all would miss


def test_bad_arguments_crash_the_guest_with_a_reason():
    with Host(memory_mib=128) as host:
        dom = host.create(str(GUESTS / "memwalk.cfg"), overrides=['extra="mib=8 stride=4095"'])
        host.run(timeout=60)
        assert dom.shutdown_reason == "crash"
        assert "bad mib= or stride=" in dom.dmesg_text


def slices_after_idle(spin):
    """Slices a nullcall guest spinning spin rounds took, created once the
    host's watchdog has parked."""
    import time

    with Host(memory_mib=64) as host:
        deadline = time.monotonic() + 10
        while not host.machine.core.watchdog_parked and time.monotonic() < deadline:
            time.sleep(0.01)
        assert host.machine.core.watchdog_parked
        dom = host.create(str(GUESTS / "nullcall.cfg"), overrides=[f'cmdline="spin={spin}"'])
        assert host.run(timeout=60) == "idle"
        assert dom.shutdown_reason == "poweroff"
        return host.machine.core.slices


def test_idle_host_parks_its_watchdog_and_wakes_it_for_a_run():
    """The slice watchdog stops ticking when nothing runs (an idle daemon
    costs no wake-ups), and the next run wakes it: a guest spinning for
    some 100 ms (10 ms slices) is stopped at its slices' ends."""
    assert slices_after_idle(60_000_000) >= slices_after_idle(0) + 3


def test_runs_end_at_block_starts_on_this_unicorn():
    """exits.c finds Unicorn's switch for its per-access exit checks in the
    pinned Unicorn (pyproject.toml): guest memory accesses pay no exit check."""
    with Host(memory_mib=16) as host:
        assert lib.xc_exits_at_blocks(host.machine.core) == 1


@pytest.mark.parametrize("msr", [0, 1])
@pytest.mark.parametrize("checks", ["at_block_starts", "every_access"])
def test_a_slice_never_ends_inside_an_instruction(monkeypatch, checks, msr):
    """Slices that end while read-modify-write instructions run (incq,
    addq to memory, lock xaddq: memwalk's incs=N) neither repeat nor lose
    one.  Unicorn restarts the instruction in flight when an asynchronous
    stop is noticed after its store, so the watchdog must end slices only
    between blocks (watchdog.c, xc_hook_block); with 1 ms slices this run
    ends some hundreds of them mid-loop.  Both ways exits.c may end a run:
    at block starts only, and (where Unicorn's switch is not found) with
    every access checked and the block hook ending slices.  With msr=1 an
    rdmsr the trap answers inside the engine comes before every 20,000:
    a rip written there with uc_reg_write left Unicorn's
    skip_sync_pc_on_exit set, and the next slice's end then kept a stale
    rip, running a block again (regs.c, xc_write_rip)."""
    if checks == "every_access":
        monkeypatch.setenv("PYXENON_EXIT_EVERY_ACCESS", "1")
    with Host(memory_mib=128, slice_ms=1) as host:
        assert lib.xc_exits_at_blocks(host.machine.core) == (checks == "at_block_starts")
        dom = host.create(str(GUESTS / "memwalk.cfg"),
                          overrides=[f'extra="mib=2 passes=0 incs=40000000 msr={msr}"'])
        host.run(timeout=120)
        assert host.machine.core.slices > 50
        assert dom.shutdown_reason == "poweroff", dom.dmesg_text
