"""The memory path: guest code that reads and writes a large region, beside
the same machine code run natively in the same run.

The memwalk guest maps 8 MiB of its own frames and makes read-modify-write
passes over them (guests/memwalk/rmw.h); memwalk_native.c compiles the same
loop from the same source for this host.  Two shapes:
- sequential: every 64-bit word in order (stride 8): the engine's per-access
  cost with TLB hits;
- page_strided: one word a page (stride 4096): every access a new page,
  2048 pages per pass, so what counts is whether the engine's TLB holds them
  (machine.c, model_tlb_resize) and what a miss costs.
Per access = (time of N passes - time of 0 passes) / accesses: boot and the
mapping cancel out.  The native time is measured by the program around its
passes alone.
"""
import subprocess
import time

from pyxenon.toolstack.host import Host

MIB = 8
SHAPES = {"sequential": (8, 20), "page_strided": (4096, 2000)}   # stride, passes


def boot(guests, stride, passes):
    with Host(memory_mib=256) as host:
        dom = host.create(str(guests / "memwalk.cfg"),
                          overrides=[f'extra="mib={MIB} stride={stride} passes={passes}"'])
        start = time.perf_counter()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
        assert dom.shutdown_reason == "poweroff", dom.dmesg_text
        return elapsed


def accesses(stride, passes):
    return passes * (MIB << 20) // stride


def guest_case(best, guests, results, shape):
    stride, passes = SHAPES[shape]
    empty = min(boot(guests, stride, 0) for _ in range(2))
    full = best(lambda: boot(guests, stride, passes) - empty)
    results[f"memwalk_{shape}_pyxenon"] = max(full, 1e-9) / accesses(stride, passes)


def native_case(best, tmp_path, results, shape):
    stride, passes = SHAPES[shape]
    exe = tmp_path / "memwalk_native"
    src = guests_root() / ".." / "benchmarks" / "memwalk_native.c"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    seconds = best(lambda: float(subprocess.run([str(exe), str(MIB), str(stride), str(passes)],
                                                capture_output=True, text=True,
                                                check=True).stdout), rounds=3)
    results[f"memwalk_{shape}_native"] = seconds / accesses(stride, passes)


def guests_root():
    import pathlib
    return pathlib.Path(__file__).resolve().parent.parent / "guests"


def test_memwalk_sequential(best, guests, results):
    guest_case(best, guests, results, "sequential")


def test_memwalk_page_strided(best, guests, results):
    guest_case(best, guests, results, "page_strided")


def test_memwalk_sequential_native(best, tmp_path, results):
    native_case(best, tmp_path, results, "sequential")


def test_memwalk_page_strided_native(best, tmp_path, results):
    native_case(best, tmp_path, results, "page_strided")
