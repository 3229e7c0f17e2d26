"""A real PV guest built by others: Debian's PV GRUB gets as far as the
foundation allows (it needs the memory-management hypercalls next)."""
import shutil
import subprocess

import pytest


@pytest.fixture(scope="module")
def pvgrub(tmp_path_factory):
    if not shutil.which("grub-mkimage"):
        pytest.skip("grub-mkimage not installed (apt-get install grub-xen-bin grub-common)")
    out = tmp_path_factory.mktemp("pvgrub") / "pvgrub.elf"
    res = subprocess.run(["grub-mkimage", "-O", "x86_64-xen", "-p", "/boot/grub",
                          "-o", str(out), "normal", "echo"], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"grub-mkimage -O x86_64-xen failed: {res.stderr.strip()}")
    return out


def test_pvgrub_starts_and_asks_for_memory_management(pvgrub, host):
    lines = []
    dom = host.create(kernel=str(pvgrub), memory=32, trace=lines.append)
    host.run(timeout=60)
    assert dom.shutdown_reason is not None          # stopped, and the host is fine
    assert len(lines) > 10                           # it ran and made hypercalls
    assert dom.unsupported                           # ...and asked for what is missing
