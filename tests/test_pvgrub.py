"""A real PV guest built by others: Debian's PV GRUB sets up its grant
table, builds and pins its own page tables, and reaches XenStore."""
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


def test_pvgrub_gets_through_memory_setup(pvgrub, host):
    lines = []
    dom = host.create(kernel=str(pvgrub), memory=32, trace=lines.append)
    host.run(timeout=5)
    assert dom.crash_report is None, dom.crash_report
    assert any(line.startswith(f"(d{dom.domid}) mmuext_op(") and line.endswith("= 0")
               for line in lines)                    # pinned its own page tables
    store_send = f"(d{dom.domid}) event_channel_op(0x4,"
    assert any(line.startswith(store_send) for line in lines)   # talking to XenStore
