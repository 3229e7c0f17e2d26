"""The null hypercall round trip, and the plain-Unicorn baseline beside it.

pyxenon: the nullcall guest makes N xen_version(XENVER_version) calls
through its hypercall page (syscall -> C hook -> cffi -> Python handler).
The cost per call is (time(N) - time(0)) / N, so boot and teardown cancel.

Baseline: the same loop of `mov eax,17; syscall` under a bare Unicorn with
a Python UC_HOOK_INSN syscall hook doing the same work a hypercall trap
must: read the number and the five argument registers, write the result to
rax (what a Python emulator such as Qiling does per system call).
"""
import subprocess
import time

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn.x86_const import (UC_X86_INS_SYSCALL, UC_X86_REG_R8, UC_X86_REG_R10,
                               UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDI,
                               UC_X86_REG_RDX, UC_X86_REG_RSI)

from pyxenon.toolstack.host import Host

N = 200_000


def boot_nullcall(guests, loops, fast_paths=False):
    with Host(memory_mib=256, fast_paths=fast_paths) as host:
        dom = host.create(str(guests / "nullcall.cfg"), overrides=[f'cmdline="loops={loops}"'])
        start = time.perf_counter()
        host.run(timeout=120)
        elapsed = time.perf_counter() - start
        assert dom.shutdown_reason == "poweroff"
        return elapsed


def per_call(benchmark, guests, n, fast_paths):
    empty = min(boot_nullcall(guests, 0, fast_paths) for _ in range(3))
    total = benchmark.pedantic(boot_nullcall, args=(guests, n, fast_paths), rounds=3, iterations=1)
    best = (min(benchmark.stats.stats.data) if benchmark.stats else total) - empty
    benchmark.extra_info["per_call_us"] = best / n * 1e6
    return best / n


def test_null_hypercall_python(benchmark, guests, results):
    """The Python path: C fast paths off, so the handler runs in Python."""
    results["null_hypercall_python"] = per_call(benchmark, guests, N, False)


def test_null_hypercall_c(benchmark, guests, results):
    """The C fast path: xen_version(XENVER_version) answered in _core/fast.c."""
    results["null_hypercall_c"] = per_call(benchmark, guests, 10 * N, True)


NATIVE = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void)
{
    struct timespec a, b;
    long n = 2000000;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def test_native_getppid(benchmark, tmp_path, results):
    """Baseline: a real system call on this host (a C helper built here)."""
    src, exe = tmp_path / "getppid.c", tmp_path / "getppid"
    src.write_text(NATIVE)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    runs = benchmark.pedantic(lambda: float(subprocess.run([str(exe)], capture_output=True,
                                                           text=True, check=True).stdout),
                              rounds=3, iterations=1)
    results["native_getppid_syscall"] = runs / 1e9


ARG_REGS = (UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX,
            UC_X86_REG_R10, UC_X86_REG_R8)


# mov ecx, N; loop: mov eax, 17; syscall; dec ecx; jnz loop; hlt
def loop_code(n):
    return (b"\xb9" + n.to_bytes(4, "little") + b"\xb8\x11\x00\x00\x00\x0f\x05"
            b"\xff\xc9\x75\xf5\xf4")


def unicorn_python_hook(n, read_args=True):
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x1000, 0x1000)
    code = loop_code(n)
    uc.mem_write(0x1000, code)

    def on_syscall(uc, _):
        nr, *args = [uc.reg_read(r) for r in ARG_REGS]
        uc.reg_write(UC_X86_REG_RAX, 4 << 16 | 17 if nr == 17 else -38)

    def result_only(uc, _):
        uc.reg_write(UC_X86_REG_RAX, 4 << 16 | 17)
    hook = on_syscall if read_args else result_only
    uc.hook_add(UC_HOOK_INSN, hook, None, 1, 0, UC_X86_INS_SYSCALL)
    start = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(code) - 1)
    elapsed = time.perf_counter() - start
    assert uc.reg_read(UC_X86_REG_RCX) == 0
    return elapsed


def test_unicorn_python_hook_syscall(benchmark, results):
    n = N // 4
    elapsed = benchmark.pedantic(unicorn_python_hook, args=(n,), rounds=3, iterations=1)
    best = min(benchmark.stats.stats.data) if benchmark.stats else elapsed
    results["unicorn_python_hook_syscall"] = best / n
    benchmark.extra_info["per_call_us"] = best / n * 1e6


def test_unicorn_python_hook_result_only(benchmark, results):
    """The floor of any Python hook: no argument read, only rax written."""
    n = N // 4
    elapsed = benchmark.pedantic(unicorn_python_hook, args=(n, False), rounds=3, iterations=1)
    best = min(benchmark.stats.stats.data) if benchmark.stats else elapsed
    results["unicorn_python_hook_result_only"] = best / n
    benchmark.extra_info["per_call_us"] = best / n * 1e6
