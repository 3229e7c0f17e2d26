"""Debian Linux from `pyxenon run` to its /init's first line and to its
poweroff, beside QEMU TCG booting the same kernel and initramfs natively
in the same run (`qemu-system-x86_64 -accel tcg`, Debian's
qemu-system-x86; skipped, saying so, when it is absent).

Both are timed as a user sees them, from the command's start (and by the
CPU time the whole program used, user and system, all its threads, which
a loaded machine inflates less than the wall-clock times): the
program's own start-up, loading and decompressing the kernel, the boot,
/init's "init: started", its command (`echo bench`), `poweroff -f` and the
program's exit.  A pyxenon boot that hangs or oopses (the known boot bug
of the Linux issue) is tried again, at most ATTEMPTS times, and the
attempts are reported; QEMU's time is never retried."""
import os
import pathlib
import resource
import select
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_kernelimage import debian_vmlinuz  # noqa: E402,F401  (the fixture)
from linux_demo import linux_cfg  # noqa: E402

COMMAND = "echo bench"
FIRST_LINE = b"init: started"
BOOT_TIMEOUT = 60         # seconds before a boot counts as hung
ATTEMPTS = 3
MEMORY_MIB = 256
QEMU = "qemu-system-x86_64"


@pytest.fixture(scope="module")
def linux(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    """(kernel, initramfs, pyxenon's cfg) for the command initramfs."""
    out = tmp_path_factory.mktemp("linux-bench")
    cfg = linux_cfg(debian_vmlinuz, out, COMMAND, MEMORY_MIB)
    return debian_vmlinuz, out / "initramfs.cpio.gz", cfg


def timed_boot(argv):
    """(seconds to the first line, seconds to the exit, CPU seconds, exit
    status, output) of one boot; the first is None when the line never
    came, the status None when the program hung."""
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    seen, first = b"", None
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], BOOT_TIMEOUT)
            data = os.read(proc.stdout.fileno(), 65536) if ready else b""
            if not data:
                break
            seen += data
            if first is None and FIRST_LINE in seen:
                first = time.perf_counter() - start
        try:
            status = proc.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:      # silent and not ending: hung
            status = None
        return first, time.perf_counter() - start, children_cpu() - cpu, status, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def children_cpu():
    """User and system CPU seconds of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pyxenon_boot(cfg):
    for attempt in range(1, ATTEMPTS + 1):
        first, total, cpu, status, seen = timed_boot(
            [sys.executable, "-m", "pyxenon", "run", "--timeout", str(BOOT_TIMEOUT), str(cfg)])
        if status == 0 and first is not None and COMMAND.split()[1].encode() in seen:
            print(f"pyxenon Linux boot: attempt {attempt} of {ATTEMPTS}")
            return first, total, cpu
        print(f"pyxenon Linux boot: attempt {attempt} failed (exit {status}): {seen[-400:]!r}")
    pytest.fail(f"pyxenon: Linux did not boot and power off in {ATTEMPTS} attempts")


def qemu_boot(kernel, ramdisk):
    argv = [QEMU, "-accel", "tcg", "-m", str(MEMORY_MIB), "-kernel", str(kernel),
            "-initrd", str(ramdisk), "-append", f"console=ttyS0 quiet -- {COMMAND}",
            "-nographic", "-no-reboot"]
    first, total, cpu, status, seen = timed_boot(argv)
    assert status == 0 and first is not None, seen[-2000:]
    return first, total, cpu


def test_linux_boot_beside_qemu(linux, benchmark, results):
    if shutil.which(QEMU) is None:
        pytest.skip(f"Linux boot benchmark: no {QEMU} to compare with "
                    "(apt-get install qemu-system-x86)")
    kernel, ramdisk, cfg = linux
    times = {"pyxenon": [], "qemu": []}

    def one_round():
        times["pyxenon"].append(pyxenon_boot(cfg))
        times["qemu"].append(qemu_boot(kernel, ramdisk))
    benchmark.pedantic(one_round, rounds=1 if benchmark.disabled else 3, iterations=1)
    for who, runs in times.items():
        for i, mark in enumerate(("to_init", "to_poweroff", "cpu")):
            results[f"linux_boot_{mark}_{who}"] = min(run[i] for run in runs)
    for mark in ("to_init", "to_poweroff", "cpu"):
        ours, theirs = (results[f"linux_boot_{mark}_{w}"] for w in ("pyxenon", "qemu"))
        print(f"Linux boot, {mark.replace('_', ' ')}: pyxenon {ours:.2f} s, "
              f"QEMU TCG {theirs:.2f} s, ratio {ours / theirs:.2f} (target 1.5)")
