"""Guest code under pyxenon's paging, beside raw Unicorn in the same run.

spin: the nullcall guest's 5-instruction ALU loop (spin=N) against the very
same bytes in a bare Unicorn without paging (its default TLB, flat memory).
touch: every page of the padding read once per round, with a TLB flush per
round, so each read is a TLB miss walked by the C core.
mmu: mmu_update batches of 32 entries, each fully validated.
"""
import time

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import UC_X86_REG_RCX

from pyxenon.toolstack.host import Host

SPIN = 50_000_000
TOUCH = 40
MMU = 30_000
LOOP = bytes.fromhex("4801d8 4831c3 48c1c007 48ffc9 75f1")   # add, xor, rol, dec, jnz
PAGES_PER_ROUND = None


def boot(guests, cmdline):
    with Host(memory_mib=256) as host:
        dom = host.create(str(guests / "nullcall.cfg"), overrides=[f'cmdline="{cmdline}"'])
        start = time.perf_counter()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
        assert dom.shutdown_reason == "poweroff", dom.crash_report
        global PAGES_PER_ROUND
        PAGES_PER_ROUND = (dom.layout.virt_end - dom.layout.stack - 2 * 4096) // 4096 + 1
        return elapsed


def per_unit(best, guests, cmdline, units):
    empty = min(boot(guests, "") for _ in range(3))
    return max(best(boot, guests, cmdline) - empty, 1e-9) / units


def test_spin_under_paging(best, guests, results):
    results["spin_iteration_pyxenon"] = per_unit(best, guests, f"spin={SPIN}", SPIN)


def raw_unicorn_spin(n):
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, LOOP)
    uc.reg_write(UC_X86_REG_RCX, n)
    start = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(LOOP))
    return time.perf_counter() - start


def test_spin_raw_unicorn(best, results):
    results["spin_iteration_raw_unicorn"] = best(raw_unicorn_spin, SPIN, rounds=3) / SPIN


def test_tlb_miss_heavy(best, guests, results):
    cost = per_unit(best, guests, f"touch={TOUCH}", TOUCH)
    results["tlb_miss"] = cost / PAGES_PER_ROUND


def test_mmu_update_batch(best, guests, results):
    results["mmu_update_batch_32"] = per_unit(best, guests, f"mmu={MMU}", MMU)
