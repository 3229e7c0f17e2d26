"""A real PV guest built by others: Debian's PV GRUB boots to its prompt
(grant table, its own page tables, XenStore, the console ring) and runs a
command typed on its console."""
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


def run_until(host, dom, text, seconds=60):
    for _ in range(int(seconds / 0.2)):
        host.run(timeout=0.2)
        if text in dom.console_text or dom.shutdown_reason:
            break
    return text in dom.console_text


def test_pvgrub_reaches_its_prompt_and_obeys(pvgrub, host):
    dom = host.create(kernel=str(pvgrub), memory=32)
    assert run_until(host, dom, "grub>"), dom.console_text + str(dom.crash_report)
    assert "Welcome to GRUB!" in dom.console_text
    dom.console.feed(b"echo hello from pyxenon\n")
    assert run_until(host, dom, "\rhello from pyxenon"), dom.console_text[-300:]
    assert dom.crash_report is None
