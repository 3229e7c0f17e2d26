"""Debian's kernel booted to its poweroff with 1 and with 4 vcpus, in the
same run (wall clock of the whole boot, `nproc` as the command): what
bringing up three more vcpus costs when one engine runs them all."""
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_kernelimage import debian_vmlinuz  # noqa: E402,F401  (the fixture)
from linux_demo import boot_linux, linux_cfg  # noqa: E402

BOOT_TIMEOUT = 400


def boot(kernel, folder, vcpus):
    cfg = linux_cfg(kernel, folder, "nproc")
    cfg.write_text(cfg.read_text() + f"vcpus = {vcpus}\n")
    start = time.perf_counter()
    dom, outcome, _ = boot_linux(cfg, timeout=BOOT_TIMEOUT)
    elapsed = time.perf_counter() - start
    assert dom.shutdown_reason == "poweroff", (outcome, dom.console_text[-2000:])
    assert f"\n{vcpus}\r\n" in dom.console_text or f"\n{vcpus}\n" in dom.console_text
    return elapsed


def test_linux_boot_with_1_and_4_vcpus(debian_vmlinuz, tmp_path, results):  # noqa: F811
    results["linux_boot_1_vcpu"] = boot(debian_vmlinuz, tmp_path, 1)
    results["linux_boot_4_vcpus"] = boot(debian_vmlinuz, tmp_path, 4)
