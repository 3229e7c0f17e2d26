"""The null hypercall round trip, and the plain-Unicorn baseline beside it.

pyxenon: the nullcall guest makes N xen_version(XENVER_version) calls
through its hypercall page (syscall -> C hook -> cffi -> Python handler).
The cost per call is (time(N) - time(0)) / N, so boot and teardown cancel.

Baselines, all measured in this run:
- native getppid: a real system call on this host (C helper built here);
- bare Unicorn with a Python UC_HOOK_INSN syscall hook doing the work a
  hypercall trap must (read the number and five argument registers, write
  rax), and one that only writes rax;
- bare Unicorn with a C hook doing the same (unicorn_c_hook.c, built here
  against the wheel's libunicorn): a plain loop of syscalls, and a loop that
  calls a hypercall-page stub as a PV guest does, with pyxenon's stub and
  with Xen's (which saves rcx/r11);
- Qiling's Linux syscall path, when the bench extra is installed
  (pip install -e '.[bench]'; skipped with a message otherwise).
"""
import importlib.util
import pathlib
import subprocess
import sys
import time

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn.x86_const import (UC_X86_INS_SYSCALL, UC_X86_REG_R8, UC_X86_REG_R10,
                               UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDI,
                               UC_X86_REG_RDX, UC_X86_REG_RSI)

from pyxenon.toolstack.host import Host

N = 200_000


def boot_nullcall(guests, loops, fast_paths=False):
    with Host(memory_mib=256, fast_paths=fast_paths) as host:
        return run_nullcall(host, guests, loops)


def run_nullcall(host, guests, loops, clock=time.perf_counter):
    """A nullcall domain of loops calls run on host: the time clock measured."""
    dom = host.create(str(guests / "nullcall.cfg"), overrides=[f'cmdline="loops={loops}"'])
    start = clock()
    host.run(timeout=300)
    elapsed = clock() - start
    assert dom.shutdown_reason == "poweroff"
    return elapsed


def per_call(best, guests, n, fast_paths):
    empty = min(boot_nullcall(guests, 0, fast_paths) for _ in range(3))
    return (best(boot_nullcall, guests, n, fast_paths, rounds=3) - empty) / n


def test_null_hypercall_python(best, guests, results):
    """The Python path: C fast paths off, so the handler runs in Python."""
    results["null_hypercall_python"] = per_call(best, guests, N, False)


def test_null_hypercall_c(best, guests, results):
    """The C fast path: xen_version(XENVER_version) answered in _core/fast.c."""
    results["null_hypercall_c"] = per_call(best, guests, 10 * N, True)


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


def test_native_getppid(best, tmp_path, results):
    """Baseline: a real system call on this host (a C helper built here)."""
    src, exe = tmp_path / "getppid.c", tmp_path / "getppid"
    src.write_text(NATIVE)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    ns = best(lambda: float(subprocess.run([str(exe)], capture_output=True, text=True,
                                           check=True).stdout), rounds=3)
    results["native_getppid_syscall"] = ns / 1e9


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


def test_unicorn_python_hook_syscall(best, results):
    n = N // 4
    results["unicorn_python_hook_syscall"] = best(unicorn_python_hook, n, rounds=3) / n


def test_unicorn_python_hook_result_only(best, results):
    """The floor of any Python hook: no argument read, only rax written."""
    n = N // 4
    results["unicorn_python_hook_result_only"] = best(unicorn_python_hook, n, False, rounds=3) / n


HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def c_hook(tmp_path_factory):
    """benchmarks/unicorn_c_hook.c, built against the unicorn wheel."""
    import unicorn

    pkg = pathlib.Path(unicorn.__file__).parent
    lib = next((pkg / "lib").glob("libunicorn.so*"))
    exe = tmp_path_factory.mktemp("c_hook") / "unicorn_c_hook"
    subprocess.run(["gcc", "-O2", "-I", str(pkg / "include"), "-o", str(exe),
                    str(HERE / "unicorn_c_hook.c"), str(lib), f"-Wl,-rpath,{lib.parent}"],
                   check=True)
    return exe


def c_hook_ns(exe, mode):
    """ns per call, as the helper itself times it."""
    return float(subprocess.run([str(exe), str(10 * N), mode], capture_output=True, text=True,
                                check=True).stdout)


def test_unicorn_c_hook_syscall(best, c_hook, results):
    """The floor of a trapped syscall answered in C (no call, no page)."""
    results["unicorn_c_hook_syscall"] = best(c_hook_ns, c_hook, "plain", rounds=3) / 1e9


def test_unicorn_c_hook_page_call(best, c_hook, results):
    """The same reached as a PV guest reaches it: call into pyxenon's stub."""
    results["unicorn_c_hook_page_call"] = best(c_hook_ns, c_hook, "page", rounds=3) / 1e9


def test_unicorn_c_hook_xen_page_call(best, c_hook, results):
    """...and into Xen's stub, which saves rcx and r11 around the syscall."""
    results["unicorn_c_hook_xen_page_call"] = best(c_hook_ns, c_hook, "xenpage", rounds=3) / 1e9


QILING_RUN = """
import sys, time
from qiling import Qiling
from qiling.const import QL_VERBOSE
ql = Qiling([sys.argv[1]], sys.argv[2], verbose=QL_VERBOSE.DISABLED)
start = time.perf_counter()
ql.run()
print(time.perf_counter() - start)
"""


def qiling_run(tmp_path, calls):
    exe = tmp_path / f"getppid_{calls}"
    if not exe.exists():
        subprocess.run(["gcc", "-O2", "-static", "-nostdlib", "-fno-pie", "-no-pie", f"-DN={calls}",
                        "-o", str(exe), str(HERE / "getppid_loop.c")], check=True)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    # its own process: Qiling brings gevent, which must not patch this one
    out = subprocess.run([sys.executable, "-c", QILING_RUN, str(exe), str(rootfs)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def test_qiling_syscall(best, tmp_path, results):
    """A Python emulator's system call: Qiling 1.4.6 running getppid."""
    if importlib.util.find_spec("qiling") is None:
        pytest.skip("Qiling is not installed: pip install -e '.[bench]' adds this baseline")
    few, many = 1000, 11000
    results["qiling_syscall"] = best(
        lambda: (qiling_run(tmp_path, many) - qiling_run(tmp_path, few)) / (many - few))
