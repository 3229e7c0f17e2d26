"""Debian's cloud kernel with `vcpus = 4` brings up its secondary vcpus
(VCPUOP_initialise, VCPUOP_up), sees 4 CPUs (busybox's nproc in the
initramfs) and powers off; in wall-clock mode, and twice in deterministic
mode, where the two boots make the same hypercalls in the same order on
every vcpu (each vcpu's call digest, _core/traps.c).  Skipped, saying why,
without the kernel or busybox-static."""
import pytest

from test_kernelimage import debian_vmlinuz  # noqa: F401  (the session fixture)
from linux_demo import boot_linux, linux_cfg

VCPUS = 4
BOOT_TIMEOUT = 400       # wall clock: a boot takes ~1 min with 4 vcpus (one engine runs them all)
DET_BOOT_TIMEOUT = 900   # deterministic: ~5 min each (virtual time, every slice counted)


def smp_cfg(kernel, folder):
    cfg = linux_cfg(kernel, folder, "nproc")
    cfg.write_text(cfg.read_text() + f"vcpus = {VCPUS}\n")
    return cfg


@pytest.fixture(scope="module")
def wallclock(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    return boot_linux(smp_cfg(debian_vmlinuz, tmp_path_factory.mktemp("linux-smp")),
                      timeout=BOOT_TIMEOUT)


@pytest.fixture(scope="module")
def deterministic(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    cfg = smp_cfg(debian_vmlinuz, tmp_path_factory.mktemp("linux-smp-det"))
    return [boot_linux(cfg, timeout=DET_BOOT_TIMEOUT, deterministic=True) for _ in range(2)]


def sees_four_cpus(boot):
    dom, outcome, calls = boot
    text = dom.console_text.replace("\r\n", "\n")   # the console's tty ends lines so
    assert "init: started" in text, (outcome, text[-3000:])
    assert "\ninit: running: nproc\n4\n" in text, text[-3000:]
    assert dom.shutdown_reason == "poweroff" and dom.crash_report is None, text[-3000:]
    assert len(calls) == VCPUS and all(n > 0 for n, _ in calls), calls   # every vcpu ran


def test_linux_with_4_vcpus_boots_and_sees_4_cpus(wallclock):
    sees_four_cpus(wallclock)


def test_linux_with_4_vcpus_boots_deterministically(deterministic):
    sees_four_cpus(deterministic[0])


def test_two_deterministic_4_vcpu_boots_make_the_same_hypercalls(deterministic):
    (first, _, calls), (second, _, again) = deterministic
    assert calls == again
    assert first.console_text == second.console_text
